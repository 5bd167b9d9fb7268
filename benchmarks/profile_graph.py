"""Where a bundle's graph spends its time: ONNX Runtime's per-operator profile, one image at the input size.

Anomaly mode's latency goal (issue #29) is one matrix product against the memory bank plus the backbone's
convolutions; this says how the milliseconds split between them, per operator type, averaged over ``--runs``
single-image runs after a warm-up, in the session ``predict`` builds (2 threads here, spinning stopped after each
call). Bundles given together are timed in turns, run by run, so a VM whose speed drifts between minutes moves
them alike.

    python benchmarks/profile_graph.py BUNDLE [BUNDLE ...] [--runs 60] [--out benchmarks/results/F.json]

Prints one table per bundle (operator type, ms per run, share); ``--out`` writes them with the machine.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
from collections import Counter
from pathlib import Path
from typing import Any

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "benchmarks"))
from machine import describe  # noqa: E402

WARMUP = 5


def operator_times(events: list[dict[str, Any]], skip: int = 0) -> dict[str, float]:
    """Milliseconds per run of each operator type from ONNX Runtime's profile events (its ``*_kernel_time`` node
    events, durations in microseconds), largest first, leaving out the first ``skip`` runs (``model_run`` events:
    the warm-up)."""
    starts = sorted(float(e["ts"]) for e in events if e.get("cat") == "Session" and e.get("name") == "model_run")
    if len(starts) <= skip:
        raise ValueError(f"the profile holds {len(starts)} runs, not more than the {skip} to leave out")
    total: Counter[str] = Counter()
    for e in events:
        timed = e.get("cat") == "Node" and str(e.get("name", "")).endswith("_kernel_time")
        if timed and float(e.get("ts", 0)) >= starts[skip]:
            total[str(e.get("args", {}).get("op_name", "?"))] += float(e.get("dur", 0))
    runs = len(starts) - skip
    return {op: us / runs / 1000.0 for op, us in total.most_common()}


def profile(paths: list[Path], runs: int, threads: int = 2) -> dict[str, dict[str, float]]:
    from defectlens.core.bundle import read_bundle
    from defectlens.inference.backends import _ort_session  # the session predict runs: the same threads and spinning

    sessions, inputs = [], []
    with tempfile.TemporaryDirectory() as tmp:
        for i, path in enumerate(paths):
            bundle = read_bundle(path)
            prefix = str(Path(tmp) / f"p{i}")
            session = _ort_session(bundle.onnx, intra_op=threads, name=str(path), profile_prefix=prefix)
            spec = bundle.spec
            x = np.random.default_rng(0).random((1, spec.in_channels, spec.input_size, spec.input_size))
            sessions.append(session)
            inputs.append({session.get_inputs()[0].name: x.astype(np.float32)})
        for _ in range(WARMUP + runs):  # in turns, run by run; the warm-up is profiled too and left out below
            for session, feed in zip(sessions, inputs, strict=True):
                session.run(None, feed)
        out = {}
        for path, session in zip(paths, sessions, strict=True):
            events = json.loads(Path(session.end_profiling()).read_text())
            times = operator_times(events, skip=WARMUP)
            out[str(path)] = times
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("bundles", nargs="+", type=Path)
    ap.add_argument("--runs", type=int, default=60)
    ap.add_argument("--out", type=Path, default=None)
    args = ap.parse_args()
    result = profile(args.bundles, args.runs)
    for path, times in result.items():
        total = sum(times.values())
        print(f"{path}: {total:.2f} ms a run in operators")
        for op, ms in list(times.items())[:8]:
            print(f"  {op:16s} {ms:7.2f} ms  {100 * ms / total:5.1f} %")
    if args.out:
        record = {"runs": args.runs, "machine": describe(), "operators_ms_per_run": result}
        args.out.write_text(json.dumps(record, indent=1))


if __name__ == "__main__":
    main()
