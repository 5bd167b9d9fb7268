"""Anomaly mode end to end on generated parts: fit on good textures only, find a drawn scratch nobody
labelled, ship it as a bundle, and refuse bad input clearly.

The parts (``tests/anomaly_fixtures.py``) are a grey texture; a defect is a bright scratch drawn across it,
with its MVTec-style mask in ``ground_truth/scratch/``.
"""

from __future__ import annotations

import base64
import csv
import io
import json
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from defectlens.core.anomaly import ANOMALOUS
from defectlens.core.errors import DefectlensError
from defectlens.data.manifest import Manifest
from defectlens.evaluation.anomaly import pixel_auroc
from tests.anomaly_fixtures import SIZE, AnomalyParts, config, scratched, texture, write_parts


@pytest.fixture
def fitted(anomaly_fitted: AnomalyParts) -> AnomalyParts:
    """The session's anomaly model (``tests/anomaly_fixtures.py``), shared with the surfaces' tests."""
    return anomaly_fitted


def test_the_mvtec_layout_imports_with_its_masks(fitted: dict[str, object]) -> None:
    manifest = Manifest.read(fitted["data"])  # type: ignore[arg-type]
    test = manifest.split("test")
    masked = [r for r in test if r.label == "scratch"]
    assert len(masked) == 8 and all(r.meta.get("mask", "").startswith("ground_truth/scratch/") for r in masked)
    assert not any("mask" in r.meta for r in test if r.label == "good")
    skipped = json.loads((Path(fitted["data"]) / "dataset.json").read_text())["skipped"]  # type: ignore[arg-type]
    assert not [s for s in skipped if "ground_truth" in s["path"]]  # the masks were used, not skipped


def test_it_fits_on_good_parts_and_finds_the_scratch_it_never_saw(fitted: dict[str, object]) -> None:
    result = fitted["result"]
    spec = result.spec  # type: ignore[attr-defined]
    assert spec.class_names == ("good", ANOMALOUS) and spec.positive_class == ANOMALOUS
    test = result.metrics["test"]  # type: ignore[attr-defined]
    assert test["roc_auc"] >= 0.95
    # validation held good images only: the threshold came from them, never "every image anomalous"
    assert spec.threshold == pytest.approx(0.5)
    recall = {c["class"]: c["recall"] for c in test["per_class"]}
    assert recall[ANOMALOUS] >= 0.75 and recall["good"] >= 0.75


def test_the_bundle_calls_the_scratch_anomalous_and_its_map_points_at_it(
    fitted: dict[str, object], tmp_path: Path
) -> None:
    from defectlens.inference.predictor import Predictor

    bundle = fitted["bundle"]
    assert bundle.meta["parity"]["backends"]["onnx"]["ok"]  # type: ignore[attr-defined]
    assert bundle.meta["parity"]["max_abs_prob_diff"] <= 1e-4  # type: ignore[attr-defined]
    assert bundle.meta["parity"]["cam"]["ok"]  # type: ignore[attr-defined]
    assert bundle.meta["gate"]["ood"] is None  # type: ignore[attr-defined]  # the score is the model's own
    predictor = Predictor.load(bundle.path)  # type: ignore[attr-defined]
    rng = np.random.default_rng(99)
    masks, maps = [], []
    for i in range(4):
        img, mask = scratched(rng)
        img.save(tmp_path / f"bad{i}.png")
        assert predictor.predict(tmp_path / f"bad{i}.png").prediction == ANOMALOUS
        heat, inside = predictor.explain(tmp_path / f"bad{i}.png").heatmap, np.asarray(mask) > 0
        assert heat[inside].mean() > heat[~inside].mean() + 0.2  # the overlay is hottest on the scratch
        masks.append(inside)
        maps.append(predictor.anomaly_map(tmp_path / f"bad{i}.png"))
    assert pixel_auroc(np.stack(masks), np.stack(maps)) >= 0.9
    texture(rng).save(tmp_path / "good.png")
    good = predictor.predict(tmp_path / "good.png")
    assert good.prediction == "good"
    assert predictor.explain(tmp_path / "good.png").heatmap.max() < 0.9  # a good part's overlay stays cold


def test_a_black_frame_is_refused_by_the_gate_not_called_anomalous(fitted: dict[str, object], tmp_path: Path) -> None:
    from defectlens.inference.predictor import Predictor

    Image.new("L", (SIZE, SIZE), 0).save(tmp_path / "black.png")
    pred = Predictor.load(fitted["bundle"].path).predict(tmp_path / "black.png")  # type: ignore[attr-defined]
    assert pred.status == "needs_review" and not pred.ok


def test_a_defect_filed_as_good_is_named_as_an_outlier(tmp_path: Path) -> None:
    import torch

    from defectlens.models.patchcore import create_patchcore
    from defectlens.training.anomaly import fit_patchcore, outlier_images
    from defectlens.workflows.anomaly import _write_outliers

    rng = np.random.default_rng(5)
    images = [np.asarray(texture(rng)) for _ in range(15)] + [np.asarray(scratched(rng)[0])]
    batch = torch.from_numpy(np.stack(images)[:, None])
    model = create_patchcore("efficientnet_lite0", in_channels=1, input_size=SIZE, pretrained=True)
    _, owners = fit_patchcore(model, batch, bank_size=400, max_patches=5000)
    cross = outlier_images(model, batch, owners)
    assert int(np.argmax(cross)) == 15

    class _R:  # the two fields _write_outliers reads
        def __init__(self, path: str):
            self.path = path

    from defectlens.data.dataset import CachedSplit

    split = CachedSplit(batch, torch.zeros(16, dtype=torch.int64), [_R(f"train/good/{i}.png") for i in range(16)])  # type: ignore[list-item]
    with pytest.warns(UserWarning, match="look unlike the other normal ones"):
        flagged = _write_outliers(tmp_path, split, cross)
    assert flagged == ["train/good/15.png"]
    rows = list(csv.DictReader((tmp_path / "outliers.csv").open(encoding="utf-8")))
    assert [r["path"] for r in rows] == ["train/good/15.png"]


def test_too_few_good_images_is_a_clear_error(tmp_path: Path) -> None:
    from defectlens.workflows.prepare import prepare_training_data
    from defectlens.workflows.train import train_and_evaluate

    prepared = prepare_training_data(write_parts(tmp_path / "p", good=8, test_good=2, test_bad=2), out=tmp_path / "r")
    with pytest.raises(DefectlensError, match=r"at least 10 'good' training images; the training split has \d"):
        train_and_evaluate(config(prepared.folder, tmp_path / "r"))


def test_a_dataset_without_a_normal_class_names_its_classes(tmp_path: Path) -> None:
    from defectlens.workflows.prepare import prepare_training_data
    from defectlens.workflows.train import train_and_evaluate

    root = write_parts(tmp_path / "p", good=12, test_good=2, test_bad=2)
    (root / "train" / "good").rename(root / "train" / "parts")
    (root / "test" / "good").rename(root / "test" / "parts")
    prepared = prepare_training_data(root, out=tmp_path / "r")
    with pytest.raises(DefectlensError, match=r"name it with --normal \(the dataset's classes: parts, scratch\)"):
        train_and_evaluate(config(prepared.folder, tmp_path / "r"))
    with pytest.raises(DefectlensError, match="normal class 'ok' is not a class of the dataset"):
        train_and_evaluate(config(prepared.folder, tmp_path / "r", normal="ok"))


def test_int8_is_refused_for_an_anomaly_bundle(fitted: dict[str, object], tmp_path: Path) -> None:
    from defectlens.export import export_bundle

    result = fitted["result"]
    with pytest.raises(DefectlensError, match="--int8 is not offered for anomaly bundles"):
        export_bundle(result.run_dir, tmp_path / "x.dlens", data=fitted["data"], int8=True)  # type: ignore[attr-defined]


def test_evaluating_the_bundle_reports_pixel_figures_from_the_masks(fitted: dict[str, object], tmp_path: Path) -> None:
    from defectlens.workflows.evaluate import evaluate_run

    run = evaluate_run(fitted["bundle"].path, data=fitted["data"], out_dir=tmp_path / "eval", splits=("test",))  # type: ignore[attr-defined]
    test = run.result.metrics["test"]
    assert test["pixel"]["images"] == 16 and test["pixel"]["defect_pixels"] > 0
    assert test["pixel"]["pixel_auroc"] >= 0.9
    assert 0.0 < test["pixel"]["pro"] <= 1.0
    assert test["recall_at_1pct_false_alarms"] >= 0.75
    saved = json.loads((tmp_path / "eval" / "metrics.json").read_text())
    assert "pixel" in json.dumps(saved)


def test_a_mask_that_does_not_match_its_image_is_named(tmp_path: Path) -> None:
    from defectlens.workflows.evaluate import prepare_mask

    Image.new("L", (50, 40), 255).save(tmp_path / "m.png")
    with pytest.raises(DefectlensError, match=r"m.png: the mask is 50x40 but its image is 96x96"):
        prepare_mask(tmp_path / "m.png", 32, image=(96, 96))
    with pytest.raises(DefectlensError, match=r"missing.png: the mask of a test image cannot be read"):
        prepare_mask(tmp_path / "missing.png", 32)
    assert prepare_mask(tmp_path / "m.png", 32, image=(50, 40)).all()


def test_the_service_serves_an_anomaly_bundle_with_its_map_as_the_overlay(
    fitted: dict[str, object], tmp_path: Path
) -> None:
    pytest.importorskip("fastapi")
    from fastapi.testclient import TestClient

    from defectlens.inference.predictor import Predictor
    from defectlens.inspections import InspectionLog
    from defectlens.serve.app import create_app

    img, _ = scratched(np.random.default_rng(7))
    img.save(tmp_path / "part.png")
    log = InspectionLog(tmp_path / "log.sqlite")
    app = create_app(Predictor.load(fitted["bundle"].path), log)  # type: ignore[attr-defined]
    with TestClient(app, base_url="http://127.0.0.1") as client:
        answer = client.post(
            "/v1/predict?explain=true", files={"files": ("part.png", (tmp_path / "part.png").read_bytes(), "image/png")}
        )
    assert answer.status_code == 200
    row = answer.json()["results"][0]
    assert row["prediction"] == ANOMALOUS and row["explain_method"] == "anomaly map (onnxruntime)"
    assert 0.5 <= row["defect_probability"] <= 1.0 and set(row["probabilities"]) == {"good", ANOMALOUS}
    from defectlens.explain.maps import explain

    with Image.open(io.BytesIO(base64.b64decode(row["overlay_png"]))) as served:
        drawn = explain(Predictor.load(fitted["bundle"].path), tmp_path / "part.png")  # type: ignore[attr-defined]
        assert np.array_equal(np.asarray(served.convert("RGB")), np.asarray(drawn.overlay))  # the anomaly map's
    assert log.get(row["inspection_id"]).prediction == ANOMALOUS  # type: ignore[union-attr]


def _busy_part(rng: np.random.Generator, *, defect: bool) -> tuple[np.ndarray, np.ndarray]:
    """A part whose top-left corner is busy on every good part, differently each time (a textured
    background, a rough edge), and, when ``defect``, a faint short scratch elsewhere, with its mask."""
    from PIL import ImageDraw

    a = np.asarray(texture(rng), dtype=np.float32).copy()
    a[:36, :36] += rng.normal(0.0, 60.0, (36, 36))
    img, mask = Image.fromarray(np.clip(a, 0, 255).astype(np.uint8)), Image.new("L", (SIZE, SIZE), 0)
    if defect:
        x0, y0 = (int(v) for v in rng.integers(55, 75, 2))
        for canvas, fill in ((ImageDraw.Draw(img), 175), (ImageDraw.Draw(mask), 255)):
            canvas.line([(x0, y0), (x0 + 12, y0 + 10)], fill=fill, width=2)
    return np.asarray(img), np.asarray(mask) > 0


def test_position_normalisation_finds_the_faint_scratch_a_busy_place_of_every_part_hides() -> None:
    import torch
    from scipy.ndimage import binary_dilation
    from sklearn.metrics import roc_auc_score

    from defectlens.models.patchcore import create_patchcore
    from defectlens.training.anomaly import fit_patchcore, leave_one_out_maps, location_statistics, outlier_images

    rng = np.random.default_rng(0)
    train = torch.from_numpy(np.stack([_busy_part(rng, defect=False)[0] for _ in range(40)])[:, None])
    test = [_busy_part(rng, defect=i % 2 == 1) for i in range(20)]
    x = torch.from_numpy(np.stack([img for img, _ in test])[:, None]).float() / 255.0
    y = np.array([m.any() for _, m in test])
    model = create_patchcore("efficientnet_lite0", in_channels=1, input_size=SIZE)
    _, owners = fit_patchcore(model, train, bank_size=256, max_patches=4000)

    def judged() -> tuple[float, float]:
        """Image AUROC, and the share of scratched parts whose anomaly map peaks on the scratch."""
        with torch.inference_mode():
            scores, patches = model.raw_scores(x)
            maps = model.head.anomaly_map(patches)[:, 0].numpy()
        near = [binary_dilation(m, iterations=4) for _, m in test]
        peaks = [near[i][np.unravel_index(maps[i].argmax(), maps[i].shape)] for i in np.flatnonzero(y)]
        return float(roc_auc_score(y, scores.numpy())), float(np.mean(peaks))

    raw_auroc, raw_peaks = judged()
    loo = leave_one_out_maps(model, train, owners)
    assert loo.shape == (40, SIZE // 8, SIZE // 8)
    np.testing.assert_allclose(outlier_images(model, train, owners), loo.reshape(40, -1).max(axis=1))
    mean, scale = location_statistics(loo)
    assert mean[:3, :3].mean() > mean[-3:, -3:].mean()  # good parts score high in the busy corner
    model.head.set_locations(torch.from_numpy(mean), torch.from_numpy(scale))
    auroc, peaks = judged()
    assert raw_peaks <= 0.2  # without it the busy corner outscores the scratch on almost every part
    # (here 0 of 10 raw; 4 of 10 normalised, AUROC 0.97 -> 1.0; 7 of 10 with a floor of 0.25, which amplifies
    # quiet places and ranked worse on the real casting and bottle test splits)
    assert peaks >= 0.3 and auroc >= raw_auroc


def test_the_run_records_its_position_statistics_or_why_there_are_none(fitted: AnomalyParts, tmp_path: Path) -> None:
    import torch

    from defectlens.core.checkpoint import read_checkpoint

    used = read_checkpoint(Path(fitted.result.run_dir) / "best.pt")
    info = used["anomaly"]["position_norm"]
    fitted_on = [r for r in Manifest.read(fitted.data).split("train") if r.label == "good"]
    assert info["used"] is True and info["images"] == len(fitted_on) and info["grid"] == [SIZE // 8, SIZE // 8]
    assert tuple(used["state_dict"]["head.loc_mean"].shape) == (SIZE // 8, SIZE // 8)
    assert info["floor"] == 1.0
    busy = used["state_dict"]["head.loc_scale"]
    assert not torch.all(busy == busy.min())  # places busier than the median are divided by more
    from defectlens.workflows.train import train_and_evaluate

    shift = train_and_evaluate(config(fitted.data, tmp_path, position_floor=1e6, evaluate=False))
    state = read_checkpoint(Path(shift.run_dir) / "best.pt")
    assert state["anomaly"]["position_norm"]["floor"] == 1e6
    flat = state["state_dict"]["head.loc_scale"]
    assert torch.all(flat == flat.flatten()[0])  # every place divided alike: only the mean is subtracted

    off = train_and_evaluate(config(fitted.data, tmp_path, position_norm=False, evaluate=False))
    state = read_checkpoint(Path(off.run_dir) / "best.pt")
    assert state["anomaly"]["position_norm"] == {"used": False, "why": "position_norm is off"}
    assert torch.equal(state["state_dict"]["head.loc_scale"], torch.ones(1, 1))


def test_position_statistics_damp_a_busy_place_and_never_amplify_a_quiet_one() -> None:
    from defectlens.training.anomaly import location_statistics

    rng = np.random.default_rng(0)
    maps = rng.normal(1.0, 0.1, (50, 8, 8)).astype(np.float32)  # spread 0.1 almost everywhere
    maps[:, 0, 0] = rng.normal(3.0, 0.5, 50)  # busy on every part: high and varied
    maps[:, 7, 7] = 0.5  # alike on every part: no spread at all
    mean, scale = location_statistics(maps)
    median = float(np.median(maps.std(axis=0)))
    assert mean[0, 0] == pytest.approx(3.0, abs=0.2) and scale[0, 0] == pytest.approx(0.5, abs=0.1)
    assert scale[7, 7] == pytest.approx(median)  # floored at the median spread: a tiny difference stays tiny
    assert scale.min() == pytest.approx(median)
    # a noise step of 0.05 at the quiet place scores under one typical spread, the busy place's own peak too
    assert (0.55 - mean[7, 7]) / scale[7, 7] < 1.0 and (3.5 - mean[0, 0]) / scale[0, 0] < 1.5


def test_leave_one_out_maps_score_as_the_model_scores_an_image_across_batches() -> None:
    """The threshold's fallback (no normal validation image) scores the training images' leave-one-out maps as
    the model scores an image: normalised by position, then the largest patch score or the map's largest value."""
    import torch

    from defectlens.models.patchcore import create_patchcore
    from defectlens.training.anomaly import image_maxima, scores_of_maps

    maps = np.random.default_rng(5).random((70, 8, 8)).astype(np.float32) * 3  # two batches of 64
    for image_score in ("patch", "map"):
        model = create_patchcore(
            "efficientnet_lite0", in_channels=1, input_size=64, pretrained=False, image_score=image_score
        )
        model.head.set_locations(torch.full((8, 8), 1.0), torch.full((8, 8), 0.5))
        got = scores_of_maps(model, maps)
        normalised = (maps - 1.0) / 0.5
        if image_score == "patch":
            assert np.allclose(got, image_maxima(normalised))
        else:
            want = model.head.anomaly_map(torch.from_numpy(normalised)).flatten(1).amax(1).numpy()
            assert np.allclose(got, want, atol=1e-6) and (got < image_maxima(normalised) - 0.1).all()


def test_stride_4_zero_padded_patch_scored_features_fit_export_find_the_scratch_and_rebuild_from_the_spec(
    tmp_path: Path,
) -> None:
    """``patch_strides="4,8,16"``, ``patch_padding="zeros"``, ``image_score="patch"``: the spec says so, the bundle
    passes its parity checks and finds the scratch, and ``best.pt`` rebuilds into the same model (strides, padding
    and image score come from the spec; a spec without them is an older bundle's: stride 8 and 16, valid pooling,
    the largest patch score)."""
    import torch

    from defectlens.core.checkpoint import read_checkpoint
    from defectlens.core.spec import ModelSpec
    from defectlens.export import export_bundle
    from defectlens.inference.predictor import Predictor
    from defectlens.models import model_from_state
    from defectlens.workflows.prepare import prepare_training_data
    from defectlens.workflows.train import train_and_evaluate

    prepared = prepare_training_data(write_parts(tmp_path / "parts"), out=tmp_path / "runs")
    settings = {"patch_strides": "4,8,16", "patch_padding": "zeros", "image_score": "patch"}
    result = train_and_evaluate(config(prepared.folder, tmp_path / "runs", evaluate=False, **settings))
    assert result.run_dir is not None and result.spec.extra["patch_strides"] == [4, 8, 16]
    assert result.spec.extra["patch_padding"] == "zeros" and result.spec.extra["image_score"] == "patch"
    ckpt = read_checkpoint(result.run_dir / "best.pt")
    assert ckpt["state_dict"]["head.bank"].shape[1] == 176  # Lite0: 24 + 40 + 112 numbers a patch
    spec = ModelSpec.from_dict(ckpt["spec"])
    x = torch.rand(2, 1, SIZE, SIZE)
    unpadded = spec.replace(extra={k: v for k, v in spec.extra.items() if k != "patch_padding"})
    with torch.no_grad():
        rebuilt = model_from_state(ckpt["state_dict"], spec).features(x)
        valid = model_from_state(ckpt["state_dict"], unpadded).features(x)
    assert rebuilt.shape[1] == 176
    assert torch.allclose(rebuilt[..., 3:-3, 3:-3], valid[..., 3:-3, 3:-3])  # the inner patches alike
    assert not torch.allclose(rebuilt[..., 0, 0], valid[..., 0, 0])  # the corner shrunk by the counted zeros
    assert model_from_state(ckpt["state_dict"], spec).head.image_score == "patch"
    older = spec.replace(extra={k: v for k, v in spec.extra.items() if k != "patch_strides"})
    with pytest.raises(
        DefectlensError, match=r"holds 176 numbers a patch.*strides 8,16, stride-16 stage last\) give 152"
    ):
        model_from_state(ckpt["state_dict"], older)
    bundle = export_bundle(result.run_dir, tmp_path / "s4.dlens")
    assert bundle.meta["parity"]["max_abs_prob_diff"] <= 1e-4 and bundle.meta["parity"]["cam"]["ok"]
    predictor = Predictor.load(bundle.path)
    rng = np.random.default_rng(99)
    for i in range(3):
        img, _ = scratched(rng)
        img.save(tmp_path / f"bad{i}.png")
        assert predictor.predict(tmp_path / f"bad{i}.png").prediction == ANOMALOUS
    texture(rng).save(tmp_path / "good.png")
    assert predictor.predict(tmp_path / "good.png").prediction == "good"


def test_an_inspection_region_ignores_a_scratch_outside_it_and_ships_in_the_bundle(tmp_path: Path) -> None:
    """``roi``: a mask drawn on a frame (the left half inspected): the same scratch is anomalous inside and ignored
    outside, through the exported bundle; the overlay stays cold outside; the spec names the mask's file and the
    run says how many patches are inspected; a mask file that is not there is refused by name before any fit."""
    from PIL import ImageDraw

    from defectlens.core.checkpoint import read_checkpoint
    from defectlens.export import export_bundle
    from defectlens.inference.predictor import Predictor
    from defectlens.workflows.prepare import prepare_training_data
    from defectlens.workflows.train import train_and_evaluate

    drawn = Image.new("L", (SIZE, SIZE), 0)
    ImageDraw.Draw(drawn).rectangle([0, 0, SIZE // 2 - 1, SIZE - 1], fill=255)
    drawn.save(tmp_path / "left-half.png")
    prepared = prepare_training_data(write_parts(tmp_path / "parts"), out=tmp_path / "runs")
    with pytest.raises(DefectlensError, match=r"nowhere\.png"):
        train_and_evaluate(config(prepared.folder, tmp_path / "runs", roi=str(tmp_path / "nowhere.png")))
    result = train_and_evaluate(
        config(prepared.folder, tmp_path / "runs", evaluate=False, roi=str(tmp_path / "left-half.png"))
    )
    assert result.run_dir is not None and result.spec.extra["roi"] == "left-half.png"
    region = read_checkpoint(result.run_dir / "best.pt")["anomaly"]["region"]
    assert region == {"used": True, "roi": str(tmp_path / "left-half.png"), "patches_inspected": 72, "patches": 144}
    bundle = export_bundle(result.run_dir, tmp_path / "left.dlens")
    assert bundle.meta["parity"]["max_abs_prob_diff"] <= 1e-4 and bundle.meta["parity"]["cam"]["ok"]
    predictor = Predictor.load(bundle.path)
    rng = np.random.default_rng(7)
    # the features see past a cell's edge (the stride-16 block's field), so the scratch outside is drawn well away
    for name, x0 in (("inside", 8), ("outside", 72)):
        img = texture(rng)
        ImageDraw.Draw(img).line([(x0, 20), (x0 + 18, 70)], fill=250, width=3)
        img.save(tmp_path / f"{name}.png")
    assert predictor.predict(tmp_path / "inside.png").prediction == ANOMALOUS
    assert predictor.predict(tmp_path / "outside.png").prediction == "good"
    heat = predictor.anomaly_map(tmp_path / "outside.png")
    assert heat[:, SIZE // 2 + 8 :].max() <= heat[:, : SIZE // 2].max()  # the scratch outside is not painted


def test_the_default_patch_strides_padding_stage_and_image_score_are_recorded_in_the_spec(fitted: AnomalyParts) -> None:
    assert fitted.result.spec.extra["patch_strides"] == [8, 16]
    assert fitted.result.spec.extra["patch_padding"] == "valid"
    assert fitted.result.spec.extra["image_score"] == "map"
    assert fitted.result.spec.extra["stride16_stage"] == "last"


def test_unknown_patch_strides_are_refused_naming_the_choices(tmp_path: Path) -> None:
    with pytest.raises(DefectlensError, match=r"patch_strides must be one of 8,16, 4,8,16, got '4,8'"):
        config(tmp_path, tmp_path, patch_strides="4,8")
    with pytest.raises(DefectlensError, match=r"patch_padding must be one of valid, zeros, got 'reflect'"):
        config(tmp_path, tmp_path, patch_padding="reflect")
    with pytest.raises(DefectlensError, match=r"image_score must be one of map, patch, got 'mean'"):
        config(tmp_path, tmp_path, image_score="mean")
    with pytest.raises(DefectlensError, match=r"stride16_stage must be one of last, first, got 'middle'"):
        config(tmp_path, tmp_path, stride16_stage="middle")


def test_defects_in_validation_set_the_threshold_for_a_target_recall_never_the_bank(tmp_path: Path) -> None:
    """A line that has some defects validates the threshold on them (``--threshold-method recall``) and still fits
    on good parts only: every validation defect is caught at the stored threshold, and it is the highest that is."""
    from defectlens.inference.predictor import Predictor
    from defectlens.models import load_checkpoint
    from defectlens.workflows.prepare import prepare_training_data
    from defectlens.workflows.train import train_and_evaluate

    rng = np.random.default_rng(3)
    counts = {("train", "good"): 30, ("val", "good"): 8, ("val", "scratch"): 8, ("test", "good"): 6}
    counts[("test", "scratch")] = 6
    for (split, label), n in counts.items():
        (tmp_path / "src" / split / label).mkdir(parents=True)
        for i in range(n):
            img = texture(rng) if label == "good" else scratched(rng)[0]
            img.save(tmp_path / "src" / split / label / f"{i:03d}.png")
    prepared = prepare_training_data(tmp_path / "src", out=tmp_path / "runs")
    manifest = Manifest.read(prepared.folder)
    assert {(r.split, r.label) for r in manifest.records} == set(counts)
    result = train_and_evaluate(
        config(prepared.folder, tmp_path / "runs", threshold_method="recall", target_recall=1.0)
    )
    assert result.run_dir is not None
    model, spec, payload = load_checkpoint(result.run_dir / "best.pt")
    assert payload["anomaly"]["fit"]["images"] == counts[("train", "good")]  # the bank: good parts only
    val = manifest.split("val")
    preds = Predictor.from_model(model, spec).predict_many([manifest.resolve(r) for r in val], batch_size=8)
    probs = np.array([p.defect_probability for p in preds], dtype=float)
    is_defect = np.array([r.label == "scratch" for r in val])
    assert spec.threshold is not None and spec.threshold != pytest.approx(0.5)  # refitted, not the good-only one
    lowest = probs[is_defect].min()
    assert spec.threshold <= lowest  # every validation defect is caught
    under = probs[probs < lowest]  # and no higher threshold would do: it sits above every score under the lowest
    assert under.size == 0 or spec.threshold > under.max()
    assert result.metrics["val"]["defect_recall"] == pytest.approx(1.0)


def test_near_duplicate_copies_of_one_held_out_part_count_once_in_the_threshold(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Two copies of one unusual good part in validation (the import groups them by perceptual hash) are one
    draw of what a new part scores: the conformal threshold counts them once, so it sits under them, where
    counted twice they would set it themselves."""
    from defectlens.evaluation.conformal import one_per_group, ood_threshold
    from defectlens.models import load_checkpoint
    from defectlens.workflows import anomaly as workflow
    from defectlens.workflows.prepare import prepare_training_data
    from defectlens.workflows.train import train_and_evaluate

    rng = np.random.default_rng(11)
    for split, label, n in (("train", "good", 20), ("val", "good", 9), ("test", "good", 2), ("test", "scratch", 2)):
        (tmp_path / "src" / split / label).mkdir(parents=True)
        for i in range(n):
            (texture(rng) if label == "good" else scratched(rng)[0]).save(tmp_path / "src" / split / label / f"{i}.png")
    marked = np.asarray(scratched(rng)[0], dtype=np.int16)  # an unusual good part, photographed twice
    for i, noise in enumerate((0, 1)):
        copy = np.clip(marked + noise * rng.integers(-1, 2, marked.shape), 0, 255).astype(np.uint8)
        Image.fromarray(copy).save(tmp_path / "src" / "val" / "good" / f"copy{i}.png")
    prepared = prepare_training_data(tmp_path / "src", out=tmp_path / "runs")
    val = Manifest.read(prepared.folder).split("val")
    groups = [r.group for r in val]
    assert len(val) == 11 and len(set(groups)) == 10  # the copies are one group
    seen: list[np.ndarray] = []

    def recording(model, images):  # the real scores, kept to check the threshold against
        scores, cold = raw_scores(model, images)
        seen.append(scores)
        return scores, cold

    raw_scores = workflow.raw_scores
    monkeypatch.setattr(workflow, "raw_scores", recording)
    result = train_and_evaluate(config(prepared.folder, tmp_path / "runs", false_alarm_rate=0.2))
    assert result.run_dir is not None
    (scores,) = seen
    copies = scores[[i for i, r in enumerate(val) if "copy" in r.path]]
    setting = load_checkpoint(result.run_dir / "best.pt")[2]["anomaly"]
    assert setting["raw_threshold"] == pytest.approx(ood_threshold(one_per_group(scores, groups), 0.2))
    assert setting["raw_threshold"] < copies.min()  # counted twice, the copies would be the threshold itself
    assert ood_threshold(scores, 0.2) == pytest.approx(copies.min())
    assert (
        "11 held-out 'good' validation images (10 parts: near-duplicate copies count once"
        in (setting["threshold_source"])
    )
