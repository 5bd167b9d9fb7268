"""``defectlens monitor LOG``: the drift watch's window statistics over an inspection log, after the fact."""

from __future__ import annotations

import argparse
import json
from pathlib import Path


def register(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser(
        "monitor",
        help="drift over an inspection log: OOD-score PSI, decision shares, operator agreement, alarms",
        description="Replay an inspection log (oldest first) through the drift watch with windows of --window rows: "
        "the gate's OOD score (population stability index against the reference), each decision's share "
        "(binomial test) and operator agreement with the model (where verdicts were recorded). The reference is "
        "the --model bundle's (only its rows are replayed) or, without one, the log's own first --baseline rows "
        "of its newest model. Image statistics are not in the log: they are watched live (serve, line).",
    )
    p.add_argument("log", metavar="LOG", type=Path, help="the inspection log (SQLite file)")
    p.add_argument("--model", metavar="BUNDLE", help="the .dlens bundle whose reference the rows are compared with")
    p.add_argument("--baseline", type=int, metavar="N", help="without --model: rows taken as the reference (a window)")
    p.add_argument("--window", type=int, help="rows per window (default: the watch's, 100)")
    p.add_argument("--psi-alarm", type=float, help="PSI at which the OOD score alarms (default: the watch's, 1.0)")
    p.add_argument("--share-alpha", type=float, help="p-value under which a decision share alarms (default: 1e-6)")
    p.add_argument("--json", metavar="PATH", type=Path, help="also write the whole report here")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from defectlens.cli.output import stdout
    from defectlens.inference.drift import DriftConfig
    from defectlens.workflows.monitor import monitor_log

    given = {"window": args.window, "psi_alarm": args.psi_alarm, "share_alpha": args.share_alpha}
    config = DriftConfig(**{k: v for k, v in given.items() if v is not None})
    report = monitor_log(args.log, model=args.model, baseline=args.baseline, config=config)
    out = stdout()
    out.print(
        f"{report.log}: {report.replayed} of {report.rows} rows of model {report.model_id} against {report.reference}"
    )
    for e in report.events:
        out.print(f"  {e['kind']} at inspection {e['inspection_id']} ({e['utc']}): {e['text']}")
    peaks = ", ".join(f"{k} {v:.2f}" for k, v in report.peaks.items()) or "none (fewer rows than a window)"
    out.print(f"alarms: {report.alarms}; highest severity per check (1 = alarm): {peaks}")
    out.print("not available: " + "; ".join(report.unavailable))
    if args.json is not None:
        args.json.write_text(json.dumps(report.to_dict(), indent=2) + "\n", encoding="utf-8")
        out.print(f"report: {args.json}")
    return 0
