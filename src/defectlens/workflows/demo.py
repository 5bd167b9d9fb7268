"""The demo: ELPV solar cells from the installed package, Deitsch split, default recipe, evaluated.

``run_demo()`` imports ELPV (2 classes: defective if the expert probability is >= 0.5), splits it
with the protocol of Deitsch et al. (stratified 75 % train / 25 % test, seed 0; validation carved
out of train), trains the ``elpv`` recipe and evaluates the best checkpoint on the test split.
No network is used: images and weights come from installed packages.
"""

from __future__ import annotations

import time
from pathlib import Path

from defectlens.core.progress import Progress
from defectlens.data.importers import import_dataset
from defectlens.data.manifest import INFO_FILE, MANIFEST_FILE
from defectlens.data.split import split_manifest
from defectlens.training import RunResult
from defectlens.workflows.recipes import load_recipe
from defectlens.workflows.train import train_and_evaluate

# Deitsch et al. 2019: 25 % test, stratified on defect probability and cell type; our validation
# split (10 % of all cells) comes out of their training share.
TEST_FRACTION = 0.25
VAL_FRACTION = 0.10


def prepare_elpv(folder: str | Path, *, seed: int = 0, fresh: bool = False, progress: Progress | None = None) -> Path:
    """Import and split ELPV into ``folder`` (reused when already there, unless ``fresh``)."""
    folder = Path(folder)
    if not fresh and (folder / MANIFEST_FILE).is_file() and (folder / INFO_FILE).is_file():
        return folder
    manifest = import_dataset("elpv", fmt="elpv", elpv_classes=2, progress=progress)
    manifest = split_manifest(
        manifest, val=VAL_FRACTION, test=TEST_FRACTION, seed=seed, stratify_meta=("probability", "type")
    )
    manifest.write(folder)
    return folder


def run_demo(
    *,
    data: str | Path = "data/elpv",
    out: str | Path = "runs",
    recipe: str = "elpv",
    fresh: bool = False,
    progress: Progress | None = None,
) -> RunResult:
    """Import, split, train and evaluate; returns the training result (``metrics["test"]`` included)."""
    start = time.perf_counter()
    config = load_recipe(recipe)
    folder = prepare_elpv(data, fresh=fresh, progress=progress)
    result = train_and_evaluate(config.replace(data=str(folder), out=str(out), evaluate=True), progress=progress)
    result.seconds = time.perf_counter() - start
    return result
