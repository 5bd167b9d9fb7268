"""``defectlens line``: a station on the line: frames from a hot folder or a camera, each decided by the model,
logged, and handed to the PLC (OPC UA, Modbus TCP), the MES (MQTT) and a sort folder.

SIGHUP loads the model file again (replace the bundle, then ``kill -HUP PID``): the station decides with the new
model from the next frame on, or, when it cannot be used, goes on with the old one (an event says which).
Ctrl-C or SIGTERM stops the source, decides what is queued, publishes the last results and marks the station
offline; then it exits 0 after SIGTERM (a service manager's stop), 130 after Ctrl-C. A bad station file, a model
or endpoint that cannot be used at start, or a source that fails while running: exit 2 with the reason.
"""

from __future__ import annotations

import argparse
import dataclasses
import os
import re
import signal
import sys
import threading
from pathlib import Path
from typing import IO, TYPE_CHECKING, Any

from defectlens.core.profile import GATE_MODES

if TYPE_CHECKING:
    from defectlens.line.station import StationEvent, StationStats


def register(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser("line", help="run an inspection station: hot folder or camera in, PLC/MES out",
                              description=__doc__)  # fmt: skip
    p.add_argument("--config", type=Path, default=None, metavar="STATION.yaml", help="the station file to run")
    p.add_argument("--check", type=Path, default=None, metavar="STATION.yaml",
                   help="check a station file: load the model, open and close each source and sink")  # fmt: skip
    p.add_argument("--model", default=None, help="model bundle (.dlens) to decide with")
    p.add_argument("--source", default=None, help="folder:/path (hot folder) or video:FILE")
    p.add_argument("--sink", action="append", default=[], metavar="SINK",
                   help="sort:/out, mqtt://HOST:PORT/TOPIC, opcua://HOST:PORT, modbus://HOST:PORT; repeat")  # fmt: skip
    p.add_argument("--log", "--db", dest="log", default=None,
                   help="the inspection log: a SQLite file or postgresql://USER:PASSWORD@HOST:PORT/DB (or env "
                        "DEFECTLENS_DB; default inspections.sqlite)")  # fmt: skip
    p.add_argument("--station", default="line", help="the station's name in the log and on the sinks")
    p.add_argument("--gate", choices=GATE_MODES, default="refuse", help="a frame the model cannot judge")
    p.add_argument("--queue-size", type=int, default=8, help="frames waiting for the model")
    p.add_argument("--policy", choices=("hold", "drop"), default="hold", help="when the queue is full")
    p.add_argument("--metrics-port", type=int, default=None, help="serve Prometheus /metrics here (0: any port)")
    p.add_argument("--event-log", type=Path, default=None, help="one line per event here (default: the terminal)")
    p.add_argument("--store-images", type=Path, default=None, metavar="DIR",
                   help="keep each judged frame's image here, by content hash (overrides the station file's "
                        "store_images; the log's rows name them: data import --from-log)")  # fmt: skip
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from defectlens.cli import EXIT_INTERRUPTED
    from defectlens.cli.output import stdout
    from defectlens.line.base import LineError
    from defectlens.line.config import check_station, config_from_args, load_station_file, open_station

    if args.check is not None:
        for line in check_station(load_station_file(args.check)):
            stdout().print(line)
        stdout().print(f"{args.check}: ok")
        return 0
    if args.config is not None:
        config = load_station_file(args.config)
    elif args.model and args.source:
        config = config_from_args(
            model=args.model, source=args.source, sinks=args.sink, station=args.station, gate=args.gate,
            log=args.log or os.environ.get("DEFECTLENS_DB"), queue_size=args.queue_size, policy=args.policy,
            metrics_port=args.metrics_port,
        )  # fmt: skip
    else:
        raise LineError("line needs --config STATION.yaml, or --model BUNDLE and --source (folder:/path, video:FILE)")
    if args.store_images is not None:
        config = dataclasses.replace(config, store_images=args.store_images)
    with _Reporter(args.event_log) as report:
        station_run = open_station(config, on_event=report.event)
        got = _on_signals(station_run.station.stop)
        _reload_on_hangup(lambda: station_run.station.swap_in_background(config.model))
        with station_run:
            report.started(station_run.station.name, station_run.metrics_host, station_run.metrics_port)
            while not station_run.station.wait(0.25):
                report.tick(station_run.station.stats, station_run.station.policy)
        failed = station_run.station.source_error
    if failed is not None:
        raise LineError(f"the source stopped the station: {failed}")
    return EXIT_INTERRUPTED if got.get("signal") == signal.SIGINT else 0


def _on_signals(stop: Any) -> dict[str, int]:
    """SIGTERM and the first Ctrl-C stop the station (it drains); a second Ctrl-C leaves at once (the log and the
    hot folder's ledger are crash-safe: a restart finishes what was interrupted)."""
    got: dict[str, int] = {}

    def handle(signum: int, _frame: object) -> None:
        if signum == signal.SIGINT and got:
            sys.stderr.write("defectlens: interrupted again: leaving without draining\n")
            os._exit(130)
        got["signal"] = signum
        stop()

    signal.signal(signal.SIGTERM, handle)
    signal.signal(signal.SIGINT, handle)
    return got


def _reload_on_hangup(reload: Any) -> None:
    """SIGHUP: load the model file again, off the signal handler (where there is a SIGHUP: not on Windows)."""
    if hasattr(signal, "SIGHUP"):
        signal.signal(signal.SIGHUP, lambda _signum, _frame: reload())


def _clean(text: str) -> str:
    """A file name or message on one line (control characters escaped)."""
    return re.sub(r"[\x00-\x1f\x7f]", lambda m: f"\\x{ord(m.group()):02x}", text)


class _Reporter:
    """A live status line on a terminal; one line per event in ``--event-log`` or when stdout is not a terminal."""

    def __init__(self, path: Path | None):
        self.path = path
        self.file: IO[str] | None = None
        self.live: Any = None
        self.lock = threading.Lock()

    def __enter__(self) -> _Reporter:
        if self.path is not None:
            self.file = self.path.open("a", encoding="utf-8")
        elif not sys.stdout.isatty():
            self.file = sys.stdout
        else:
            from rich.live import Live

            from defectlens.cli.output import stdout

            self.live = Live("", console=stdout(), refresh_per_second=4, transient=False)
            self.live.start()
        return self

    def __exit__(self, *exc: object) -> None:
        if self.live is not None:
            self.live.stop()
        if self.file is not None and self.file is not sys.stdout:
            self.file.close()

    def started(self, name: str, host: str, metrics_port: int | None) -> None:
        if metrics_port is not None:
            self._line(f"metrics station {name}: http://{host}:{metrics_port}/metrics")

    def event(self, event: StationEvent) -> None:
        if event.result is not None:
            r = event.result
            verdict = r.decision if r.decision is not None else "-"
            ok = {True: "OK", False: "NG", None: "no-decision"}[r.ok]
            reason = f" ({_clean(r.reason)})" if r.reason else ""
            text = f"#{r.inspection_id} {_clean(r.frame.name)}: {r.status} {verdict} {ok} {r.latency_ms:.0f} ms{reason}"
            if self.live is None:
                self._line(f"result {text}")
            return
        self._line(f"{event.kind} {_clean(event.text)}")

    def tick(self, stats: StationStats, policy: str) -> None:
        if self.live is None:
            return
        from rich.text import Text

        counts = " ".join(f"{k} {v}" for k, v in sorted(stats.results.items()))
        alarm = f" | ALARM {stats.alarm}" if stats.alarm else ""
        errors = f" | sink errors {sum(stats.sink_errors.values())}" if stats.sink_errors else ""
        errors += f" | images not kept {stats.store_errors}" if stats.store_errors else ""
        self.live.update(
            Text(f"in {stats.frames_in} | {counts or 'no results yet'} | queue policy {policy}{alarm}{errors}")
        )

    def _line(self, text: str) -> None:
        from defectlens.inspections.store import utc_now

        with self.lock:
            if self.live is not None:
                self.live.console.print(text, markup=False, highlight=False)
            elif self.file is not None:
                self.file.write(f"{utc_now()} {text}\n")
                self.file.flush()
