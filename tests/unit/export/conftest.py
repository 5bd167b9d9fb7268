"""Fixtures: a tiny checkpoint and its bundle (see tests/unit/export/helpers.py)."""

from tests.unit.export.helpers import bundle, run_dir

__all__ = ["bundle", "run_dir"]
