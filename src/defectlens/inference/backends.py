"""Model runners behind a :class:`~defectlens.inference.predictor.Predictor`: ONNX Runtime, OpenVINO, eager torch.

Each builder returns a function mapping a float32 batch in [0, 1] (N, C, H, W) to logits (N, K). The
ONNX Runtime and OpenVINO runners, and a torch module in inference mode without hooks, are all safe to
call from several threads at once, which is what a web service needs; Grad-CAM, which adds hooks, gets
its own copy of the network (see :meth:`Predictor.torch_model`).

How the CPU is used (measured on the 2-core AMD EPYC (Zen 4) this project is developed on with the
casting bundle, EfficientNet-Lite0 at 192 px; ``benchmarks/bench_peers.py`` re-measures it):

* **A lone image on an idle machine runs on every core; otherwise one image runs on one core.**
  ONNX Runtime can split each layer of one image over its ``intra_op`` threads, its worker threads
  spinning during the call (and stopping at its end, so an idle model takes no CPU). On an idle
  2-core machine that took the casting FP32 graph from 6.6 to 3.5 ms and the INT8 one from 2.9 to
  1.7 ms (p50). With a second process keeping one core busy the same split gained little or nothing
  at p50 (FP32 6.6 against 6.3 ms, INT8 2.8 against 3.1), but its p95 doubled (FP32 14.9 against
  6.5 ms, INT8 7.1 against 3.8) and it spent 1.5-1.6x the CPU per image, which that
  other process (a training job, the line's camera software) needs; and a web service's concurrent
  requests gain nothing from it (each already has a core). So a single-image call takes the split
  session only when no other call of the same model is in flight and no other thread on the machine
  is running on the cores it would take at that instant (:func:`others_running`, from
  ``/proc/loadavg``; elsewhere it never splits): idle, 3.8 and 2.1 ms (a transient kernel thread
  sometimes keeps it on one core); busy, 6.6 and 3.3 ms at the single-core CPU cost. A trailing
  average of the other processes' CPU would not do: a process that ran a moment ago and now waits
  (a camera driver, or the peer in a benchmark) would keep the split off while the cores sit idle.
  (``benchmarks/bench_split.py BUNDLE --precision fp32|int8``; results in
  ``benchmarks/results/split-*.json``.)
* **A batch runs on ``threads`` cores at once** (data parallel): it is cut into slices of at most
  :data:`SLICE` images, run concurrently from a small thread pool (both runtimes release the GIL). A
  slice of a few images keeps a core's activations in its cache (the largest layer of one 192 px image
  is 3.5 MB; a whole batch of 32 is over 100 MB, past the 32 MB L3), so batching pays on a multi-core
  CPU instead of streaming every layer of the whole batch through memory. Concurrent callers (the web
  service's requests) likewise run side by side, one core each.

``backend="auto"`` times the runtimes a graph was verified on at its first load on a machine and keeps
the faster (:mod:`~defectlens.inference.runtime_choice`): the measurements below are the AMD EPYC's, and on
an Intel Xeon the INT8 graph ran faster in OpenVINO. :func:`auto_backend` is the rule order it starts
from, and the whole choice where timing is off (``DEFECTLENS_AUTO_RUNTIME=rule``) or one runtime is
verified. On the AMD EPYC the rule's ONNX Runtime was the faster for both graphs: OpenVINO in f32
was 4-8% slower on one image and level on batches; on the INT8 graph it was level with ONNX Runtime
on one core and about 5% faster on batches, but :func:`openvino_runner` gives each image one stream
on one core, so only the ONNX Runtime runner splits a lone image over idle cores, and that is the
faster choice wherever there is more than one core. OpenVINO always runs with ``INFERENCE_PRECISION_HINT=f32``: its
default on CPUs with AVX512-BF16 (this one) is bfloat16, 1.7x faster, but it moved casting test
probabilities by up to 0.06 and changed one of 715 decisions, far outside the 1e-4 parity every
backend must keep.
"""

from __future__ import annotations

import importlib.util
import os
import queue
import threading
from collections.abc import Callable, Collection
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from defectlens.core.errors import DefectlensError
from defectlens.core.spec import ModelSpec

if TYPE_CHECKING:
    from torch import nn

Runner = Callable[[np.ndarray], np.ndarray]

#: The ONNX runtimes a bundle can run on (``torch`` runs its safetensors weights instead).
ONNX_RUNTIMES = ("onnx", "openvino")
#: What a Predictor reports as its backend for each runtime name.
RUNTIME_LABELS = {"onnx": "onnxruntime", "openvino": "openvino", "torch": "torch"}
#: Most images one core works on in one call: small enough that its activations stay in cache.
SLICE = 4


def usable_cores() -> int:
    """CPU cores this process may run on (its affinity mask, which containers and ``taskset`` narrow)."""
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except AttributeError:  # not on Linux
        return max(1, os.cpu_count() or 1)


def resolve_threads(threads: int | None) -> int:
    """Cores a batch is spread over: ``threads``, or every usable core when None.

    Raises:
        DefectlensError: for a count below 1.
    """
    if threads is None:
        return usable_cores()
    if int(threads) < 1:
        raise DefectlensError(f"threads must be at least 1, got {threads}")
    return int(threads)


def installed(runtime: str) -> bool:
    """Whether ``runtime`` (``onnx``, ``openvino`` or ``torch``) can be imported here, without importing it."""
    module = {"onnx": "onnxruntime", "openvino": "openvino", "torch": "torch"}[runtime]
    return importlib.util.find_spec(module) is not None


def installed_runtimes() -> tuple[str, ...]:
    """The ONNX runtimes installed here, in :data:`ONNX_RUNTIMES` order."""
    return tuple(r for r in ONNX_RUNTIMES if installed(r))


def auto_backend(*, verified: Collection[str] = ONNX_RUNTIMES) -> str:
    """The runtime ``backend="auto"`` uses for a bundle graph (see the module docstring for the measurements).

    Args:
        verified: runtimes the export checked this graph on (a bundle's ``spec.json`` records them):
            ONNX Runtime unless the export checked only OpenVINO and OpenVINO is installed.
    """
    if "onnx" not in verified and "openvino" in verified and installed("openvino"):
        return "openvino"
    return "onnx"


def others_running() -> int | None:
    """Threads on the machine running or ready to run right now, besides the caller (None off Linux).

    From ``/proc/loadavg``: the kernel's count of runnable threads at this instant, which includes
    the calling thread. A training job, a second service or this process's own decoding threads
    show up here; threads waiting for I/O or a lock do not.
    """
    try:
        running = Path("/proc/loadavg").read_text(encoding="ascii").split()[3].split("/")[0]
        return max(0, int(running) - 1)
    except (OSError, ValueError, IndexError):
        return None


def parallel(
    run_one: Runner,
    threads: int,
    *,
    slice_size: int = SLICE,
    lone: Runner | None = None,
    others: Callable[[], int | None] | None = None,
) -> Runner:
    """``run_one`` applied to slices of a batch on ``threads`` cores at once, outputs concatenated in order.

    A batch of one image, or ``threads == 1``, runs on the calling thread with ``run_one``, or with
    ``lone`` (a runner that spreads one image's layers over ``threads`` cores) when no other call of
    this runner is in flight and ``others()`` (default :func:`others_running`) says the cores it
    needs are free right now: a single image on an idle machine uses every core, while concurrent
    calls (a web service's requests) and a busy machine keep one core per image.
    """
    if threads <= 1:
        return run_one
    pool = ThreadPoolExecutor(max_workers=threads, thread_name_prefix="defectlens-infer")

    def sliced(batch: np.ndarray) -> np.ndarray:
        n = len(batch)
        if n < 2:
            return run_one(batch)
        size = max(1, min(slice_size, -(-n // threads)))  # every core gets work before any gets two slices
        parts = [batch[i : i + size] for i in range(0, n, size)]
        return np.concatenate(list(pool.map(run_one, parts)))

    if lone is None:
        return sliced
    lock, inflight = threading.Lock(), [0]
    spare = usable_cores() - threads  # cores this runner leaves to others

    def run(batch: np.ndarray) -> np.ndarray:
        with lock:  # every call counts: a batch in flight holds the cores too
            inflight[0] += 1
            alone = inflight[0] == 1
        try:
            if len(batch) == 1 and alone:
                busy = (others or others_running)()
                if busy is not None and busy <= spare:
                    return lone(batch)
            return sliced(batch)
        finally:
            with lock:
                inflight[0] -= 1

    return run


def joined(outputs: list[Any]) -> np.ndarray:
    """A gated graph's outputs as one array: the logits (N, K), then the OOD score as column K.

    One array keeps every runner's contract (batch in, one array out, slices concatenated in order);
    :class:`~defectlens.inference.predictor.Predictor` splits it again.
    """
    logits, score = outputs[0], outputs[1]
    return np.concatenate([np.asarray(logits, np.float32), np.asarray(score, np.float32).reshape(-1, 1)], axis=1)


def onnx_runner(
    data: bytes, *, threads: int | None = None, name: str = "model.onnx", with_ood: bool = False
) -> tuple[Runner, Any]:
    """An ONNX Runtime CPU session for a serialised model; returns (runner, session).

    Args:
        data: the ONNX model bytes.
        threads: cores a batch is spread over (None: every usable core); one image uses one core,
            or all ``threads`` when it is alone on idle cores (module docstring; a second session with
            ``threads`` intra-op threads).
        name: what to call the model in an error message.
        with_ood: the graph is gated; the runner returns :func:`joined` logits and OOD scores.

    Raises:
        DefectlensError: when ONNX Runtime cannot load the bytes as a model.
    """
    workers = resolve_threads(threads)
    session = _ort_session(data, intra_op=1, name=name)  # see the module docstring: one image, one core
    input_name = session.get_inputs()[0].name

    fetch = [o.name for o in session.get_outputs()][: 2 if with_ood else 1]
    if with_ood and len(fetch) < 2:
        raise DefectlensError(f"{name}: the graph has no out-of-distribution output; export the bundle again")

    def run(batch: np.ndarray) -> np.ndarray:
        out = session.run(fetch, {input_name: batch})
        return joined(out) if with_ood else out[0]

    if workers <= 1:
        return run, session
    wide = _ort_session(data, intra_op=workers, name=name)  # a lone image's layers over every core

    def run_wide(batch: np.ndarray) -> np.ndarray:
        out = wide.run(fetch, {input_name: batch})
        return joined(out) if with_ood else out[0]

    return parallel(run, workers, lone=run_wide), session


def _ort_session(data: bytes, *, intra_op: int, name: str, profile_prefix: str | None = None) -> Any:
    """An ONNX Runtime CPU session with ``intra_op`` threads per call.

    With more than one, its worker threads spin while a call runs (the layers' parallel sections
    hand over in microseconds) and stop at the end of each call, so an idle model takes no CPU.
    ``profile_prefix``: ONNX Runtime's per-operator profile is written to a file starting so
    (``benchmarks/profile_graph.py``).
    """
    import onnxruntime as ort

    opts = ort.SessionOptions()
    opts.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    opts.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    opts.intra_op_num_threads = intra_op
    opts.inter_op_num_threads = 1
    opts.add_session_config_entry("session.intra_op.allow_spinning", "1" if intra_op > 1 else "0")
    opts.add_session_config_entry("session.force_spinning_stop", "1")
    opts.log_severity_level = 3  # warnings about unused initialisers are noise for users
    if profile_prefix is not None:
        opts.enable_profiling = True
        opts.profile_file_prefix = profile_prefix
    try:
        return ort.InferenceSession(data, sess_options=opts, providers=["CPUExecutionProvider"])
    except Exception as exc:  # ORT raises its own InvalidProtobuf, Fail, InvalidGraph... types
        raise DefectlensError(f"{name}: ONNX Runtime cannot load this model ({_first_line(exc)})") from None


@dataclass(frozen=True)
class GraphPort:
    """An input or output of a compiled graph, described as ONNX Runtime's ``NodeArg`` is (for checks)."""

    name: str
    shape: list[int | str | None]
    type: str


class OpenVinoGraph:
    """The ports of an OpenVINO compiled model, with ONNX Runtime's ``get_inputs``/``get_outputs`` shape."""

    def __init__(self, compiled: Any):
        self.compiled = compiled

    @staticmethod
    def _port(port: Any) -> GraphPort:
        shape: list[int | str | None] = [int(d.get_length()) if d.is_static else None for d in port.get_partial_shape()]
        kind = "tensor(float)" if port.get_element_type().get_type_name() == "f32" else str(port.get_element_type())
        return GraphPort(port.get_any_name(), shape, kind)

    def get_inputs(self) -> list[GraphPort]:
        return [self._port(p) for p in self.compiled.inputs]

    def get_outputs(self) -> list[GraphPort]:
        return [self._port(p) for p in self.compiled.outputs]


def openvino_runner(
    data: bytes, *, threads: int | None = None, name: str = "model.onnx", with_ood: bool = False
) -> tuple[Runner, Any]:
    """An OpenVINO CPU model for serialised ONNX bytes, in f32; returns (runner, graph ports).

    One stream per core, one thread per stream (as :func:`onnx_runner`): one image runs on one core and a
    batch's slices run on ``threads`` streams at once; a pool of infer requests makes it thread-safe.

    Raises:
        DefectlensError: when OpenVINO is not installed or cannot read or compile the model.
    """
    if not installed("openvino"):
        raise DefectlensError("the openvino backend needs OpenVINO: pip install 'defectlens[openvino]'")
    import openvino as ov

    workers = resolve_threads(threads)
    config = {
        "INFERENCE_PRECISION_HINT": "f32",  # never bf16: see the module docstring
        "NUM_STREAMS": workers,
        "INFERENCE_NUM_THREADS": workers,
        "ENABLE_CPU_PINNING": False,  # on a shared machine a pinned thread cannot move off a busy core
    }
    try:
        core = ov.Core()
        compiled = core.compile_model(core.read_model(data), "CPU", config)
    except Exception as exc:  # OpenVINO raises RuntimeError and its own types
        raise DefectlensError(f"{name}: OpenVINO cannot load this model ({_first_line(exc)})") from None
    requests: queue.SimpleQueue[Any] = queue.SimpleQueue()
    for _ in range(workers):
        requests.put(compiled.create_infer_request())

    def run(batch: np.ndarray) -> np.ndarray:
        request = requests.get()  # an infer request serves one call at a time
        try:
            result = request.infer({0: batch})
            if with_ood:
                return joined([result[0], result[1]])
            return np.array(result[0], dtype=np.float32, copy=True)
        finally:
            requests.put(request)

    return parallel(run, workers), OpenVinoGraph(compiled)


def runtime_runner(runtime: str, data: bytes, *, threads: int | None = None, name: str = "model.onnx") -> Runner:
    """The runner of ONNX ``data`` on ``runtime`` (``onnx`` or ``openvino``)."""
    build = {"onnx": onnx_runner, "openvino": openvino_runner}[runtime]
    return build(data, threads=threads, name=name)[0]


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return (text.splitlines()[0] if text else type(exc).__name__)[:300]


def normalizing(run: Runner, *, mean: tuple[float, ...], std: tuple[float, ...]) -> Runner:
    """``run`` fed ``(x - mean) / std`` per channel, for a graph that does not normalise its input itself."""
    m = np.asarray(mean, dtype=np.float32).reshape(1, -1, 1, 1)
    s = np.asarray(std, dtype=np.float32).reshape(1, -1, 1, 1)

    def normalized(batch: np.ndarray) -> np.ndarray:
        return run((batch - m) / s)

    return normalized


def embedded_spec(session: Any) -> ModelSpec | None:
    """The ModelSpec an exported defectlens graph carries in its metadata (None when absent or unreadable)."""
    from defectlens.core.bundle import META_SPEC_KEY

    text = session.get_modelmeta().custom_metadata_map.get(META_SPEC_KEY)
    if not text:
        return None
    try:
        return ModelSpec.from_json(text)
    except (ValueError, TypeError, KeyError):
        return None


def torch_model_from_weights(data: bytes, spec: ModelSpec) -> Any:
    """Rebuild the network of ``spec`` from ``model.safetensors`` bytes (eval mode, CPU)."""
    from safetensors.torch import load

    from defectlens.models import model_from_state  # torch: only when torch weights are wanted

    return model_from_state(load(data), spec)


def torch_runner(model: nn.Module, *, threads: int | None = None) -> Runner:
    """Eager torch inference on the model's current device."""
    import torch

    if threads:
        torch.set_num_threads(int(threads))  # process-wide in torch; only set when asked
    model.eval()
    device = next(model.parameters()).device

    def run(batch: np.ndarray) -> np.ndarray:
        with torch.inference_mode():
            return model(torch.from_numpy(batch).to(device)).float().cpu().numpy()

    return run
