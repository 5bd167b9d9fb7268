"""Benchmark-only peer: Ultralytics YOLO11n-cls, trained from scratch on CPU, fully offline.

Run ONLY with the peers virtualenv (see benchmarks/peers/README.md): Ultralytics is AGPL-3.0 and must never be
a defectlens dependency, so it lives in its own environment and this script runs as a separate process.
Its working files (runs, settings, font stand-ins) go to $DEFECTLENS_PEERS_DIR
(default benchmarks/results/work/peers).

CLI:
  yolo_peer.py --smoke [--guard LOG]                       1 epoch on the tiny dataset, predict test, JSON summary
  yolo_peer.py train --data ROOT [--epochs N] [--time-budget-min M] [--batch 32] [--workers 0] [--seed 0]
                     [--imgsz 224] [--threads 2] [--out DIR] [--name NAME]     -> JSON (incl. weights path)
  yolo_peer.py export --weights best.pt [--imgsz 224]                          -> JSON {onnx}
  yolo_peer.py predict --model best.pt|best.onnx --images DIR_OR_FILES... [--threads N] [--raw-ort]
                                                                                -> JSON {class_names, probs, paths}
  yolo_peer.py evaluate --model W --data ROOT [--split test]                   -> JSON {top1, n, class_names}
Global: --guard LOG installs netguard.py (audit hook that blocks + logs any network attempt) before ultralytics loads.

Python:
  import yolo_peer as yp
  r = yp.train(DATA_ROOT, epochs=1, batch=32, workers=0, seed=0, out_dir=RUNS)
  onnx = yp.export_onnx(r["weights"])
  names, probs = yp.predict_probs(r["weights"], paths)          # Ultralytics predict path, torch
  names, probs = yp.predict_probs(onnx, paths)                  # Ultralytics predict path, AutoBackend -> onnxruntime
  names, probs = yp.predict_probs_raw_ort(onnx, paths)          # plain onnxruntime + reimplemented preprocessing

Facts (ultralytics 8.4.190):
  * class order = sorted() folder names of <root>/train (data/utils.py check_cls_dataset; torchvision ImageFolder).
  * eval/predict preprocessing at imgsz=224 (data/augment.py classify_transforms): PIL image (RGB) ->
    T.Resize(224, BILINEAR, antialias: shorter side -> 224, aspect kept) -> T.CenterCrop(224) -> ToTensor (/255,
    CHW) -> Normalize(mean=0, std=1) (i.e. identity). Output probs are softmax (Classify head in eval mode).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
PEERS = Path(os.environ.get("DEFECTLENS_PEERS_DIR") or HERE.parents[1] / "benchmarks" / "results" / "work" / "peers")
CONFIG_DIR = PEERS / "yolo_config"
TINY = PEERS / "data" / "casting_tiny"
IMG_EXT = {".jpg", ".jpeg", ".png", ".bmp", ".tif", ".tiff", ".webp"}


# --------------------------------------------------------------------------------------------------------------------
# Offline environment. MUST run before `import ultralytics` (ONLINE is computed at import time).
# --------------------------------------------------------------------------------------------------------------------
def _offline_env() -> None:
    os.environ["YOLO_OFFLINE"] = "1"  # utils/__init__.py is_online() -> False: no DNS probe; gates pip-update check,
    #                                   GA events, sentry, AutoUpdate (check_requirements), AMP-weights message
    os.environ["YOLO_AUTOINSTALL"] = "0"  # check_requirements never runs `pip install` (utils/checks.py)
    os.environ.setdefault("YOLO_CONFIG_DIR", str(CONFIG_DIR))  # settings.json + fonts live here, never in ~
    os.environ.setdefault("MPLCONFIGDIR", str(CONFIG_DIR / "matplotlib"))  # matplotlib font cache, not ~/.cache
    os.environ.setdefault("TORCH_HOME", str(CONFIG_DIR / "torch"))
    os.environ.pop("ULTRALYTICS_API_KEY", None)  # Platform callbacks (utils/callbacks/platform.py) need a key
    os.environ.setdefault("YOLO_VERBOSE", "False")
    os.environ.setdefault("PYTHONHASHSEED", "0")


_UL = None


def _ul():
    """Import ultralytics once, after the offline env, then pin settings and provide offline fonts."""
    global _UL
    if _UL is not None:
        return _UL
    _offline_env()
    import shutil

    import ultralytics
    from ultralytics import settings
    from ultralytics.utils import USER_CONFIG_DIR

    settings.update(
        sync=False,
        api_key="",
        clearml=False,
        comet=False,
        dvc=False,
        mlflow=False,
        raytune=False,
        tensorboard=False,
        wandb=False,
        vscode_msg=False,
        openvino_msg=False,
        runs_dir=str(PEERS / "runs"),
        weights_dir=str(PEERS / "weights"),
        datasets_dir=str(PEERS / "data"),
    )
    # check_font() (utils/checks.py) does requests.head() to GitHub when Arial*.ttf is missing, NOT gated by
    # YOLO_OFFLINE. Provide local stand-ins (matplotlib's DejaVuSans) so even plots=True cannot reach the network.
    import matplotlib

    dejavu = Path(matplotlib.get_data_path()) / "fonts" / "ttf" / "DejaVuSans.ttf"
    for name in ("Arial.ttf", "Arial.Unicode.ttf"):
        if not (USER_CONFIG_DIR / name).exists() and dejavu.exists():
            shutil.copy(dejavu, USER_CONFIG_DIR / name)
    _UL = ultralytics
    return ultralytics


def _set_threads(threads: int | None) -> None:
    """Ultralytics' select_device() (utils/torch_utils.py) calls torch.set_num_threads(NUM_THREADS) on CPU, where
    NUM_THREADS = min(8, cpu_count - 1) = 1 on a 2-core box; override that constant and torch itself."""
    if not threads:
        return
    _ul()
    import torch
    import ultralytics.utils.torch_utils as tu

    tu.NUM_THREADS = int(threads)
    torch.set_num_threads(int(threads))


def _list_images(items) -> list[str]:
    out = []
    for it in items:
        p = Path(it)
        if p.is_dir():
            out += sorted(str(f) for f in p.rglob("*") if f.suffix.lower() in IMG_EXT)
        else:
            out.append(str(p))
    return out


def split_images(data_root, split: str) -> tuple[list[str], list[int], list[str]]:
    """(paths, labels, class_names) of <root>/<split>/<class>/*, classes in Ultralytics order (sorted train dirs)."""
    root = Path(data_root)
    names = sorted(d.name for d in (root / "train").iterdir() if d.is_dir())
    paths, labels = [], []
    for i, c in enumerate(names):
        d = root / split / c
        if d.is_dir():
            fs = sorted(str(f) for f in d.iterdir() if f.suffix.lower() in IMG_EXT)
            paths += fs
            labels += [i] * len(fs)
    return paths, labels, names


# --------------------------------------------------------------------------------------------------------------------
# Train
# --------------------------------------------------------------------------------------------------------------------
def train(
    data_root,
    epochs: int = 10,
    imgsz: int = 224,
    batch: int = 32,
    workers: int = 0,
    seed: int = 0,
    time_budget_min: float | None = None,
    out_dir=PEERS / "runs",
    name: str = "train",
    threads: int | None = os.cpu_count(),
    patience: int = 100,
    val: bool = True,
    **overrides,
) -> dict:
    """Train YOLO11n-cls from scratch (yolo11n-cls.yaml) on CPU; deterministic, plots off, offline.

    workers: Ultralytics forces workers=0 on CPU (engine/trainer.py `self.args.workers = 0`); we re-apply the
    requested value after trainer init so workers>0 really uses DataLoader worker processes.
    time_budget_min: Ultralytics `time=` (hours) -- overrides epochs; the trainer re-estimates epochs after each
    epoch and stops when the budget is exceeded (engine/trainer.py).
    Returns dict with weights (best.pt), epochs_run, train_seconds, per-epoch timings, class_names, val top1.
    """
    _ul()
    from ultralytics import YOLO
    from ultralytics.models.yolo.classify import ClassificationTrainer

    _set_threads(threads)
    want_workers = int(workers)

    class _Trainer(ClassificationTrainer):
        def __init__(self, *a, **k):
            super().__init__(*a, **k)
            self.args.workers = want_workers  # undo the CPU override

    timing = {"train_phase_s": [], "epoch_total_s": []}
    state = {}

    def on_train_epoch_start(tr):
        state["t0"] = time.perf_counter()

    def on_train_epoch_end(tr):
        timing["train_phase_s"].append(round(time.perf_counter() - state["t0"], 3))

    def on_fit_epoch_end(tr):
        if "t0" in state:  # final_eval() also fires on_fit_epoch_end; skip that one
            timing["epoch_total_s"].append(round(time.perf_counter() - state.pop("t0"), 3))

    model = YOLO("yolo11n-cls.yaml", task="classify")
    model.add_callback("on_train_epoch_start", on_train_epoch_start)
    model.add_callback("on_train_epoch_end", on_train_epoch_end)
    model.add_callback("on_fit_epoch_end", on_fit_epoch_end)
    args = dict(
        data=str(Path(data_root).resolve()),
        epochs=int(epochs),
        imgsz=int(imgsz),
        batch=int(batch),
        workers=want_workers,
        seed=int(seed),
        deterministic=True,
        device="cpu",
        pretrained=False,
        amp=False,
        plots=False,
        project=str(Path(out_dir).resolve()),
        name=name,
        exist_ok=True,
        patience=int(patience),
        val=val,
        verbose=False,
        cache=False,
    )
    if time_budget_min:
        args["time"] = float(time_budget_min) / 60.0
    args.update(overrides)
    t0 = time.perf_counter()
    model.train(trainer=_Trainer, **args)
    train_s = time.perf_counter() - t0
    tr = model.trainer
    names = [tr.data["names"][i] for i in range(len(tr.data["names"]))]
    return {
        "weights": str(tr.best if tr.best.exists() else tr.last),
        "save_dir": str(tr.save_dir),
        "train_seconds": round(train_s, 2),
        "epochs_run": len(timing["train_phase_s"]),
        "epochs_requested": int(epochs),
        "class_names": names,
        "ultralytics_val_top1_best": float(tr.metrics.get("metrics/accuracy_top1", float("nan")))
        if tr.metrics
        else None,
        "timing": timing,
        "n_train_images": len(tr.train_loader.dataset),
        "batch": int(batch),
        "workers": want_workers,
        "dataloader_workers_actual": tr.train_loader.num_workers,
        "torch_threads": __import__("torch").get_num_threads(),
        "seed": int(seed),
        "imgsz": int(imgsz),
    }


# --------------------------------------------------------------------------------------------------------------------
# Export / predict
# --------------------------------------------------------------------------------------------------------------------
def export_onnx(weights, imgsz: int = 224, dynamic: bool = False) -> str:
    """Export to ONNX next to the weights (simplify=False: onnxslim isn't installed and would trigger
    check_requirements AutoUpdate). Static batch 1 unless dynamic=True."""
    _ul()
    from ultralytics import YOLO

    return str(
        YOLO(str(weights), task="classify").export(
            format="onnx", imgsz=int(imgsz), simplify=False, dynamic=dynamic, device="cpu", verbose=False
        )
    )


_MODELS: dict = {}


def load_model(weights_or_onnx, threads: int | None = None, imgsz: int = 224, warm_image: str | None = None):
    """YOLO model via Ultralytics (AutoBackend: .pt -> torch, .onnx -> onnxruntime), warmed up, with threads pinned.

    ONNX: AutoBackend creates its InferenceSession with session_options=None (nn/backends/onnx.py), i.e. ORT defaults.
    When threads is given we replace that session with one whose intra_op_num_threads=threads (inter_op=1).
    """
    _ul()
    import torch
    from ultralytics import YOLO

    key = (str(weights_or_onnx), threads, imgsz)
    if key in _MODELS:
        return _MODELS[key]
    _set_threads(threads)
    model = YOLO(str(weights_or_onnx), task="classify")
    if warm_image is None:
        raise ValueError("load_model needs a warm_image (an image the model is first run on)")
    warm = warm_image
    model.predict(warm, imgsz=imgsz, device="cpu", verbose=False, save=False)  # builds predictor + backend
    if str(weights_or_onnx).endswith(".onnx") and threads:
        import onnxruntime as ort

        so = ort.SessionOptions()
        so.intra_op_num_threads = int(threads)
        so.inter_op_num_threads = 1
        # spinning stops at the end of each call, so this process does not slow the configuration timed next
        so.add_session_config_entry("session.force_spinning_stop", "1")
        be = model.predictor.model.backend
        be.session = ort.InferenceSession(str(weights_or_onnx), so, providers=["CPUExecutionProvider"])
    if threads:
        torch.set_num_threads(int(threads))
    _MODELS[key] = model
    return model


def predict_probs(weights_or_onnx, image_paths, imgsz: int = 224, threads: int | None = None, batch: int = 1):
    """Class probabilities through Ultralytics' own model.predict() path. Returns (class_names, probs[N, C])."""
    import numpy as np

    paths = _list_images(image_paths)
    model = load_model(weights_or_onnx, threads=threads, imgsz=imgsz, warm_image=paths[0] if paths else None)
    probs = []
    for i in range(0, len(paths), batch):
        for r in model.predict(paths[i : i + batch], imgsz=imgsz, device="cpu", verbose=False, save=False, batch=batch):
            probs.append(r.probs.data.cpu().numpy().astype(np.float32))
    names = [model.names[i] for i in range(len(model.names))]
    return names, np.stack(probs) if probs else np.zeros((0, len(names)), np.float32)


def preprocess(path: str, imgsz: int = 224):
    """Re-implementation of classify_transforms(imgsz) for a caller: returns float32 [1,3,imgsz,imgsz] in [0,1]."""
    import numpy as np
    import torchvision.transforms as T
    from PIL import Image

    im = Image.open(path).convert("RGB")
    tf = T.Compose([T.Resize(imgsz, interpolation=T.InterpolationMode.BILINEAR), T.CenterCrop(imgsz)])
    a = np.asarray(tf(im), dtype=np.float32) / 255.0
    return a.transpose(2, 0, 1)[None].copy()


def predict_probs_raw_ort(onnx_path, image_paths, imgsz: int = 224, threads: int | None = None):
    """Plain onnxruntime on the Ultralytics ONNX export, with preprocess() above. (class_names, probs)."""
    import ast

    import numpy as np
    import onnxruntime as ort

    so = ort.SessionOptions()
    if threads:
        so.intra_op_num_threads, so.inter_op_num_threads = int(threads), 1
    s = ort.InferenceSession(str(onnx_path), so, providers=["CPUExecutionProvider"])
    meta = s.get_modelmeta().custom_metadata_map
    names_d = ast.literal_eval(meta["names"])
    names = [names_d[i] for i in range(len(names_d))]
    inp = s.get_inputs()[0].name
    paths = _list_images(image_paths)
    probs = [s.run(None, {inp: preprocess(p, imgsz)})[0][0] for p in paths]
    return names, np.stack(probs).astype(np.float32)


def latency(model_path, image_paths, imgsz: int = 224, threads: int | None = 1, repeats: int = 60) -> dict:
    """Single-image latency from the JPEG path through Ultralytics' own predict path: 5 warm-up calls, then
    ``repeats`` timed calls cycling over the images (the same loop as run_real.py's latency_ms for ours)."""
    paths = _list_images(image_paths)
    model = load_model(model_path, threads=threads, imgsz=imgsz, warm_image=paths[0])
    for p in paths[:5]:
        model.predict(p, imgsz=imgsz, device="cpu", verbose=False, save=False)
    times = []
    for i in range(repeats):
        t = time.perf_counter()
        model.predict(paths[i % len(paths)], imgsz=imgsz, device="cpu", verbose=False, save=False)
        times.append((time.perf_counter() - t) * 1000.0)
    times.sort()
    return {
        "p50_ms": round(times[len(times) // 2], 2),
        "p95_ms": round(times[int(len(times) * 0.95)], 2),
        "repeats": repeats,
        "threads": threads,
    }


def top1(probs, labels) -> float:
    import numpy as np

    return float((np.asarray(probs).argmax(1) == np.asarray(labels)).mean()) if len(labels) else float("nan")


def evaluate(model_path, data_root, split: str = "test", threads: int | None = None, imgsz: int = 224) -> dict:
    paths, labels, names_dir = split_images(data_root, split)
    names, probs = predict_probs(model_path, paths, imgsz=imgsz, threads=threads)
    assert names == names_dir, (names, names_dir)
    return {"split": split, "n": len(paths), "top1": round(top1(probs, labels), 4), "class_names": names}


# --------------------------------------------------------------------------------------------------------------------
# Smoke
# --------------------------------------------------------------------------------------------------------------------
def smoke(
    data_root=TINY,
    out_dir=PEERS / "runs",
    epochs: int = 1,
    batch: int = 32,
    workers: int = 0,
    seed: int = 0,
    threads: int | None = os.cpu_count(),
) -> dict:
    import numpy as np

    t_all = time.perf_counter()
    r = train(
        data_root,
        epochs=epochs,
        batch=batch,
        workers=workers,
        seed=seed,
        out_dir=out_dir,
        name="smoke",
        threads=threads,
    )
    t = time.perf_counter()
    onnx = export_onnx(r["weights"])
    export_s = time.perf_counter() - t
    out = {
        k: r[k]
        for k in (
            "train_seconds",
            "epochs_run",
            "class_names",
            "weights",
            "timing",
            "torch_threads",
            "n_train_images",
            "ultralytics_val_top1_best",
        )
    }
    out["onnx"] = onnx
    out["export_seconds"] = round(export_s, 2)
    for split in ("val", "test"):
        paths, labels, names = split_images(data_root, split)
        assert names == r["class_names"], (names, r["class_names"])
        t = time.perf_counter()
        n_pt, p_pt = predict_probs(r["weights"], paths, threads=threads)
        t_pt = time.perf_counter() - t
        t = time.perf_counter()
        n_ox, p_ox = predict_probs(onnx, paths, threads=threads)
        t_ox = time.perf_counter() - t
        assert n_pt == n_ox == names
        out[split] = {
            "n": len(paths),
            "top1_torch": round(top1(p_pt, labels), 4),
            "top1_onnx": round(top1(p_ox, labels), 4),
            "max_abs_prob_diff_torch_vs_onnx": float(np.abs(p_pt - p_ox).max()),
            "predict_seconds_torch": round(t_pt, 2),
            "predict_seconds_onnx": round(t_ox, 2),
        }
        if split == "val":
            _, p_raw = predict_probs_raw_ort(onnx, paths, threads=threads)
            out[split]["max_abs_prob_diff_raw_ort_vs_ultralytics_onnx"] = float(np.abs(p_raw - p_ox).max())
    out["total_seconds"] = round(time.perf_counter() - t_all, 2)
    return out


def _main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--guard", help="install netguard audit hook, log JSON lines to this file")
    ap.add_argument("--simulate-online", action="store_true", help="with --guard: fake a successful is_online() probe")
    ap.add_argument("--smoke", action="store_true")
    ap.add_argument("cmd", nargs="?", choices=["train", "export", "predict", "evaluate", "latency"])
    ap.add_argument("--data", default=str(TINY))
    ap.add_argument("--epochs", type=int, default=10)
    ap.add_argument("--time-budget-min", type=float)
    ap.add_argument("--batch", type=int, default=32)
    ap.add_argument("--workers", type=int, default=0)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--imgsz", type=int, default=224)
    ap.add_argument("--threads", type=int, default=os.cpu_count())
    ap.add_argument("--out", default=str(PEERS / "runs"))
    ap.add_argument("--name", default="train")
    ap.add_argument("--weights")
    ap.add_argument("--model")
    ap.add_argument("--images", nargs="*")
    ap.add_argument("--split", default="test")
    ap.add_argument("--raw-ort", action="store_true")
    a = ap.parse_args(argv)
    if a.guard:
        sys.path.insert(0, str(HERE))
        import netguard

        netguard.install(a.guard, simulate_online=a.simulate_online)
    if a.smoke:
        res = smoke(a.data, a.out, epochs=1, batch=a.batch, workers=a.workers, seed=a.seed, threads=a.threads)
    elif a.cmd == "train":
        res = train(
            a.data,
            epochs=a.epochs,
            imgsz=a.imgsz,
            batch=a.batch,
            workers=a.workers,
            seed=a.seed,
            time_budget_min=a.time_budget_min,
            out_dir=a.out,
            name=a.name,
            threads=a.threads,
        )
    elif a.cmd == "export":
        res = {"onnx": export_onnx(a.weights, imgsz=a.imgsz)}
    elif a.cmd == "predict":
        paths = _list_images(a.images)
        fn = predict_probs_raw_ort if a.raw_ort else predict_probs
        names, probs = fn(a.model, paths, imgsz=a.imgsz, threads=a.threads)
        res = {"class_names": names, "paths": paths, "probs": probs.round(6).tolist()}
    elif a.cmd == "latency":
        res = latency(a.model, a.images, imgsz=a.imgsz, threads=a.threads)
    elif a.cmd == "evaluate":
        res = evaluate(a.model, a.data, a.split, threads=a.threads, imgsz=a.imgsz)
    else:
        ap.error("give --smoke or a command")
    if a.guard:
        import netguard

        res["netguard"] = netguard.summary()
    print(json.dumps(res, indent=1, default=str))


if __name__ == "__main__":
    _main()
