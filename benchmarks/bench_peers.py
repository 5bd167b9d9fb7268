"""Inference speed side by side, in one run: our casting bundle against Ultralytics YOLO11n-cls (issue #21).

Ours: the bundle on every backend we ship (ONNX Runtime, OpenVINO, eager torch; the INT8 graph too when
the bundle has one, exported with ``--int8``). Theirs: YOLO11n-cls (224 px) through Ultralytics' own
predict path, with torch and with its ONNX export (Ultralytics' AutoBackend -> ONNX Runtime), run by
``benchmarks/peers/speed_peer.py`` in the peers virtualenv (AGPL: never imported here).

1. End to end, one image, from the JPEG path (read, decode, preprocess, model, decision), p50/p95, at
   1 and 2 threads, on the official casting test images. Every configuration sees the same images,
   and the configurations alternate in rounds (ours, then theirs, then ours...), so a burst of load from
   another process hits every row alike. Our probabilities on every backend are compared with torch's
   on those images (parity).
2. Model only, batch 1: both ONNX graphs under ONNX Runtime (intra-op threads, its default spinning),
   OpenVINO in f32 and OpenVINO at its default precision (bfloat16 on CPUs with AVX512-BF16: shown
   because it is the fast figure people quote, excluded from the goals because it fails parity), and
   our Predictor as shipped (a lone image on an idle machine split over the cores, else one core per image).
3. Throughput, model only, images per second at batch 1/8/32: our Predictor on each backend (a batch
   spread over the cores), and the YOLO graph (dynamic-batch export) under ONNX Runtime and OpenVINO.

Writes ``benchmarks/results/peers-<cpu>.json``, one file per CPU model (``peers-amd-epyc.json``,
``peers-intel-xeon.json``; ``--out`` overrides it): the machine, load average before and after each part, every
figure, the goals as ratios) and prints the markdown tables for the README.

    .venv/bin/python benchmarks/bench_peers.py --bundle RUN/model.dlens [--yolo-weights best.pt]
    .venv/bin/python benchmarks/bench_peers.py --smoke --out /tmp/peers.json   # seconds, no Ultralytics

Without ``--bundle`` a random-init EfficientNet-Lite0 192 px gray bundle is built (speed does not depend
on the weights). The peers python is ``DEFECTLENS_PEERS_PYTHON`` or ``.venv-peers`` (peer_rows.py), or
``--peers-python``; without it the YOLO rows are skipped with a note. YOLO weights: ``--yolo-weights``,
else the newest ``best.pt`` under ``$DEFECTLENS_PEERS_DIR/runs``, else YOLO11n-cls built untrained from
its yaml (the result says which).
"""

from __future__ import annotations

import argparse
import json
import os
import re
import subprocess
import sys
import tempfile
import time
import warnings
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from machine import describe

ROOT = Path(__file__).resolve().parents[1]
CASTING_TEST = ROOT.parent / "shared" / "datasets" / "casting" / "test"
SPEED_PEER = ROOT / "benchmarks" / "peers" / "speed_peer.py"
RESULTS = ROOT / "benchmarks" / "results"


def default_out(cpu: str) -> Path:
    """``peers-<cpu>.json``: a run on another CPU model never overwrites this one's figures.

    Example:
        >>> default_out("Intel(R) Xeon(R) Processor").name, default_out("AMD EPYC").name
        ('peers-intel-xeon.json', 'peers-amd-epyc.json')
    """
    words = re.sub(r"\(r\)|\(tm\)|processor|cpu", " ", cpu.lower())
    return RESULTS / f"peers-{'-'.join(re.findall(r'[a-z0-9]+', words)) or 'unknown'}.json"


#: Torch rows (ours and theirs) time every TORCH_SHARE-th image only: they are the slow references.
TORCH_SHARE = 4
#: How ``backend="auto"`` chose at each thread count in this run (measured afresh: the run's own cache).
CHOICES: dict[str, Any] = {}


def say(message: str) -> None:
    """Progress on stderr (stdout carries the tables)."""
    print(f"[{time.strftime('%H:%M:%S')} load {load():.2f}] {message}", file=sys.stderr, flush=True)


# -- setup -------------------------------------------------------------------------------------------


def build_bundle(folder: Path, *, smoke: bool) -> Path:
    """A random-init bundle: EfficientNet-Lite0 192 px gray (the casting recipe's network), or a 32 px
    simple_cnn for --smoke."""
    import torch

    from defectlens.core.checkpoint import save_checkpoint
    from defectlens.export import export_bundle
    from defectlens.models import create_model, default_spec

    arch, size = ("simple_cnn", 32) if smoke else ("efficientnet_lite0", 192)
    torch.manual_seed(0)
    spec = default_spec(arch, in_channels=1, input_size=size, class_names=("def_front", "ok_front"))
    spec = spec.replace(positive_class="def_front", threshold=0.5)
    save_checkpoint(folder / "best.pt", create_model(arch, num_classes=2, in_channels=1, input_size=size), spec)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # synthetic parity inputs: expected for random weights
        return export_bundle(folder, folder / "model.dlens").path


def test_images(folder: Path | None, limit: int, tmp: Path) -> list[str]:
    """The casting test JPEGs (evenly spaced, both classes), else synthetic 300 px JPEGs."""
    if folder is not None and folder.is_dir():
        files = sorted(p for p in folder.rglob("*") if p.suffix.lower() in {".jpg", ".jpeg", ".png"})
        if files:
            return [str(f) for f in files[:: max(1, len(files) // limit)][:limit]]
    from PIL import Image

    rng, out = np.random.default_rng(0), []
    for i in range(min(limit, 16)):
        img = Image.fromarray(rng.integers(0, 256, (8, 8), dtype=np.uint8)).resize((300, 300), Image.Resampling.BICUBIC)
        out.append(str(tmp / f"synthetic_{i}.jpg"))
        img.save(out[-1], quality=90)
    return out


class Peer:
    """The Ultralytics worker (speed_peer.py) in the peers virtualenv, one JSON request per line."""

    def __init__(self, python: Path, work: Path):
        env = {**os.environ, "DEFECTLENS_PEERS_DIR": str(work)}
        self.proc = subprocess.Popen(
            [str(python), str(SPEED_PEER)],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.DEVNULL,
            text=True,
            env=env,
        )

    def ask(self, **request: Any) -> dict[str, Any]:
        assert self.proc.stdin is not None and self.proc.stdout is not None
        self.proc.stdin.write(json.dumps(request) + "\n")
        self.proc.stdin.flush()
        for line in self.proc.stdout:
            if line.startswith("@@"):
                reply = json.loads(line[2:])
                if "error" in reply:
                    raise RuntimeError(f"speed_peer.py {request['cmd']}: {reply['error']}")
                return reply
        raise RuntimeError(f"speed_peer.py exited (code {self.proc.wait()})")

    def close(self) -> None:
        if self.proc.poll() is None:
            self.ask_quit()

    def ask_quit(self) -> None:
        assert self.proc.stdin is not None
        self.proc.stdin.write('{"cmd": "quit"}\n')
        self.proc.stdin.flush()
        self.proc.wait(timeout=60)


def peer_python(given: str | None) -> Path | None:
    if given:
        return Path(given) if Path(given).is_file() else None
    sys.path.insert(0, str(ROOT / "benchmarks"))
    from peer_rows import peer_python as found

    return found()


def yolo_weights(peer: Peer, given: str | None, work: Path) -> tuple[str, str]:
    """(weights, what they are)."""
    if given:
        return given, f"given: {given}"
    runs = Path(os.environ.get("DEFECTLENS_PEERS_DIR") or ROOT / "benchmarks" / "results" / "work" / "peers") / "runs"
    found = sorted(runs.rglob("best.pt"), key=lambda p: p.stat().st_mtime) if runs.is_dir() else []
    if found:
        return str(found[-1]), f"trained checkpoint {found[-1]}"
    return peer.ask(cmd="untrained", out=str(work))["weights"], "YOLO11n-cls built from yolo11n-cls.yaml, untrained"


# -- measurements -------------------------------------------------------------------------------------


def stats(ms: list[float]) -> dict[str, float]:
    a = np.asarray(ms)
    return {"p50_ms": round(float(np.percentile(a, 50)), 2), "p95_ms": round(float(np.percentile(a, 95)), 2)}


def load() -> float:
    return round(os.getloadavg()[0], 2)


def our_rows(bundle: Path, threads: tuple[int, ...]) -> dict[str, Callable[[list[str]], tuple[list[float], Any]]]:
    """Our end-to-end configurations: name -> function timing Predictor.predict on a list of paths."""
    import torch

    from defectlens.core.bundle import INT8_FILE, read_bundle
    from defectlens.inference.backends import installed_runtimes
    from defectlens.inference.predictor import Predictor

    precisions = ("fp32", "int8") if INT8_FILE in read_bundle(bundle).members else ("fp32",)
    rows: dict[str, Callable[[list[str]], tuple[list[float], Any]]] = {}
    for precision in precisions:
        for runtime in [*installed_runtimes(), "torch"]:
            if runtime == "torch" and precision == "int8":
                continue
            for t in threads:
                p = Predictor.load(bundle, backend=runtime, threads=t, precision=precision)
                rows[f"ours {p.backend} t{t}"] = _timer(p, t if runtime == "torch" else None, torch)
    for t in threads:  # as shipped: backend "auto", which times the runtimes at first load on this CPU
        p = Predictor.load(bundle, threads=t)
        rows[f"ours shipped (auto: {p.backend}) t{t}"] = _timer(p, None, torch)
        CHOICES[f"t{t}"] = p.runtime_choice
    return rows


def _timer(predictor: Any, torch_threads: int | None, torch: Any) -> Callable[[list[str]], tuple[list[float], Any]]:
    def run(paths: list[str]) -> tuple[list[float], Any]:
        if torch_threads:
            torch.set_num_threads(torch_threads)  # process-wide: the other torch row may have changed it
            paths = paths[::TORCH_SHARE]
        ms, probs = [], []
        for path in paths:
            start = time.perf_counter()
            pred = predictor.predict(path)
            ms.append((time.perf_counter() - start) * 1000.0)
            probs.append([pred.probabilities[c] for c in predictor.spec.class_names])
        return ms, np.asarray(probs)

    for _ in range(3):  # warm-up
        predictor.logits(np.zeros((1, predictor.spec.in_channels, *(predictor.spec.input_size,) * 2), np.uint8))
    return run


def end_to_end(rows: dict, peer_rows: dict, images: list[str], rounds: int) -> dict[str, Any]:
    """Every configuration on every image, alternating between configurations each round."""
    ms: dict[str, list[float]] = {name: [] for name in [*rows, *peer_rows]}
    probs: dict[str, list[Any]] = {name: [] for name in rows}
    chunks = [images[i::rounds] for i in range(rounds)]
    for fn in peer_rows.values():  # Ultralytics loads and warms up a model on its first call
        fn(images[:3])
    before = load()
    for chunk in chunks:
        for name, fn in rows.items():
            t, p = fn(chunk)
            ms[name] += t
            probs[name].append(p)
        for name, fn in peer_rows.items():
            ms[name] += fn(chunk[::TORCH_SHARE] if "torch" in name else chunk)
    out: dict[str, Any] = {"load_before": before, "load_after": load(), "images": len(images), "rounds": rounds}
    out["torch_images"] = sum(len(c[::TORCH_SHARE]) for c in chunks)
    out["rows"] = {name: stats(v) for name, v in ms.items()}
    out["parity_vs_torch"] = _parity(probs)
    return out


def _parity(probs: dict[str, list[np.ndarray]]) -> dict[str, float]:
    """Max |p - p_torch| of each of our rows over the same images, round by round (torch, at the same thread
    count, saw every TORCH_SHARE-th image of each round)."""
    out = {}
    for name, chunks in probs.items():
        ref = probs.get(f"ours torch t{name.rsplit(' t', 1)[1]}")
        if ref is not None and "torch" not in name:
            out[name] = max(float(np.abs(p[::TORCH_SHARE] - r).max()) for p, r in zip(chunks, ref, strict=True))
    return out


def model_only(graphs: dict[str, bytes], threads: tuple[int, ...], shipped: dict, repeats: int, rounds: int) -> dict:
    """Batch-1 latency of each graph under each runtime setting, interleaved; plus our Predictor as shipped."""
    configs: dict[str, Callable[[], Any]] = {}
    for gname, data in graphs.items():
        shape = _input_shape(data)
        x = np.random.default_rng(0).random((1, *shape[1:]), dtype=np.float32)
        for t in threads:
            for rname, build in RUNTIMES.items():
                run = build(data, t)
                configs[f"{gname} | {rname} t{t}"] = lambda run=run, x=x: run(x)
    for name, (predictor, one) in shipped.items():
        configs[name] = lambda p=predictor, one=one: p.logits(one)
    ms: dict[str, list[float]] = {k: [] for k in configs}
    for fn in configs.values():
        for _ in range(5):
            fn()
    before = load()
    for _ in range(rounds):
        for name, fn in configs.items():
            for _ in range(max(1, repeats // rounds)):
                start = time.perf_counter()
                fn()
                ms[name].append((time.perf_counter() - start) * 1000.0)
    return {"load_before": before, "load_after": load(), "rows": {k: stats(v) for k, v in ms.items()}}


def _input_shape(data: bytes) -> list[int]:
    import onnx

    dims = onnx.load_from_string(data).graph.input[0].type.tensor_type.shape.dim
    return [d.dim_value or 1 for d in dims]


def _ort(data: bytes, threads: int) -> Callable[[np.ndarray], Any]:
    import onnxruntime as ort

    so = ort.SessionOptions()
    so.intra_op_num_threads, so.inter_op_num_threads, so.log_severity_level = threads, 1, 3
    # Spinning stays on during a call (ONNX Runtime's default) but stops at its end: a pool left spinning
    # keeps a core busy after its call and slows whichever configuration is timed next.
    so.add_session_config_entry("session.force_spinning_stop", "1")
    s = ort.InferenceSession(data, so, providers=["CPUExecutionProvider"])
    name = s.get_inputs()[0].name
    return lambda x: s.run(None, {name: x})[0]


def _ov(precision: str | None) -> Callable[[bytes, int], Callable[[np.ndarray], Any]]:
    def build(data: bytes, threads: int) -> Callable[[np.ndarray], Any]:
        import openvino as ov

        core = ov.Core()
        cfg: dict[str, Any] = {"PERFORMANCE_HINT": "LATENCY", "INFERENCE_NUM_THREADS": threads}
        if precision:
            cfg["INFERENCE_PRECISION_HINT"] = precision
        request = core.compile_model(core.read_model(data), "CPU", cfg).create_infer_request()
        return lambda x: request.infer({0: x})[0]

    return build


RUNTIMES: dict[str, Callable[[bytes, int], Callable[[np.ndarray], Any]]] = {"onnxruntime": _ort}


def throughput(configs: dict[str, Callable[[np.ndarray], Any]], shapes: dict, sizes: tuple[int, ...], seconds: float,
               rounds: int) -> dict[str, Any]:  # fmt: skip
    """Model-only images per second at each batch size, configurations alternating each round."""
    before, out = load(), {}
    for bs in sizes:
        counts = {k: [0, 0.0] for k in configs}
        rng = np.random.default_rng(0)
        xs = {  # ours take uint8 images, as a Predictor does; the YOLO graph takes floats
            k: rng.integers(0, 256, (bs, *shapes[k]), dtype=np.uint8)
            if k.startswith("ours")
            else rng.random((bs, *shapes[k]), dtype=np.float32)
            for k in configs
        }
        for k, fn in configs.items():
            fn(xs[k])
        for _ in range(rounds):
            for k, fn in configs.items():
                start, n = time.perf_counter(), 0
                while time.perf_counter() - start < seconds / rounds:
                    fn(xs[k])
                    n += bs
                counts[k][0] += n
                counts[k][1] += time.perf_counter() - start
        out[str(bs)] = {k: round(n / s, 1) for k, (n, s) in counts.items()}
    return {"load_before": before, "load_after": load(), "img_s": out}


# -- report -------------------------------------------------------------------------------------------


def goals(result: dict[str, Any], threads: tuple[int, ...]) -> dict[str, Any]:
    """The issue's goals as ratios from this one run (None where a row is missing)."""
    e2e, mo, tp = result["end_to_end"]["rows"], result["model_only"]["rows"], result["throughput"]["img_s"]
    out: dict[str, Any] = {}
    backend = shipped_backend(result)
    graph = "int8" if backend.endswith("-int8") else "fp32"  # the graph the bundle runs by default
    for t in threads:
        peer = e2e.get(f"ultralytics onnxruntime t{t}", {}).get("p50_ms")
        for ours in dict.fromkeys(("onnxruntime", "onnxruntime-int8", "openvino-int8")):
            mine = e2e.get(f"ours {ours} t{t}", {}).get("p50_ms")
            if peer and mine:
                out[f"e2e_p50 ours {ours} / ultralytics onnx, t{t} (goal <= 0.7)"] = round(mine / peer, 2)
        for name, row in e2e.items():
            if name.startswith("ours shipped") and name.endswith(f" t{t}") and peer:
                what = name.removeprefix("ours ").rsplit(" t", 1)[0]
                out[f"e2e_p50 ours {what} / ultralytics onnx, t{t} (goal <= 0.7)"] = round(row["p50_ms"] / peer, 2)
        exact = [
            v["p50_ms"] for k, v in mo.items() if k.startswith(f"ours {graph} |") and "bf16" not in k and f"t{t}" in k
        ]
        shipped = mo.get(f"ours shipped {backend} t{t}", {}).get("p50_ms")
        if exact and shipped:
            out[f"model_only ours shipped ({backend}) / fastest exact runtime for the {graph} graph, t{t} "
                "(goal <= 1.2)"] = round(shipped / min(exact), 2)  # fmt: skip
    sizes = sorted(int(b) for b in tp)
    first, last = str(sizes[0]), str(sizes[-1])
    for k in tp[first]:
        if k.startswith("ours"):
            out[f"throughput b{last} / b{first}, {k} (goal >= 1.5)"] = round(tp[last][k] / tp[first][k], 2)
    parity = result["end_to_end"]["parity_vs_torch"]
    fp32 = {k: v for k, v in parity.items() if "int8" not in k}
    out["parity max |p - p_torch| over FP32 backends (goal <= 1e-4)"] = max(fp32.values()) if fp32 else None
    return out


def shipped_backend(result: dict[str, Any]) -> str:
    """The backend our Predictor picks by default for the bundle (``onnxruntime``, ``openvino-int8``...)."""
    rows = result["model_only"]["rows"]
    names = [k.removeprefix("ours shipped ").rsplit(" t", 1)[0] for k in rows if k.startswith("ours shipped ")]
    return names[0] if names else "onnxruntime"


def markdown(result: dict[str, Any], threads: tuple[int, ...]) -> str:
    e2e = result["end_to_end"]["rows"]
    names = sorted({k.rsplit(" t", 1)[0] for k in e2e}, key=lambda n: (not n.startswith("ours"), n))
    head = " | ".join(f"{t} thread{'s' if t > 1 else ''} p50 / p95" for t in threads)
    lines = [f"| path (end to end, one image) | {head} |", "| --- |" + " --- |" * len(threads)]
    for n in names:
        cells = [e2e.get(f"{n} t{t}") for t in threads]
        lines.append(f"| {n} | " + " | ".join(f"{c['p50_ms']} / {c['p95_ms']} ms" if c else "-" for c in cells) + " |")
    mo = result["model_only"]["rows"]
    graphs = sorted({k.split(" | ")[0] for k in mo if " | " in k})
    rts = list(dict.fromkeys(k.split(" | ")[1].rsplit(" t", 1)[0] for k in mo if " | " in k))  # RUNTIMES order
    lines += ["", "| graph (model only, batch 1, p50) | " + " | ".join(f"{r} 1 / 2 threads" for r in rts) + " |"]
    lines.append("| --- |" + " --- |" * len(rts))
    for g in graphs:
        cells = [
            " / ".join(f"{mo[f'{g} | {r} t{t}']['p50_ms']}" for t in threads if f"{g} | {r} t{t}" in mo) for r in rts
        ]
        lines.append(f"| {g} | " + " | ".join(f"{c} ms" if c else "-" for c in cells) + " |")
    backend = shipped_backend(result)
    shipped = [mo.get(f"ours shipped {backend} t{t}", {}).get("p50_ms") for t in threads]
    cells = [" / ".join(map(str, shipped)) + " ms"] + ["-"] * (len(rts) - 1)
    lines.append(f"| ours, our Predictor as shipped ({backend}) | " + " | ".join(cells) + " |")
    tp = result["throughput"]["img_s"]
    sizes = list(tp)
    lines += ["", "| images/s, model only | " + " | ".join(f"batch {b}" for b in sizes) + " |"]
    lines.append("| --- |" + " --- |" * len(sizes))
    for k in tp[sizes[0]]:
        lines.append(f"| {k} | " + " | ".join(f"{tp[b][k]:.0f}" for b in sizes) + " |")
    loads = [result[k][f] for k in ("end_to_end", "model_only", "throughput") for f in ("load_before", "load_after")]
    m = result["machine"]
    lines += [
        "",
        f"{m.get('cpu')}, {m.get('cores')} cores; load average {min(loads):.2f}-{max(loads):.2f} during the run "
        "(above about 0.3, other processes shared the cores and the 2-thread rows are not reliable).",
    ]
    if "yolo" in result:
        lines.append(f"YOLO11n-cls weights: {result['yolo']['weights']}.")
    return "\n".join(lines)


# -- main ---------------------------------------------------------------------------------------------


def parse() -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--bundle", type=Path, default=None, help="our bundle (default: random-init Lite0 192 px)")
    p.add_argument("--images", type=Path, default=CASTING_TEST, help="JPEGs timed end to end (default: casting test)")
    p.add_argument("--max-images", type=int, default=200)
    p.add_argument("--yolo-weights", default=None, help="YOLO11n-cls .pt (default: newest trained, else untrained)")
    p.add_argument("--peers-python", default=None, help="python of the peers virtualenv")
    p.add_argument("--threads", default="1,2")
    p.add_argument("--batch-sizes", default="1,8,32")
    p.add_argument("--rounds", type=int, default=5, help="times the configurations alternate")
    p.add_argument("--repeats", type=int, default=100, help="model-only batch-1 runs per configuration")
    p.add_argument("--seconds", type=float, default=1.0, help="seconds per configuration and batch size")
    p.add_argument("--out", type=Path, default=None, help="default: benchmarks/results/peers-<cpu model>.json")
    p.add_argument("--smoke", action="store_true", help="seconds: tiny model, few repeats, no Ultralytics")
    args = p.parse_args()
    if args.smoke:
        args.max_images, args.rounds, args.repeats, args.seconds, args.batch_sizes = 8, 2, 6, 0.1, "1,4"
    return args


def main() -> None:
    args = parse()
    threads = tuple(int(t) for t in args.threads.split(","))
    sizes = tuple(int(b) for b in args.batch_sizes.split(","))
    from defectlens.inference.backends import installed

    if installed("openvino"):
        RUNTIMES.update({"openvino f32": _ov("f32"), "openvino default (bf16 here)": _ov(None)})
    result: dict[str, Any] = {"command": "python benchmarks/bench_peers.py " + " ".join(sys.argv[1:]),
                              "machine": describe(), "notes": []}  # fmt: skip
    with tempfile.TemporaryDirectory() as tmp_name:
        tmp = Path(tmp_name)
        os.environ["DEFECTLENS_CACHE_DIR"] = str(tmp / "cache")  # auto measures afresh, whatever ran before
        os.environ["DEFECTLENS_AUTO_RUNTIME"] = "measure"
        bundle = args.bundle or build_bundle(tmp, smoke=args.smoke)
        result["bundle"] = {"path": str(bundle), "random_weights": args.bundle is None}
        images = test_images(args.images, args.max_images, tmp)
        result["images"] = {"folder": str(args.images), "count": len(images)}
        python = None if args.smoke else peer_python(args.peers_python)
        peer = Peer(python, tmp / "peers") if python else None
        if peer is None:
            result["notes"].append("Ultralytics rows skipped: " + ("--smoke" if args.smoke else "no peers python"))
        try:
            run_all(result, args, bundle, images, peer, tmp, threads, sizes)
        finally:
            if peer is not None:
                peer.close()
    result["auto_runtime_choice"] = CHOICES
    result["goals"] = goals(result, threads)
    result["markdown"] = markdown(result, threads)
    out = args.out or default_out(result["machine"]["cpu"])
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(result, indent=2) + "\n", encoding="utf-8")
    print(result["markdown"])
    print(json.dumps({"goals": result["goals"], "notes": result["notes"]}, indent=2))


def run_all(result: dict, args: argparse.Namespace, bundle: Path, images: list[str], peer: Peer | None, tmp: Path,
            threads: tuple[int, ...], sizes: tuple[int, ...]) -> None:  # fmt: skip
    from defectlens.core.bundle import INT8_FILE, ONNX_FILE, read_bundle
    from defectlens.inference.predictor import Predictor

    members = read_bundle(bundle).members
    graphs = {"ours fp32": members[ONNX_FILE]} | ({"ours int8": members[INT8_FILE]} if INT8_FILE in members else {})
    peer_rows: dict[str, Callable[[list[str]], list[float]]] = {}
    if peer is not None:
        say("Ultralytics: weights and ONNX exports")
        weights, what = yolo_weights(peer, args.yolo_weights, tmp / "peers")
        static = peer.ask(cmd="export", weights=weights, dynamic=False, out=str(tmp / "yolo"))["onnx"]
        dynamic = peer.ask(cmd="export", weights=weights, dynamic=True, out=str(tmp / "yolo"))["onnx"]
        result["yolo"] = {"weights": what, "onnx_static": static, "onnx_dynamic": dynamic}
        graphs["yolo11n-cls"] = Path(static).read_bytes()
        for t in threads:
            for kind, model in (("onnxruntime", static), ("torch", weights)):
                peer_rows[f"ultralytics {kind} t{t}"] = lambda paths, m=model, t=t: peer.ask(
                    cmd="latency", model=m, threads=t, images=paths
                )["ms"]
    say(f"end to end: {len(images)} images, {args.rounds} rounds")
    result["end_to_end"] = end_to_end(our_rows(bundle, threads), peer_rows, images, args.rounds)
    shipped = {}
    for t in threads:
        p = Predictor.load(bundle, threads=t)
        one = np.stack([p.preprocess(images[0])])
        shipped[f"ours shipped {p.backend} t{t}"] = (p, one)
    say(f"model only, batch 1: {len(graphs)} graphs")
    result["model_only"] = model_only(graphs, threads, shipped, args.repeats, args.rounds)
    say(f"throughput at batch {', '.join(map(str, sizes))}")
    result["throughput"] = throughput_part(result, bundle, threads, sizes, args)
    say("done")


def throughput_part(result: dict, bundle: Path, threads: tuple[int, ...], sizes: tuple[int, ...],
                    args: argparse.Namespace) -> dict[str, Any]:  # fmt: skip
    from defectlens.core.bundle import INT8_FILE, read_bundle
    from defectlens.inference.backends import installed_runtimes
    from defectlens.inference.predictor import Predictor

    t = max(threads)
    configs, shapes = {}, {}
    precisions = ("fp32", "int8") if INT8_FILE in read_bundle(bundle).members else ("fp32",)
    for precision in precisions:
        for runtime in installed_runtimes():
            p = Predictor.load(bundle, backend=runtime, threads=t, precision=precision)
            configs[f"ours {p.backend}, {t} cores"] = p.logits
            shapes[f"ours {p.backend}, {t} cores"] = (p.spec.in_channels, p.spec.input_size, p.spec.input_size)
    if "yolo" in result:
        data = Path(result["yolo"]["onnx_dynamic"]).read_bytes()
        for rname, build in RUNTIMES.items():
            if "bf16" not in rname:
                configs[f"yolo11n-cls {rname}, {t} threads"] = build(data, t)
                shapes[f"yolo11n-cls {rname}, {t} threads"] = (3, 224, 224)
    return throughput(configs, shapes, sizes, args.seconds, args.rounds)


if __name__ == "__main__":
    main()
