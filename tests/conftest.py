"""Shared fixtures: RNG guard, gpu auto-skip, real-data location, and a tiny learnable dataset.

Importer-specific synthetic files (VOC XML, casting layout, broken images) live with the data
tests in ``tests/unit/data``; this file only holds what several test packages need.
"""

from __future__ import annotations

import gc
import os
import random
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from tests.anomaly_fixtures import anomaly_fitted  # noqa: F401  # the session's anomaly bundle, for every surface
from tests.require import missing, required

SHARED = Path(__file__).resolve().parents[1].parent / "shared" / "datasets"

# ``backend="auto"`` times the runtimes at a graph's first load (inference/runtime_choice.py); the suite must not
# depend on timing, so it takes the rule (inherited by the CLI subprocesses). test_runtime_choice.py sets "measure".
os.environ.setdefault("DEFECTLENS_AUTO_RUNTIME", "rule")


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    try:
        import torch

        has_cuda = torch.cuda.is_available()
    except Exception:
        has_cuda = False
    skip_gpu = pytest.mark.skip(reason="needs a CUDA GPU; none on this machine")
    for item in items:
        if "gpu" in item.keywords and not has_cuda:
            item.add_marker(skip_gpu)


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo[None]):
    """With ``DEFECTLENS_REQUIRE_REALDATA=1`` (CI) a ``realdata`` test that skips, for any reason, fails."""
    outcome = yield
    report = outcome.get_result()
    if report.skipped and "realdata" in item.keywords and required("REALDATA"):
        reason = report.longrepr[2] if isinstance(report.longrepr, tuple) else report.longrepr
        report.outcome = "failed"
        report.longrepr = f"a realdata test skipped under DEFECTLENS_REQUIRE_REALDATA=1 ({reason})"


@pytest.hookimpl(trylast=True)
def pytest_runtest_teardown(item: pytest.Item, nextitem: pytest.Item | None) -> None:
    """After a failed test, once Tk is loaded in this process, free what its traceback held, on the main thread.

    A Tk interpreter freed on another thread aborts the whole run ("Tcl_AsyncDelete: async handler deleted
    by the wrong thread"): a failed window test's traceback (kept in ``sys.last_traceback`` for post-mortem
    debugging) holds its window, and a later test's server thread could be the one to collect it. So a
    failed Tk test costs its own report, never the rest of the suite.
    """
    if "tkinter" not in sys.modules or getattr(sys, "last_traceback", None) is None:
        return  # passing window tests: their modules collect at the end (test_inspector_xvfb.py)
    sys.last_type = sys.last_value = sys.last_traceback = None  # type: ignore[assignment]
    if hasattr(sys, "last_exc"):
        sys.last_exc = None  # type: ignore[assignment]
    gc.collect()


@pytest.fixture(autouse=True)
def _rng_guard():
    """Restore Python, NumPy and torch RNG state after every test, so tests cannot leak seeds."""
    py_state = random.getstate()
    np_state = np.random.get_state()
    try:
        import torch

        torch_state = torch.random.get_rng_state()
    except ImportError:
        torch_state = None
    yield
    random.setstate(py_state)
    np.random.set_state(np_state)
    if torch_state is not None:
        import torch

        torch.random.set_rng_state(torch_state)


@pytest.fixture(scope="session")
def shared_datasets() -> Path:
    """``../shared/datasets`` beside the checkout; tests using it skip with a reason when absent, and fail
    instead with ``DEFECTLENS_REQUIRE_REALDATA=1`` (CI)."""
    if not SHARED.is_dir():
        missing("REALDATA", f"real datasets not present at {SHARED} (see shared/README.md)")
    return SHARED


def draw_part(rng: np.random.Generator, defective: bool, size: int = 48) -> Image.Image:
    """A gray 'part' (disc) on a dark background; defective parts carry a dark scratch."""
    yy, xx = np.mgrid[0:size, 0:size]
    c = size / 2 + rng.uniform(-2, 2, size=2)
    disc = (yy - c[0]) ** 2 + (xx - c[1]) ** 2 < (size * 0.38) ** 2
    img = np.where(disc, 170.0, 40.0) + rng.normal(0, 6, (size, size))
    if defective:
        r = int(rng.integers(size // 4, size // 2))
        c0 = int(rng.integers(size // 4, size // 2))
        img[r : r + 3, c0 : c0 + size // 3] = 15.0
    return Image.fromarray(np.clip(img, 0, 255).astype(np.uint8), mode="L")


@pytest.fixture(scope="session")
def tiny_dataset(tmp_path_factory: pytest.TempPathFactory):
    """A learnable 2-class dataset (ok / defect), folder per class, 24/8/8 per class in
    train/val/test, as a written Manifest folder. Returns the Manifest folder path."""
    from defectlens.data.manifest import Manifest, Record

    root = tmp_path_factory.mktemp("tiny_images")
    out = tmp_path_factory.mktemp("tiny_dataset")
    rng = np.random.default_rng(0)
    records = []
    for label in ("ok", "defect"):
        (root / label).mkdir()
        for i in range(40):
            split = "train" if i < 24 else ("val" if i < 32 else "test")
            img = draw_part(rng, label == "defect")
            rel = f"{label}/{label}_{i:03d}.png"
            img.save(root / rel)
            records.append(Record(path=rel, label=label, split=split, width=48, height=48, mode="L", group=rel))
    info = {
        "name": "tiny",
        "format": "folder",
        "root": str(root),
        "classes": ["ok", "defect"],
        "positive_class": "defect",
    }
    Manifest(records=records, info=info).write(out)
    return out


@pytest.fixture(scope="session")
def run_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A run folder holding a random-init ``simple_cnn`` checkpoint (``best.pt``), 1 channel, 32 px."""
    from tests.helpers import make_checkpoint

    return make_checkpoint(tmp_path_factory.mktemp("run"))


@pytest.fixture(scope="session")
def bundle(run_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """That checkpoint exported to a ``.dlens`` bundle."""
    import warnings

    from defectlens.export import export_bundle

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # the synthetic-inputs warning is tested on its own
        return export_bundle(run_dir, tmp_path_factory.mktemp("bundle") / "model.dlens").path


@pytest.fixture(scope="session")
def constant_bundle(tmp_path_factory: pytest.TempPathFactory):
    """``constant_bundle(layout)``: a bundle of one of ``tests.helpers.LAYOUTS`` whose network gives every
    image the logits of ``CONSTANT_PROBS[layout]`` (exported once per layout, then shared)."""
    import math
    import warnings

    from defectlens.export import export_bundle
    from tests.helpers import CONSTANT_PROBS, LAYOUTS, make_checkpoint

    made: dict[str, Path] = {}

    def make(layout: str) -> Path:
        if layout not in made:
            classes, positive, threshold = LAYOUTS[layout]
            logits = [math.log(CONSTANT_PROBS[layout][c]) for c in classes]
            run = make_checkpoint(
                tmp_path_factory.mktemp(f"run-{layout}"),
                classes=classes,
                positive=positive,
                threshold=threshold,
                logits=logits,
            )
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")  # the synthetic-inputs warning is tested on its own
                out = tmp_path_factory.mktemp(f"bundle-{layout}") / "model.dlens"
                made[layout] = export_bundle(run, out).path
        return made[layout]

    return make


@pytest.fixture(scope="session")
def gated_bundle(tmp_path_factory: pytest.TempPathFactory, tiny_dataset: Path) -> Path:
    """A bundle exported with its training data (``tiny_dataset``): it carries the gate's reference profile
    and its graph computes the out-of-distribution score. A black frame is ``needs_review`` with it; the
    training images (``tiny_dataset``'s ``train`` split) pass the gate."""
    from defectlens.export import export_bundle
    from tests.helpers import make_checkpoint

    run = make_checkpoint(tmp_path_factory.mktemp("gated-run"))
    return export_bundle(run, tmp_path_factory.mktemp("gated") / "model.dlens", data=tiny_dataset).path


@pytest.fixture(scope="session")
def cam_bundle(tmp_path_factory: pytest.TempPathFactory, tiny_dataset: Path) -> Path:
    """A pooled-head bundle (MobileNetV3-Small, 1 channel, 64 px, test-time flips) exported with its data
    and ``--int8``: its graphs give the logits, the OOD score and the last feature map, so the class
    activation map runs without torch (:mod:`defectlens.inference.cam`)."""
    from defectlens.export import export_bundle
    from tests.helpers import make_checkpoint

    run = make_checkpoint(tmp_path_factory.mktemp("cam-run"), arch="mobilenet_v3_small", size=64, tta="flips")
    return export_bundle(run, tmp_path_factory.mktemp("cam") / "model.dlens", data=tiny_dataset, int8=True).path
