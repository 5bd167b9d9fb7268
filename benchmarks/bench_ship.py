"""What a plant installs (issue 28): the wheel, a clean torch-free install, the container image's virtualenv.

Builds the wheel and makes both virtualenvs with ``deploy/install.sh``, the script the ``Dockerfile`` runs (the
image's virtualenv is that script's ``venv`` step with the Dockerfile's extras, then its ``slim`` step when the
Dockerfile runs it; the clean install is ``pip install`` of the wheel, less pip and setuptools), from the package
index, and records for each:

- size on disk (apparent bytes of every file, MB = 10^6 bytes), with the largest packages;
- start-up to the first verdict: ``defectlens predict IMAGE --model BUNDLE`` in that virtualenv, run
  ``--runs`` times (first and median wall time; the first run after the install is the cold one);
- for the image's virtualenv also the service: the Dockerfile's CMD started -> ``/readyz`` answers 200 ->
  the first ``/v1/predict`` answer.

The Inspector row (``dist/defectlens-inspector``, issue 28 part 3, ``make inspector-app``) is measured when that
folder exists: its size, and the built program (not Python) started ``--runs`` times on a private Xvfb display on
the bundle and a folder of three ELPV cells, until its window's title carries the first verdict (read with
xdotool, as ``tests/integration/test_inspector_app.py`` does); without Xvfb or xdotool only the size.

    .venv/bin/python benchmarks/bench_ship.py                  # about 4 minutes on 2 cores
    .venv/bin/python benchmarks/bench_ship.py --bundle B.dlens --image part.png --out /tmp/ship.json

Goals (issue 28): clean install <= 200 MB, image virtualenv <= 250 MB, Inspector folder <= 150 MB.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
import uuid
from importlib import resources
from pathlib import Path
from typing import Any

from machine import describe

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "benchmarks" / "results"
INSTALL = ROOT / "deploy" / "install.sh"
BUNDLE = RESULTS / "work" / "gate" / "elpv-gated.dlens"
INSPECTOR = ROOT / "dist" / "defectlens-inspector"
MB = 1e6
GOALS_MB = {"clean_install": 200, "image_venv": 250, "inspector": 150}


def image_extras() -> str:
    """The extras the Dockerfile installs (the last word of its ``install.sh venv`` line)."""
    text = (ROOT / "Dockerfile").read_text(encoding="utf-8")
    match = re.search(r"install\.sh venv \S+ \S+ (\S+)", text)
    assert match is not None, "the Dockerfile has no 'install.sh venv WHEEL PREFIX EXTRAS' step"
    return match.group(1)


def image_slims() -> bool:
    """Whether the Dockerfile runs ``install.sh slim`` on its virtualenv."""
    return "install.sh slim /opt/venv" in (ROOT / "Dockerfile").read_text(encoding="utf-8")


def tree_bytes(folder: Path) -> int:
    """Apparent size of every regular file under ``folder`` (links not followed)."""
    total = 0
    for path in folder.rglob("*"):
        if path.is_file() and not path.is_symlink():
            total += path.stat().st_size
    return total


def largest(prefix: Path, n: int = 8) -> dict[str, float]:
    """The ``n`` largest entries of the virtualenv's site-packages, MB."""
    (site,) = prefix.glob("lib/python3*/site-packages")
    sizes = {p.name: tree_bytes(p) if p.is_dir() else p.stat().st_size for p in site.iterdir()}
    top = sorted(sizes.items(), key=lambda kv: -kv[1])[:n]
    return {name: round(size / MB, 1) for name, size in top}


def sh(*args: str) -> str:
    proc = subprocess.run(["sh", str(INSTALL), *args], env={**os.environ, "PYTHON": sys.executable},
                          capture_output=True, text=True)  # fmt: skip
    if proc.returncode != 0:
        sys.exit(f"bench_ship: install.sh {args[0]} failed:\n{proc.stderr}")
    return proc.stdout


def predict_times(prefix: Path, *, bundle: Path, image: Path, runs: int) -> dict[str, Any]:
    """Wall time of ``defectlens predict IMAGE`` in the virtualenv, ``runs`` times."""
    times = []
    for _ in range(runs):
        start = time.perf_counter()
        proc = subprocess.run([str(prefix / "bin" / "defectlens"), "predict", str(image), "--model", str(bundle)],
                              capture_output=True, text=True)  # fmt: skip
        times.append(time.perf_counter() - start)
        if proc.returncode not in (0, 4):  # 4: the gate asked for review; still a verdict
            sys.exit(f"bench_ship: predict failed in {prefix}:\n{proc.stderr}")
    return {"first_s": round(times[0], 3), "median_s": round(statistics.median(times), 3), "runs": runs}


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def serve_to_first_answer(prefix: Path, *, bundle: Path, image: Path, work: Path) -> dict[str, Any]:
    """The image's CMD in the virtualenv: seconds to ``/readyz`` 200 and to the first predict answer."""
    port, key = free_port(), uuid.uuid4().hex
    env = {"PATH": f"{prefix / 'bin'}:{os.environ['PATH']}", "DEFECTLENS_MODEL": str(bundle), "DEFECTLENS_API_KEY": key,
           "DEFECTLENS_DB": str(work / "inspections.sqlite"), "DEFECTLENS_PORT": str(port)}  # fmt: skip
    start = time.perf_counter()
    proc = subprocess.Popen([str(prefix / "bin" / "defectlens"), "serve", "--host", "0.0.0.0"], env=env,
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)  # fmt: skip
    try:
        ready = _wait_ready(port, proc) - start
        boundary = uuid.uuid4().hex
        head = f'--{boundary}\r\nContent-Disposition: form-data; name="files"; filename="{image.name}"\r\n\r\n'
        body = head.encode() + image.read_bytes() + f"\r\n--{boundary}--\r\n".encode()
        headers = {"Content-Type": f"multipart/form-data; boundary={boundary}", "X-API-Key": key}
        request = urllib.request.Request(f"http://127.0.0.1:{port}/v1/predict", data=body, headers=headers)
        with urllib.request.urlopen(request, timeout=60) as response:
            json.loads(response.read())
        answered = time.perf_counter() - start
    finally:
        proc.send_signal(signal.SIGTERM)
        proc.wait(timeout=60)
    return {"ready_s": round(ready, 3), "first_answer_s": round(answered, 3)}


def _wait_ready(port: int, proc: subprocess.Popen[bytes]) -> float:
    deadline = time.perf_counter() + 300
    while time.perf_counter() < deadline:
        if proc.poll() is not None:
            sys.exit(f"bench_ship: the service exited: {proc.stderr.read().decode() if proc.stderr else ''}")
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/readyz", timeout=5) as response:
                if response.status == 200:
                    return time.perf_counter()
        except OSError:
            time.sleep(0.05)
    sys.exit("bench_ship: the service was not ready within 300 s")


def inspector_row(*, bundle: Path, images: list[Path], runs: int, work: Path) -> dict[str, Any]:
    """The Inspector folder's size and the built program's start-up to its first verdict, when built."""
    row: dict[str, Any] = {"path": str(INSPECTOR.relative_to(ROOT)), "goal_mb": GOALS_MB["inspector"]}
    if not INSPECTOR.is_dir():
        row.update(size_mb=None, note="not built here ('make inspector-app' makes it); filled when the folder exists")
        return row
    row["size_mb"] = round(tree_bytes(INSPECTOR) / MB, 1)
    row["meets_goal"] = row["size_mb"] <= GOALS_MB["inspector"]
    row["largest_mb"] = largest_in(INSPECTOR / "_internal")
    if shutil.which("Xvfb") is None or shutil.which("xdotool") is None:
        row["startup_to_first_verdict"] = None
        row["note"] = "start-up not measured: needs Xvfb and xdotool (make sysdeps)"
        return row
    cells = work / "cells"
    cells.mkdir()
    for image in images:
        shutil.copy(image, cells / image.name)
    row["startup_to_first_verdict"] = first_verdict_times(bundle=bundle, folder=cells, runs=runs, work=work)
    return row


def largest_in(folder: Path, n: int = 8) -> dict[str, float]:
    """The ``n`` largest entries of ``folder``, MB (links not followed: PyInstaller links libraries it places twice)."""
    sizes = {p.name: tree_bytes(p) if p.is_dir() else p.stat().st_size for p in folder.iterdir() if not p.is_symlink()}
    return {name: round(size / MB, 1) for name, size in sorted(sizes.items(), key=lambda kv: -kv[1])[:n]}


def first_verdict_times(*, bundle: Path, folder: Path, runs: int, work: Path) -> dict[str, Any]:
    """Wall time from starting the built Inspector to a window title with an image's verdict, ``runs`` times."""
    read, write = os.pipe()
    xvfb = subprocess.Popen([str(shutil.which("Xvfb")), "-displayfd", str(write), "-screen", "0", "1280x900x24",
                             "-nolisten", "tcp"], pass_fds=(write,), stderr=subprocess.DEVNULL)  # fmt: skip
    os.close(write)
    with os.fdopen(read) as pipe:
        display = f":{pipe.readline().strip()}"
    times = []
    try:
        for run in range(runs):
            env = {**os.environ, "DISPLAY": display, "DEFECTLENS_CONFIG_DIR": str(work / f"config-{run}")}
            cmd = [str(INSPECTOR / "defectlens-inspector"), "--db", str(work / f"log-{run}.sqlite"),
                   "--model", str(bundle), "--folder", str(folder)]  # fmt: skip
            start = time.perf_counter()
            proc = subprocess.Popen(cmd, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
            try:
                _wait_verdict(display, proc)
                times.append(time.perf_counter() - start)
            finally:
                proc.terminate()
                proc.wait(timeout=60)
    finally:
        xvfb.terminate()
        xvfb.wait(timeout=30)
    return {"first_s": round(times[0], 3), "median_s": round(statistics.median(times), 3), "runs": runs,
            "display": "Xvfb 1280x900"}  # fmt: skip


def _wait_verdict(display: str, proc: subprocess.Popen[bytes]) -> None:
    """Until the window's title names an image and its decision (``defectlens QA Inspector - NAME: DECISION``)."""
    deadline = time.perf_counter() + 300
    cmd = ["xdotool", "search", "--onlyvisible", "--name", "QA Inspector", "getwindowname", "%@"]
    while time.perf_counter() < deadline:
        if proc.poll() is not None:
            sys.exit(f"bench_ship: the Inspector exited: {proc.stderr.read().decode() if proc.stderr else ''}")
        found = subprocess.run(cmd, env={**os.environ, "DISPLAY": display}, capture_output=True, text=True)
        if any(re.match(r"defectlens QA Inspector - .+: \S", name) for name in found.stdout.splitlines()):
            return
        time.sleep(0.05)
    sys.exit("bench_ship: no verdict in the Inspector's title within 300 s")


def get_args_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--out", type=Path, default=RESULTS / "ship.json")
    p.add_argument("--bundle", type=Path, default=BUNDLE, help="the bundle predicted with (default: ELPV recipe)")
    p.add_argument("--image", type=Path, default=None, help="the image (default: the first ELPV cell)")
    p.add_argument("--runs", type=int, default=5, help="predict runs per virtualenv")
    return p


def main(argv: list[str] | None = None) -> dict[str, Any]:
    args = get_args_parser().parse_args(argv)
    if not args.bundle.is_file():
        sys.exit(f"bench_ship: no bundle at {args.bundle}; pass --bundle (a .dlens from 'defectlens export')")
    image = args.image or sorted(Path(str(resources.files("elpv_dataset") / "data" / "images")).glob("*.png"))[0]
    machine = describe()
    with tempfile.TemporaryDirectory(prefix="bench-ship-") as tmp:
        work = Path(tmp)
        start = time.perf_counter()
        wheel = Path(sh("wheel", str(ROOT), str(work / "dist")).split()[-1])
        built_s = time.perf_counter() - start
        rows: dict[str, Any] = {"wheel": {"file": wheel.name, "size_mb": round(wheel.stat().st_size / MB, 3),
                                          "build_s": round(built_s, 1)}}  # fmt: skip
        for name, extras in (("clean_install", ""), ("image_venv", image_extras())):
            prefix = work / name
            start = time.perf_counter()
            sh("venv", str(wheel), str(prefix), *([extras] if extras else []))
            slim = name == "image_venv" and image_slims()
            before_slim = round(tree_bytes(prefix) / MB, 1)
            if slim:
                sh("slim", str(prefix))
            row = {"extras": extras or None, "slim": slim, "install_s": round(time.perf_counter() - start, 1)}
            if slim:
                row["size_before_slim_mb"] = before_slim
            row["size_mb"] = round(tree_bytes(prefix) / MB, 1)
            row["goal_mb"] = GOALS_MB[name]
            row["meets_goal"] = row["size_mb"] <= GOALS_MB[name]
            row["largest_mb"] = largest(prefix)
            row["predict"] = predict_times(prefix, bundle=args.bundle, image=image, runs=args.runs)
            if name == "image_venv":
                row["serve"] = serve_to_first_answer(prefix, bundle=args.bundle, image=image, work=work)
            rows[name] = row
            print(f"{name}: {row['size_mb']} MB (goal {row['goal_mb']}), predict first {row['predict']['first_s']} s, "
                  f"median {row['predict']['median_s']} s", flush=True)  # fmt: skip
        images = sorted(image.parent.glob("*.png"))[:3] if args.image is None else [image]
        rows["inspector"] = inspector_row(bundle=args.bundle, images=images, runs=args.runs, work=work)
        print(f"inspector: {rows['inspector'].get('size_mb')} MB, first verdict "
              f"{rows['inspector'].get('startup_to_first_verdict')}", flush=True)  # fmt: skip
    result = {"bundle": str(args.bundle.relative_to(ROOT) if args.bundle.is_relative_to(ROOT) else args.bundle),
              "image": image.name, "mb": "10^6 bytes", **rows, "machine": machine}  # fmt: skip
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=2) + "\n", encoding="utf-8")
    print(f"wheel {rows['wheel']['size_mb']} MB; written {args.out}")
    return result


if __name__ == "__main__":
    main()
