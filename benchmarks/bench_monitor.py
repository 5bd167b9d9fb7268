"""The drift watch (issue 31, part 4): no alarm on the clean casting stream, an alarm on every slow drift.

Streams the casting test split (``../shared/datasets/casting/test``, shuffled with a fixed seed: a line
interleaves good and defective parts) through ``Predictor`` of the casting bundle
(``benchmarks/results/casting.dlens``: ``python benchmarks/run_real.py --datasets casting`` makes it; this
script never trains) and :class:`~defectlens.inference.drift.DriftWatch` with its default configuration
(windows of 100):

* ``clean``: the stream as photographed; its frames are scored once and replayed in
  :data:`CLEAN_ORDERS` shuffled orders through fresh watches (goal: 0 alarms in every order);
* one stream per slow drift: the same images with a change of :mod:`defectlens.data.shifts` that grows
  linearly over the stream from none (first image) to its ``moderate`` strength (last image): lighting
  (exposure down, as a lamp ages, and up), contrast down, blur and sensor noise (goal: an alarm before the
  last image, i.e. before moderate strength; reported: the images until the alarm, the strength reached
  then, and which checks fired);
* overhead: the watch's time per frame as a share of ``Predictor.predict``'s per-image latency (goal
  at most 5 %).

    python benchmarks/bench_monitor.py [--out benchmarks/results/monitor.json] [--bundle B] [--images N]

Without the dataset or the bundle it writes nothing and says why (exit 0).
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image

from machine import describe

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "benchmarks" / "results"
TEST = ROOT.parent / "shared" / "datasets" / "casting" / "test"
BUNDLE = RESULTS / "casting.dlens"
GOALS = {"clean_alarms": 0, "alarm_before": "moderate", "overhead_share": 0.05}
#: Shuffled orders the clean stream is replayed in.
CLEAN_ORDERS = 20
#: The slow drifts: (name, shift kind, value at none, value at moderate strength).
DRIFTS = (
    ("lighting_down", "exposure", 1.0, 0.8),
    ("lighting_up", "exposure", 1.0, 1.2),
    ("contrast_down", "contrast", 1.0, 0.8),
    ("blur", "blur", 0.0, 1.0),
    ("noise", "noise", 0.0, 6.0),
)


@dataclass(frozen=True)
class Frame:
    """What the watch reads of one scored frame."""

    stats: dict[str, float] | None
    ood: float | None
    outcome: str | None


def load_images(limit: int | None) -> list[tuple[str, Image.Image]]:
    files = sorted(p for p in TEST.rglob("*") if p.suffix.lower() in {".jpeg", ".jpg", ".png"})
    order = np.random.default_rng(0).permutation(len(files))
    chosen = [files[i] for i in order][:limit]
    out = []
    for p in chosen:
        with Image.open(p) as im:
            out.append((f"{p.parent.name}/{p.name}", im.convert("L")))
    return out


def shifted(image: Image.Image, kind: str, value: float, seed: int) -> Image.Image:
    from defectlens.data.shifts import Shift

    neutral = {"exposure": 1.0, "contrast": 1.0, "blur": 0.0, "noise": 0.0}[kind]
    if abs(value - neutral) < 1e-9:
        return image
    return Shift(kind, "ramp", value).apply(image, seed=seed)


def score(predictor: Any, name: str, image: Image.Image) -> tuple[Frame, float]:
    from defectlens.inference.drift import outcome_of

    t = time.perf_counter()
    p = predictor.predict(image, name=name)
    latency = time.perf_counter() - t
    gate = p.gate
    flagged = gate.flagged if gate is not None else False
    frame = Frame(gate.stats if gate is not None else None, p.ood_score, outcome_of(p.status, p.prediction, flagged))
    return frame, latency


def replay(watch: Any, frames: list[Frame]) -> tuple[list[dict[str, Any]], float]:
    """Every event of ``frames`` through ``watch`` and the watch's seconds per frame."""
    events, spent = [], 0.0
    for i, f in enumerate(frames):
        t = time.perf_counter()
        event = watch.observe(stats=f.stats, ood_score=f.ood, outcome=f.outcome)
        spent += time.perf_counter() - t
        if event is not None:
            events.append({"image": i + 1, "kind": event.kind, "text": event.text})
    return events, spent / max(1, len(frames))


def clean_stream(predictor: Any, images: list[tuple[str, Image.Image]]) -> dict[str, Any]:
    from defectlens.inference.drift import DriftWatch

    scored = [score(predictor, n, im) for n, im in images]
    frames = [f for f, _ in scored]
    latencies = np.asarray([lat for _, lat in scored])
    runs, peaks = [], []
    watch_s = []
    for seed in range(CLEAN_ORDERS):
        order = np.random.default_rng(seed).permutation(len(frames)) if seed else np.arange(len(frames))
        watch = DriftWatch.for_predictor(predictor)
        events, per_frame = replay(watch, [frames[i] for i in order])
        runs.append(sum(e["kind"] == "drift_alarm" for e in events))
        peaks.append(_peaks(watch, [frames[i] for i in order]))
        watch_s.append(per_frame)
    worst = {k: max(p.get(k, 0.0) for p in peaks) for k in peaks[0]}
    return {
        "images": len(frames),
        "orders": CLEAN_ORDERS,
        "alarms_per_order": runs,
        "alarms": int(sum(runs)),
        "peak_severity": {k: round(v, 3) for k, v in sorted(worst.items(), key=lambda kv: -kv[1])},
        "latency_ms": {"p50": 1000 * float(np.median(latencies)), "mean": 1000 * float(latencies.mean())},
        "watch_ms_per_frame": 1000 * float(np.mean(watch_s)),
    }


def _peaks(watch: Any, frames: list[Frame]) -> dict[str, float]:
    """The largest severity of each check over a replay of ``frames`` through a fresh copy of ``watch``."""
    from defectlens.inference.drift import DriftWatch

    fresh = DriftWatch(watch.reference, model_id=watch.model_id, config=watch.config)
    peak: dict[str, float] = {}
    for f in frames:
        fresh.observe(stats=f.stats, ood_score=f.ood, outcome=f.outcome)
        for c in fresh.status().checks:
            peak[c.name] = max(peak.get(c.name, 0.0), c.severity)
    return peak


def drift_stream(predictor: Any, images: list[tuple[str, Image.Image]], drift: tuple[str, str, float, float]) -> dict:
    from defectlens.inference.drift import DriftWatch

    _name, kind, start, end = drift
    watch = DriftWatch.for_predictor(predictor)
    n = len(images)
    first: dict[str, Any] | None = None
    trace = []
    for i, (file, image) in enumerate(images):
        t = i / max(1, n - 1)
        value = start + t * (end - start)
        frame, _ = score(predictor, file, shifted(image, kind, value, seed=i))
        event = watch.observe(stats=frame.stats, ood_score=frame.ood, outcome=frame.outcome)
        if (i + 1) % 50 == 0:
            st = watch.status()
            top = max(st.checks, key=lambda c: c.severity, default=None)
            trace.append({"image": i + 1, "value": round(value, 4), "top": top.name if top else None,
                          "severity": round(st.severity, 3)})  # fmt: skip
        if event is not None and event.kind == "drift_alarm" and first is None:
            first = {"image": i + 1, "value": round(value, 4), "share_of_moderate": round(t, 3), "text": event.text}
    return {
        "shift": kind,
        "from": start,
        "to_moderate": end,
        "images": n,
        "alarmed": first is not None,
        "alarm": first,
        "alarms": watch.alarms,
        "before_moderate": first is not None and first["image"] < n,
        "trace": trace,
    }


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--out", type=Path, default=RESULTS / "monitor.json")
    p.add_argument("--bundle", type=Path, default=BUNDLE)
    p.add_argument("--images", type=int, default=None, help="first N images of the shuffled split (default: all)")
    args = p.parse_args(argv)
    if not TEST.is_dir():
        print(f"skipped: the casting test split is not at {TEST}")
        return 0
    if not args.bundle.is_file():
        print(f"skipped: no bundle at {args.bundle}; make it with: python benchmarks/run_real.py --datasets casting")
        return 0
    from defectlens.inference.predictor import Predictor

    machine = describe()
    started = time.time()
    predictor = Predictor.load(args.bundle, threads=2)
    images = load_images(args.images)
    clean = clean_stream(predictor, images)
    print(f"clean: {clean['alarms']} alarm(s) over {CLEAN_ORDERS} orders; peaks {clean['peak_severity']}", flush=True)
    drifts = {}
    for d in DRIFTS:
        drifts[d[0]] = r = drift_stream(predictor, images, d)
        print(f"{d[0]}: alarm {r['alarm']}", flush=True)
    overhead = clean["watch_ms_per_frame"] / clean["latency_ms"]["mean"]
    result = {
        "bundle": str(args.bundle.relative_to(ROOT) if args.bundle.is_relative_to(ROOT) else args.bundle),
        "model_id": predictor.model_id,
        "reference_unavailable": list(reference_unavailable(predictor)),
        "config": config_dict(),
        "goals": GOALS,
        "clean": clean,
        "drifts": drifts,
        "overhead_share": round(overhead, 5),
        "goals_met": {
            "clean_alarms": clean["alarms"] == 0,
            "alarm_before_moderate": all(r["before_moderate"] for r in drifts.values()),
            "overhead": overhead <= GOALS["overhead_share"],
        },
        "seconds": round(time.time() - started, 1),
        "machine": {**machine, "load_average_at_end": list(_load())},
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=2) + "\n", encoding="utf-8")
    print(f"overhead {100 * overhead:.2f} % of {clean['latency_ms']['mean']:.1f} ms; wrote {args.out}")
    return 0


def reference_unavailable(predictor: Any) -> tuple[str, ...]:
    from defectlens.inference.drift import predictor_reference

    return predictor_reference(predictor).unavailable


def config_dict() -> dict[str, Any]:
    from dataclasses import asdict

    from defectlens.inference.drift import DriftConfig

    return asdict(DriftConfig())


def _load() -> tuple[float, ...]:
    import os

    return tuple(round(x, 2) for x in os.getloadavg())


if __name__ == "__main__":
    sys.exit(main())
