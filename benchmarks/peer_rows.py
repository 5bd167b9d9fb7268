"""The Ultralytics YOLO11n-cls rows of run_real.py: trained, scored and timed as our recipe is.

YOLO11n-cls trains from scratch (its weights are not reachable offline) on the same train/val split,
in its own virtualenv (AGPL-3.0: never a defectlens dependency; see benchmarks/peers/README.md), with a
time budget. Its class probabilities on val and test then go through OUR evaluation code (temperature
and threshold fitted on validation only), and its ONNX export is timed through its own predict path
with the same loop that times our bundles.
"""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path
from typing import Any

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
SCRIPT = ROOT / "benchmarks" / "peers" / "yolo_peer.py"
#: Training budget per dataset; Ultralytics checks it at the end of an epoch, so a run may exceed it by one
#: epoch plus the final validation: 17 minutes keeps the whole run inside the issue's 20.
BUDGET_MIN = 17.0


def peer_python() -> Path | None:
    """The peers virtualenv's python, or None when it is not installed."""
    path = Path(os.environ.get("DEFECTLENS_PEERS_PYTHON") or ROOT / ".venv-peers" / "bin" / "python")
    return path if path.is_file() else None


def _call(*args: str, work: Path) -> dict[str, Any]:
    python = peer_python()
    assert python is not None
    env = {**os.environ, "DEFECTLENS_PEERS_DIR": str(work)}
    proc = subprocess.run([str(python), str(SCRIPT), *args], capture_output=True, text=True, env=env, check=False)
    if proc.returncode != 0:
        raise RuntimeError(f"yolo_peer.py {args[0]} failed: {proc.stderr[-2000:]}")
    return json.loads(proc.stdout[proc.stdout.index("{") :])


def layout(manifest: Any, root: Path) -> dict[str, list[Path]]:
    """``root/{train,val,test}/<class>/<n>_<file>`` as symlinks to the manifest's images (Ultralytics'
    folder format); returns the linked paths of val and test in manifest order."""
    out: dict[str, list[Path]] = {}
    for split in ("train", "val", "test"):
        links = []
        for i, rec in enumerate(manifest.split(split)):
            link = root / split / rec.label / f"{i:05d}_{Path(rec.path).name}"
            link.parent.mkdir(parents=True, exist_ok=True)
            if not link.is_symlink():
                link.symlink_to(manifest.resolve(rec))
            links.append(link)
        out[split] = links
    return out


def run_peer(data: Path, work: Path, *, seed: int, smoke: bool = False) -> dict[str, Any]:
    """Train, score and time YOLO11n-cls on the dataset folder ``data``; an entry like run_real's summarize()."""
    from defectlens.core.spec import ModelSpec
    from defectlens.data.manifest import Manifest
    from defectlens.evaluation.evaluate import EvalSettings, SplitScores, evaluate
    from defectlens.workflows.evaluate import UNSEEN, unseen_subset

    manifest = Manifest.read(data)
    links = layout(manifest, work / "yolo-data")
    budget = ["--epochs", "1"] if smoke else ["--epochs", "200", "--time-budget-min", str(BUDGET_MIN)]
    trained = _call("train", "--data", str(work / "yolo-data"), *budget, "--batch", "32", "--workers", "0",
                    "--seed", str(seed), "--threads", "2", "--out", str(work / "yolo-runs"), "--name", "yolo11n_cls",
                    work=work)  # fmt: skip
    onnx = _call("export", "--weights", trained["weights"], work=work)["onnx"]
    names = trained["class_names"]
    scores = {}
    for split in ("val", "test"):
        pred = _call("predict", "--model", onnx, "--threads", "2", "--images", *map(str, links[split]), work=work)
        assert pred["class_names"] == names, (pred["class_names"], names)
        probs = np.clip(np.asarray(pred["probs"], dtype=np.float64), 1e-12, 1.0)
        y = np.array([names.index(r.label) for r in manifest.split(split)])
        paths = [manifest.resolve(r) for r in manifest.split(split)]
        scores[split] = SplitScores(np.log(probs), y, paths, list(manifest.split(split)))
    report = ["test"]
    if (unseen := unseen_subset(manifest, scores["test"])) is not None:
        scores[UNSEEN], report = unseen, ["test", UNSEEN]
    spec = ModelSpec(arch="yolo11n-cls", input_size=224, class_names=tuple(names),
                     positive_class=manifest.info.get("positive_class"))  # fmt: skip
    result = evaluate(scores, spec=spec, report=report, settings=EvalSettings(bootstrap=0 if smoke else 1000))
    # default threads, as our bundles are timed (Predictor.load without threads: all physical cores)
    lat = _call(
        "latency",
        "--model",
        onnx,
        "--threads",
        str(os.cpu_count() or 1),
        "--images",
        *map(str, links["test"][:200]),
        work=work,
    )
    return {
        "test": {k: v for k, v in result.metrics["test"].items() if k not in ("per_class", "confusion_matrix")},
        "test_unseen": result.metrics.get(UNSEEN),
        "threshold": result.threshold.to_dict() if result.threshold else None,
        "temperature": result.temperature,
        "test_errors": _errors(result, scores["test"], names),
        "model": "yolo11n_cls",
        "pretrained": False,
        "input_size": 224,
        "channels": 3,
        "train_seconds": trained["train_seconds"],
        "epochs_run": trained["epochs_run"],
        "budget_min": None if smoke else BUDGET_MIN,
        "latency_ms_p50": lat["p50_ms"],
        "latency": lat,
        "peer": {
            "tool": "ultralytics",
            "weights": "none: built from yolo11n-cls.yaml (pretrained weights are not offline)",
        },
    }


def _errors(result: Any, test: Any, names: list[str]) -> list[dict[str, Any]]:
    probs, pred = result.decisions(test)
    return [
        {"path": str(p), "label": names[y], "prediction": names[k], "p_label": float(row[y])}
        for p, y, k, row in zip(test.paths, test.y, pred, probs, strict=True)
        if y != k
    ]
