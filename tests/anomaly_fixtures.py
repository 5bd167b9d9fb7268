"""Generated parts for anomaly mode, and one tiny anomaly bundle per test session (``anomaly_fitted``).

The parts are a grey texture (smoothed noise with a woven pattern); a defect is a bright scratch drawn
across it, with its MVTec-style mask in ``ground_truth/scratch/``. The bundle is fitted once (96 px,
grayscale, a 256-row bank) and shared by every surface's test: the workflow, predict, bench, the station,
the service and the Inspector.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from PIL import Image, ImageDraw, ImageFilter

from defectlens.training.config import TrainConfig

SIZE = 96


def texture(rng: np.random.Generator) -> Image.Image:
    """A good part: smoothed noise over a woven pattern, grayscale, ``SIZE`` px."""
    noise = rng.normal(0.0, 18.0, (SIZE, SIZE))
    yy, xx = np.mgrid[:SIZE, :SIZE]
    weave = 14.0 * np.sin(xx / 2.5) * np.sin(yy / 2.5)
    img = Image.fromarray(np.clip(120 + noise + weave, 0, 255).astype(np.uint8), "L")
    return img.filter(ImageFilter.GaussianBlur(0.8))


def scratched(rng: np.random.Generator) -> tuple[Image.Image, Image.Image]:
    """A defective part (a bright scratch across the texture) and its mask."""
    img, mask = texture(rng), Image.new("L", (SIZE, SIZE), 0)
    x0, y0 = (int(v) for v in rng.integers(10, 40, 2))
    x1, y1 = x0 + int(rng.integers(25, 45)), y0 + int(rng.integers(25, 45))
    for canvas, fill in ((ImageDraw.Draw(img), 250), (ImageDraw.Draw(mask), 255)):
        canvas.line([(x0, y0), (x1, y1)], fill=fill, width=3)
    return img, mask


def write_parts(root: Path, *, good: int = 30, test_good: int = 8, test_bad: int = 8, seed: int = 0) -> Path:
    """``train/good``, ``test/good``, ``test/scratch`` and ``ground_truth/scratch/*_mask.png`` (MVTec AD)."""
    rng = np.random.default_rng(seed)
    for split, n in (("train", good), ("test", test_good)):
        (root / split / "good").mkdir(parents=True)
        for i in range(n):
            texture(rng).save(root / split / "good" / f"{i:03d}.png")
    (root / "test" / "scratch").mkdir(parents=True)
    (root / "ground_truth" / "scratch").mkdir(parents=True)
    for i in range(test_bad):
        img, mask = scratched(rng)
        img.save(root / "test" / "scratch" / f"{i:03d}.png")
        mask.save(root / "ground_truth" / "scratch" / f"{i:03d}_mask.png")
    return root


def config(data: Path, out: Path, **changes: object) -> TrainConfig:
    """The cheap anomaly config of these tests: 1 channel, ``SIZE`` px, a 256-row bank from 4,000 patches."""
    base = TrainConfig(
        task="anomaly", data=str(data), channels=1, input_size=SIZE, bank_size=256, max_patches=4000,
        out=str(out), workers=1,
    )  # fmt: skip
    return base.replace(**changes)


def train_flags(**changes: object) -> list[str]:
    """The same cheap settings as ``defectlens train`` flags (``--data`` and ``--out`` not included)."""
    flags = {"task": "anomaly", "channels": 1, "input_size": SIZE, "bank_size": 256, "max_patches": 4000,
             "workers": 1, **changes}  # fmt: skip
    return [a for k, v in flags.items() for a in (f"--{k.replace('_', '-')}", str(v))]


@dataclass(frozen=True)
class AnomalyParts:
    """The session's fitted anomaly model: the MVTec-style source, the imported dataset, the run and its bundle."""

    source: Path
    data: Path
    result: Any  # the RunResult of train_and_evaluate
    bundle: Any  # the exported Bundle (``.path``, ``.meta``)

    def __getitem__(self, key: str) -> Any:  # the workflow tests read it as a mapping
        return getattr(self, key)


@pytest.fixture(scope="session")
def anomaly_fitted(tmp_path_factory: pytest.TempPathFactory) -> AnomalyParts:
    """A PatchCore model fitted on ``write_parts``' 30 good parts, exported to a bundle (once per session)."""
    from defectlens.export import export_bundle
    from defectlens.workflows.prepare import prepare_training_data
    from defectlens.workflows.train import train_and_evaluate

    tmp = tmp_path_factory.mktemp("anomaly")
    source = write_parts(tmp / "parts")
    prepared = prepare_training_data(source, out=tmp / "runs")
    result = train_and_evaluate(config(prepared.folder, tmp / "runs"))
    assert result.run_dir is not None
    bundle = export_bundle(result.run_dir, tmp / "parts.dlens")
    return AnomalyParts(source, prepared.folder, result, bundle)
