"""Timing worker for ``benchmarks/bench_peers.py``: Ultralytics YOLO11n-cls through its own predict path.

Run ONLY with the peers virtualenv's python (Ultralytics is AGPL-3.0 and never a defectlens dependency; see
README.md here). bench_peers.py starts it once and sends one JSON request per line on stdin, so its rounds
can alternate with ours (interleaved A/B) without paying Ultralytics' import each time. Each reply is one
line starting with ``@@`` (anything else on stdout is Ultralytics talking).

Requests:
  {"cmd": "latency", "model": PATH(.pt|.onnx), "threads": N, "images": [...]}  -> {"ms": [...]}
      model.predict(image) per image, from the JPEG path (Ultralytics reads, resizes, crops and normalises);
      the model is loaded (and warmed up) on first use with N torch threads / ONNX Runtime intra-op threads.
  {"cmd": "export", "weights": PATH, "dynamic": bool, "out": DIR}                -> {"onnx": PATH}
      the weights copied into DIR first: Ultralytics writes the ONNX file next to them.
  {"cmd": "untrained", "out": DIR}                                               -> {"weights": PATH}
      YOLO11n-cls built from yolo11n-cls.yaml (random weights; speed does not depend on them).
  {"cmd": "quit"}
"""

from __future__ import annotations

import json
import shutil
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

import yolo_peer as yp  # noqa: E402  (after the path: it sits next to this file)


def latency(model_path: str, threads: int, images: list[str]) -> dict:
    import torch

    model = yp.load_model(model_path, threads=threads, warm_image=images[0])
    torch.set_num_threads(threads)  # process-wide: another request may have changed it
    out = []
    for path in images:
        start = time.perf_counter()
        model.predict(path, imgsz=224, device="cpu", verbose=False, save=False)
        out.append((time.perf_counter() - start) * 1000.0)
    return {"ms": out}


def export(weights: str, dynamic: bool, out: str) -> dict:
    folder = Path(out)
    folder.mkdir(parents=True, exist_ok=True)
    copy = folder / ("dynamic.pt" if dynamic else "static.pt")
    shutil.copy(weights, copy)
    return {"onnx": yp.export_onnx(str(copy), dynamic=dynamic)}


def untrained(out: str) -> dict:
    yp._ul()
    from ultralytics import YOLO

    path = Path(out) / "yolo11n-cls-untrained.pt"
    path.parent.mkdir(parents=True, exist_ok=True)
    YOLO("yolo11n-cls.yaml", task="classify").save(str(path))
    return {"weights": str(path)}


def main() -> None:
    for line in sys.stdin:
        req = json.loads(line)
        try:
            if req["cmd"] == "quit":
                break
            if req["cmd"] == "latency":
                reply = latency(req["model"], int(req["threads"]), req["images"])
            elif req["cmd"] == "export":
                reply = export(req["weights"], bool(req["dynamic"]), req["out"])
            elif req["cmd"] == "untrained":
                reply = untrained(req["out"])
            else:
                reply = {"error": f"unknown command {req['cmd']!r}"}
        except Exception as exc:  # reported to the caller, which decides
            reply = {"error": f"{type(exc).__name__}: {exc}"}
        sys.stdout.write("@@" + json.dumps(reply) + "\n")
        sys.stdout.flush()


if __name__ == "__main__":
    main()
