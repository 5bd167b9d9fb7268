"""Archive scoring (issue 30): ``defectlens predict DIR`` on the local engine against ``--engine ray``.

Builds a folder of N images (default 20,000: copies of the casting test split, 715 JPEGs of 300 x 300,
under ``build/bench-archive``, never in git; class subfolders kept, so ground truth is known) and
scores it with the casting bundle (FP32, gate on) through the command a user runs, each in a fresh
process: the local engine, then Ray with 1 and 2 actors (a local Ray the command starts and stops;
its start-up is part of the wall time). Per run:

- images/s over the whole command (start-up included);
- CPU share: CPU time of the command's whole process tree (the Ray workers, raylet and GCS included),
  sampled from ``/proc`` every 0.2 s, over wall time and the machine's cores; and the driver process's
  own CPU per row (listing, the Parquet and CSV writer), the part that does not scale with actors;
- rows = files: every file has exactly one row in ``predictions.csv`` (none lost, none twice).

A fixed-cost run (``--small`` images, 100 by default) shows what the engine costs before the first row.
Writes ``benchmarks/results/archive.json`` with the machine. Goal (issue 30, 2 cores): Ray with 2
actors >= 0.9x the local engine's images/s on the same folder.

    .venv/bin/python benchmarks/bench_archive.py                 # 20,000 images; about 10 minutes idle
    .venv/bin/python benchmarks/bench_archive.py --n 2000        # a quicker look (n_images says which)

Needs the ``[ray]`` extra, the casting test split in ``../shared/datasets`` and a casting bundle
(``benchmarks/results/work/gate/casting-gated.dlens``, made by ``bench_gate.py``; or ``--bundle``);
without them the script says so and writes nothing.
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from machine import describe

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
SHARED = ROOT.parent / "shared" / "datasets" / "casting" / "test"
BUNDLES = (HERE / "results" / "work" / "gate" / "casting-gated.dlens", HERE / "results" / "casting.dlens")
WORK = ROOT / "build" / "bench-archive"
TICKS = os.sysconf("SC_CLK_TCK")
GOAL = 0.9


def make_folder(source: Path, n: int, folder: Path) -> list[Path]:
    """``n`` copies of the images of ``source`` (class subfolders kept), made once and reused."""
    images = sorted(p for p in source.rglob("*") if p.is_file() and p.suffix.lower() in {".jpeg", ".jpg", ".png"})
    marker = folder / ".complete"
    if marker.exists() and marker.read_text() == f"{n} {len(images)}":
        return sorted(p for p in folder.rglob("*") if p.is_file() and not p.name.startswith("."))
    shutil.rmtree(folder, ignore_errors=True)
    made = []
    for i in range(n):
        src = images[i % len(images)]
        dst = folder / src.parent.name / f"{src.stem}_{i // len(images):03d}{src.suffix}"
        dst.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(src, dst)
        made.append(dst)
    marker.write_text(f"{n} {len(images)}")
    return sorted(made)


def _tree(root: int) -> list[int]:
    """``root`` and every process below it (from /proc/*/stat's parent ids)."""
    parents: dict[int, list[int]] = {}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                ppid = int((entry / "stat").read_text().rsplit(")", 1)[1].split()[1])
            except (OSError, IndexError, ValueError):
                continue
            parents.setdefault(ppid, []).append(int(entry.name))
    out, todo = [], [root]
    while todo:
        pid = todo.pop()
        out.append(pid)
        todo += parents.get(pid, [])
    return out


def _cpu_s(pid: int) -> float | None:
    """User + system CPU seconds of ``pid`` and of its children it has waited for."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return None
    return sum(int(f) for f in fields[11:15]) / TICKS  # utime, stime, cutime, cstime


def run_measured(cmd: list[str]) -> dict[str, Any]:
    """Run ``cmd``; its wall time, the CPU seconds of its process tree and of the process alone."""
    seen: dict[int, float] = {}
    started = time.perf_counter()
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    driver = 0.0
    while proc.poll() is None:
        for pid in _tree(proc.pid):
            cpu = _cpu_s(pid)
            if cpu is not None:
                seen[pid] = max(seen.get(pid, 0.0), cpu)
        driver = seen.get(proc.pid, driver)
        time.sleep(0.2)
    wall = time.perf_counter() - started
    out, err = proc.communicate()
    if proc.returncode not in (0, 1, 4):  # 1, 4: some files failed or need review, still a full run
        raise SystemExit(f"{' '.join(cmd)} failed ({proc.returncode}):\n{err[-3000:]}")
    return {"wall_s": wall, "tree_cpu_s": sum(seen.values()), "driver_cpu_s": driver, "stdout": out}


def rows_equal_files(csv_path: Path, files: list[Path]) -> dict[str, Any]:
    with csv_path.open(encoding="utf-8", newline="") as fh:
        names = [r["file"] for r in csv.DictReader(fh)]
    expected = {str(f) for f in files}
    return {
        "rows": len(names),
        "files": len(files),
        "duplicates": len(names) - len(set(names)),
        "missing": len(expected - set(names)),
        "ok": len(names) == len(files) and set(names) == expected,
    }


def one_run(engine: str, actors: int | None, folder: Path, files: list[Path], bundle: Path, out: Path) -> dict:
    shutil.rmtree(out, ignore_errors=True)
    cmd = [str(Path(sys.executable).with_name("defectlens")), "predict", str(folder), "--model", str(bundle)]
    cmd += ["--out", str(out)]
    if engine == "ray":
        cmd += ["--engine", "ray", "--actors", str(actors)]
    m = run_measured(cmd)
    cores = os.cpu_count() or 1
    check = rows_equal_files(out / "predictions.csv", files)
    result = {
        "engine": engine,
        "actors": actors,
        "n_images": len(files),
        "wall_s": round(m["wall_s"], 2),
        "images_per_s": round(len(files) / m["wall_s"], 1),
        "cpu_s": round(m["tree_cpu_s"], 2),
        "driver_cpu_s": round(m["driver_cpu_s"], 2),
        "cpu_share": round(m["tree_cpu_s"] / m["wall_s"] / cores, 3),
        "cpu_ms_per_image": round(1000 * m["tree_cpu_s"] / len(files), 2),
        "driver_cpu_ms_per_image": round(1000 * m["driver_cpu_s"] / len(files), 3),
        "rows_equal_files": check,
    }
    print(json.dumps({k: v for k, v in result.items() if k != "rows_equal_files"}), check["ok"], flush=True)
    return result


def summarise(runs: list[dict], fixed: list[dict]) -> dict[str, Any]:
    """The figures the README quotes: Ray with 2 actors against local, the steady cost per image and per
    row of the driver (the full run less the fixed-cost run, per extra image), and the engine's fixed cost."""

    def steady(key: str, run: dict, small: dict) -> float:
        return (run[key] - small[key]) / (run["n_images"] - small["n_images"])

    by = {(r["engine"], r["actors"]): (r, f) for r, f in zip(runs, fixed, strict=True)}
    local, ray2 = by[("local", None)][0], by[("ray", 2)][0]
    ratio = ray2["images_per_s"] / local["images_per_s"]
    out: dict[str, Any] = {
        "ray2_over_local": round(ratio, 3),
        "goal_ray2_over_local": GOAL,
        "goal_met": ratio >= GOAL and all(r["rows_equal_files"]["ok"] for r in runs + fixed),
        "steady": {},
    }
    for (engine, actors), (run, small) in by.items():
        cpu = steady("cpu_s", run, small) * 1000
        driver = steady("driver_cpu_s", run, small) * 1000
        out["steady"][f"{engine}-{actors or 0}"] = {
            "cpu_ms_per_image": round(cpu, 2),
            "images_per_s_per_busy_core": round(1000 / cpu, 1),
            "driver_cpu_ms_per_row": round(driver, 3),
            "fixed_cost_s": round(small["wall_s"] - small["n_images"] / run["images_per_s"], 1),
        }
    out["note"] = (
        "images/s over the whole command, start-up included; CPU of the whole process tree (Ray workers "
        "included) sampled from /proc every 0.2 s, so a process's last 0.2 s can be missed; steady: the full "
        "run less the fixed-cost run, per extra image"
    )
    return out


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--n", type=int, default=20_000, help="images in the folder (default 20,000)")
    p.add_argument("--small", type=int, default=100, help="images of the fixed-cost run (default 100)")
    p.add_argument("--images", type=Path, default=SHARED, help="images to copy (default: the casting test split)")
    p.add_argument("--bundle", type=Path, default=None, help="model bundle (default: the casting bundle)")
    p.add_argument("--work", type=Path, default=WORK, help="where the folder and the outputs go")
    p.add_argument("--out", type=Path, default=HERE / "results" / "archive.json")
    args = p.parse_args(argv)
    try:
        import ray  # noqa: F401
    except ImportError:
        print("skipped: --engine ray needs the [ray] extra: pip install 'defectlens[ray]'")
        return 0
    if not args.images.is_dir():
        print(f"skipped: no images at {args.images} (the casting test split in ../shared/datasets)")
        return 0
    bundle = args.bundle or next((b for b in BUNDLES if b.is_file()), None)
    if bundle is None or not bundle.is_file():
        print(f"skipped: no casting bundle at {', '.join(map(str, BUNDLES))}; make one with bench_gate.py or --bundle")
        return 0
    return _measure(args, bundle)


def _measure(args: argparse.Namespace, bundle: Path) -> int:
    import pyarrow
    import ray

    machine = describe()
    machine["versions"] |= {"ray": ray.__version__, "pyarrow": pyarrow.__version__}
    files = make_folder(args.images, args.n, args.work / f"images-{args.n}")
    small = make_folder(args.images, args.small, args.work / f"images-{args.small}")
    runs, fixed = [], []
    for engine, actors in (("local", None), ("ray", 2), ("ray", 1)):
        out = args.work / f"out-{engine}-{actors or 0}"
        fixed.append(one_run(engine, actors, small[0].parent.parent, small, bundle, out))
        runs.append(one_run(engine, actors, files[0].parent.parent, files, bundle, out))
    result = {
        "n_images": args.n,
        "images": str(args.images),
        "bundle": str(bundle.relative_to(ROOT) if bundle.is_relative_to(ROOT) else bundle),
        "command": f"python benchmarks/bench_archive.py --n {args.n}",
        "machine": machine,
        "load_average_at_end": list(os.getloadavg()),
        "runs": runs,
        "fixed_cost_runs": fixed,
        **summarise(runs, fixed),
    }
    args.out.write_text(json.dumps(result, indent=2) + "\n", encoding="utf-8")
    print(f"ray 2 actors / local = {result['ray2_over_local']} (goal >= {GOAL}); wrote {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
