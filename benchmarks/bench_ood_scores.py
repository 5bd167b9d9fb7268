"""Which out-of-distribution score the gate computes: candidates side by side on one recipe's model.

For a recipe's gated bundle (``bench_gate.py`` exports it), the network's feature vectors of the
training, validation and test images and of other parts (the other datasets' test images and generic
photos, as ``bench_gate.py`` reads them) are scored by each candidate; each candidate's threshold is set
on validation at the gate's false-flag rate (:func:`defectlens.export.profile.ood_threshold`), and the
share of each family above it is reported. Candidates: the class-conditional Mahalanobis distance with a
tied, shrunk covariance (:func:`defectlens.models.density.fit_density`) on the penultimate features, on
the middle block's pooled output, and both combined as the gate does (:func:`fit_layered`); the
k-nearest-neighbour cosine distance to the training features (k = 1, 5, 20); Mahalanobis on
L2-normalised features; the relative Mahalanobis distance (Ren et al., 2021).

    python benchmarks/bench_ood_scores.py --datasets elpv neu-6   # -> benchmarks/results/ood-scores.json
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image

sys.path.insert(0, str(Path(__file__).resolve().parent))
import bench_gate as bg
from machine import describe

Score = Callable[[list[np.ndarray]], np.ndarray]


def candidates(train: list[np.ndarray], labels: np.ndarray, val: list[np.ndarray]) -> dict[str, Score]:
    """Every candidate score, fitted on the training features (``val`` scales the combined one)."""
    import torch

    from defectlens.models.density import fit_density, fit_layered

    def torch_score(module: Any, layer: int | None = None, pre: Callable = lambda f: f) -> Score:
        def score(feats: list[np.ndarray]) -> np.ndarray:
            with torch.inference_mode():
                if layer is None:
                    return module([torch.from_numpy(f).float() for f in feats]).numpy()
                return module(torch.from_numpy(pre(feats[layer])).float()).numpy()

        return score

    def unit(f: np.ndarray) -> np.ndarray:
        return f / np.linalg.norm(f, axis=1, keepdims=True) * np.sqrt(f.shape[1])

    def knn(k: int) -> Score:
        bank = train[0] / np.linalg.norm(train[0], axis=1, keepdims=True)

        def score(feats: list[np.ndarray]) -> np.ndarray:
            q = feats[0] / np.linalg.norm(feats[0], axis=1, keepdims=True)
            return -np.sort(q @ bank.T, axis=1)[:, -k]

        return score

    one = fit_density(train[0], labels)
    background = fit_density(train[0], np.zeros(len(labels), int))
    out: dict[str, Score] = {
        "mahalanobis penultimate": torch_score(one, 0),
        "mahalanobis L2-normalised": torch_score(fit_density(unit(train[0]), labels), 0, unit),
        "relative mahalanobis": lambda f: torch_score(one, 0)(f) ** 2 - torch_score(background, 0)(f) ** 2,
        **{f"knn cosine k={k}": knn(k) for k in (1, 5, 20)},
    }
    if len(train) > 1:
        out["mahalanobis middle block"] = torch_score(fit_density(train[1], labels), 1)
        out["gate: both layers (max)"] = torch_score(fit_layered(train, labels, val))
    return out


def run(dataset: str, args: argparse.Namespace) -> dict[str, Any]:
    from defectlens.data.images import prepare_frame
    from defectlens.data.manifest import Manifest
    from defectlens.export.profile import MAX_TRAIN, MAX_VAL, ood_threshold, read_reference
    from defectlens.inference.predictor import Predictor
    from defectlens.models.density import features_and_logits

    found = bg.gated_bundle(dataset, args.gate_dir, args.work)
    if found is None:
        raise SystemExit(f"{dataset}: no run folder to score (run benchmarks/run_real.py first)")
    bundle, data, _ = found
    predictor = Predictor.load(bundle)
    model, spec, manifest = predictor.torch_model(), predictor.spec, Manifest.read(data)
    split = {s: read_reference(manifest, manifest.split(s), spec, n) for s, n in
             (("train", MAX_TRAIN), ("val", MAX_VAL), ("test", MAX_VAL))}  # fmt: skip

    def feats(images: np.ndarray) -> list[np.ndarray]:
        return features_and_logits(model, images)[0]

    def frames(sources: list[Any]) -> list[np.ndarray]:
        return feats(np.stack([prepare_frame(s, spec).array for s in sources]))

    families = {"clean test": feats(split["test"].images)}
    own = bg.SOURCES.get(dataset)
    for source in ("casting", "neu-det", "elpv"):
        files = bg.source_images(source, work=args.work, shared=args.shared, limit=args.other_limit)
        if files and source != own:
            families[f"other: {source}"] = frames(files)
    tests = bg.evenly([manifest.resolve(r) for r in manifest.split("test")], 8)
    size = bg.typical([Image.open(p) for p in tests])[0]
    families["other: generic"] = frames([im for _, im in bg.generic_photos(size, crops=8)])
    train, val = feats(split["train"].images), feats(split["val"].images)
    rows = {}
    for name, score in candidates(train, split["train"].labels, val).items():
        t = ood_threshold(score(val))
        rows[name] = {fam: round(float(np.mean(score(f) > t)), 4) for fam, f in families.items()}
        print(f"{dataset} {name:28s} " + "  ".join(f"{k} {v:.3f}" for k, v in rows[name].items()), flush=True)
    return {"bundle": str(bundle), "n": {k: len(v[0]) for k, v in families.items()}, "flagged_share": rows}


def get_args_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--datasets", nargs="+", default=["elpv"], help="recipe datasets with a run folder")
    p.add_argument("--gate-dir", type=Path, default=bg.WORK / "gate")
    p.add_argument("--work", type=Path, default=bg.WORK)
    p.add_argument("--shared", type=Path, default=bg.SHARED)
    p.add_argument("--other-limit", type=int, default=300)
    p.add_argument("--out", type=Path, default=bg.RESULTS / "ood-scores.json")
    return p


def main(args: argparse.Namespace) -> int:
    res = json.loads(args.out.read_text()) if args.out.is_file() else {}
    res["machine"] = describe()
    for dataset in args.datasets:
        res.setdefault("datasets", {})[dataset] = run(dataset, args)
        args.out.write_text(json.dumps(res, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main(get_args_parser().parse_args()))
