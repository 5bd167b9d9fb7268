"""How ``benchmarks/run_anomaly.py`` writes a run into its dataset's JSON: a new run of the recipe replaces the
record but keeps what does not depend on it (the peers' rows, the sweep, the variants); a variant goes beside
the record and leaves it as it is."""

from __future__ import annotations

import argparse
import json

import numpy as np
import pytest

from tests.benchmark_scripts import load_benchmark


@pytest.fixture(scope="module")
def bench():
    return load_benchmark("run_anomaly")


def _existing(path):
    path.write_text(
        json.dumps(
            {
                "image": {"image_auroc": 0.92},
                "peers": {"anomalib_patchcore": {"image": {"image_auroc": 0.9}}},
                "sweep": [{"input": 320}],
                "variants": {"no-position-norm": {"image": {"image_auroc": 0.92}}},
            }
        )
    )


def test_a_new_run_replaces_the_record_and_keeps_peers_sweep_and_variants(bench, tmp_path):
    path = tmp_path / "anomaly-casting.json"
    _existing(path)
    bench.write_record(path, {"image": {"image_auroc": 0.955}, "settings": {"position_norm": True}})
    out = json.loads(path.read_text())
    assert out["image"]["image_auroc"] == 0.955 and out["settings"] == {"position_norm": True}
    assert out["peers"]["anomalib_patchcore"]["image"]["image_auroc"] == 0.9
    assert out["sweep"] == [{"input": 320}]
    assert out["variants"]["no-position-norm"]["image"]["image_auroc"] == 0.92


def test_a_variant_goes_beside_the_record_which_stays(bench, tmp_path):
    path = tmp_path / "anomaly-casting.json"
    _existing(path)
    bench.write_record(path, {"image": {"image_auroc": 0.96}}, variant="floor-1")
    out = json.loads(path.read_text())
    assert out["image"]["image_auroc"] == 0.92  # the recipe's record is untouched
    assert out["variants"]["floor-1"]["image"]["image_auroc"] == 0.96
    assert out["variants"]["no-position-norm"]["image"]["image_auroc"] == 0.92


def test_an_adopted_variant_becomes_the_record_and_the_old_record_a_variant(bench, tmp_path):
    path = tmp_path / "anomaly-x.json"
    _existing(path)
    bench.write_record(path, {"image": {"image_auroc": 0.97}, "command": "run --image-score map"}, variant="map")
    out = bench.promote(path, "map", "patch-score")
    assert json.loads(path.read_text()) == out
    assert out["image"] == {"image_auroc": 0.97} and out["command"] == "run --image-score map"
    assert out["promoted_from_variant"] == "map" and "map" not in out["variants"]
    assert out["variants"]["patch-score"] == {"image": {"image_auroc": 0.92}}  # the record so far, peers left out
    assert out["variants"]["no-position-norm"]["image"]["image_auroc"] == 0.92
    assert out["peers"]["anomalib_patchcore"]["image"]["image_auroc"] == 0.9 and out["sweep"] == [{"input": 320}]
    with pytest.raises(SystemExit, match="no variant 'map' to promote"):
        bench.promote(path, "map", "again")
    with pytest.raises(SystemExit, match="'no-position-norm' exists already"):
        bench.promote(path, "patch-score", "no-position-norm")
    assert json.loads(path.read_text()) == out  # a refused promotion writes nothing


def test_the_first_run_of_a_dataset_writes_a_fresh_file(bench, tmp_path):
    path = tmp_path / "anomaly-bottle.json"
    bench.write_record(path, {"image": {"image_auroc": 1.0}})
    assert json.loads(path.read_text()) == {"image": {"image_auroc": 1.0}}


def test_the_selection_rule_and_the_probes_survive_a_new_run_of_the_recipe(bench, tmp_path):
    path = tmp_path / "anomaly-casting.json"
    probes = {k: {"runs": {k: 1}} for k in ("second_method_probe", "projection_probe", "peer_gap_probe")}
    path.write_text(json.dumps({"image": {"image_auroc": 0.9}, "selection_rule": "judge on selection", **probes}))
    bench.write_record(path, {"image": {"image_auroc": 0.95}})
    out = json.loads(path.read_text())
    assert out["selection_rule"] == "judge on selection" and out["image"]["image_auroc"] == 0.95
    assert all(out[k] == v for k, v in probes.items())


class _Row:
    def __init__(self, p):
        self.defect_probability = p


class _Record:
    def __init__(self, name, label):
        self.name, self.label = name, label


class _Manifest:
    def __init__(self, root):
        self.root = root
        self.records = [_Record("g1", "ok_front"), _Record("g2", "ok_front"), _Record("g3", "ok_front")]

    def split(self, name):
        assert name == "val"
        return self.records

    def resolve(self, record):
        return self.root / record.name


class _Predictor:
    """Scores by file name: the good images low, the defects high, one defect refused by the gate (None)."""

    class spec:
        threshold = 0.5

    def __init__(self, scores):
        self.scores, self.seen = scores, []

    def predict_many(self, files, batch_size):
        self.seen = [f.name for f in files]
        return [_Row(self.scores[f.name]) for f in files]


def test_selection_figures_rank_held_out_good_images_against_train_defects(bench, tmp_path):
    folder = tmp_path / "casting" / "train" / "def_front"
    folder.mkdir(parents=True)
    for name in ("d2.jpeg", "d1.jpeg", "d3.jpeg", "notes.txt"):
        (folder / name).write_bytes(b"x")
    defects = bench.selection_files(tmp_path / "casting")
    assert [p.name for p in defects] == ["d1.jpeg", "d2.jpeg", "d3.jpeg"]  # sorted, images only
    scores = {"g1": 0.1, "g2": 0.2, "g3": 0.6, "d1": 0.9, "d2": 0.4, "d3": None}
    predictor = _Predictor({**scores, **{f"d{i}.jpeg": scores[f"d{i}"] for i in (1, 2, 3)}})
    out = bench.selection_figures(predictor, _Manifest(tmp_path), "ok_front", defects)
    assert predictor.seen == ["g1", "g2", "g3", "d1.jpeg", "d2.jpeg", "d3.jpeg"]
    assert (out["good"], out["defects"], out["refused_by_gate"]) == (3, 3, 1)
    assert out["recall_at_threshold"] == 0.5  # d1 above 0.5, d2 below; d3 refused, not counted
    assert out["false_alarm_rate_at_threshold"] == pytest.approx(1 / 3)
    assert out["image_auroc"] == pytest.approx(5 / 6)  # of 2 x 3 pairs: d1 above all 3 good, d2 above 2


def test_selection_is_none_without_defects(bench, tmp_path):
    assert bench.selection_figures(_Predictor({}), _Manifest(tmp_path), "ok_front", []) is None


def test_every_job_finds_a_datasets_import_in_one_place(bench, tmp_path):
    """The fit, the anomalib peer and the latency / selection re-runs read the same folder; ELPV has no --source."""
    assert bench.data_path("casting", tmp_path, "/data/casting") == tmp_path / "data-casting-good-only"
    assert bench.data_path("elpv", tmp_path) == tmp_path / "data-elpv"
    assert bench.data_path("bottle", tmp_path, "/mvtec/bottle") == tmp_path / "data-bottle"


def test_a_peer_entry_goes_under_peers_and_leaves_the_rest_of_the_file(bench, tmp_path):
    path = tmp_path / "anomaly-casting.json"
    _existing(path)
    args = argparse.Namespace(out=str(path), dataset="casting")
    bench.write_peer(args, "anomalib_coreset_cost", {"seconds_per_step": 1.3})
    out = json.loads(path.read_text())
    assert out["peers"] == {
        "anomalib_patchcore": {"image": {"image_auroc": 0.9}},
        "anomalib_coreset_cost": {"seconds_per_step": 1.3},
    }
    assert out["image"] == {"image_auroc": 0.92} and out["variants"]["no-position-norm"]["image"]["image_auroc"] == 0.92


def test_image_figures_leave_refused_images_out(bench):
    y = np.array([False, False, True, True, True])
    p = np.array([0.1, 0.2, 0.9, 0.3, np.nan])  # the last defect was refused by the gate: no verdict
    out = bench.image_figures(y, p, 0.5)
    assert out["image_auroc"] == pytest.approx(1.0) and out["recall_at_threshold"] == 0.5
    assert out["false_alarm_rate_at_threshold"] == 0.0


class _Timed:
    """A predictor that logs each call (its name and input) into a shared list."""

    class spec:
        input_size = 8
        in_channels = 1

    def __init__(self, name, calls):
        self.name, self.calls = name, calls

    def predict(self, x):
        self.calls.append((self.name, x if isinstance(x, str) else "image"))


def test_latencies_time_several_bundles_call_by_call_on_the_same_images(bench, tmp_path):
    from PIL import Image

    files = []
    for i in range(3):
        Image.new("L", (16, 16), 40 * i).save(tmp_path / f"{i}.png")
        files.append(str(tmp_path / f"{i}.png"))
    calls: list = []
    out = bench.latencies([_Timed("a", calls), _Timed("b", calls)], files, runs=4)
    keys = {"runs", "file_p50_ms", "file_p99_ms", "input_size_p50_ms", "input_size_p99_ms"}
    assert [set(o) for o in out] == [keys, keys]
    timed = calls[2 * 3 : 2 * 3 + 8]  # after 3 warm-up files each: the timed file calls alternate a, b
    assert [c[0] for c in timed] == ["a", "b"] * 4
    assert [c[1] for c in timed[::2]] == [c[1] for c in timed[1::2]] == [files[i % 3] for i in range(4)]
    assert len(calls) == 2 * (3 + 4) + 2 * (3 + 4)  # the same again at the input size


def test_the_recall_operating_point_is_validated_on_the_selection_defects_and_read_on_test(bench):
    # selection: 4 good images, 10 defects; recall 0.9 needs 9 of the 10 defects at or above the threshold
    y_sel = np.array([False] * 4 + [True] * 10)
    p_sel = np.array([0.1, 0.2, 0.3, 0.55, 0.05, *np.linspace(0.4, 0.99, 9)])
    y_test = np.array([False, False, False, True, True, True, True])
    p_test = np.array([0.1, 0.34, 0.6, 0.33, 0.5, 0.9, np.nan])
    out = bench.recall_operating_point(y_sel, p_sel, y_test, p_test, target=0.9)
    # the highest threshold catching 9 of the 10: halfway between the good image at 0.3 and the lowest of the
    # nine at 0.4 (the library's rule keeps a margin on both sides); the defect at 0.05 is given up
    assert out["threshold"] == pytest.approx(0.35)
    assert (out["target_recall"], out["selection_recall"]) == (0.9, pytest.approx(0.9))
    assert out["selection_false_alarm_rate"] == pytest.approx(0.25)  # the good image at 0.55
    # on test the same threshold misses the defect at 0.33, leaves the refused one out, flags the good one at 0.6
    assert out["test_recall"] == pytest.approx(2 / 3)
    assert out["test_false_alarm_rate"] == pytest.approx(1 / 3)
    assert out["test_f1"] == pytest.approx(2 / 3)


def test_selection_figures_carry_the_recall_operating_point_when_given_the_test_scores(bench, tmp_path):
    folder = tmp_path / "casting" / "train" / "def_front"
    folder.mkdir(parents=True)
    for name in ("d1.jpeg", "d2.jpeg"):
        (folder / name).write_bytes(b"x")
    predictor = _Predictor({"g1": 0.1, "g2": 0.2, "g3": 0.6, "d1.jpeg": 0.9, "d2.jpeg": 0.4})
    test = (np.array([False, True]), np.array([0.5, 0.45]))
    out = bench.selection_figures(
        predictor, _Manifest(tmp_path), "ok_front", bench.selection_files(tmp_path / "casting"), test=test
    )
    point = out["at_target_recall"]
    assert point["target_recall"] == bench.TARGET_RECALL
    assert point["threshold"] == pytest.approx(0.3)  # both defects caught: halfway between 0.2 and 0.4
    assert (point["test_recall"], point["test_false_alarm_rate"]) == (1.0, 1.0)
    assert "at_target_recall" not in bench.selection_figures(
        predictor, _Manifest(tmp_path), "ok_front", bench.selection_files(tmp_path / "casting")
    )


def test_latency_loops_are_each_kept_beside_the_last_one(bench, tmp_path, monkeypatch):
    """``--latency-only --loops N --against B``: N loops in a row, each loop's p50 of every bundle kept in order
    (the run's bundle first) with the machine's speed read before it, the record's latency the last loop's; the
    rest of the record stays."""
    from PIL import Image

    from defectlens.data import manifest as manifest_module
    from defectlens.inference import predictor as predictor_module

    for i in range(3):
        Image.new("L", (16, 16), 40 * i).save(tmp_path / f"g{i + 1}.png")

    class _Test(_Manifest):
        def split(self, name):
            assert name == "test"
            return [_Record(f"g{i}.png", "ok_front") for i in (1, 2, 3)]

    calls: list = []

    def load(path, backend):
        assert backend == "onnx"  # --backend reaches every bundle's load
        timed = _Timed(str(path), calls)
        timed.backend = "onnxruntime"
        return timed

    monkeypatch.setattr(predictor_module.Predictor, "load", staticmethod(load))
    monkeypatch.setattr(manifest_module.Manifest, "read", staticmethod(lambda folder: _Test(tmp_path)))
    rates = iter([150.0, 120.0, 170.0, 160.0, 140.0, 130.0])  # the machine's speed, read before each loop
    monkeypatch.setattr(bench, "machine_speed", lambda: next(rates))
    path = tmp_path / "anomaly-casting.json"
    _existing(path)
    args = argparse.Namespace(
        out=str(path), dataset="casting", work=str(tmp_path), source=None, variant="no-position-norm",
        against=["other.dlens"], loops=3, backend="onnx",
    )  # fmt: skip
    bench.latency_again(args)
    record = json.loads(path.read_text())["variants"]["no-position-norm"]
    loops = record["latency_loops"]
    assert loops["bundles"] == [str(tmp_path / "casting-anomaly.dlens"), "other.dlens"]
    assert len(loops["loops"]) == 3 and all(
        len(lp["input_size_p50_ms"]) == len(lp["file_p50_ms"]) == 2 for lp in loops["loops"]
    )
    assert record["latency"]["input_size_p50_ms"] == loops["loops"][-1]["input_size_p50_ms"][0]
    assert record["latency_against"][0]["input_size_p50_ms"] == loops["loops"][-1]["input_size_p50_ms"][1]
    assert record["image"] == {"image_auroc": 0.92}  # the figures of the run stay
    assert loops["backends"] == ["onnxruntime", "onnxruntime"]
    assert [lp["fp32_product_gflops"] for lp in loops["loops"]] == [150.0, 120.0, 170.0]
    bench.latency_again(args)  # a second set: the first is kept
    again = json.loads(path.read_text())["variants"]["no-position-norm"]
    assert again["latency_loops_earlier"] == [loops] and len(again["latency_loops"]["loops"]) == 3
    assert {c[0] for c in calls} == {str(tmp_path / "casting-anomaly.dlens"), "other.dlens"}


def test_the_machines_speed_beside_each_loop_is_a_real_product_rate(bench):
    """``machine_speed`` reaches ``profile_graph`` from the loaded script and times a real product: a rate no
    2-core machine of this decade falls outside."""
    rate = bench.machine_speed()
    assert isinstance(rate, float) and 1.0 < rate < 100_000.0


def test_pooled_latency_gathers_every_set_on_record_per_bundle(bench):
    """``--pooled-latency``: the loops of the record's and every variant's sets (earlier sets too) pool per bundle;
    loops on another runtime are left out, a refit's path pools with the graph it holds, and ``until`` keeps the
    loops a rule was judged on."""

    def loops(bundles, backends, rows, utc="2026-12-07T08:00:00Z"):
        return {
            "bundles": bundles,
            "backends": backends,
            "loops": [{"utc": utc, "input_size_p50_ms": row} for row in rows],
        }

    out = {
        "latency_loops": loops(["new", "old"], ["onnxruntime", "onnxruntime"], [[15.0, 24.0]], "2026-12-07T09:00:00Z"),
        "variants": {
            "a": {
                "latency_loops_earlier": [loops(["a", "old"], ["openvino", "onnxruntime"], [[40.0, 30.0]])],
                "latency_loops": loops(
                    ["a", "refit-of-old"], ["onnxruntime", "onnxruntime"], [[19.0, 21.0], [21.0, 26.0]]
                ),
            },
            "b": {"image": {}},  # never timed in loops
        },
    }
    pooled = bench.pooled_latency(out, same={"refit-of-old": "old"})
    assert set(pooled) == {"new", "old", "a"}
    assert pooled["old"] == {"loops": 4, "median_ms": 25.0, "min_ms": 21.0, "max_ms": 30.0, "at_most_limit": 0}
    assert pooled["a"]["loops"] == 2 and pooled["a"]["median_ms"] == 20.0 and pooled["a"]["at_most_limit"] == 1
    earlier = bench.pooled_latency(out, same={"refit-of-old": "old"}, until="2026-12-07T08:30:00Z")
    assert set(earlier) == {"old", "a"} and earlier["old"]["loops"] == 3
