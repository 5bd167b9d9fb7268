"""The demo: ELPV solar cells from the installed package, Deitsch split, default recipe, evaluated.

``run_demo()`` imports ELPV (2 classes: defective if the expert probability is >= 0.5), splits it
with the protocol of Deitsch et al. (stratified 75 % train / 25 % test, seed 0; validation carved
out of train), trains ``configs/elpv.yaml`` and evaluates the best checkpoint on the test split.
No network is used: images and weights come from installed packages.
"""

from __future__ import annotations

import time
from pathlib import Path

from defectlens.config import TrainConfig, config_path
from defectlens.errors import DefectlensError
from defectlens.training.trainer import RunResult, train

# Deitsch et al. 2019: 25 % test, stratified on defect probability and cell type; our validation
# split (10 % of all cells) comes out of their training share.
TEST_FRACTION = 0.25
VAL_FRACTION = 0.10


def prepare_elpv(folder: str | Path, *, seed: int = 0, fresh: bool = False) -> Path:
    """Import and split ELPV into ``folder`` (reused when already there, unless ``fresh``)."""
    from defectlens.data.manifest import INFO_FILE, MANIFEST_FILE

    folder = Path(folder)
    if not fresh and (folder / MANIFEST_FILE).is_file() and (folder / INFO_FILE).is_file():
        return folder
    from defectlens.data.importers import import_dataset
    from defectlens.data.split import split_manifest

    manifest = import_dataset("elpv", fmt="elpv", elpv_classes=2)
    manifest = split_manifest(
        manifest, val=VAL_FRACTION, test=TEST_FRACTION, seed=seed, stratify_meta=("probability", "type")
    )
    manifest.write(folder)
    return folder


def run_demo(
    *, data: str | Path = "data/elpv", out: str | Path = "runs", recipe: str = "elpv", fresh: bool = False
) -> RunResult:
    """Import, split, train and evaluate; returns the training result (``metrics["test"]`` included).

    Raises:
        DefectlensError: if the recipe file is missing.
    """
    path = config_path(recipe)
    if not path.is_file():
        raise DefectlensError(f"{path}: demo recipe not found; run the demo from a defectlens checkout")
    start = time.perf_counter()
    folder = prepare_elpv(data, fresh=fresh)
    config = TrainConfig.from_yaml(path).replace(data=str(folder), out=str(out), evaluate=True)
    result = train(config)
    result.seconds = time.perf_counter() - start
    return result
