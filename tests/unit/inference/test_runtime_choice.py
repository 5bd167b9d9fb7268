"""``backend="auto"`` times the verified runtimes at a graph's first load on a machine, keeps the faster, and
remembers it: later loads read the choice; a broken or unwritable cache never stops a load."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from defectlens.core import machine
from defectlens.core.bundle import read_bundle
from defectlens.core.errors import DefectlensError
from defectlens.inference import backends, runtime_choice
from defectlens.inference.predictor import Predictor
from tests.require import missing


@pytest.fixture
def measuring(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Path:
    """Measure mode with a cache of this test's own; the cache file's path."""
    if not backends.installed("openvino"):
        missing("EXTRAS", "openvino extra not installed: nothing to choose between")
    monkeypatch.setenv(runtime_choice.MODE_ENV, "measure")
    monkeypatch.setenv(runtime_choice.CACHE_ENV, str(tmp_path / "cache"))
    # the suite's own threads (a test server, a runtime's pool) must not decide whether these tests time anything
    monkeypatch.setattr(runtime_choice, "machine_busy", lambda *a, **k: False)
    return tmp_path / "cache" / "runtimes.json"


def _records(path: Path) -> dict:
    return json.loads(path.read_text())["choices"]


def test_first_load_times_both_runtimes_and_keeps_the_faster(bundle, measuring):
    first = Predictor.load(bundle)
    choice = first.runtime_choice
    assert choice is not None and choice["how"] == "measured"
    assert set(choice["p50_ms"]) == {"onnx", "openvino"} and all(v > 0 for v in choice["p50_ms"].values())
    winner = runtime_choice.fastest(choice["p50_ms"], ["onnx", "openvino"])
    assert choice["runtime"] == winner and first.backend == backends.RUNTIME_LABELS[winner]
    (record,) = _records(measuring).values()
    assert record["runtime"] == winner and record["p50_ms"] == choice["p50_ms"]
    second = Predictor.load(bundle)
    assert second.runtime_choice["how"] == "cached" and second.backend == first.backend
    assert first.info()["runtime_choice"]["runtime"] == winner


@pytest.mark.parametrize(("kept", "label"), [("openvino", "openvino"), ("onnx", "onnxruntime")])
def test_the_remembered_choice_decides(bundle, measuring, kept, label):
    graph = read_bundle(bundle).members["model.onnx"]
    key = runtime_choice.choice_key(graph, ["onnx", "openvino"], backends.resolve_threads(None))
    assert runtime_choice.remember(measuring, key, {"runtime": kept, "p50_ms": {"onnx": 1.0, "openvino": 1.0}})
    predictor = Predictor.load(bundle)
    assert predictor.backend == label and predictor.runtime_choice["how"] == "cached"


def test_the_key_follows_threads_and_graph(bundle, measuring):
    Predictor.load(bundle, threads=1)
    Predictor.load(bundle, threads=2)
    keys = list(_records(measuring))
    assert len(keys) == 2 and {k.rsplit("=", 1)[1] for k in keys} == {"1", "2"}
    graph = read_bundle(bundle).members["model.onnx"]
    assert runtime_choice.choice_key(graph, ["onnx"], 1) != runtime_choice.choice_key(graph + b" ", ["onnx"], 1)


def test_a_damaged_cache_is_measured_again_and_rewritten(bundle, measuring):
    measuring.parent.mkdir(parents=True)
    measuring.write_text("{not json")
    assert Predictor.load(bundle).runtime_choice["how"] == "measured"
    assert len(_records(measuring)) == 1


def test_an_unwritable_cache_still_loads(bundle, measuring, caplog):
    measuring.parent.parent.mkdir(parents=True, exist_ok=True)
    measuring.parent.write_text("a file where the cache folder should be")
    predictor = Predictor.load(bundle)
    assert predictor.runtime_choice["how"] == "measured" and "not cached" in caplog.text
    assert predictor.predict(np.zeros((32, 32), np.uint8)).status in {"ok", "needs_review"}


def test_rule_mode_and_an_explicit_backend_time_nothing(bundle, measuring, monkeypatch):
    assert Predictor.load(bundle, backend="onnx").runtime_choice["how"] == "only one verified"
    monkeypatch.setenv(runtime_choice.MODE_ENV, "rule")
    ruled = Predictor.load(bundle)
    assert ruled.runtime_choice == {"runtime": "onnx", "how": "rule", "p50_ms": {}, "notes": []}
    assert not measuring.exists()
    monkeypatch.setenv(runtime_choice.MODE_ENV, "fastest")
    with pytest.raises(DefectlensError, match="DEFECTLENS_AUTO_RUNTIME='fastest'"):
        Predictor.load(bundle)


def test_a_runtime_that_cannot_build_is_left_out_and_not_remembered(measuring):
    def build(runtime):
        if runtime == "openvino":
            raise DefectlensError("openvino cannot compile this here")
        return (lambda batch: np.zeros((len(batch), 2), np.float32)), None

    choice = runtime_choice.choose(b"graph", ["onnx", "openvino"], build, threads=1, sample_shape=(1, 1, 8, 8))
    assert choice.runtime == "onnx" and choice.notes == ["openvino: openvino cannot compile this here"]
    assert not measuring.exists()  # next load measures again: the failure may have been passing
    with pytest.raises(DefectlensError, match="no runtime"):
        runtime_choice.choose(b"graph", [], build, threads=1, sample_shape=(1, 1, 8, 8))


def test_the_margin_keeps_rule_order_on_a_near_tie():
    order = ["onnx", "openvino"]
    assert runtime_choice.fastest({"onnx": 3.0, "openvino": 2.95}, order) == "onnx"
    assert runtime_choice.fastest({"onnx": 3.0, "openvino": 2.8}, order) == "openvino"
    assert runtime_choice.fastest({"onnx": 2.0, "openvino": 3.0}, order) == "onnx"


def test_a_busy_machine_is_not_timed_and_nothing_is_remembered(bundle, measuring, monkeypatch):
    # beside a training job ONNX Runtime keeps a lone image on one core: a choice timed then would be kept
    # for the idle machine it does not describe
    monkeypatch.setattr(runtime_choice, "machine_busy", lambda *a, **k: True)
    busy = Predictor.load(bundle)
    assert busy.runtime_choice["how"] == "rule (machine busy: not timed)" and busy.backend == "onnxruntime"
    assert not measuring.exists()
    monkeypatch.setattr(runtime_choice, "machine_busy", lambda *a, **k: False)
    assert Predictor.load(bundle).runtime_choice["how"] == "measured" and measuring.exists()


def test_busy_means_another_runnable_thread(monkeypatch):
    from defectlens.inference import backends

    monkeypatch.setattr(backends, "others_running", lambda: 0)
    assert runtime_choice.machine_busy(samples=3, gap_s=0) is False
    monkeypatch.setattr(backends, "others_running", lambda: None)  # off Linux: unknown, so never busy
    assert runtime_choice.machine_busy(samples=3, gap_s=0) is False
    counts = iter([0, 0, 1])
    monkeypatch.setattr(backends, "others_running", lambda: next(counts))
    assert runtime_choice.machine_busy(samples=3, gap_s=0) is True


def test_the_key_follows_the_cpu_generation_not_only_its_name(monkeypatch):
    """A cache carried to another generation under the same model name (a migrated VM) measures again."""
    keys = set()
    for vector in (["avx2"], ["avx512_bf16", "avx512f", "avx2"]):
        features = {"family": 25, "model": 1 if len(vector) == 1 else 17, "vector": vector}
        monkeypatch.setattr(machine, "cpu_model", lambda: "AMD EPYC")
        monkeypatch.setattr(machine, "cpu_features", lambda features=features: features)
        keys.add(runtime_choice.choice_key(b"graph", ["onnx"], 2))
    assert len(keys) == 2
