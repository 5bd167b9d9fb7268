"""The line station under a simulated line (issue 27): latency to the MES and the PLC, drops, CPU share.

Runs ``defectlens line --config station.yaml`` as a subprocess, as on a line PC, with the casting recipe's
INT8 bundle (the gate on), a hot folder as the source and two sinks: MQTT (a Mosquitto this script starts
on loopback) and OPC UA (an asyncua client in this process plays the PLC: it subscribes to ResultsValid,
reads InspectionId when it rises, and acknowledges each result with the four-phase ResultsAck handshake).
The queue policy is ``drop``, so a part the station cannot take is logged as dropped, never held back.

Per offered rate (parts/s), a feeder writes the casting test JPEGs into the hot folder on a fixed
schedule (write and close; the close is time zero, ``time.time()`` in the feeder) and records:

- file closed -> the result's message received by an MQTT subscriber, p50/p95/p99 (ms);
- file closed -> ResultsValid with that InspectionId seen by the PLC, p50/p95/p99 (ms); the PLC's
  subscription publishes every ``--plc-interval-ms`` (10 ms, a PLC's cycle), which the latency includes;
- frames dropped (logged as ``dropped``), results the PLC's FIFO refused (``ResultsOverrun``), and
  **silent drops**: files fed that are neither in the inspection log nor still waiting in the folder,
  plus logged results with no MQTT message (expected 0);
- the station process's CPU (cores used, ms per part) from ``/proc/<pid>/stat``, and the machine's idle share.

Dropped frames are counted, not timed: the latencies are those of the frames the model saw. Then an
overload run (``--overload`` parts/s, 200 by default) measures the station's throughput with more parts
than it can take, and the highest sustained rate is bisected between the best sustained fixed rate and
that throughput (sustained: nothing dropped, no silent drop, p99 to MQTT at most 1 s). Last, the GenICam
simulator (``genicam``'s ``viky.cti``) in free run at each ``--genicam-fps``: camera frame -> MQTT latency
(from the message's ``captured_utc``, millisecond resolution) and drops.

    .venv/bin/python benchmarks/bench_line.py                   # rates 10 25 50, 20 s each; about 5 minutes
    .venv/bin/python benchmarks/bench_line.py --quick           # 3 s per run, one search step
    .venv/bin/python benchmarks/bench_line.py --bundle B.dlens --images DIR --out /tmp/line.json

Needs the ``line`` and ``camera`` extras and ``mosquitto`` (``make sysdeps``). Images: the casting test
split from ``../shared/datasets`` (or ``--images``); without them the script says so and writes nothing.
Goals (issue 27, 2-core CPU): p99 <= 50 ms at 25 parts/s; above the sustainable rate every frame
accounted for (decided or logged as dropped), zero silent drops.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import math
import os
import shlex
import shutil
import signal
import socket
import sqlite3
import subprocess
import sys
import tempfile
import threading
import time
from collections import Counter
from datetime import datetime
from pathlib import Path
from typing import Any

import numpy as np
import yaml

from machine import describe

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "benchmarks" / "results"
CASTING = ROOT.parent / "shared" / "datasets" / "casting" / "test"
BUNDLE = RESULTS / "work" / "line" / "casting-int8.dlens"
STATION = "bench"
PREFIX = "bench"
SUSTAINED_P99_MS = 1000.0  # a run keeps up when nothing is dropped and the tail stays under this
GOAL_P99_MS, GOAL_RATE = 50.0, 25.0
IMAGE_SUFFIXES = {".jpg", ".jpeg", ".png", ".bmp"}


# -- the pieces: broker, MES, PLC, station ---------------------------------------------------------------------------


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def mosquitto() -> str | None:
    return shutil.which("mosquitto") or shutil.which("mosquitto", path="/usr/sbin:/usr/local/sbin")


class Broker:
    """Mosquitto on 127.0.0.1 (anonymous, no persistence) on a free port."""

    def __init__(self, folder: Path):
        self.port = free_port()
        conf = folder / "mosquitto.conf"
        conf.write_text(f"listener {self.port} 127.0.0.1\nallow_anonymous true\npersistence false\nuser root\n")
        with (folder / "mosquitto.log").open("ab") as logfile:
            self.proc = subprocess.Popen([mosquitto() or "mosquitto", "-c", str(conf)], stderr=logfile)
        deadline = time.monotonic() + 30
        while True:
            try:
                socket.create_connection(("127.0.0.1", self.port), timeout=1).close()
                return
            except OSError:
                if self.proc.poll() is not None or time.monotonic() > deadline:
                    raise RuntimeError(f"mosquitto did not start; see {folder / 'mosquitto.log'}") from None
                time.sleep(0.05)

    def stop(self) -> None:
        self.proc.terminate()
        self.proc.wait(timeout=30)


class Mes:
    """A paho subscriber on the station's result topic: (receive time, payload) of every message."""

    def __init__(self, port: int):
        import paho.mqtt.client as mqtt

        self.messages: list[tuple[float, dict[str, Any]]] = []
        self.lock, subscribed = threading.Lock(), threading.Event()
        self.client = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, protocol=mqtt.MQTTv311)
        self.client.on_connect = lambda c, *_: c.subscribe(f"{PREFIX}/{STATION}/result", qos=1)
        self.client.on_subscribe = lambda *_: subscribed.set()
        self.client.on_message = self._on_message
        self.client.connect("127.0.0.1", port)
        self.client.loop_start()
        if not subscribed.wait(30):
            raise RuntimeError("the MQTT subscriber did not subscribe within 30 s")

    def _on_message(self, client: Any, userdata: Any, message: Any) -> None:
        now = time.time()
        with self.lock:
            self.messages.append((now, json.loads(message.payload)))

    def received(self) -> list[tuple[float, dict[str, Any]]]:
        with self.lock:
            return list(self.messages)

    def close(self) -> None:
        self.client.disconnect()
        self.client.loop_stop()


class Plc:
    """asyncua's client as the PLC, on its own thread: sees each ResultsValid, reads InspectionId, acks it."""

    def __init__(self, url: str, interval_ms: float):
        self.url, self.interval_ms = url, interval_ms
        self.seen: list[tuple[int, float]] = []  # (inspection id, time ResultsValid was seen)
        self.ready, self.stop = threading.Event(), threading.Event()
        self.error: BaseException | None = None
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_until_complete, args=(self._run(),), daemon=True)
        self.thread.start()
        if not self.ready.wait(60):
            raise RuntimeError(f"the PLC could not connect to {url}: {self.error}")

    async def _run(self) -> None:
        from asyncua import Client

        from defectlens.line.opcua import NAMESPACE

        try:
            self.client = Client(self.url, timeout=10)
            await self.client.connect()
            ns = await self.client.get_namespace_index(NAMESPACE)
            self.node = lambda name: self.client.get_node(f"ns={ns};s={STATION}.{name}")
            changes: asyncio.Queue[tuple[bool, float]] = asyncio.Queue()

            class Handler:
                def datachange_notification(self, node: Any, value: Any, data: Any) -> None:
                    changes.put_nowait((bool(value), time.time()))

            sub = await self.client.create_subscription(self.interval_ms, Handler())
            await sub.subscribe_data_change(self.node("ResultsValid"))
            await self.node("ResultsAck").write_value(False)
        except BaseException as exc:
            self.error = exc
            raise
        self.ready.set()
        try:
            await self._handshake(changes)
        finally:
            await self.client.disconnect()

    async def _handshake(self, changes: asyncio.Queue[tuple[bool, float]]) -> None:
        ack = self.node("ResultsAck")
        while not self.stop.is_set():
            try:
                valid, seen_at = await asyncio.wait_for(changes.get(), 0.2)
            except asyncio.TimeoutError:
                continue
            if valid:
                self.seen.append((int(await self.node("InspectionId").read_value()), seen_at))
            await ack.write_value(valid)  # rising: take it; falling: ready for the next one

    def read(self, *names: str) -> dict[str, Any]:
        async def values() -> dict[str, Any]:
            return {n: await self.node(n).read_value() for n in names}

        return asyncio.run_coroutine_threadsafe(values(), self.loop).result(30)

    def close(self) -> None:
        self.stop.set()
        self.thread.join(30)


def cpu_seconds(pid: int) -> float:
    """User + system CPU time of a process so far (Linux ``/proc``; 0 elsewhere)."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return 0.0
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def machine_idle(since: tuple[int, int] | None = None) -> Any:
    """(idle, total) jiffies of ``/proc/stat``; with ``since``, the idle share of all cores in between."""
    try:
        fields = [int(v) for v in Path("/proc/stat").read_text().splitlines()[0].split()[1:]]
    except (OSError, ValueError, IndexError):
        return None
    now = (fields[3] + fields[4], sum(fields[:8]))
    if since is None:
        return now
    total = now[1] - since[1]
    return round((now[0] - since[0]) / total, 3) if total > 0 else None


class StationProcess:
    """``defectlens line --config station.yaml`` in ``folder``; its events in ``events.log``."""

    def __init__(self, folder: Path, config: dict[str, Any]):
        self.folder, self.events = folder, folder / "events.log"
        (folder / "station.yaml").write_text(yaml.safe_dump(config, sort_keys=False))
        cmd = [sys.executable, "-m", "defectlens", "line", "--config", "station.yaml", "--event-log", "events.log"]
        env = {**os.environ, "PYTHONPATH": str(ROOT / "src")}
        with (folder / "stderr.log").open("wb") as err:  # a file, not a pipe: a full pipe would stall the station
            self.proc = subprocess.Popen(cmd, cwd=folder, env=env, stdout=subprocess.DEVNULL, stderr=err)
        deadline = time.monotonic() + 180
        while not (self.events.exists() and " started " in self.events.read_text()):
            if self.proc.poll() is not None or time.monotonic() > deadline:
                self.proc.kill()
                text = (folder / "stderr.log").read_text(errors="replace")[-2000:]
                raise RuntimeError(f"the station did not start (exit {self.proc.wait()}): {text}")
            time.sleep(0.1)

    def cpu(self) -> float:
        return cpu_seconds(self.proc.pid)

    def stop(self) -> int:
        """SIGTERM: the station drains and exits (0 expected)."""
        self.proc.send_signal(signal.SIGTERM)
        try:
            return self.proc.wait(120)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            return self.proc.wait()

    def rows(self) -> list[tuple[int, str, str]]:
        """(id, file name, status) of every row the station logged so far."""
        log = self.folder / "log.sqlite"
        if not log.exists():
            return []
        try:
            with sqlite3.connect(f"file:{log}?mode=ro", uri=True, timeout=30) as db:
                query = "SELECT id, client_name, status FROM inspections WHERE station = ? ORDER BY id"
                return [(int(i), str(n), str(s)) for i, n, s in db.execute(query, (STATION,))]
        except sqlite3.OperationalError:  # created, not yet migrated
            return []


def station_config(bundle: Path, source: dict[str, Any], sinks: list[dict[str, Any]], queue: int) -> dict[str, Any]:
    return {"station": STATION, "model": str(bundle), "gate": "refuse", "log": "log.sqlite",
            "queue": {"size": queue, "policy": "drop"}, "source": source, "sinks": sinks}  # fmt: skip


def mqtt_sink(port: int) -> dict[str, Any]:
    return {"type": "mqtt", "host": "127.0.0.1", "port": port, "topic_prefix": PREFIX, "outbox": "outbox.sqlite"}


# -- measuring -------------------------------------------------------------------------------------------------------


def percentiles(values: list[float]) -> dict[str, float | int | None]:
    if not values:
        return {"n": 0, "p50_ms": None, "p95_ms": None, "p99_ms": None, "max_ms": None}
    flat = np.asarray(values)
    out: dict[str, float | int | None] = {"n": len(values)}
    out.update({f"p{q}_ms": round(float(np.percentile(flat, q)), 1) for q in (50, 95, 99)})
    out["max_ms"] = round(float(flat.max()), 1)
    return out


def feed(inbox: Path, images: list[tuple[str, bytes]], *, rate: float, seconds: float, prefix: str):
    """Write ``rate`` files a second into ``inbox`` for ``seconds``, each on its schedule; (name, closed_at)."""
    fed: list[tuple[str, float]] = []
    count = max(1, round(rate * seconds))
    start = time.perf_counter() + 0.05
    for i in range(count):
        delay = start + i / rate - time.perf_counter()
        if delay > 0:
            time.sleep(delay)
        src_name, data = images[i % len(images)]
        name = f"{prefix}-{i:05d}-{src_name}"
        with (inbox / name).open("wb") as f:
            f.write(data)
        fed.append((name, time.time()))  # closed: the hot folder's moment zero
    return fed


def wait_for(condition: Any, timeout: float, idle: float = 15.0) -> bool:
    """Poll ``condition()`` (a count, or True) until True; give up after ``timeout``, or ``idle`` s without progress."""
    deadline, last, progress_at = time.monotonic() + timeout, None, time.monotonic()
    while time.monotonic() < deadline:
        value = condition()
        if value is True:
            return True
        if value != last:
            last, progress_at = value, time.monotonic()
        elif time.monotonic() - progress_at > idle:
            return False
        time.sleep(0.1)
    return False


def folder_run(rate: float, *, bundle: Path, images, seconds: float, broker: Broker, work: Path, args) -> dict:
    """One station on a hot folder at ``rate`` parts/s: latencies, drops, silent drops, CPU."""
    folder = work / f"folder-{rate:g}-{time.monotonic_ns()}"
    inbox = folder / "in"
    inbox.mkdir(parents=True)
    opc_port = free_port()
    url = f"opc.tcp://127.0.0.1:{opc_port}/defectlens"
    sinks = [mqtt_sink(broker.port), {"type": "opcua", "endpoint": url, "queue_size": args.plc_fifo}]
    station = StationProcess(folder, station_config(bundle, {"type": "folder", "path": "in"}, sinks, args.queue))
    mes, plc = Mes(broker.port), Plc(url, args.plc_interval_ms)
    try:
        warm = feed(inbox, images, rate=5, seconds=1, prefix="warm")  # the model's first calls are slower
        wait_for(lambda: len(mes.received()) >= len(warm) or len(mes.received()), 60)
        time.sleep(0.5)
        load, cpu0, idle0, t0 = os.getloadavg()[0], station.cpu(), machine_idle(), time.perf_counter()
        fed = feed(inbox, images, rate=rate, seconds=seconds, prefix=f"r{rate:g}")
        names = {n for n, _ in fed}
        wait_for(lambda: sum(n in names for _, n, _ in station.rows()) >= len(fed) or
                 sum(n in names for _, n, _ in station.rows()), timeout=seconds * 4 + 60)  # fmt: skip
        logged = {n for _, n, _ in station.rows()}
        wait_for(lambda: len({m["file"] for _, m in mes.received()} & logged) >= len(names & logged), timeout=30)
        wall, cpu, idle = time.perf_counter() - t0, station.cpu() - cpu0, machine_idle(idle0)
        wait_for(lambda: plc.read("ResultsPending", "ResultsValid") == {"ResultsPending": 0, "ResultsValid": False},
                 timeout=30, idle=10)  # fmt: skip
        opc = plc.read("ResultCounter", "ResultsOverrun", "ResultsPending")
    finally:
        plc.close()
        rc = station.stop()
        mes.close()
    rows = station.rows()
    waiting = sorted(p.name for p in inbox.iterdir() if p.is_file() and p.name in names)
    result = account(fed, rows, mes.received(), plc.seen, waiting)
    result.update(offered_parts_s=rate, seconds=seconds, exit_code=rc, opcua_server=opc, load_average_1m=round(load, 2),
                  machine_idle=idle, station_cpu_cores=round(cpu / wall, 3) if wall else None,
                  station_cpu_ms_per_part=round(cpu * 1000 / len(fed), 2) if fed else None)  # fmt: skip
    return result


def account(fed, rows, messages, seen, waiting) -> dict[str, Any]:
    """Every fed file against the log, MQTT and the PLC; latencies of the frames the model saw."""
    closed = dict(fed)
    mine = [(i, n, s) for i, n, s in rows if n in closed]
    statuses = Counter(s for _, _, s in mine)
    name_of = {i: n for i, n, _ in mine}
    status_of = {n: s for _, n, s in mine}
    first_msg: dict[str, float] = {}
    for received, payload in messages:
        if payload.get("file") in closed:
            first_msg.setdefault(payload["file"], received)
    repeats = sum(1 for _, p in messages if p.get("file") in closed) - len(first_msg)
    mqtt_ms = [(t - closed[n]) * 1000 for n, t in first_msg.items() if status_of.get(n) != "dropped"]
    plc_seen = [(name_of[i], t) for i, t in seen if i in name_of]
    opc_ms = [(t - closed[n]) * 1000 for n, t in plc_seen if status_of.get(n) != "dropped"]
    logged_names = {n for _, n, _ in mine}
    silent = len(closed) - len(logged_names) - len(waiting)
    decided = sum(v for k, v in statuses.items() if k != "dropped")
    span = (max(first_msg.values()) - min(closed.values())) if first_msg else 0.0
    return {
        "fed": len(closed),
        "logged": len(mine),
        "statuses": dict(sorted(statuses.items())),
        "dropped": statuses.get("dropped", 0),
        "waiting_in_folder": len(waiting),
        "silent_drops": silent + len(logged_names - set(first_msg)),
        "not_in_log": silent,
        "logged_without_mqtt": len(logged_names - set(first_msg)),
        "duplicate_rows": len(mine) - len(logged_names),
        "mqtt_repeats": repeats,
        "mqtt": percentiles(mqtt_ms),
        "opcua": percentiles(opc_ms),
        "plc_acked": len(plc_seen),
        "decided_parts_s": round(decided / span, 1) if span > 0 else None,
    }


def sustained(run: dict[str, Any]) -> bool:
    p99 = run["mqtt"]["p99_ms"]
    return run["dropped"] == 0 and run["silent_drops"] == 0 and p99 is not None and p99 <= SUSTAINED_P99_MS


def search(throughput: float | None, *, steps: int, fixed: list[dict[str, Any]], run_at) -> dict[str, Any]:
    """Bisect between the highest sustained fixed rate and the overload throughput, ``steps`` runs at most."""
    ok = [r["offered_parts_s"] for r in fixed if sustained(r)]
    lo, hi = max(ok, default=0.0), math.floor(throughput or 0.0)
    tried: list[dict[str, Any]] = []
    while len(tried) < steps and hi - lo > max(2.0, 0.05 * lo):
        rate = math.floor((lo + hi) / 2)
        run = run_at(rate)
        tried.append(run)
        lo, hi = (rate, hi) if sustained(run) else (lo, rate)
    return {"steps": tried, "highest_sustained_parts_s": lo or None, "upper_bound_parts_s": hi or None}


def genicam_run(fps: float, *, bundle: Path, seconds: float, broker: Broker, work: Path, args) -> dict[str, Any]:
    """The GenICam simulator in free run at ``fps``: camera frame -> MQTT latency, drops, CPU."""
    import genicam

    folder = work / f"genicam-{fps:g}"
    folder.mkdir(parents=True)
    cti = Path(genicam.__file__).parent / "viky.cti"
    source = {"type": "genicam", "cti": str(cti), "serial": "0", "pixel_format": "Mono8",
              "features": {"AcquisitionFrameRate": float(fps), "Width": 400, "Height": 400}}  # fmt: skip
    station = StationProcess(folder, station_config(bundle, source, [mqtt_sink(broker.port)], args.queue))
    mes = Mes(broker.port)
    try:
        wait_for(lambda: len(mes.received()) >= 3, 60)  # warm-up: the first frames are not counted
        first_id = max((p["inspection_id"] or 0) for _, p in mes.received())
        load, cpu0, idle0, t0 = os.getloadavg()[0], station.cpu(), machine_idle(), time.perf_counter()
        time.sleep(seconds)
        wall, cpu, idle = time.perf_counter() - t0, station.cpu() - cpu0, machine_idle(idle0)
        in_window = len([r for r in station.rows() if r[0] > first_id])
    finally:
        rc = station.stop()
    rows = station.rows()
    time.sleep(0.5)
    mes.close()
    got = {p["file"]: (t, p) for t, p in mes.received() if (p["inspection_id"] or 0) > first_id}
    latencies = [(t - datetime.fromisoformat(p["captured_utc"]).timestamp()) * 1000 for t, p in got.values()
                 if p["status"] != "dropped"]  # fmt: skip
    statuses = Counter(s for i, _, s in rows if i > first_id)
    numbers = {int(n.rsplit("-", 1)[1]) for _, n, _ in rows}  # the source numbers its frames from 000000
    unlogged = max(numbers, default=-1) + 1 - len(numbers)
    no_mqtt = len({n for i, n, _ in rows if i > first_id} - set(got))
    return {"fps": fps, "seconds": seconds, "exit_code": rc, "frames_per_s": round(in_window / wall, 1),
            "frames_logged": len(rows), "statuses": dict(sorted(statuses.items())),
            "dropped": statuses.get("dropped", 0),
            "silent_drops": unlogged + no_mqtt, "frames_numbered_not_logged": unlogged, "logged_without_mqtt": no_mqtt,
            "mqtt": percentiles(latencies), "load_average_1m": round(load, 2), "machine_idle": idle,
            "station_cpu_cores": round(cpu / wall, 3)}  # fmt: skip


# -- the record ----------------------------------------------------------------------------------------------------


def load_images(folder: Path, limit: int) -> list[tuple[str, bytes]]:
    files = sorted(p for p in folder.rglob("*") if p.suffix.lower() in IMAGE_SUFFIXES)[:limit]
    return [(p.name, p.read_bytes()) for p in files]


def table(result: dict[str, Any]) -> str:
    lines = ["offered/s  fed  dropped  silent  MQTT p50/p95/p99 ms   OPC UA p50/p95/p99 ms  PLC overrun  CPU cores"]
    for r in [*result["rates"], result["overload"], *result["sustainable"]["steps"]]:
        m, o = r["mqtt"], r["opcua"]
        lines.append(f"{r['offered_parts_s']:>9g} {r['fed']:>4} {r['dropped']:>8} {r['silent_drops']:>7}  "
                     f"{m['p50_ms']}/{m['p95_ms']}/{m['p99_ms']:<12} {o['p50_ms']}/{o['p95_ms']}/{o['p99_ms']:<12} "
                     f"{r['opcua_server'].get('ResultsOverrun')!s:>10}  {r['station_cpu_cores']}")  # fmt: skip
    for g in result["genicam"]:
        m = g["mqtt"]
        lines.append(f"genicam {g['fps']:g} fps: {g['frames_per_s']} frames/s logged, dropped {g['dropped']}, "
                     f"silent {g['silent_drops']}, "
                     f"capture->MQTT p50/p95/p99 {m['p50_ms']}/{m['p95_ms']}/{m['p99_ms']} ms")  # fmt: skip
    lines.append(f"highest sustained: {result['sustainable']['highest_sustained_parts_s']} parts/s; "
                 f"goals: {result['goals']}")  # fmt: skip
    return "\n".join(lines)


def goals(rates: list[dict[str, Any]], everything: list[dict[str, Any]]) -> dict[str, Any]:
    at = [r for r in rates if r["offered_parts_s"] == GOAL_RATE]
    return {
        "p99<=50ms_at_25_parts_s_mqtt": bool(at) and (at[0]["mqtt"]["p99_ms"] or 1e9) <= GOAL_P99_MS,
        "p99<=50ms_at_25_parts_s_opcua": bool(at) and (at[0]["opcua"]["p99_ms"] or 1e9) <= GOAL_P99_MS,
        "zero_silent_drops": all(r["silent_drops"] == 0 for r in everything),
        "silent_drops_total": sum(r["silent_drops"] for r in everything),
    }


def get_args_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--out", type=Path, default=RESULTS / "line.json")
    p.add_argument("--bundle", type=Path, default=BUNDLE, help="the model bundle (default: the casting INT8 one)")
    p.add_argument("--images", type=Path, default=CASTING, help="images to feed (default: the casting test split)")
    p.add_argument("--rates", type=float, nargs="+", default=[10.0, 25.0, 50.0], help="offered parts/s")
    p.add_argument("--overload", type=float, default=200.0, help="parts/s of the overload run")
    p.add_argument("--genicam-fps", type=float, nargs="*", default=[10.0, 20.0], help="free-run rates (none: skip)")
    p.add_argument("--seconds", type=float, default=None, help="seconds of feed per run (default 20; --quick 3)")
    p.add_argument("--search-steps", type=int, default=None, help="runs looking for the sustained rate (3; --quick 1)")
    p.add_argument("--queue", type=int, default=8, help="the station's queue size (policy drop)")
    p.add_argument("--plc-interval-ms", type=float, default=10.0, help="the PLC's subscription publishing interval")
    p.add_argument("--plc-fifo", type=int, default=32, help="the OPC UA sink's result FIFO (queue_size)")
    p.add_argument("--quick", action="store_true", help="3 s per run, one search step: for the smoke test")
    return p


def main(argv: list[str] | None = None) -> dict[str, Any]:
    args = get_args_parser().parse_args(argv)
    args.seconds = args.seconds or (3.0 if args.quick else 20.0)
    args.search_steps = args.search_steps if args.search_steps is not None else (1 if args.quick else 3)
    if not args.bundle.is_file():
        sys.exit(f"bench_line: no bundle at {args.bundle}; make the casting INT8 one with: defectlens export "
                 f"benchmarks/results/work/casting/runs/<run> --int8 --out {BUNDLE.relative_to(ROOT)}")  # fmt: skip
    images = load_images(args.images, 1000) if args.images.is_dir() else []
    if not images:
        print(f"skip: no images at {args.images} (the casting test split; see ../shared/datasets/SOURCES.md)")
        return {"skipped": f"no images at {args.images}"}
    if mosquitto() is None:
        sys.exit("bench_line: mosquitto not found (make sysdeps installs it)")
    logging.getLogger("asyncua").setLevel(logging.ERROR)  # its notes on revised session values are noise here
    machine = describe()
    with tempfile.TemporaryDirectory(prefix="bench-line-") as tmp:
        work = Path(tmp)
        broker = Broker(work)
        try:

            def run_at(rate: float) -> dict[str, Any]:
                r = folder_run(rate, bundle=args.bundle, images=images, seconds=args.seconds, broker=broker,
                               work=work, args=args)  # fmt: skip
                print(f"{rate:g} parts/s: dropped {r['dropped']}, silent {r['silent_drops']}, MQTT p99 "
                      f"{r['mqtt']['p99_ms']} ms, OPC UA p99 {r['opcua']['p99_ms']} ms", flush=True)  # fmt: skip
                return r

            rates = [run_at(rate) for rate in args.rates]
            overload = run_at(args.overload)
            found = search(overload["decided_parts_s"], steps=args.search_steps, fixed=rates, run_at=run_at)
            cams = [genicam_run(fps, bundle=args.bundle, seconds=args.seconds, broker=broker, work=work, args=args)
                    for fps in args.genicam_fps]  # fmt: skip
        finally:
            broker.stop()
    result = record(args, machine, images, rates, overload, found, cams)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=2) + "\n", encoding="utf-8")
    print(table(result))
    return result


def record(args, machine, images, rates, overload, found, cams) -> dict[str, Any]:
    from defectlens.inference.predictor import Predictor

    predictor = Predictor.load(args.bundle)
    everything = [*rates, overload, *found["steps"], *cams]
    return {
        "command": "python benchmarks/bench_line.py " + shlex.join(sys.argv[1:] if __name__ == "__main__" else []),
        "quick": args.quick,
        "bundle": str(args.bundle),
        "model_id": predictor.model_id,
        "backend": predictor.backend,
        "images": f"{len(images)} images from {args.images}",
        "station": {
            "source": "hot folder (inotify, after: move)",
            "queue": {"size": args.queue, "policy": "drop"},
            "gate": "refuse",
            "sinks": ["mqtt (QoS 1, disk outbox)", f"opcua (FIFO {args.plc_fifo})"],
            "plc_publishing_interval_ms": args.plc_interval_ms,
        },
        "rates": rates,
        "overload": overload,
        "sustainable": {
            **found,
            "rule": f"nothing dropped, no silent drop, MQTT p99 <= {SUSTAINED_P99_MS:g} ms; upper bound: the "
            "lowest rate not sustained, or the overload run's throughput",
        },
        "genicam": cams,
        "goals": goals(rates, everything),
        "machine": {**machine, "load_average_at_end": [round(x, 2) for x in os.getloadavg()], "nice": os.nice(0)},
        "note": "latencies are of the frames the model saw (dropped ones are counted, not timed); the feeder, "
        "the MQTT subscriber and the PLC client share the CPU with the station; load averages say whether "
        "other work did too",
    }


if __name__ == "__main__":
    main()
