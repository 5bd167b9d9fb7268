"""Fixtures of the bad-input corpus: a tiny bundle to predict with, and crash logs kept out of /tmp."""

from __future__ import annotations

from pathlib import Path

import pytest


@pytest.fixture(autouse=True)
def _crash_logs(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """Exit code 3 writes its traceback here, so a test can find it (and none litters /tmp)."""
    folder = tmp_path / "crash-logs"
    monkeypatch.setenv("DEFECTLENS_LOG_DIR", str(folder))
    return folder


@pytest.fixture
def image(tmp_path: Path) -> Path:
    from tests.unit.hardening.corpus import noise

    path = tmp_path / "part.png"
    noise().save(path)
    return path
