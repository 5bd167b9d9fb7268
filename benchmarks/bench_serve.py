"""Load benchmark of the web service: concurrent clients on loopback against ``defectlens serve``.

Starts the real server (``python -m defectlens serve``) once with micro-batching on and once with it
off, drives it with concurrent clients (one keep-alive connection each, one image per request), and
records requests per second, client-side p50/p95/p99 latency, errors, the mean model batch size
(read from ``/metrics``) and the rows in the inspection log. In the same run it measures the same
bundle's model-only throughput (``Predictor.logits`` on a batch of 32, images per second, on every
core: the best the model does here) right before and right after the batched run, and the ratio of
served to the mean of the two; and the machine's idle CPU share while each mode ran. Writes
``benchmarks/results/serve.json``.

    .venv/bin/python benchmarks/bench_serve.py BUNDLE [--clients 16] [--seconds 10] [--images DIR]
    .venv/bin/python benchmarks/bench_serve.py --random-arch efficientnet_lite0 --input-size 192 --channels 1
    .venv/bin/python benchmarks/bench_serve.py BUNDLE --rounds 3     # three batched runs; the median on top
    .venv/bin/python benchmarks/bench_serve.py BUNDLE --rate 100     # and the 16 clients paced at 100 req/s
    .venv/bin/python benchmarks/bench_serve.py BUNDLE --smoke        # a few seconds, for the tests

Images: real casting JPEGs from ../shared/datasets when present (or ``--images``), else synthetic
300 px JPEGs. Goals (issue 16, 2-core CPU): served >= 70 % of model-only throughput, p99 <= 50 ms
at 16 clients, 0 errors, every request logged.
"""

from __future__ import annotations

import argparse
import asyncio
import io
import json
import os
import shlex
import signal
import socket
import subprocess
import sys
import tempfile
import time
import warnings
from pathlib import Path
from typing import Any

import numpy as np

from machine import describe

ROOT = Path(__file__).resolve().parents[1]
CASTING = ROOT.parent / "shared" / "datasets" / "casting" / "test"


def load_images(folder: Path | None, limit: int = 64) -> list[tuple[str, bytes]]:
    """Encoded images to upload: from ``folder`` (recursively), else synthetic 300 px JPEGs."""
    if folder is not None and folder.is_dir():
        files = sorted(p for p in folder.rglob("*") if p.suffix.lower() in {".jpg", ".jpeg", ".png"})[:limit]
        if files:
            return [(p.name, p.read_bytes()) for p in files]
    from PIL import Image

    rng, out = np.random.default_rng(0), []
    for i in range(16):
        img = Image.fromarray(rng.integers(0, 256, (8, 8), dtype=np.uint8)).resize((300, 300), Image.Resampling.BICUBIC)
        buf = io.BytesIO()
        img.save(buf, "JPEG", quality=90)
        out.append((f"synthetic_{i}.jpg", buf.getvalue()))
    return out


def random_bundle(arch: str, *, input_size: int, channels: int, folder: Path) -> Path:
    """A random-init bundle of ``arch`` (speed does not depend on the weights)."""
    import torch

    from defectlens.core.checkpoint import save_checkpoint
    from defectlens.export import export_bundle
    from defectlens.models import create_model, default_spec

    torch.manual_seed(0)
    spec = default_spec(arch, in_channels=channels, input_size=input_size, class_names=("ok", "defect"))
    spec = spec.replace(positive_class="defect", threshold=0.5)
    model = create_model(arch, num_classes=2, in_channels=channels, input_size=input_size)
    save_checkpoint(folder / "best.pt", model, spec)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # random weights, synthetic parity inputs: expected here
        return export_bundle(folder, folder / "model.dlens").path


def model_only(bundle: Path, images: list[tuple[str, bytes]], seconds: float, threads: int | None) -> dict[str, Any]:
    """Images per second of ``Predictor.logits`` on a preprocessed batch of 32 (no decoding, no HTTP)."""
    from defectlens.inference.predictor import Predictor

    predictor = Predictor.load(bundle, threads=threads)
    arrays = [predictor.preprocess(data) for _, data in images]
    batch = np.stack([arrays[i % len(arrays)] for i in range(32)])
    predictor.logits(batch)  # warm-up
    n, start = 0, time.perf_counter()
    while time.perf_counter() - start < seconds:
        predictor.logits(batch)
        n += len(batch)
    return {"batch_size": 32, "img_s": round(n / (time.perf_counter() - start), 1), "model_id": predictor.model_id}


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def start_server(bundle: Path, db: Path, *, batching: bool, extra: list[str]) -> tuple[subprocess.Popen, str]:
    import httpx

    port = free_port()
    cmd = [sys.executable, "-m", "defectlens", "serve", "--model", str(bundle), "--port", str(port), "--db", str(db)]
    cmd += [*([] if batching else ["--no-batching"]), *extra]
    proc = subprocess.Popen(
        cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, env={**os.environ, "DEFECTLENS_API_KEY": ""}
    )
    url, deadline = f"http://127.0.0.1:{port}", time.monotonic() + 120
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"server exited: {proc.stderr.read().decode(errors='replace') if proc.stderr else ''}")
        try:
            if httpx.get(url + "/readyz", timeout=1).status_code == 200:
                return proc, url
        except httpx.TransportError:
            pass
        time.sleep(0.1)
    proc.kill()
    raise RuntimeError("server did not become ready in 120 s")


def multipart(name: str, data: bytes) -> tuple[bytes, str]:
    """A ``multipart/form-data`` body with one file in the ``files`` field, and its content type."""
    boundary = "defectlens-bench-boundary"
    head = f'--{boundary}\r\nContent-Disposition: form-data; name="files"; filename="{name}"\r\n'
    head += "Content-Type: image/jpeg\r\n\r\n"
    return head.encode() + data + f"\r\n--{boundary}--\r\n".encode(), f"multipart/form-data; boundary={boundary}"


def drive(
    url: str, images: list[tuple[str, bytes]], *, clients: int, seconds: float, rate: float | None = None
) -> dict[str, Any]:
    """``clients`` concurrent connections posting one image per request for ``seconds``; client-side latencies.

    Without ``rate`` each client sends its next request as soon as the answer arrives (closed loop: the
    most the service does). With ``rate`` (requests per second, all clients together) each client sends
    on a fixed schedule, like a camera on a line, its clients evenly staggered; a latency counts from
    the scheduled send time, so an answer that delays the next request is charged to that request too
    (as wrk2 does, against coordinated omission).

    The load generator is as light as wrk's, since it shares the CPU with the server it measures: one
    asyncio thread, one keep-alive connection per client, each request pre-encoded as raw HTTP bytes,
    the answer read by its Content-Length and checked (status 200, ``"ok": 1`` in the JSON). Its own CPU
    time per request is reported beside the server's.
    """
    host, port = url.removeprefix("http://").split(":")
    requests = []
    for name, data in images:
        body, content_type = multipart(name, data)
        head = f"POST /v1/predict HTTP/1.1\r\nHost: {host}:{port}\r\nContent-Type: {content_type}\r\n"
        requests.append(f"{head}Content-Length: {len(body)}\r\n\r\n".encode() + body)
    latencies: list[float] = []
    errors = 0

    async def client(k: int, stop: asyncio.Event) -> None:
        nonlocal errors
        reader, writer = await asyncio.open_connection(host, int(port))
        i, period = k, (clients / rate if rate else 0.0)
        due = origin + k * period / clients
        while not stop.is_set():
            request = requests[i % len(requests)]
            i += clients
            if rate:
                await asyncio.sleep(max(0.0, due - time.perf_counter()))
                if stop.is_set():
                    break
            t0 = due if rate else time.perf_counter()
            due += period
            try:
                writer.write(request)
                head = await reader.readuntil(b"\r\n\r\n")
                body = await reader.readexactly(content_length(head))
                ok = head[9:12] == b"200" and json.loads(body)["ok"] == 1
            except (OSError, ValueError, KeyError, asyncio.IncompleteReadError, asyncio.LimitOverrunError):
                writer.close()
                reader, writer = await asyncio.open_connection(host, int(port))
                ok = False
            latencies.append((time.perf_counter() - t0) * 1000.0)
            errors += 0 if ok else 1
        writer.close()

    origin = 0.0

    async def run() -> float:
        nonlocal origin
        origin = time.perf_counter() + 0.05
        stop = asyncio.Event()
        tasks = [asyncio.create_task(client(k, stop)) for k in range(clients)]
        start = time.perf_counter()
        await asyncio.sleep(seconds)
        stop.set()
        await asyncio.gather(*tasks)
        return time.perf_counter() - start

    cpu, idle = time.process_time(), machine_idle()
    elapsed = asyncio.run(run())
    cpu, idle = time.process_time() - cpu, machine_idle(idle)
    flat = np.asarray(latencies)
    pct = {f"p{q}_ms": round(float(np.percentile(flat, q)), 2) for q in (50, 95, 99)} if len(flat) else {}
    per_request = round(cpu * 1000.0 / len(flat), 2) if len(flat) else None
    return {"requests": len(flat), "errors": errors, "req_s": round(len(flat) / elapsed, 1), **pct,
            "client_cpu_ms_per_request": per_request, "cpu_idle": idle,
            **({"offered_req_s": rate} if rate else {})}  # fmt: skip


def machine_idle(since: tuple[int, int] | None = None) -> Any:
    """The machine's idle CPU share since ``since`` (Linux ``/proc/stat``), or the counters to start from.

    Called without ``since``: returns (idle, total) jiffies (None off Linux). With the earlier counters:
    the fraction of all cores' time spent idle in between, or None.
    """
    try:
        fields = [int(v) for v in Path("/proc/stat").read_text().splitlines()[0].split()[1:]]
    except (OSError, ValueError, IndexError):
        return None
    now = (fields[3] + fields[4], sum(fields[:8]))  # idle + iowait, of user..steal
    if since is None:
        return now
    total = now[1] - since[1]
    return round((now[0] - since[0]) / total, 3) if total > 0 else None


def content_length(head: bytes) -> int:
    """The Content-Length of a response head (ValueError when it has none)."""
    for line in head.split(b"\r\n")[1:]:
        name, _, value = line.partition(b":")
        if name.strip().lower() == b"content-length":
            return int(value)
    raise ValueError("response without Content-Length")


def scrape(url: str) -> dict[str, Any]:
    """Mean model batch size from ``/metrics`` and the log's row count from ``/v1/inspections``."""
    import httpx

    text = httpx.get(url + "/metrics", timeout=10).text
    values = {}
    for line in text.splitlines():
        if line.startswith(("defectlens_batch_size_sum", "defectlens_batch_size_count")):
            name, value = line.split()
            values[name] = float(value)
    count = values.get("defectlens_batch_size_count", 0.0)
    rows = httpx.get(url + "/v1/inspections", params={"limit": 1}, timeout=10).json()["total"]
    return {
        "mean_batch_size": round(values["defectlens_batch_size_sum"] / count, 2) if count else None,
        "rows_logged": rows,
    }


def cpu_seconds(pid: int) -> float:
    """User + system CPU time of a process so far (Linux ``/proc``; 0 elsewhere)."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return 0.0
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def http_stack() -> dict[str, str]:
    """The HTTP parser and event loop uvicorn picks in this Python (its "auto": the C ones when installed)."""
    import importlib.util

    def have(module: str) -> bool:
        return importlib.util.find_spec(module) is not None

    return {"http": "httptools" if have("httptools") else "h11", "loop": "uvloop" if have("uvloop") else "asyncio"}


def run_mode(
    bundle: Path, images, *, batching: bool, clients: int, seconds: float, extra: list[str], tmp: Path,
    rate: float | None = None,
):  # fmt: skip
    db = tmp / f"log_{'batched' if batching else 'unbatched'}.sqlite"
    proc, url = start_server(bundle, db, batching=batching, extra=extra)
    try:
        drive(url, images, clients=clients, seconds=min(1.0, seconds / 4))  # warm-up (counted in the log)
        before, cpu_before = scrape(url)["rows_logged"], cpu_seconds(proc.pid)
        result = drive(url, images, clients=clients, seconds=seconds, rate=rate)
        cpu = cpu_seconds(proc.pid) - cpu_before
        scraped = scrape(url)
    finally:
        proc.send_signal(signal.SIGTERM)
        proc.wait(timeout=60)
    logged = scraped["rows_logged"] - before
    per_request = round(cpu * 1000.0 / result["requests"], 2) if result["requests"] else None
    return {**result, "mean_batch_size": scraped["mean_batch_size"], "rows_logged": logged,
            "server_cpu_ms_per_request": per_request,
            "every_request_logged": logged == result["requests"]}  # fmt: skip


def main(argv: list[str] | None = None) -> dict[str, Any]:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("bundle", nargs="?", type=Path, help="model bundle to serve")
    parser.add_argument("--random-arch", help="instead of BUNDLE: a random-init bundle of this architecture")
    parser.add_argument("--input-size", type=int, default=None)
    parser.add_argument("--channels", type=int, default=1)
    parser.add_argument("--clients", type=int, default=16)
    parser.add_argument("--seconds", type=float, default=10.0)
    parser.add_argument("--images", type=Path, default=CASTING)
    parser.add_argument("--server-args", default="", help="extra 'defectlens serve' flags, e.g. '--threads 2'")
    parser.add_argument("--rounds", type=int, default=1, help="batched runs, each between two model-only runs")
    parser.add_argument("--rate", type=float, action="append", default=[], metavar="REQ_S",
                        help="also run the clients on a fixed schedule at this total rate (repeatable)")  # fmt: skip
    parser.add_argument("--smoke", action="store_true", help="a few seconds: 4 clients, 1.5 s per mode")
    parser.add_argument("--out", type=Path, default=ROOT / "benchmarks" / "results" / "serve.json")
    args = parser.parse_args(argv)
    args.argv = sys.argv[1:] if argv is None else list(argv)
    if args.smoke:
        args.clients, args.seconds = 4, 1.5
    if (args.bundle is None) == (args.random_arch is None):
        parser.error("give a BUNDLE or --random-arch ARCH")
    if args.rounds < 1:
        parser.error(f"--rounds must be at least 1, got {args.rounds}")
    if any(rate <= 0 for rate in args.rate):
        parser.error(f"--rate must be above 0 requests per second, got {args.rate}")
    machine = describe()
    images = load_images(args.images)
    with tempfile.TemporaryDirectory() as tmp_name:
        tmp = Path(tmp_name)
        bundle = args.bundle or random_bundle(
            args.random_arch, input_size=args.input_size, channels=args.channels, folder=tmp
        )
        extra = args.server_args.split()
        threads = int(extra[extra.index("--threads") + 1]) if "--threads" in extra else None  # as the server runs
        base_seconds = 0.5 if args.smoke else 5.0
        mode = {"clients": args.clients, "seconds": args.seconds, "extra": extra, "tmp": tmp}
        rounds = []
        for _ in range(args.rounds):
            # Model-only right before and right after the batched run, so the ratio compares the two under
            # the same machine conditions (this shared VM's speed drifts by several per cent over minutes).
            before = model_only(bundle, images, seconds=base_seconds, threads=threads)
            on = run_mode(bundle, images, batching=True, **mode)
            after = model_only(bundle, images, seconds=base_seconds, threads=threads)
            base = {**before, "img_s": round((before["img_s"] + after["img_s"]) / 2, 1),
                    "img_s_before": before["img_s"], "img_s_after": after["img_s"]}  # fmt: skip
            rounds.append((on, base))
        off = run_mode(bundle, images, batching=False, **mode)
        paced = [run_mode(bundle, images, batching=True, rate=rate, **mode) for rate in args.rate]
    result = summarise(args, rounds, off, machine, images)
    if paced:
        result["at_line_rate"] = paced
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=2) + "\n", encoding="utf-8")
    print(json.dumps(result, indent=2))
    return result


def summarise(args, rounds: list[tuple[dict[str, Any], dict[str, Any]]], off: dict[str, Any], machine, images):
    """The JSON record: every round's figures and goals, the round with the median ratio at the top level."""

    def ratio(on: dict[str, Any], base: dict[str, Any]) -> float | None:
        return round(on["req_s"] / base["img_s"], 3) if base["img_s"] else None

    def goals(on: dict[str, Any], base: dict[str, Any]) -> dict[str, bool]:
        r = ratio(on, base)
        return {
            "served>=0.7*model_only": r is not None and r >= 0.7,
            "p99<=50ms": on.get("p99_ms", 1e9) <= 50.0,
            "zero_errors": on["errors"] == 0,
            "every_request_logged": on["every_request_logged"],
        }

    ordered = sorted(rounds, key=lambda r: ratio(*r) or 0.0)
    on, base = ordered[(len(ordered) - 1) // 2]  # the median round (the lower middle one for an even count)
    each = [{"served_req_s": o["req_s"], "p99_ms": o.get("p99_ms"), "model_only_img_s": b["img_s"],
             "served_over_model_only": ratio(o, b), "cpu_idle": o.get("cpu_idle"),
             "server_cpu_ms_per_request": o["server_cpu_ms_per_request"], "goals": goals(o, b)}
            for o, b in rounds]  # fmt: skip
    modes = {"batching_on": on, "batching_off": off}
    return {
        "command": "python benchmarks/bench_serve.py " + shlex.join(args.argv),
        "model": str(args.bundle) if args.bundle else f"random-init {args.random_arch} (speed only)",
        "model_id": base["model_id"],
        "images": "casting test JPEGs" if args.images == CASTING and CASTING.is_dir() else f"{len(images)} images",
        "clients": args.clients,
        "seconds_per_mode": args.seconds,
        "smoke": args.smoke,
        **modes,
        "model_only": base,
        "served_over_model_only": ratio(on, base),
        "batching_speedup": round(on["req_s"] / off["req_s"], 2) if off["req_s"] else None,
        "goals": goals(on, base),
        "rounds": each,
        "rounds_meeting_each_goal": {g: sum(r["goals"][g] for r in each) for g in goals(on, base)},
        "machine": {**machine, "load_average_at_end": list(os.getloadavg())},
        "server_args": args.server_args,
        "http_stack": http_stack(),
        "note": "clients share the CPU with the server (client_cpu_ms_per_request: their cost); load averages tell "
        "whether other work shared it too, and "
        "server_cpu_ms_per_request is the server's own CPU cost, whatever the load",
    }


if __name__ == "__main__":
    main()
