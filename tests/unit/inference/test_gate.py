"""The gate (#26): image statistics and quality rules on generated frames, the OOD score's fit, export
parity and threshold, the third outcome through the Predictor, and bad profiles and settings.

Every expectation is worked out by hand in the test (grey levels, shares, quantile ranks), never by
calling the function under test for the expected value.
"""

from __future__ import annotations

import json
import math
import zipfile
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from defectlens.core.bundle import SPEC_FILE, read_bundle, write_bundle
from defectlens.core.errors import DefectlensError
from defectlens.core.profile import GateProfile, SizeProfile, StatRange, profile_problems
from defectlens.data.manifest import Manifest
from defectlens.inference.gate import Gate, image_stats, size_reasons, stat_reasons
from defectlens.inference.predictor import Predictor


def frame(values: np.ndarray) -> np.ndarray:
    """A one-channel model input (1, H, W) uint8."""
    return np.clip(values, 0, 255).astype(np.uint8)[None]


def profile(**size: float) -> GateProfile:
    """A hand-written profile: training contrast 18-61 (accepted from 7.2), brightness 60-180 (48-192)..."""
    stats = {
        "brightness": StatRange(60.0, 180.0, 48.0, 192.0),
        "contrast": StatRange(18.0, 61.0, 7.2, 153.5),
        "dark_share": StatRange(0.0, 0.02, None, 0.27),
        "bright_share": StatRange(0.0, 0.01, None, 0.26),
        "sharpness": StatRange(6.0, 12.0, 2.0, None),
        "noise": StatRange(1.0, 4.0, None, 13.0),
    }
    sides = {"side_min": 300.0, "side_max": 300.0, "aspect_min": 1.0, "aspect_max": 1.0}
    accept = {"accept_side_min": 150.0, "accept_side_max": 1200.0, "accept_aspect_min": 0.87, "accept_aspect_max": 1.15}
    return GateProfile(stats=stats, size=SizeProfile(**{**sides, **accept, **size}), ood=None, images=100)


# -- image statistics ------------------------------------------------------------------------------


def test_stats_of_a_uniform_frame() -> None:
    s = image_stats(frame(np.full((20, 20), 100.0)))
    assert s == {
        "brightness": 100.0,
        "contrast": 0.0,
        "dark_share": 0.0,
        "bright_share": 0.0,
        "sharpness": 0.0,
        "noise": 0.0,
    }


def test_stats_of_a_half_black_half_white_frame() -> None:
    img = np.zeros((10, 10))
    img[:, 5:] = 255
    s = image_stats(frame(img))
    assert s["brightness"] == 127.5 and s["contrast"] == 127.5
    assert s["dark_share"] == 0.5 and s["bright_share"] == 0.5
    # the Laplacian is non-zero only on the two columns beside the edge: |255| on each, 8 of 8 rows
    assert s["sharpness"] == pytest.approx(2 * 8 * 255 / (8 * 8))


def test_rgb_statistics_use_the_grey_mean_of_the_channels() -> None:
    img = np.zeros((3, 8, 8), np.uint8)
    img[0] = 90  # (90 + 0 + 0) / 3 = 30 grey levels
    assert image_stats(img)["brightness"] == 30.0


def test_noise_estimate_recovers_gaussian_sigma() -> None:
    # Immerkaer's mask has squared weights summing to 36, so its response to noise of sigma s has sigma 6s and
    # mean absolute value 6s * sqrt(2/pi); the estimate scales that back to s.
    rng = np.random.default_rng(3)
    for sigma in (3.0, 10.0):
        s = image_stats(frame(128.0 + rng.normal(0, sigma, (256, 256))))
        assert s["noise"] == pytest.approx(sigma, rel=0.05)


# -- quality rules -----------------------------------------------------------------------------------


def test_a_black_frame_is_uniform_and_under_exposed_with_reasons_a_person_reads() -> None:
    reasons = stat_reasons(image_stats(frame(np.zeros((64, 64)))), profile())
    assert (
        reasons[0]
        == "frame is almost uniform: contrast (std) 0.0 grey levels, training images 18.0-61.0 (accepted from 7.2)"
    )
    assert reasons[1] == (
        "frame is under-exposed: mean brightness 0.0 grey levels (training images 60.0-180.0), "
        "100 % of pixels black (training images at most 2 %)"
    )
    assert len(reasons) == 2  # a blank frame is not reported as blurred too


def test_a_white_frame_is_over_exposed() -> None:
    reasons = stat_reasons(image_stats(frame(np.full((64, 64), 255.0))), profile())
    assert reasons[1] == (
        "frame is over-exposed: mean brightness 255.0 grey levels (training images 60.0-180.0), "
        "100 % of pixels clipped white (training images at most 1 %)"
    )


def test_findings_carry_their_kinds_each_once() -> None:
    gate = Gate(profile(), mode="refuse", member=None)
    black = gate.check(frame(np.zeros((300, 300))), (300, 300), None)
    assert black is not None and black.kinds == ("uniform", "under_exposed")
    small = gate.check(frame(np.full((8, 8), 128.0)), (8, 8), None)
    assert small is not None and small.kinds == ("uniform", "too_small")
    wide = gate.check(frame(np.full((8, 8), 128.0)), (640, 480), None)
    assert wide is not None and wide.kinds == ("uniform", "aspect_ratio")


def test_uniform_grey_levels_are_all_flagged_as_uniform() -> None:
    for level in (32, 96, 128, 224):
        assert stat_reasons(image_stats(frame(np.full((32, 32), float(level)))), profile())[0].startswith(
            "frame is almost uniform"
        )


def test_a_textured_frame_inside_every_band_passes() -> None:
    rng = np.random.default_rng(0)
    xx = np.mgrid[0:64, 0:64][1]
    img = 120 + 40 * np.sin(xx / 3.0) + rng.normal(0, 2, (64, 64))  # mean 120, std ~28, sharp stripes
    s = image_stats(frame(img))
    assert 18 < s["contrast"] < 61 and s["sharpness"] > 2
    assert stat_reasons(s, profile()) == []


def test_a_blurred_frame_is_out_of_focus_and_a_noisy_one_noisy() -> None:
    xx = np.mgrid[0:64, 0:64][1]
    smooth = 120 + 40 * np.sin(xx / 20.0)  # contrast ~28, but a Laplacian near 0.1
    reasons = stat_reasons(image_stats(frame(smooth)), profile())
    assert len(reasons) == 1 and reasons[0].startswith("frame is out of focus: sharpness")
    noisy = 120 + 40 * np.sin(xx / 3.0) + np.random.default_rng(1).normal(0, 30, (64, 64))
    assert any(r.startswith("frame is noisy: noise sigma") for r in stat_reasons(image_stats(frame(noisy)), profile()))


def test_size_rules() -> None:
    p = profile()
    assert size_reasons(300, 300, p) == []
    assert size_reasons(1, 1, p) == [
        "frame is too small: 1x1 pixels, training images 300-300 px a side (accepted from 150)"
    ]
    assert size_reasons(8, 8, p)[0].startswith("frame is too small: 8x8")
    assert size_reasons(640, 480, p) == [
        "wrong aspect ratio: 640x480 (1.33), training images 1.00-1.00 (width / height)"
    ]
    assert size_reasons(2000, 2000, p)[0].startswith("frame is too large: 2000x2000")


# -- fitting ------------------------------------------------------------------------------------------


def test_stat_bands_widen_the_reference_range() -> None:
    from defectlens.export.profile import stat_band

    same = np.full(50, 20.0)
    assert stat_band("contrast", same) == StatRange(20.0, 20.0, 8.0, 51.0)  # 20 / 2.5; 20 * 2.5 + 1
    assert stat_band("brightness", np.full(50, 100.0)) == StatRange(100.0, 100.0, 88.0, 112.0)  # +- 12
    assert stat_band("dark_share", np.zeros(50)) == StatRange(0.0, 0.0, None, 0.25)
    assert stat_band("noise", np.full(50, 2.0)) == StatRange(2.0, 2.0, None, 7.0)  # 2 * 3 + 1
    assert stat_band("sharpness", np.full(50, 9.0)) == StatRange(9.0, 9.0, 3.0, None)


def test_ood_threshold_is_the_conformal_quantile_of_validation_scores() -> None:
    from defectlens.export.profile import ood_threshold, threshold_rule

    scores = np.arange(1.0, 101.0)[::-1]  # 100 validation scores, unsorted
    assert ood_threshold(scores, 0.05) == 96.0  # ceil(101 * 0.95) = 96th smallest
    assert threshold_rule(100, 0.05) == "conformal"
    assert ood_threshold(np.arange(1.0, 1001.0), 0.005) == 996.0  # ceil(1001 * 0.995) = 996
    # ceil(101 * 0.995) = 101 > 100: no score certifies 0.5 %; the normal prediction bound: mean 50.5, sample
    # std 29.0115 (sqrt(100 * 101 / 12)), t(0.995, 99 dof) = 2.62641, sqrt(1 + 1/100) = 1.00499: 50.5 + 76.58
    assert threshold_rule(100, 0.005) == "gaussian"
    assert ood_threshold(scores, 0.005) == pytest.approx(127.076, abs=0.001)
    # one far outlier among 50 zeros: mean 0.196, sample std 1.400, t(0.995, 50) = 2.678: 0.196 + 3.786 = 3.98 < 10
    assert ood_threshold(np.r_[np.zeros(50), 10.0], 0.005) == 10.0


def test_mahalanobis_density_measures_whitened_distance_to_the_nearest_class() -> None:
    import torch

    from defectlens.models.density import fit_density

    rng = np.random.default_rng(0)
    dims, n = 4, 4000
    means = np.array([[0.0, 0, 0, 0], [10.0, 0, 0, 0]])
    scale = np.array([1.0, 2.0, 0.5, 1.0])  # within-class standard deviations per axis
    labels = np.repeat([0, 1], n // 2)
    feats = means[labels] + rng.normal(0, 1, (n, dims)) * scale
    density = fit_density(feats, labels)
    probe = torch.tensor([[0.0, 0, 0, 0], [0.0, 6.0, 0, 0], [0.0, 0, 1.5, 0], [10.0, 0, 0, 2.0], [5.0, 0, 0, 0]])
    got = density(probe.float()).numpy()
    # whitened squared distance / dims: (6 / 2)^2 / 4 -> 1.5; (1.5 / 0.5)^2 / 4 -> 1.5; (2 / 1)^2 / 4 -> 1.0;
    # halfway between the classes: (5 / 1)^2 / 4 -> 2.5 (Ledoit-Wolf shrinks a little: 5 % tolerance)
    assert got[0] == pytest.approx(0.0, abs=0.1)
    assert got[1:] == pytest.approx([1.5, 1.5, 1.0, 2.5], rel=0.05)


def test_density_needs_enough_images() -> None:
    from defectlens.models.density import fit_density

    with pytest.raises(DefectlensError, match="at least 10 training images"):
        fit_density(np.zeros((5, 3)), np.zeros(5, int))


# -- the gated bundle ----------------------------------------------------------------------------------


def black_png(path: Path, size: int = 48) -> Path:
    Image.fromarray(np.zeros((size, size), np.uint8)).save(path)
    return path


def train_images(tiny_dataset: Path, n: int = 4) -> list[Path]:
    m = Manifest.read(tiny_dataset)
    return [m.resolve(r) for r in m.split("train")[:n]]


def test_export_puts_the_ood_score_in_the_graph_with_parity_and_a_threshold(gated_bundle: Path, tiny_dataset) -> None:
    import torch

    from defectlens.data.images import preprocess
    from defectlens.export.profile import fit_gate
    from defectlens.models.density import features_and_logits

    b = read_bundle(gated_bundle)
    assert b.meta["parity"]["ood"]["ok"] and b.meta["parity"]["ood"]["max_rel_diff"] <= 1e-3
    prof = b.profile
    assert prof is not None and prof.ood is not None and set(prof.ood.thresholds) == {"model.onnx"}
    # 16 validation images cannot certify 0.5 %: the Gaussian rule, never below the largest score
    assert prof.ood.rule == "gaussian" and prof.ood.thresholds["model.onnx"] >= prof.ood.validation["max"]
    assert prof.images == 64  # 48 training + 16 validation images
    # the score the Predictor reads from the graph is torch's density score of the same image
    model = Predictor.load(gated_bundle).torch_model()
    fit = fit_gate(model, b.spec, tiny_dataset)
    images = np.stack([preprocess(p, b.spec) for p in train_images(tiny_dataset)])
    feats, _ = features_and_logits(model, images)
    with torch.inference_mode():
        expected = fit.density([torch.from_numpy(f) for f in feats]).numpy()
    got = [Predictor.load(gated_bundle).predict(p).ood_score for p in train_images(tiny_dataset)]
    assert got == pytest.approx(expected.tolist(), rel=1e-3)


def test_a_black_frame_gets_no_class(gated_bundle: Path, tmp_path: Path) -> None:
    p = Predictor.load(gated_bundle).predict(black_png(tmp_path / "black.png"))
    assert p.status == "needs_review" and p.prediction == "" and p.probabilities == {}
    assert p.reason.startswith("frame is almost uniform: contrast (std) 0.0 grey levels")
    assert p.needs_review and not p.ok and p.gate is not None and p.gate.flagged
    d = p.to_dict()
    assert d["status"] == "needs_review" and d["gate"]["flagged"] is True and d["gate"]["ood_score"] > 0


def test_every_dead_camera_frame_is_flagged(gated_bundle: Path) -> None:
    rng = np.random.default_rng(0)
    frames = {
        "black": np.zeros((48, 48)),
        "white": np.full((48, 48), 255.0),
        "grey": np.full((48, 48), 128.0),
        "noise": rng.integers(0, 256, (48, 48)),
        "lens cap": np.clip(3 + rng.normal(0, 2, (48, 48)), 0, 255),
        "1x1": np.zeros((1, 1)),
        "8x8": np.full((8, 8), 128.0),
    }
    predictor = Predictor.load(gated_bundle)
    rows = list(predictor.predict_many([(k, v.astype(np.uint8)) for k, v in frames.items()]))
    assert [r.status for r in rows] == ["needs_review"] * len(frames)
    assert "too small: 1x1" in rows[5].reason and "too small: 8x8" in rows[6].reason


def test_training_images_pass_and_warn_and_off_modes(gated_bundle: Path, tiny_dataset, tmp_path: Path) -> None:
    images = train_images(tiny_dataset)
    assert [r.status for r in Predictor.load(gated_bundle).predict_many(images)] == ["ok"] * len(images)
    black = black_png(tmp_path / "black.png")
    warned = Predictor.load(gated_bundle, gate="warn").predict(black)
    assert warned.status == "ok" and warned.prediction in ("ok", "defect") and warned.needs_review
    off = Predictor.load(gated_bundle, gate="off")
    assert off.predict(black).gate is None and not off.gate.active


def test_a_bundle_without_a_profile_loads_and_says_it_is_not_gated(bundle: Path) -> None:
    predictor = Predictor.load(bundle)
    assert not predictor.gate.active and "no reference profile" in predictor.gate.note
    assert predictor.predict(np.zeros((32, 32), np.uint8)).status == "ok"


def test_the_torch_backend_keeps_the_quality_rules(gated_bundle: Path, tmp_path: Path) -> None:
    predictor = Predictor.load(gated_bundle, backend="torch")
    assert predictor.gate.active and predictor.gate.ood_threshold is None and "not computed" in predictor.gate.note
    p = predictor.predict(black_png(tmp_path / "black.png"))
    assert p.status == "needs_review" and p.ood_score is None


# -- bad input ----------------------------------------------------------------------------------------


def test_an_unknown_gate_mode_is_refused(gated_bundle: Path) -> None:
    with pytest.raises(DefectlensError, match=r"unknown gate mode 'maybe'; choose one of refuse, warn, off"):
        Predictor.load(gated_bundle, gate="maybe")


def rewrite_gate(src: Path, dst: Path, change) -> Path:
    """``src`` written again (valid hashes) with its gate profile changed by ``change(dict)``."""
    with zipfile.ZipFile(src) as zf:
        meta = json.loads(zf.read(SPEC_FILE))
        members = {n: zf.read(n) for n in zf.namelist() if n != SPEC_FILE}
    change(meta["gate"])
    write_bundle(dst, members=members, meta={k: v for k, v in meta.items() if k not in ("files", "model_id")})
    return dst


@pytest.mark.parametrize(
    ("change", "message"),
    [
        (lambda g: g["stats"]["contrast"].update(low=math.nan), "stats.contrast.low must be a finite number"),
        (lambda g: g["stats"]["noise"].update(high=math.inf), "stats.noise.high must be a finite number"),
        (lambda g: g["stats"]["brightness"].update(q_low=300.0), "stats.brightness has a value outside 0-255"),
        (lambda g: g["size"].update(aspect_min=5.0), "size.aspect_min is above size.aspect_max"),
        (lambda g: g["ood"].update(false_flag_rate=0.9), "ood.false_flag_rate must be in 0.0001-0.2"),
        (lambda g: g["ood"]["thresholds"].update({"model.onnx": -1.0}), "ood.thresholds has values"),
        (lambda g: g.pop("stats"), "stats must hold exactly"),
        (lambda g: g.update(version=7), "version must be 1"),
    ],
)
def test_an_impossible_profile_is_refused_naming_the_field(gated_bundle: Path, tmp_path: Path, change, message) -> None:
    bad = rewrite_gate(gated_bundle, tmp_path / "bad.dlens", change)
    with pytest.raises(DefectlensError, match="gate profile is invalid") as err:
        read_bundle(bad)
    assert message in str(err.value) and str(bad) in str(err.value)


def test_profile_schema_accepts_what_export_writes(gated_bundle: Path) -> None:
    meta = read_bundle(gated_bundle).meta
    assert profile_problems(meta["gate"]) == []
    assert GateProfile.from_dict(meta["gate"]).to_dict() == meta["gate"]


def test_gate_describe_reports_mode_threshold_and_rate(gated_bundle: Path) -> None:
    g: Gate = Predictor.load(gated_bundle, gate="warn").gate
    d = g.describe()
    assert d["mode"] == "warn" and d["active"] and d["false_flag_rate"] == 0.005 and d["ood_threshold"] > 0


# -- the OOD score on real images ----------------------------------------------------------------------


@pytest.fixture(scope="module")
def elpv_gated(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, list[Path]]:
    """A bundle fitted on 40 training and 20 validation ELPV cells (from the elpv-dataset package), and 20
    held-out cells. The network is random (the score needs features, not a trained classifier)."""
    from importlib import resources

    from defectlens.data.manifest import Record
    from defectlens.export import export_bundle
    from tests.helpers import make_checkpoint

    root = Path(str(resources.files("elpv_dataset") / "data" / "images"))
    cells = sorted(root.glob("*.png"))[:240:3]  # 80 cells, mono and poly
    records = [
        Record(path=str(f), label=("ok", "defect")[i % 2], split=("train", "val", "test")[min(2, i // 40 + (i >= 60))],
               width=300, height=300, mode="L", group=f.name)
        for i, f in enumerate(cells)
    ]  # fmt: skip
    data = tmp_path_factory.mktemp("elpv-gate")
    Manifest(
        records=records, info={"name": "elpv-cells", "format": "folder", "root": str(root), "classes": ["ok", "defect"]}
    ).write(data)
    run = make_checkpoint(tmp_path_factory.mktemp("elpv-run"), size=32)
    out = export_bundle(run, tmp_path_factory.mktemp("elpv-bundle") / "m.dlens", data=data).path
    return out, [Path(r.path) for r in records if r.split == "test"]


@pytest.mark.slow
def test_ood_score_flags_photos_of_other_things_and_passes_held_out_cells(elpv_gated) -> None:
    from sklearn.datasets import load_sample_images

    bundle_path, held_out = elpv_gated
    predictor = Predictor.load(bundle_path)
    threshold = predictor.gate.ood_threshold
    assert threshold is not None
    cells = list(predictor.predict_many(held_out))
    assert len(cells) == 20 and sum(r.status == "needs_review" for r in cells) <= 4
    assert float(np.median([r.ood_score for r in cells])) < threshold
    rng = np.random.default_rng(0)
    crops = []
    for photo in load_sample_images().images:  # a Chinese temple and a flower, 427 x 640
        grey = np.asarray(Image.fromarray(photo).convert("L"))
        for k in range(4):  # square 300 px crops: the cells' size, so only the OOD score can tell them apart
            y, x = rng.integers(0, grey.shape[0] - 300), rng.integers(0, grey.shape[1] - 300)
            crops.append((f"photo-{k}", grey[y : y + 300, x : x + 300]))
    photos = list(predictor.predict_many(crops))
    assert all(r.ood_score is not None and r.ood_score > threshold for r in photos)
    assert all(r.status == "needs_review" for r in photos)


def test_every_runtime_reads_the_same_ood_score(gated_bundle: Path, tiny_dataset) -> None:
    pytest.importorskip("openvino")  # the [openvino] extra; `make install` has it
    images = [*train_images(tiny_dataset, 3), np.zeros((48, 48), np.uint8)]
    ort = [r.ood_score for r in Predictor.load(gated_bundle, backend="onnx").predict_many(images)]
    ov = [r.ood_score for r in Predictor.load(gated_bundle, backend="openvino").predict_many(images)]
    assert ov == pytest.approx(ort, rel=1e-4)


def test_an_int8_graph_gets_its_own_threshold_from_its_own_validation_scores(tiny_dataset, tmp_path: Path) -> None:
    from defectlens.export import export_bundle
    from defectlens.export.profile import graph_scores
    from tests.helpers import make_checkpoint

    run = make_checkpoint(tmp_path / "run")
    b = read_bundle(export_bundle(run, tmp_path / "q.dlens", data=tiny_dataset, int8=True).path)
    thresholds = b.profile.ood.thresholds  # type: ignore[union-attr]
    assert set(thresholds) == {"model.onnx", "model.int8.onnx"}
    m = Manifest.read(tiny_dataset)
    from defectlens.data.images import preprocess

    val = np.stack([preprocess(m.resolve(r), b.spec) for r in m.split("val")])
    # 16 validation images: the conformal rank ceil(17 * 0.995) = 17 > 16, so each graph's threshold is the
    # larger of its largest score and its own scores' prediction bound, t(0.995, 15 dof) = 2.94671
    for member in ("model.onnx", "model.int8.onnx"):
        s = graph_scores(b.members[member], val)
        bound = float(s.mean()) + 2.946713 * float(s.std(ddof=1)) * math.sqrt(1 + 1 / 16)
        expected = max(float(s.max()), bound)
        assert thresholds[member] == pytest.approx(expected, rel=1e-6)
    int8 = Predictor.load(tmp_path / "q.dlens", precision="int8")
    assert int8.gate.ood_threshold == thresholds["model.int8.onnx"]
    assert int8.predict(np.zeros((48, 48), np.uint8)).status == "needs_review"


@pytest.mark.parametrize("rate", [0.5, 0.0, -0.01, math.nan, math.inf])
def test_a_false_flag_rate_outside_its_range_is_refused_and_nothing_written(
    run_dir: Path, tmp_path: Path, rate
) -> None:
    from defectlens.export import export_bundle

    with pytest.raises(DefectlensError, match=r"gate false-flag rate .* is outside 0.0001-0.2"):
        export_bundle(run_dir, tmp_path / "x.dlens", gate=rate)
    assert not (tmp_path / "x.dlens").exists()


def test_export_without_a_gate_writes_no_profile(run_dir: Path, tiny_dataset, tmp_path: Path) -> None:
    from defectlens.export import export_bundle

    out = export_bundle(run_dir, tmp_path / "plain.dlens", data=tiny_dataset, gate=None).path
    assert read_bundle(out).profile is None and not Predictor.load(out).gate.active


def test_too_few_images_give_a_quality_only_gate_not_a_failed_export(
    run_dir: Path, tiny_dataset, tmp_path: Path
) -> None:
    from defectlens.export import export_bundle

    m = Manifest.read(tiny_dataset)
    few = [r for r in m.records if r.split == "train"][::8] + [r for r in m.records if r.split == "val"][:2]
    assert len(few) == 8  # 6 training images (3 per class), 2 validation
    Manifest(records=few, info=m.info).write(tmp_path / "few")
    with pytest.warns(UserWarning, match="too few for the out-of-distribution score"):
        out = export_bundle(run_dir, tmp_path / "few.dlens", data=tmp_path / "few").path
    prof = read_bundle(out).profile
    assert prof is not None and prof.ood is None and prof.images == 8
    predictor = Predictor.load(out)
    assert predictor.gate.active and not predictor.gate.wants_ood and "image quality only" in predictor.gate.note
    assert predictor.predict(np.zeros((48, 48), np.uint8)).status == "needs_review"


def test_a_run_trained_on_line_drift_gets_a_gate_that_accepts_it(run_dir: Path, tiny_dataset) -> None:
    from defectlens.export.exporter import _gate_source
    from defectlens.export.profile import fit_gate
    from defectlens.models import load_checkpoint

    assert _gate_source("d", 0.005, {"config": {"augment": "line"}}) == ("d", True)
    assert _gate_source("d", 0.005, {"config": {"augment": "flips"}}) == ("d", False)
    assert _gate_source("d", None, {}) is None and _gate_source(None, 0.005, {}) is None
    model, spec, _ = load_checkpoint(run_dir / "best.pt")
    plain, drifted = fit_gate(model, spec, tiny_dataset), fit_gate(model, spec, tiny_dataset, drift=True)
    assert plain is not None and drifted is not None
    assert (plain.images, drifted.images) == (48 + 16, 48 + 2 * 16)  # each validation image once more, drifted
    assert np.array_equal(drifted.validation.images[:16], plain.validation.images)
    assert not np.array_equal(drifted.validation.images[16:], plain.validation.images)


@pytest.mark.parametrize("channels", [1, 3])
def test_integer_statistics_equal_the_float_definitions(channels) -> None:
    # image_stats computes in integers on the channel sum; the definitions are in floats on the channel mean
    rng = np.random.default_rng(channels)
    for img in (rng.integers(0, 256, (channels, 48, 40), dtype=np.uint8), np.full((channels, 9, 9), 255, np.uint8)):
        g = img.astype(np.float64).mean(axis=0)
        lap = g[1:-1, :-2] + g[1:-1, 2:] + g[:-2, 1:-1] + g[2:, 1:-1] - 4.0 * g[1:-1, 1:-1]
        across = g[:, :-2] - 2.0 * g[:, 1:-1] + g[:, 2:]
        both = across[:-2] - 2.0 * across[1:-1] + across[2:]
        expected = {
            "brightness": g.mean(), "contrast": g.std(),
            "dark_share": np.mean(g <= 8), "bright_share": np.mean(g >= 247),
            "sharpness": np.abs(lap).mean(), "noise": np.sqrt(np.pi / 2.0) / 6.0 * np.abs(both).mean(),
        }  # fmt: skip
        got = image_stats(img)
        assert got.keys() == expected.keys()
        for key, value in expected.items():
            assert got[key] == pytest.approx(value, rel=1e-9, abs=1e-12), key
