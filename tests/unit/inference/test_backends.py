"""Backends: every runtime gives the same decisions, batches spread over cores keep their order, the ``auto``
rule, precision selection, and a backend the export found wrong is refused."""

from __future__ import annotations

import subprocess
import sys
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from defectlens.core.bundle import read_bundle, write_bundle
from defectlens.core.errors import DefectlensError
from defectlens.inference import backends
from defectlens.inference.predictor import BACKENDS, Predictor
from tests.require import missing


@pytest.fixture
def openvino() -> None:
    """The tests that use it need the ``openvino`` extra; without it they skip, or fail in CI."""
    if not backends.installed("openvino"):
        missing("EXTRAS", "openvino extra not installed")


needs_openvino = pytest.mark.usefixtures("openvino")


def _images(n=6, seed=0):
    rng = np.random.default_rng(seed)
    return rng.integers(0, 256, (n, 1, 32, 32), dtype=np.uint8)


def test_parallel_keeps_order_and_runs_one_image_on_the_caller():
    callers: list[tuple[int, str]] = []

    def run_one(batch):
        callers.append((len(batch), threading.current_thread().name))
        return batch.reshape(len(batch), -1)[:, :2].astype(np.float32)

    run = backends.parallel(run_one, 2, slice_size=4)
    x = np.arange(11 * 4, dtype=np.float32).reshape(11, 1, 2, 2)
    np.testing.assert_array_equal(run(x), run_one(x))  # 11 images: slices of 4, 4, 3, in order
    assert sorted(n for n, _ in callers[:-1]) == [3, 4, 4]
    assert all(name.startswith("defectlens-infer") for _, name in callers[:-1])
    callers.clear()
    run(x[:1])
    assert callers == [(1, threading.current_thread().name)]
    assert backends.parallel(run_one, 1) is run_one


def test_two_images_on_two_cores_go_one_each():
    sizes = []
    run = backends.parallel(lambda b: sizes.append(len(b)) or np.zeros((len(b), 2), np.float32), 2)
    run(np.zeros((2, 1, 4, 4), np.float32))
    assert sizes == [1, 1]


def test_threads_must_be_positive():
    assert backends.resolve_threads(None) == backends.usable_cores() >= 1
    with pytest.raises(DefectlensError, match="threads"):
        backends.resolve_threads(0)


def test_auto_rule():
    assert backends.auto_backend() == "onnx"
    assert backends.auto_backend(verified=["onnx", "openvino"]) == "onnx"
    expected = "openvino" if backends.installed("openvino") else "onnx"
    assert backends.auto_backend(verified=["openvino"]) == expected


def _recording_runners():
    used: list[str] = []

    def runner(name):
        def run(batch):
            used.append(name)
            return np.zeros((len(batch), 2), np.float32)

        return run

    return used, runner("one core"), runner("every core")


def test_a_lone_image_on_an_idle_machine_is_spread_over_the_cores(monkeypatch):
    monkeypatch.setattr(backends, "usable_cores", lambda: 2)
    used, one, wide = _recording_runners()
    running = [0]
    run = backends.parallel(one, 2, lone=wide, others=lambda: running[0])
    run(np.zeros((1, 1, 4, 4), np.float32))
    run(np.zeros((3, 1, 4, 4), np.float32))  # a batch: slices, one core each
    running[0] = 1  # another thread is running on the machine right now
    run(np.zeros((1, 1, 4, 4), np.float32))
    running[0] = None  # no reading (not Linux): never split
    run(np.zeros((1, 1, 4, 4), np.float32))
    assert used == ["every core", "one core", "one core", "one core", "one core"]


def test_concurrent_single_images_keep_one_core_each():
    entered, release = threading.Event(), threading.Event()
    used: list[str] = []

    def wide(batch):
        used.append("every core")
        entered.set()
        release.wait(5)
        return np.zeros((1, 2), np.float32)

    def one(batch):
        used.append("one core")
        return np.zeros((1, 2), np.float32)

    run = backends.parallel(one, 2, lone=wide, others=lambda: 0)
    first = threading.Thread(target=run, args=(np.zeros((1, 1, 4, 4), np.float32),))
    first.start()
    assert entered.wait(5)
    run(np.zeros((1, 1, 4, 4), np.float32))  # while the first is in flight
    release.set()
    first.join(5)
    assert used == ["every core", "one core"]


@pytest.mark.skipif(not Path("/proc/loadavg").is_file(), reason="reads /proc/loadavg (Linux)")
def test_another_process_running_is_seen():
    # The busy process says when it spins and spins until told to stop, so it is runnable all through the
    # sampling: no sleep standing in for "it has started by now" (which any other process would satisfy).
    spin = "import select, sys\nprint('spinning', flush=True)\nwhile not select.select([sys.stdin], [], [], 0)[0]: pass"
    busy = subprocess.Popen([sys.executable, "-c", spin], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    try:
        assert busy.stdout.readline() == "spinning\n"
        seen = []
        for _ in range(20):
            seen.append(backends.others_running())
            time.sleep(0.02)
    finally:
        busy.stdin.close()  # readable at EOF: the loop ends
        busy.wait(30)
    assert all(n is not None and n >= 0 for n in seen)
    assert max(seen) >= 1  # the busy process (its core is not free for a split)


@pytest.mark.parametrize(("loadavg", "others"), [("0.50 0.40 0.30 1/312 4242", 0), ("2.1 1.9 1.5 4/312 4242", 3)])
def test_others_running_leaves_out_the_caller(monkeypatch, loadavg, others):
    """The kernel's runnable count includes the calling thread: one runnable is an idle machine."""
    real_read = Path.read_text
    monkeypatch.setattr(
        Path, "read_text", lambda self, *a, **k: loadavg if str(self) == "/proc/loadavg" else real_read(self, *a, **k)
    )
    assert backends.others_running() == others


def test_a_lone_image_split_over_the_cores_gives_the_same_logits(bundle, monkeypatch):
    asked: list[int] = []
    monkeypatch.setattr(backends, "others_running", lambda: asked.append(0) or 0)  # an idle machine
    monkeypatch.setattr(backends, "usable_cores", lambda: 2)
    one = Predictor.load(bundle, backend="onnx", threads=1)
    split = Predictor.load(bundle, backend="onnx", threads=2)
    asked.clear()  # the load's probe (one image) was split too
    for image in _images(4, seed=5):
        x = image[None]
        np.testing.assert_allclose(split.logits(x), one.logits(x), atol=1e-5)
    assert len(asked) == 4  # each lone image found the cores free and was split


def test_backend_choices_come_from_one_list():
    assert BACKENDS == ("auto", "onnx", "openvino", "torch")
    assert set(backends.ONNX_RUNTIMES) < set(BACKENDS)


def test_batches_spread_over_cores_give_the_same_logits(bundle):
    one = Predictor.load(bundle, backend="onnx", threads=1)
    two = Predictor.load(bundle, backend="onnx", threads=2)
    x = _images(13)
    np.testing.assert_array_equal(one.logits(x), two.logits(x))
    assert one.backend == two.backend == "onnxruntime"


@needs_openvino
def test_openvino_agrees_with_onnxruntime_and_torch(bundle, tmp_path):
    files = []
    for i, img in enumerate(_images(5, seed=1)):
        files.append(tmp_path / f"{i}.png")
        Image.fromarray(img[0]).resize((40, 30)).save(files[-1])
    ov = Predictor.load(bundle, backend="openvino", threads=2)
    assert ov.backend == "openvino" and ov.model_id == read_bundle(bundle).model_id
    for other in (Predictor.load(bundle, backend="onnx"), Predictor.load(bundle, backend="torch")):
        for f in files:
            a, b = ov.predict(f), other.predict(f)
            assert a.prediction == b.prediction
            assert max(abs(a.probabilities[k] - b.probabilities[k]) for k in a.probabilities) < 1e-5
    batch = _images(9, seed=2)
    np.testing.assert_allclose(ov.logits(batch), Predictor.load(bundle, backend="onnx").logits(batch), atol=1e-5)


@needs_openvino
def test_openvino_is_safe_to_share_between_threads(bundle):
    predictor = Predictor.load(bundle, backend="openvino", threads=2)
    x = _images(3, seed=3)
    expected = predictor.logits(x)
    with ThreadPoolExecutor(6) as pool:
        results = list(pool.map(lambda _: predictor.logits(x), range(24)))
    for r in results:
        np.testing.assert_allclose(r, expected, atol=1e-6)


def test_bundle_records_parity_for_every_installed_backend(bundle):
    checks = read_bundle(bundle).meta["parity"]["backends"]
    assert set(checks) == set(backends.installed_runtimes())
    assert all(c["ok"] and c["max_abs_prob_diff"] <= 1e-4 for c in checks.values())


def test_a_backend_the_export_found_wrong_is_refused(bundle, tmp_path):
    original = read_bundle(bundle)
    meta = {k: v for k, v in original.meta.items() if k not in ("model_id", "files", "format")}
    meta["parity"] = {**meta["parity"], "backends": {**meta["parity"]["backends"]}}
    meta["parity"]["backends"]["openvino"] = {"ok": False, "reason": "probabilities differ from torch by 0.3"}
    bad = tmp_path / "bad.dlens"
    write_bundle(bad, members=original.members, meta=meta)
    with pytest.raises(DefectlensError, match=r"refused.*openvino.*differ"):
        Predictor.load(bad, backend="openvino")
    assert Predictor.load(bad).backend == "onnxruntime"  # auto never picks it


def test_precision_choices(bundle, run_dir):
    with pytest.raises(DefectlensError, match="no INT8 graph"):
        Predictor.load(bundle, precision="int8")
    with pytest.raises(DefectlensError, match="precision"):
        Predictor.load(bundle, precision="fp16")
    with pytest.raises(DefectlensError, match="INT8 graph needs a bundle"):
        Predictor.load(run_dir, precision="int8")
    assert Predictor.load(bundle, precision="fp32").backend == "onnxruntime"


def test_an_accepted_int8_graph_is_the_default_and_torch_still_runs_the_weights(bundle, tmp_path):
    from defectlens.core.bundle import INT8_FILE, ONNX_FILE

    original = read_bundle(bundle)
    meta = {k: v for k, v in original.meta.items() if k not in ("model_id", "files", "format")}
    checked = {r: {"ok": True, "newly_wrong": 0} for r in backends.installed_runtimes()}
    meta.update(default_onnx=INT8_FILE, int8={"accepted": True, "backends": checked})
    members = {**original.members, INT8_FILE: original.members[ONNX_FILE]}  # any valid graph stands in
    int8 = tmp_path / "int8.dlens"
    write_bundle(int8, members=members, meta=meta)
    auto = Predictor.load(int8)
    assert auto.backend == backends.RUNTIME_LABELS[backends.auto_backend(verified=list(checked))] + "-int8"
    assert Predictor.load(int8, precision="fp32").backend == "onnxruntime"
    assert Predictor.load(int8, backend="torch").backend == "torch"
    with pytest.raises(DefectlensError, match="FP32 weights"):
        Predictor.load(int8, backend="torch", precision="int8")


def test_a_service_keeps_one_core_per_image(bundle, monkeypatch):
    asked: list[int] = []
    monkeypatch.setattr(backends, "others_running", lambda: asked.append(0) or 0)
    served = Predictor.load(bundle, backend="onnx", threads=1)  # as the web service loads it
    served.logits(_images(1, seed=6))
    assert asked == []  # never considered splitting
