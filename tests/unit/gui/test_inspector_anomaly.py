"""The Inspector on an anomaly bundle, without a display: an MVTec-style folder (``good/``, ``scratch/``) is
scored, its defect kind counts as ``anomalous`` ground truth, the running figures count the scratches caught,
and the overlay is the bundle's anomaly map (cold on a good part, hot on the scratch)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from defectlens.core.anomaly import ANOMALOUS
from defectlens.explain.maps import explain
from defectlens.gui.app import Inspector
from defectlens.inference.predictor import Predictor
from tests.anomaly_fixtures import scratched, texture


@pytest.fixture
def parts(tmp_path: Path) -> tuple[Path, dict[str, np.ndarray]]:
    """``good/`` (4 textures) and ``scratch/`` (4 scratched ones); the scratches' masks by file name."""
    root, rng, masks = tmp_path / "parts", np.random.default_rng(31), {}
    (root / "good").mkdir(parents=True)
    (root / "scratch").mkdir()
    for i in range(4):
        texture(rng).save(root / "good" / f"g{i}.png")
        img, mask = scratched(rng)
        img.save(root / "scratch" / f"s{i}.png")
        masks[f"s{i}.png"] = np.asarray(mask) > 0
    return root, masks


@pytest.fixture
def inspector(tmp_path: Path):
    app = Inspector(db=tmp_path / "log.sqlite", seed=0, batch_size=4)
    yield app
    app.close()


def test_the_inspector_scores_an_anomaly_bundle_with_running_figures(inspector, anomaly_fitted, parts) -> None:
    folder, _ = parts
    inspector.open_source(folder)
    inspector.open_model(anomaly_fitted.bundle.path)
    events = inspector.wait()
    assert [e.kind for e in events if e.kind in ("model", "scored")] == ["model", "scored"]
    session = inspector.session
    assert session.class_names == ("good", ANOMALOUS) and session.positive_class == ANOMALOUS
    assert session.threshold == pytest.approx(0.5)
    truth = {item.path.name: item.truth for item in session.items}
    assert truth == {**{f"g{i}.png": "good" for i in range(4)}, **{f"s{i}.png": ANOMALOUS for i in range(4)}}
    decided = {item.path.name: session.view(i).prediction for i, item in enumerate(session.items)}
    assert [decided[f"s{i}.png"] for i in range(4)] == [ANOMALOUS] * 4
    assert [decided[f"g{i}.png"] for i in range(4)] == ["good"] * 4
    inspector.request_metrics()
    assert [e.kind for e in inspector.wait()] == ["metrics"]
    figures = inspector.figures
    assert figures is not None and figures == session.metrics()
    assert (figures["tp"], figures["fn"], figures["fp"], figures["tn"]) == (4, 0, 0, 4)
    inspector.set_threshold(1.0)  # nothing reaches it: every scratch is missed, with no new inference
    assert session.metrics()["fn"] == 4  # type: ignore[index]


def test_the_inspector_overlay_is_the_anomaly_map(inspector, anomaly_fitted, parts) -> None:
    folder, masks = parts
    inspector.open_source(folder)
    inspector.open_model(anomaly_fitted.bundle.path)
    inspector.wait()
    assert inspector.gradcam_unavailable() is None
    assert inspector.explain_method == "anomaly map (onnxruntime)"
    index = {item.path.name: i for i, item in enumerate(inspector.session.items)}
    for name in ("s0.png", "g0.png"):
        assert inspector.overlay(index[name]) is None  # asked for; arrives through poll()
    assert [e.kind for e in inspector.wait()] == ["gradcam", "gradcam"]
    predictor = Predictor.load(anomaly_fitted.bundle.path)
    bad = np.asarray(inspector.overlay(index["s0.png"]), dtype=float)
    expected = explain(predictor, folder / "scratch" / "s0.png")
    assert np.array_equal(bad, np.asarray(expected.overlay, dtype=float))  # the same picture predict draws
    heat, inside = expected.heatmap, masks["s0.png"]
    assert heat[inside].mean() > heat[~inside].mean() + 0.2
    warmth = bad[..., 0] - bad[..., 2]  # jet: red where the map is hot, blue where it is cold
    # 74 against 46 on this fixture: the range's top is the threshold's score, which a map-scored bundle sets on the
    # smoothed map itself, so the scratch saturates and its blurred halo is warm too (28 with the patch score's range)
    assert warmth[inside].mean() > warmth[~inside].mean() + 20
    assert explain(predictor, folder / "good" / "g0.png").heatmap.max() < 0.9  # a good part's map stays cold
