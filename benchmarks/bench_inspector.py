"""The QA Inspector scoring a 1,000-image folder: images/s against the Predictor's own batch throughput,
and how late the Tk event loop runs meanwhile.

Builds a random-init model of the casting recipe's shape (EfficientNet-Lite0, 1 channel, 192 px; speed
does not depend on the weights), exports it to a bundle, links 1,000 casting training JPEGs (500 per
class) into a temporary labelled folder, then measures:

- the inspector's background scoring (:class:`defectlens.gui.app.Inspector`, no window): images/s;
- the same inside a real Tk window on an Xvfb display (when Xvfb is installed), with an ``after(20)``
  heartbeat recording how late each tick ran (the window's responsiveness);
- ``Predictor.preprocess`` alone (decode + resize, one thread) and ``Predictor.logits`` alone on
  preprocessed batches of 32 (the model's batch throughput), with the inspector's thread count.

Writes benchmarks/results/inspector.json.

    .venv/bin/python benchmarks/bench_inspector.py [--images 1000] [--arch efficientnet_lite0] [--size 192]
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import tempfile
import time
import warnings
from pathlib import Path
from typing import Any

import numpy as np

from machine import describe

ROOT = Path(__file__).resolve().parents[1]
CASTING = ROOT.parent / "shared" / "datasets" / "casting" / "train"


def make_bundle(folder: Path, arch: str, size: int) -> Path:
    import torch

    from defectlens.core.checkpoint import save_checkpoint
    from defectlens.export import export_bundle
    from defectlens.models import create_model, default_spec

    torch.manual_seed(0)
    spec = default_spec(arch, in_channels=1, input_size=size, class_names=("ok", "defect"))
    spec = spec.replace(positive_class="defect", threshold=0.5)
    model = create_model(arch, num_classes=2, in_channels=1, input_size=size)
    save_checkpoint(folder / "best.pt", model, spec)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # random weights, synthetic parity inputs: expected here
        return export_bundle(folder, folder / "model.dlens").path


def make_folder(folder: Path, n: int) -> Path:
    for label, source in (("ok", "ok_front"), ("defect", "def_front")):
        (folder / label).mkdir(parents=True)
        for f in sorted((CASTING / source).glob("*.jpeg"))[: n // 2]:
            (folder / label / f.name).symlink_to(f)
    return folder


def headless(bundle: Path, images: Path, tmp: Path) -> dict[str, Any]:
    from defectlens.gui.app import Inspector

    app = Inspector(db=tmp / "headless.sqlite", settings_file=tmp / "settings.json")
    app.open_model(bundle)
    app.wait()
    start = time.perf_counter()
    app.open_source(images)
    app.wait(timeout=600)
    seconds = time.perf_counter() - start
    out = {"images": len(app.session.items), "seconds": seconds, "img_s": len(app.session.items) / seconds}
    out["threads"] = app.threads
    app.close()
    return out


def windowed(bundle: Path, images: Path, tmp: Path) -> dict[str, Any] | None:
    """Score inside a Tk window on Xvfb with an event-loop heartbeat; None without Xvfb."""
    from shutil import which

    if which("Xvfb") is None:
        return None
    read, write = os.pipe()
    cmd = ["Xvfb", "-displayfd", str(write), "-screen", "0", "1280x900x24", "-nolisten", "tcp"]
    proc = subprocess.Popen(cmd, pass_fds=(write,), stderr=subprocess.DEVNULL)
    os.close(write)
    with os.fdopen(read, "rb", buffering=0) as pipe:
        number = b""
        while not number.endswith(b"\n"):
            number += pipe.read(16) or b"\n"
    os.environ["DISPLAY"] = f":{number.decode().strip()}"
    try:
        return _heartbeat_run(bundle, images, tmp)
    finally:
        proc.terminate()
        proc.wait()


def _heartbeat_run(bundle: Path, images: Path, tmp: Path) -> dict[str, Any]:
    from defectlens.gui.app import Inspector
    from defectlens.gui.launch import create_root
    from defectlens.gui.view import InspectorWindow

    root = create_root()
    app = Inspector(db=tmp / "window.sqlite", settings_file=tmp / "settings.json")
    win = InspectorWindow(root, app)
    app.open_model(bundle)
    while app.model is None:
        root.update()
        time.sleep(0.01)
    late: list[float] = []

    def beat(due: float) -> None:
        late.append(time.perf_counter() - due)
        if app.scoring:
            root.after(20, beat, time.perf_counter() + 0.020)
        else:
            root.quit()

    start = time.perf_counter()
    win.open_folder(str(images))
    root.after(20, beat, time.perf_counter() + 0.020)
    root.mainloop()
    seconds = time.perf_counter() - start
    win.close()
    ms = np.array(late) * 1000
    return {
        "images": 1000,
        "seconds": seconds,
        "img_s": len(app.session.items) / seconds,
        "heartbeat_ticks": len(late),
        "lateness_ms": {
            "p50": float(np.percentile(ms, 50)),
            "p99": float(np.percentile(ms, 99)),
            "max": float(ms.max()),
        },
    }


def stages(bundle: Path, images: Path, threads: int) -> dict[str, Any]:
    from defectlens.inference.predictor import Predictor

    predictor = Predictor.load(bundle, threads=threads)
    files = sorted(images.rglob("*.jpeg"))[:256]
    start = time.perf_counter()
    arrays = np.stack([predictor.preprocess(f) for f in files])
    decode = len(files) / (time.perf_counter() - start)
    predictor.logits(arrays[:32])  # warm-up
    start, done = time.perf_counter(), 0
    for i in range(0, len(arrays), 32):
        predictor.logits(arrays[i : i + 32])
        done += len(arrays[i : i + 32])
    model = done / (time.perf_counter() - start)
    return {
        "preprocess_img_s": decode,
        "logits_batch32_img_s": model,
        "serial_pipeline_img_s": 1.0 / (1.0 / decode + 1.0 / model),
        "threads": threads,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--images", type=int, default=1000)
    parser.add_argument("--arch", default="efficientnet_lite0")
    parser.add_argument("--size", type=int, default=192)
    parser.add_argument("--out", type=Path, default=ROOT / "benchmarks" / "results" / "inspector.json")
    args = parser.parse_args()
    if not CASTING.is_dir():
        raise SystemExit(f"needs the casting images at {CASTING}")
    machine = describe()
    with tempfile.TemporaryDirectory() as name:
        tmp = Path(name)
        bundle = make_bundle(tmp / "run", args.arch, args.size)
        images = make_folder(tmp / "images", args.images)
        result: dict[str, Any] = {"model": f"{args.arch} {args.size} px 1 channel, random init"}
        result["inspector_headless"] = headless(bundle, images, tmp)
        result["predictor_stages"] = stages(bundle, images, result["inspector_headless"]["threads"])
        result["inspector_window_xvfb"] = windowed(bundle, images, tmp)
    result["command"] = (
        f"python benchmarks/bench_inspector.py --images {args.images} --arch {args.arch} --size {args.size}"
    )
    result["machine"] = machine
    result["note"] = "load_average_at_start tells whether the CPU was shared (it was, on the 2-core dev machine)"
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=2) + "\n", encoding="utf-8")
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
