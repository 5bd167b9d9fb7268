"""Builders shared by several test packages: a tiny random-init checkpoint (the bundle fixtures in
tests/conftest.py export it), and a scripted Predictor whose probabilities are written in the image.

The class layouts the surfaces are tested with (:data:`LAYOUTS`): the defect class second (every
early fixture), the defect class first (every real dataset we ship: ``def_front`` < ``ok_front``,
``defective`` < ``functional``), and three classes without a threshold.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path

import numpy as np

#: layout name -> (class names in output order, defect class, threshold)
LAYOUTS: dict[str, tuple[tuple[str, ...], str | None, float | None]] = {
    "defect_last": (("ok", "defect"), "defect", 0.3),
    "defect_first": (("defect", "ok"), "defect", 0.3),
    "three_classes": (("crack", "ok", "scratch"), None, None),
}

#: layout name -> the probabilities every image gets from its ``constant_bundle`` (tests/conftest.py): the
#: binary ones a defect at threshold 0.3 though "ok" is the more probable class
CONSTANT_PROBS: dict[str, dict[str, float]] = {
    "defect_last": {"ok": 0.6, "defect": 0.4},
    "defect_first": {"defect": 0.4, "ok": 0.6},
    "three_classes": {"crack": 0.2, "ok": 0.5, "scratch": 0.3},
}


def make_checkpoint(
    folder,
    *,
    arch="simple_cnn",
    in_channels=1,
    size=32,
    classes=("ok", "defect"),
    positive=None,
    threshold=0.5,
    seed=0,
    tta="none",
    logits=None,
):
    """Write ``folder/best.pt`` for a random-init model; returns the run folder.

    A binary model's defect class is ``positive`` (default: the second class). With ``logits`` the last
    linear layer is zeroed and given these biases, so every image gets exactly these logits: the
    probabilities a surface shows can be written in a test by hand.
    """
    import torch

    from defectlens.core.checkpoint import save_checkpoint
    from defectlens.models import create_model, default_spec

    torch.manual_seed(seed)
    spec = default_spec(arch, in_channels=in_channels, input_size=size, class_names=classes).replace(tta=tta)
    if len(classes) == 2:
        spec = spec.replace(positive_class=positive or classes[1], threshold=threshold)
    model = create_model(arch, num_classes=len(classes), in_channels=in_channels, input_size=size)
    if logits is not None:
        with torch.no_grad():
            model.head.linear.weight.zero_()
            model.head.linear.bias.copy_(torch.tensor(logits, dtype=torch.float32))
    save_checkpoint(
        folder / "best.pt",
        model,
        spec,
        config={},
        metrics={"epoch": 1, "val_accuracy": 0.5, "val_macro_f1": 0.4},  # the training loop's last row
        evaluation={"val": {"n": 16, "accuracy": 0.75, "macro_f1": 0.7}, "test": {"n": 16, "accuracy": 0.7}},
        data_fingerprint="f" * 64,
    )
    return folder


def scripted_predictor(layout: str = "defect_last", *, size: int = 16):
    """A torch-free Predictor (RGB, ``size`` px) of one of :data:`LAYOUTS` whose class probabilities are
    written in the image: class k gets channel k's share of the summed channel means, so the colour
    (51, 204, 0) reads as 20 % the first class and 80 % the second (see :func:`write_part`)."""
    from defectlens.core.spec import ModelSpec
    from defectlens.inference.predictor import Predictor

    classes, positive, threshold = LAYOUTS[layout]
    k = len(classes)
    spec = ModelSpec(
        "simple_cnn",
        size,
        3,
        (0.5,) * 3,
        (0.25,) * 3,
        class_names=classes,
        positive_class=positive,
        threshold=threshold,
    ).check()

    def run(x: np.ndarray) -> np.ndarray:
        means = x.mean(axis=(2, 3))[:, :k].astype(np.float64) + 1e-12  # a blank warm-up image: uniform
        return np.log(means / means.sum(axis=1, keepdims=True)).astype(np.float32)

    return Predictor(run, spec, backend="scripted", model_id=f"scripted-{layout}")


def write_part(path: Path, probabilities: Mapping[str, float], class_names: Sequence[str], *, size: int = 16) -> Path:
    """A uniform RGB PNG that :func:`scripted_predictor` reads as ``probabilities`` (multiples of 0.2 are exact
    in 8-bit: 51 = 0.2 * 255)."""
    from PIL import Image

    colour = [round(probabilities[c] * 255) for c in class_names] + [0] * (3 - len(class_names))
    assert sum(colour) == 255, f"probabilities {dict(probabilities)} must sum to 1 in steps of 1/255"
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.new("RGB", (size, size), tuple(colour)).save(path)
    return path


def elpv_cells(
    root: Path, *, per_class: int, names: tuple[str, str] = ("ok", "defect"), skip: int = 0, jpeg: bool = False
) -> Path:
    """``root/<names[0]>`` and ``root/<names[1]>``: real solar-cell photos (300 x 300, gray) from the elpv-dataset
    package, the functional cells (defect probability 0) and the surely defective ones (1.0), ``per_class`` of
    each after the first ``skip``: links to the package's PNGs, or JPEG copies (``jpeg``). What the surface tests
    (page, Inspector, README, station) take their few real images from, so a clone without ``../shared`` runs them.
    """
    from importlib import resources

    from PIL import Image

    from tests.require import import_or_missing

    import_or_missing("elpv_dataset", flag="EXTRAS", reason="the real images are ELPV cells (the [train] extra)")
    data = Path(str(resources.files("elpv_dataset") / "data"))
    rows = [line.split() for line in (data / "labels.csv").read_text().splitlines() if line.strip()]
    for name, probability in zip(names, (0.0, 1.0), strict=True):
        (root / name).mkdir(parents=True, exist_ok=True)
        cells = [data / path for path, p, *_ in rows if float(p) == probability][skip : skip + per_class]
        for cell in cells:
            if jpeg:
                Image.open(cell).convert("L").save(root / name / f"{cell.stem}.jpeg", quality=95)
            else:
                (root / name / cell.name).symlink_to(cell)
    return root
