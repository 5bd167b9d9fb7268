"""Fixtures of the inspector's logic tests: a private settings folder and a tiny labelled folder."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from tests.conftest import draw_part


@pytest.fixture(autouse=True)
def _private_config(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """Every inspector test writes its settings and default log under its own temporary folder."""
    folder = tmp_path / "config"
    monkeypatch.setenv("DEFECTLENS_CONFIG_DIR", str(folder))
    return folder


@pytest.fixture
def labelled_folder(tmp_path: Path) -> Path:
    """``ok/`` and ``defect/`` subfolders of 4 real PNG parts each, plus one unreadable file in ``defect/``."""
    root = tmp_path / "parts"
    rng = np.random.default_rng(3)
    for label in ("ok", "defect"):
        (root / label).mkdir(parents=True)
        for i in range(4):
            draw_part(rng, label == "defect").save(root / label / f"{label}_{i}.png")
    (root / "defect" / "broken.png").write_bytes(b"this is not a PNG")
    return root
