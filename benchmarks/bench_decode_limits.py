"""Numbers behind the decode rule of ``defectlens.data.images`` (issue #18).

1. ``Image.draft`` parity: the model input from a full JPEG decode versus a DCT-scaled (draft) decode,
   on real casting images at 300 -> 192/224 px and on upscaled copies (600/1200/2400 px -> 224 px).
2. Peak memory and time of preprocessing a 124 KB 16-bit PNG of 64 Mpx (8000 x 8000), in a fresh process.
3. The JPEG corruption check: flags on the real casting and NEU-DET JPEGs (false positives), and what
   it and Pillow see on 2 KB corrupted mid-file (random bytes, zero bytes, random bytes without 0xFF).

Writes ``benchmarks/results/decode_limits.json`` with the machine description.

    .venv/bin/python benchmarks/bench_decode_limits.py [--datasets /work/shared/datasets] [--images 200]
"""

from __future__ import annotations

import argparse
import io
import json
import subprocess
import sys
import tempfile
from collections import Counter
from pathlib import Path

import numpy as np
from PIL import Image

from defectlens.data.images import to_array
from defectlens.data.jpeg import jpeg_problem
from machine import describe

HERE = Path(__file__).resolve().parent

# VmHWM, not ru_maxrss: Linux carries ru_maxrss over from the parent through fork and exec.
_MEMORY_SCRIPT = """
import sys, time
from pathlib import Path
from defectlens.core.spec import ModelSpec
from defectlens.data.images import preprocess
spec = ModelSpec(arch="x", input_size=224, in_channels=3, mean=(0.5,) * 3, std=(0.5,) * 3, class_names=("a", "b"))
start = time.perf_counter()
preprocess(sys.argv[1], spec)
hwm = next(line for line in Path("/proc/self/status").read_text().splitlines() if line.startswith("VmHWM"))
print(time.perf_counter() - start, int(hwm.split()[1]) / 1024)
"""


def _model_input(data: bytes, size: int, draft: bool) -> np.ndarray:
    with Image.open(io.BytesIO(data)) as im:
        if draft:
            im.draft(None, (size, size))
        im.load()
        return to_array(im.copy(), size=size, channels=1)


def _diff(files: list[Path], side: int | None, size: int) -> dict[str, object]:
    """Full vs draft decode of ``files`` (re-encoded at ``side`` px when given), to a ``size`` px input."""
    diffs, changed = [], 0
    for f in files:
        data = f.read_bytes()
        if side is not None:
            buf = io.BytesIO()
            Image.open(io.BytesIO(data)).convert("L").resize((side, side), Image.Resampling.BICUBIC).save(
                buf, "JPEG", quality=90
            )
            data = buf.getvalue()
        a = _model_input(data, size, draft=False).astype(np.int16)
        b = _model_input(data, size, draft=True).astype(np.int16)
        d = np.abs(a - b)
        diffs.append((float(d.mean()), int(d.max()), float((d > 0).mean())))
        changed += int(d.max() > 0)
    arr = np.array(diffs)
    return {
        "source_px": side or 300,
        "input_px": size,
        "images": len(files),
        "images_changed": changed,
        "mean_abs_diff": round(float(arr[:, 0].mean()), 4),
        "max_abs_diff": int(arr[:, 1].max()),
        "pixels_changed_fraction": round(float(arr[:, 2].mean()), 4),
    }


def _corruption(files: list[Path], trials: int = 50) -> dict[str, object]:
    out: dict[str, object] = {}
    for kind in ("random", "zeros", "random_without_ff"):
        seen: Counter[str] = Counter()
        for seed in range(trials):
            rng = np.random.default_rng(seed)
            data = bytearray(files[seed % len(files)].read_bytes())
            n = min(2048, len(data) // 5)
            at = int(len(data) * rng.uniform(0.2, 0.7))
            junk = {
                "random": rng.integers(0, 256, n, dtype=np.uint8).tobytes(),
                "zeros": bytes(n),
                "random_without_ff": rng.integers(0, 255, n, dtype=np.uint8).tobytes(),
            }[kind]
            data[at : at + n] = junk
            try:
                with Image.open(io.BytesIO(bytes(data))) as im:
                    im.load()
                pillow = "decodes"
            except OSError:
                pillow = "raises"
            flagged = jpeg_problem(np.frombuffer(bytes(data), np.uint8)) is not None
            seen[f"pillow {pillow}, check {'flags' if flagged else 'silent'}"] += 1
        out[kind] = dict(seen)
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--datasets", type=Path, default=HERE.parents[1] / "shared" / "datasets")
    parser.add_argument("--images", type=int, default=200)
    args = parser.parse_args()
    casting = sorted((args.datasets / "casting").glob("*/*/*.jpeg"))
    neu = sorted((args.datasets / "neu-det" / "IMAGES").glob("*.jpg"))
    sample = casting[:: max(1, len(casting) // args.images)][: args.images]
    result: dict[str, object] = {"machine": describe()}
    result["draft_parity"] = [_diff(sample, None, 192), _diff(sample, None, 224)] + [
        _diff(sample[:50], side, 224) for side in (600, 1200, 2400)
    ]
    flags = [f.name for f in casting + neu if jpeg_problem(np.fromfile(f, np.uint8))]
    result["jpeg_check_on_real_files"] = {"files": len(casting) + len(neu), "flagged": len(flags)}
    result["jpeg_corruption_2kb_mid_file"] = _corruption(sample)
    with tempfile.TemporaryDirectory() as tmp:
        png = Path(tmp) / "big16.png"
        Image.fromarray(np.zeros((8000, 8000), np.uint16)).save(png)
        seconds, peak = subprocess.run(
            [sys.executable, "-c", _MEMORY_SCRIPT, str(png)], capture_output=True, text=True, check=True
        ).stdout.split()
        result["png16_64mpx"] = {
            "file_bytes": png.stat().st_size,
            "seconds": round(float(seconds), 2),
            "peak_rss_mb": round(float(peak)),
        }
    out = HERE / "results" / "decode_limits.json"
    out.write_text(json.dumps(result, indent=2) + "\n", encoding="utf-8")
    print(json.dumps({k: v for k, v in result.items() if k != "machine"}, indent=2))


if __name__ == "__main__":
    main()
