"""The gate (issue 26): what it lets through and what it flags, per recipe bundle, and what it costs.

For each recipe trained by ``run_real.py --out benchmarks/results/work/gate`` (``<dataset>.json`` there names
the run folder; while it still trains, the newest ``work/<dataset>/runs/ours-*`` with a ``best.pt``, its
epochs so far recorded), this takes a bundle carrying the gate's reference profile (the one ``run_real.py``
wrote when it has one and is newer than the run's ``best.pt``; else the run re-exported with its dataset to
``<dataset>-gated.dlens``) and feeds it five families of frames, every one through ``Predictor`` in
``warn`` mode (each frame's class and the gate's finding; accuracies use the bundle's stored threshold):

* ``clean``: the test split (goal: at most 1 % flagged), with accuracy on the frames let through and on all;
* ``dead_camera``: black, white, uniform grey, noise, a lens cap, 1x1 and 8x8 frames, and real test
  images resized to 640x480 and 96x96 (goal: all flagged);
* ``other_parts``: the other recipes' datasets and generic photos (scikit-learn's and matplotlib's sample
  images, whole and as crops resized to the test images' size) (goal: at least 99 % flagged);
* ``shifts``: the test split under each moderate shift of :mod:`defectlens.data.shifts`;
* ``latency``: single-image ``predict`` with the gate off and on (same bundle, interleaved), and
  ``image_stats`` alone (goal: the gate adds at most 10 % to the p50).

Every family counts the reasons' kinds (uniform, under/over-exposed, out of focus, noisy, size/aspect,
out-of-distribution). Results go to ``benchmarks/results/gate.json``, one entry per dataset.

    python benchmarks/bench_gate.py                                  # every recipe bundle available
    python benchmarks/bench_gate.py --datasets elpv neu-6
    python benchmarks/bench_gate.py --bundle model.dlens --data DATASET_DIR --name mine
    python benchmarks/bench_gate.py --quick --out /tmp/gate             # a few frames per family
    python benchmarks/bench_gate.py --table
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from collections import Counter
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import yaml
from PIL import Image

from machine import describe

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "benchmarks" / "results"
WORK = RESULTS / "work"
SHARED = ROOT.parent / "shared" / "datasets"
#: Goals of issue 26: shares flagged (clean at most, the others at least) and the added latency.
GOALS = {"clean": 0.01, "dead_camera": 1.0, "other_parts": 0.99, "latency": 0.10}
#: The recipes' datasets, each with the source it comes from (a dataset's own source is never "other").
SOURCES = {
    "elpv": "elpv",
    "neu-6": "neu-det",
    "neu-binary": "neu-det",
    "neu-6-file": "neu-det",
    "neu-binary-file": "neu-det",
    "casting": "casting",
}
#: Where each source's images are read from when no imported split exists (``<work>/<dataset>/data``).
RAW = {"casting": ("casting", "test"), "neu-det": ("neu-det", "IMAGES")}
IMAGE_SUFFIXES = {".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff"}


# -- counting -------------------------------------------------------------------------------------


def tally(rows: Sequence[Any], labels: Sequence[str] | None = None) -> dict[str, Any]:
    """n, share flagged, errors and reason kinds of predictions (``warn`` mode); accuracies with labels.

    An error row (the decode rule refused the input) counts as refused, not as flagged, and is listed apart.
    """
    flagged = [r.gate is not None and r.gate.flagged for r in rows]
    errors = [r.status == "error" for r in rows]
    kinds: Counter[str] = Counter()
    for r in rows:
        kinds.update(r.gate.kinds if r.gate is not None and r.gate.flagged else ())  # inference.gate.KINDS
    n = len(rows)
    out: dict[str, Any] = {
        "n": n,
        "flagged": int(sum(flagged)),
        "errors": int(sum(errors)),
        "flagged_share": round(sum(flagged) / n, 4) if n else None,
        "refused_share": round(sum(f or e for f, e in zip(flagged, errors, strict=True)) / n, 4) if n else None,
        "reason_kinds": dict(sorted(kinds.items())),
    }
    scores = [r.gate.ood_score for r in rows if r.gate is not None and r.gate.ood_score is not None]
    if scores:  # how far from the threshold a family lies, to judge the OOD band by
        q = np.quantile(scores, [0.0, 0.01, 0.5, 0.99, 1.0])
        out["ood_score"] = dict(zip(("min", "p1", "p50", "p99", "max"), (round(float(v), 3) for v in q), strict=True))
    if labels is not None:
        right = [r.prediction == y for r, y in zip(rows, labels, strict=True)]
        passed = [ok for ok, f, e in zip(right, flagged, errors, strict=True) if not f and not e]
        out["accuracy_all"] = round(float(np.mean(right)), 4) if right else None
        out["accuracy_passed"] = round(float(np.mean(passed)), 4) if passed else None
        out["n_passed"] = len(passed)
    return out


def judge(predictor: Any, frames: Sequence[tuple[str, Any]]) -> list[Any]:
    """Predictions of ``(name, source)`` frames, in order."""
    return list(predictor.predict_many(frames, batch_size=16))


def by_kind(frames: Sequence[tuple[str, Any]], rows: Sequence[Any]) -> dict[str, Any]:
    """Per frame kind (the name before ``#``): n, flagged, errors and reason kinds."""
    groups: dict[str, list[Any]] = {}
    for (name, _), row in zip(frames, rows, strict=True):
        groups.setdefault(name.split("#")[0], []).append(row)
    return {k: tally(v) for k, v in groups.items()}


def evenly(items: Sequence[Any], limit: int) -> list[Any]:
    """Up to ``limit`` items, evenly spaced (every class of a sorted listing is kept)."""
    if len(items) <= limit:
        return list(items)
    return [items[int(i * len(items) / limit)] for i in range(limit)]


# -- the families ---------------------------------------------------------------------------------


def clean_family(predictor: Any, manifest: Any, limit: int) -> dict[str, Any]:
    records = evenly(manifest.split("test"), limit)
    rows = judge(predictor, [(r.path, manifest.resolve(r)) for r in records])
    return tally(rows, [r.label for r in records])


def _grey(im: Image.Image) -> bool:
    """A grey camera's frame: a grey mode, or RGB with three equal channels (NEU's JPEGs)."""
    if im.mode in ("L", "I;16", "I"):
        return True
    a = np.asarray(im.convert("RGB"), dtype=np.int16)
    return bool(np.abs(a[..., 0] - a[..., 1]).max() <= 2 and np.abs(a[..., 1] - a[..., 2]).max() <= 2)


def typical(test_images: Sequence[Image.Image]) -> tuple[tuple[int, int], str]:
    """The most common (width, height) of the test images, and ``L`` for a grey camera (its dead frames are
    grey: a mono sensor's noise is the same in every channel), else ``RGB``."""
    size = Counter(im.size for im in test_images).most_common(1)[0][0]
    mode = Counter("L" if _grey(im) else "RGB" for im in test_images).most_common(1)[0][0]
    return size, mode


def dead_frames(size: tuple[int, int], mode: str, real: Sequence[Image.Image], seeds: int) -> list[tuple[str, Any]]:
    """The dead-camera family at ``size`` (width, height) in ``mode``, named ``kind#seed``."""
    w, h = size
    shape = (h, w) if mode == "L" else (h, w, 3)

    def img(a: np.ndarray) -> Image.Image:  # 2-D arrays make L images, (h, w, 3) RGB ones
        return Image.fromarray(np.clip(a, 0, 255).astype(np.uint8))

    frames = [("black", img(np.zeros(shape))), ("white", img(np.full(shape, 255.0)))]
    frames += [(f"grey-{v}", img(np.full(shape, float(v)))) for v in (32, 64, 96, 128, 160, 192, 224)]
    frames.append(("1x1", img(np.full((1, 1) if mode == "L" else (1, 1, 3), 128.0))))
    for s in range(seeds):
        rng = np.random.default_rng(s)
        frames += [
            (f"uniform-noise#{s}", img(rng.uniform(0, 256, shape))),
            (f"gaussian-noise-128-40#{s}", img(rng.normal(128, 40, shape))),
            (f"lens-cap#{s}", img(rng.normal(3, 2, shape))),
            (f"grey-128-sensor-noise-2#{s}", img(rng.normal(128, 2, shape))),
            (f"8x8#{s}", img(rng.uniform(0, 256, (8, 8) if mode == "L" else (8, 8, 3)))),
        ]
        pick = real[int(rng.integers(len(real)))]
        frames += [(f"resized-640x480#{s}", pick.resize((640, 480))), (f"resized-96x96#{s}", pick.resize((96, 96)))]
    return [(name if "#" in name else f"{name}#0", im) for name, im in frames]


def dead_family(predictor: Any, frames: Sequence[tuple[str, Any]]) -> dict[str, Any]:
    rows = judge(predictor, frames)
    return {"all": tally(rows), "kinds": by_kind(frames, rows)}


def source_images(source: str, *, work: Path, shared: Path, limit: int) -> list[Path]:
    """Up to ``limit`` images of a source: an imported test split under ``work`` if any, else the raw files."""
    from defectlens.data.manifest import Manifest

    for dataset in (d for d, s in SOURCES.items() if s == source):
        data = work / dataset / "data"
        if (data / "manifest.csv").is_file():
            manifest = Manifest.read(data)
            return evenly([Path(manifest.resolve(r)) for r in manifest.split("test")], limit)
    if source == "elpv":
        from importlib import resources

        try:
            folder = Path(str(resources.files("elpv_dataset").joinpath("data", "images")))
        except ModuleNotFoundError:
            return []
    else:
        folder = shared.joinpath(*RAW[source])
    files = sorted(p for p in folder.rglob("*") if p.suffix.lower() in IMAGE_SUFFIXES) if folder.is_dir() else []
    return evenly(files, limit)


def generic_photos(size: tuple[int, int], *, crops: int, seed: int = 0) -> list[tuple[str, Image.Image]]:
    """scikit-learn's and matplotlib's sample photos, whole and as random crops resized to ``size``."""
    import matplotlib
    from sklearn.datasets import load_sample_images

    sample = load_sample_images()
    photos = [(Path(f).stem, Image.fromarray(a)) for f, a in zip(sample.filenames, sample.images, strict=True)]
    folder = Path(matplotlib.get_data_path()) / "sample_data"
    for f in sorted(p for p in folder.rglob("*") if p.suffix.lower() in (".png", ".jpg", ".jpeg")):
        photos.append((f.stem, Image.open(f).convert("RGB")))
    rng = np.random.default_rng(seed)
    frames = []
    for name, photo in photos:
        frames.append((f"generic:{name}#whole", photo))
        w, h = photo.size
        for c in range(crops):
            side = int(min(w, h) * rng.uniform(0.3, 0.9))
            x, y = int(rng.integers(0, w - side + 1)), int(rng.integers(0, h - side + 1))
            frames.append((f"generic:{name}#crop{c}", photo.crop((x, y, x + side, y + side)).resize(size)))
    return frames


def other_parts(predictor: Any, own: str | None, *, args: argparse.Namespace, size: tuple[int, int]) -> dict:
    """The model fed the other sources' images and generic photos: per source and in all."""
    per_source: dict[str, Any] = {}
    everything: list[Any] = []
    limit = 6 if args.quick else args.other_limit
    for source in sorted(set(SOURCES.values()) - {own}):
        files = source_images(source, work=args.work, shared=args.shared, limit=limit)
        if not files:
            per_source[source] = {"n": 0, "note": "not found here"}
            continue
        rows = judge(predictor, [(str(f), f) for f in files])
        per_source[source] = tally(rows)
        everything += rows
    generic = generic_photos(size, crops=1 if args.quick else 9)
    rows = judge(predictor, generic)
    per_source["generic"] = tally(rows) | {"by_photo": by_kind([(n.split("#")[0], i) for n, i in generic], rows)}
    everything += rows
    return {"all": tally(everything), "sources": per_source}


def shift_family(predictor: Any, manifest: Any, limit: int, kinds: tuple[str, ...] | None) -> list[dict[str, Any]]:
    """Per moderate shift of the test split: share flagged, accuracy let through and on all."""
    from defectlens.data.images import load_image
    from defectlens.data.shifts import KINDS, family

    records = evenly(manifest.split("test"), limit)
    labels = [r.label for r in records]
    images = [load_image(manifest.resolve(r)) for r in records]
    out = []
    for shift in family(kinds or KINDS, ("moderate",)):
        frames = [(f"{r.path}", shift.apply(im, seed=i)) for i, (r, im) in enumerate(zip(records, images, strict=True))]
        out.append({"shift": shift.name, "kind": shift.kind, **tally(judge(predictor, frames), labels)})
    return out


def _p(times: list[float], q: float) -> float:
    return round(float(np.quantile(np.asarray(times) * 1000.0, q)), 3)


def latency(bundle: Path, files: Sequence[Path], *, calls: int, threads: int, size: tuple[int, int]) -> dict:
    """Single-image ``predict`` with the gate off and on (refuse), interleaved, and ``image_stats`` alone."""
    from defectlens.inference.gate import image_stats
    from defectlens.inference.predictor import Predictor

    off = Predictor.load(bundle, gate="off", threads=threads)
    on = Predictor.load(bundle, gate="refuse", threads=threads)
    for f in files[:10]:  # warm-up
        off.predict(f)
        on.predict(f)
    times: dict[str, list[float]] = {"off": [], "refuse": [], "image_stats": [], "gate_check": []}
    for i in range(calls):
        f = files[i % len(files)]
        for name, p in (("off", off), ("refuse", on)) if i % 2 == 0 else (("refuse", on), ("off", off)):
            start = time.perf_counter()
            p.predict(f)
            times[name].append(time.perf_counter() - start)
        x = on.preprocess(f)
        start = time.perf_counter()
        image_stats(x)
        times["image_stats"].append(time.perf_counter() - start)
        start = time.perf_counter()
        on.gate.check(x, size, 0.0)
        times["gate_check"].append(time.perf_counter() - start)
    out: dict[str, Any] = {k: {"p50_ms": _p(v, 0.5), "p90_ms": _p(v, 0.9)} for k, v in times.items()}
    added = out["refuse"]["p50_ms"] - out["off"]["p50_ms"]
    out.update(calls=calls, threads=threads, backend=on.backend, added_p50_ms=round(added, 3))
    out["added_share"] = round(added / out["off"]["p50_ms"], 4)
    return out


# -- one dataset ----------------------------------------------------------------------------------


def goals(res: dict[str, Any]) -> dict[str, bool]:
    """Which of issue 26's goals the figures meet (dead camera: every frame refused, flagged or unreadable)."""
    return {
        "clean": res["clean"]["flagged_share"] <= GOALS["clean"],
        "dead_camera": res["dead_camera"]["all"]["refused_share"] >= GOALS["dead_camera"],
        "other_parts": res["other_parts"]["all"]["flagged_share"] >= GOALS["other_parts"],
        "latency": res["latency"]["added_share"] <= GOALS["latency"],
    }


def profile_summary(profile: Any) -> dict[str, Any]:
    """The bands in force, short: each statistic's reference range and accepted band, sizes and OOD."""
    d = profile.to_dict()
    stats = {k: {n: None if v is None else round(v, 3) for n, v in r.items()} for k, r in d["stats"].items()}
    return {"images": d["images"], "stats": stats, "size": d["size"], "ood": d["ood"]}


def run(bundle: Path, data: Path, *, name: str, args: argparse.Namespace) -> dict[str, Any]:
    from defectlens.core.bundle import read_bundle
    from defectlens.data.images import load_image
    from defectlens.data.manifest import Manifest
    from defectlens.inference.predictor import Predictor

    start, machine = time.perf_counter(), describe()
    profile = read_bundle(bundle).profile
    if profile is None:
        raise SystemExit(f"{bundle}: no gate profile; re-export it with its dataset (export_bundle(..., data=DIR))")
    manifest = Manifest.read(data)
    predictor = Predictor.load(bundle, gate="warn", threads=args.threads)
    q = args.quick
    test_files = [Path(manifest.resolve(r)) for r in evenly(manifest.split("test"), 8 if q else 400)]
    size, mode = typical([load_image(f) for f in test_files[:50]])
    dead = dead_frames(size, mode, [load_image(f) for f in test_files[:20]], seeds=1 if q else 3)
    kinds = tuple(args.kinds) if args.kinds else None
    families = {
        "clean": lambda: clean_family(predictor, manifest, 8 if q else args.limit),
        "dead_camera": lambda: dead_family(predictor, dead),
        "other_parts": lambda: other_parts(predictor, SOURCES.get(name), args=args, size=size),
        "shifts": lambda: shift_family(predictor, manifest, 8 if q else args.shift_limit, kinds),
        "latency": lambda: latency(bundle, test_files, calls=20 if q else args.calls, threads=args.threads, size=size),
    }
    res: dict[str, Any] = {
        "dataset": name,
        "bundle": str(bundle),
        "model_id": predictor.model_id,
        "backend": predictor.backend,
        "ood_threshold": predictor.gate.ood_threshold,
        "profile": profile_summary(profile),
        "typical_frame": {"size": list(size), "mode": mode},
    }
    for family, measure in families.items():
        t0 = time.perf_counter()
        res[family] = measure()
        print(f"{name}: {family} done in {time.perf_counter() - t0:.0f} s", flush=True)
    res["goals"] = goals(res)
    command = " ".join([Path(sys.executable).name, *sys.argv])
    res.update(quick=q, command=command, machine=machine, seconds=round(time.perf_counter() - start, 1))
    return res


# -- bundles --------------------------------------------------------------------------------------


def recipe_run(dataset: str, gate_dir: Path, work: Path) -> tuple[Path, dict[str, Any]] | None:
    """The run folder of a recipe, and how far its training got.

    The run ``run_real.py`` recorded in ``<gate_dir>/<dataset>.json`` once it finished; before that, the
    newest ``<work>/<dataset>/runs/ours-*`` holding a ``best.pt`` (training still going: its best epoch so far).
    """
    summary = gate_dir / f"{dataset}.json"
    if summary.is_file():
        run_dir, finished = Path(json.loads(summary.read_text())["approaches"]["ours"]["run_dir"]), True
    else:
        runs = sorted((work / dataset / "runs").glob("ours-*/best.pt"), key=lambda f: f.stat().st_mtime)
        if not runs:
            return None
        run_dir, finished = runs[-1].parent, False
    history = run_dir / "history.jsonl"
    epochs = (
        [json.loads(line) for line in history.read_text().splitlines() if line.strip()] if history.is_file() else []
    )
    return run_dir, {"run_dir": str(run_dir), "training_finished": finished, "epochs_done": len(epochs)}


def gated_bundle(dataset: str, gate_dir: Path, work: Path) -> tuple[Path, Path, dict[str, Any]] | None:
    """The gated bundle, dataset folder and run of a recipe (re-exported when needed), or None without a run."""
    from defectlens.core.bundle import read_bundle
    from defectlens.export.exporter import export_bundle

    found = recipe_run(dataset, gate_dir, work)
    if found is None:
        return None
    run_dir, provenance = found
    best = run_dir / "best.pt"
    data = Path(yaml.safe_load((run_dir / "config.yaml").read_text())["data"])
    for candidate in (gate_dir / f"{dataset}.dlens", gate_dir / f"{dataset}-gated.dlens"):
        fresh = candidate.is_file() and candidate.stat().st_mtime > best.stat().st_mtime
        if fresh and read_bundle(candidate).profile is not None:
            return candidate, data, provenance
    out = gate_dir / f"{dataset}-gated.dlens"
    print(f"{dataset}: exporting {run_dir} with its gate to {out}", flush=True)
    export_bundle(run_dir, out, data=data)
    return out, data, provenance


def available(gate_dir: Path, work: Path) -> list[str]:
    """Recipes with a finished run (``<gate_dir>/<dataset>.json``) or one training (a ``best.pt`` so far)."""
    return [d for d in SOURCES if recipe_run(d, gate_dir, work) is not None]


# -- results --------------------------------------------------------------------------------------


def save(res: dict[str, Any], out: Path) -> Path:
    """Merge one dataset's result into ``out/gate.json`` (the other datasets' entries are kept)."""
    path = out / "gate.json"
    out.mkdir(parents=True, exist_ok=True)
    doc = json.loads(path.read_text()) if path.is_file() else {"datasets": {}}
    doc["goals"] = GOALS
    doc["datasets"][res["dataset"]] = res
    path.write_text(json.dumps(doc, indent=2, default=str) + "\n", encoding="utf-8")
    return path


def _pct(v: float | None) -> str:
    return "" if v is None else f"{100 * v:.1f} %"


def _kinds(t: dict[str, Any]) -> str:
    return ", ".join(f"{k} {v}" for k, v in t.get("reason_kinds", {}).items()) or "-"


def _shift_rows(name: str, shifts: list[dict[str, Any]], *, full: bool) -> list[str]:
    """One row per shift (``full``), or one row: the shifts under 2 % flagged, then each of the others."""

    def row(label: str, s: dict[str, Any]) -> str:
        passed = s["accuracy_passed"] if s["accuracy_passed"] is not None else float("nan")
        return (
            f"| {name} | {label} | {s['n']} | {_pct(s['flagged_share'])} | {passed:.4f} / {s['accuracy_all']:.4f} "
            f"| {_kinds(s)} | |"
        )

    if full:
        return [row(f"shift {s['shift']}", s) for s in shifts]
    quiet = [s for s in shifts if s["flagged_share"] < 0.02]
    loud = [s for s in shifts if s["flagged_share"] >= 0.02]
    out = []
    if quiet:
        top = max(s["flagged_share"] for s in quiet)
        out.append(f"| {name} | shifts flagged under 2 % ({len(quiet)}: {', '.join(s['shift'] for s in quiet)}) "
                   f"| | at most {_pct(top)} | | | |")  # fmt: skip
    return out + [row(f"shift {s['shift']}", s) for s in loud]


def table(out: Path, *, full: bool = True) -> str:
    """Markdown: per dataset, each family's share flagged (with reason kinds), accuracies and added latency;
    ``full=False`` folds the shifts that flag under 2 % into one row (the README's table)."""
    path = out / "gate.json"
    if not path.is_file():
        return f"(no {path})"
    results = [r for r in json.loads(path.read_text())["datasets"].values() if not r.get("quick")]
    lines = [
        "| dataset | family | n | flagged | accuracy passed / all | reason kinds | goal |",
        "| --- | --- | --- | --- | --- | --- | --- |",
    ]
    for res in results:
        r = dict(res)
        if r.get("training_finished") is False:  # a run still training: its best epoch so far
            r["dataset"] = f"{r['dataset']} (after {r['epochs_done']} epochs)"
        g, c, d, o = r["goals"], r["clean"], r["dead_camera"]["all"], r["other_parts"]["all"]
        ok = {True: "met", False: "**missed**"}
        lines.append(
            f"| {r['dataset']} | clean (test) | {c['n']} | {_pct(c['flagged_share'])} | "
            f"{c['accuracy_passed']:.4f} / {c['accuracy_all']:.4f} | {_kinds(c)} | <= 1 %: {ok[g['clean']]} |"
        )
        lines.append(
            f"| {r['dataset']} | dead camera | {d['n']} | {_pct(d['flagged_share'])} (+{d['errors']} unreadable) "
            f"| | {_kinds(d)} | 100 %: {ok[g['dead_camera']]} |"
        )
        for src, t in r["other_parts"]["sources"].items():
            if t.get("n"):
                lines.append(
                    f"| {r['dataset']} | other parts: {src} | {t['n']} | {_pct(t['flagged_share'])} | | {_kinds(t)} | |"
                )
        lines.append(
            f"| {r['dataset']} | other parts (all) | {o['n']} | {_pct(o['flagged_share'])} | | {_kinds(o)} | "
            f">= 99 %: {ok[g['other_parts']]} |"
        )
        lines += _shift_rows(r["dataset"], r["shifts"], full=full)
        lat = r["latency"]
        lines.append(
            f"| {r['dataset']} | latency p50 | {lat['calls']} | off {lat['off']['p50_ms']:.2f} ms, gate "
            f"{lat['refuse']['p50_ms']:.2f} ms ({lat['added_share']:+.1%}) | | image_stats "
            f"{lat['image_stats']['p50_ms']:.3f} ms | <= 10 %: {ok[g['latency']]} |"
        )
    cpus = sorted({f"{r['machine']['cpu']} ({r['machine']['cores']} cores)" for r in results})
    return "\n".join(lines) + (f"\n\nMachine: {', '.join(cpus)}." if cpus else "")


def get_args_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--datasets", nargs="*", default=None, help="recipe datasets (default: every bundle available)")
    p.add_argument("--bundle", type=Path, help="a gated bundle to test instead (with --data and --name)")
    p.add_argument("--data", type=Path, help="the dataset folder of --bundle (its test split is the clean family)")
    p.add_argument("--name", default="custom", help="the entry name for --bundle (a recipe name skips its own source)")
    p.add_argument("--gate-dir", type=Path, default=WORK / "gate", help="where run_real.py wrote <dataset>.json")
    p.add_argument("--work", type=Path, default=WORK, help="imported datasets (<work>/<dataset>/data)")
    p.add_argument("--shared", type=Path, default=SHARED, help="the real datasets folder (casting, neu-det)")
    p.add_argument("--limit", type=int, default=100_000, help="test images of the clean family (default: all)")
    p.add_argument("--shift-limit", type=int, default=100_000, help="test images per shift, evenly spaced")
    p.add_argument("--other-limit", type=int, default=300, help="images per other source")
    p.add_argument("--kinds", nargs="*", default=None, help="shift kinds (default: all)")
    p.add_argument("--calls", type=int, default=200, help="timed predict calls per gate mode")
    p.add_argument("--threads", type=int, default=1, help="ONNX Runtime threads (1: steady on a shared machine)")
    p.add_argument("--quick", action="store_true", help="a few frames per family: a pipeline check")
    p.add_argument("--out", type=Path, default=RESULTS, help="folder of gate.json")
    p.add_argument("--table", action="store_true", help="only print the markdown table of the results")
    p.add_argument("--readme", action="store_true", help="only put that table into README.md (between its markers)")
    return p


def update_readme(text: str, readme: Path = ROOT / "README.md") -> None:
    """Put the table between the README's ``<!-- gate-table -->`` markers."""
    start, end = "<!-- gate-table -->\n", "<!-- /gate-table -->"
    doc = readme.read_text(encoding="utf-8")
    head, _, rest = doc.partition(start)
    _, _, tail = rest.partition(end)
    if not rest:
        raise SystemExit(f"{readme}: no {start.strip()} marker")
    readme.write_text(f"{head}{start}{text.rstrip()}\n{end}{tail}", encoding="utf-8")


def main(args: argparse.Namespace) -> int:
    if args.table or args.readme:
        print(table(args.out))
        if args.readme:
            update_readme(table(args.out, full=False))
        return 0
    import torch

    torch.set_num_threads(args.threads)  # the export's feature pass; the machine is shared
    if args.bundle:
        jobs = [(args.name, (args.bundle, args.data, {}))]
    else:
        names = args.datasets or available(args.gate_dir, args.work)
        jobs = [(d, gated_bundle(d, args.gate_dir, args.work)) for d in names]
    for name, found in jobs:
        if found is None or not (found[1] / "manifest.csv").is_file():
            print(f"skip {name}: no run or dataset (benchmarks/run_real.py --out {args.gate_dir})")
            continue
        bundle, data, provenance = found
        res = run(bundle, data, name=name, args=args) | provenance
        path = save(res, args.out)
        print(f"{name}: goals {res['goals']} ({res['seconds']} s) -> {path}", flush=True)
    print(table(args.out))
    return 0


if __name__ == "__main__":
    raise SystemExit(main(get_args_parser().parse_args()))
