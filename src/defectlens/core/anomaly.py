"""What every layer needs to know of anomaly mode, without torch: how a spec says it is an anomaly model,
its two classes, and how a dataset's labels map onto them.

An anomaly model (:mod:`defectlens.models.patchcore`) is fitted on the normal class only and answers as
a binary model with classes ``(normal, "anomalous")``: every other label of a dataset (each defect kind,
seen or not) is ``anomalous`` when it is evaluated.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence

from defectlens.core.errors import DefectlensError
from defectlens.core.spec import ModelSpec

#: ``ModelSpec.extra["task"]`` of an anomaly model.
ANOMALY_TASK = "anomaly"
#: The positive class of an anomaly model: every label but the normal one.
ANOMALOUS = "anomalous"
#: Training tasks: a classifier of labelled classes, or anomaly detection fitted on normal images only.
TASKS = ("classify", ANOMALY_TASK)
#: Fewest normal training images anomaly mode fits on.
MIN_NORMAL_IMAGES = 10
#: The backbone strides whose features describe a patch (``TrainConfig.patch_strides``): stride 8 and 16, the
#: paper's mid-level choice and the default, or with the finer stride-4 features too (small defects: they ranked
#: casting and bottle higher, ELPV's cracks lower; README, anomaly mode).
PATCH_STRIDE_CHOICES = ("8,16", "4,8,16")
#: How a patch feature's 3x3 neighbourhood average treats the feature map's border (``TrainConfig.patch_padding``):
#: ``valid`` averages the neighbours that exist (the default); ``zeros`` counts the zero padding as neighbours
#: (torch's ``AvgPool2d`` default, as anomalib's PatchCore pools), so a border patch's features shrink toward zero
#: and only border rows of the bank match it (README, anomaly mode: what it does on each dataset).
PATCH_PADDING_CHOICES = ("valid", "zeros")
#: Which stride-16 block's features a patch takes (``TrainConfig.stride16_stage``, its default first): ``last``, the
#: last stride-16 block (the end of the backbone PatchCore keeps), or ``first``, the end of the first stride-16 stage
#: (Lite0: 80 channels after block 7 of 11 instead of 112 after block 10): the backbone stops earlier and each patch
#: has fewer numbers, so both the convolutions and the distance product cost less. A spec without the choice: ``last``.
STRIDE16_STAGE_CHOICES = ("last", "first")
#: What an image's raw score is (``TrainConfig.image_score``, its default first): ``map``, the largest value of its
#: anomaly map (the patch scores upsampled and smoothed with the Gaussian the overlay shows, sigma 4 px: each place
#: is averaged with its neighbours first, so one noisy patch counts for less than a defect that spans several), or
#: ``patch``, its largest patch score (the paper's). ``map`` ranked casting, ELPV and bottle as high or higher
#: (README, anomaly mode).
IMAGE_SCORE_CHOICES = ("map", "patch")
#: The image score of a model whose spec does not name one (fitted before the choice existed).
IMAGE_SCORE_BEFORE = "patch"
#: ``TrainConfig.roi``'s shorthand for the disc inscribed in the model's square input (the ellipse inscribed in the
#: frame before the resize): a round part centred by its fixture; otherwise ``roi`` names a mask image.
ROI_CIRCLE = "circle"


def is_anomaly(spec: ModelSpec) -> bool:
    """Whether ``spec`` describes an anomaly model."""
    return spec.extra.get("task") == ANOMALY_TASK


def normal_class(spec: ModelSpec) -> str:
    """The normal class of an anomaly model's spec (its first class)."""
    return str(spec.class_names[0])


def model_label(spec: ModelSpec, label: str) -> str:
    """``label`` (a dataset's class) as the model's class: for an anomaly model, the normal class or
    ``anomalous``; otherwise unchanged."""
    if not is_anomaly(spec):
        return label
    return label if label == normal_class(spec) else ANOMALOUS


def subfolder_classes(class_names: Sequence[str], subfolders: Iterable[str]) -> dict[str, str]:
    """The model class each class subfolder of an input folder stands for (ground truth for predict, bench and
    the Inspector): a subfolder named like a class is that class. For an anomaly model, beside a subfolder
    named like its normal class, every other subfolder is a defect kind, so ``anomalous`` (MVTec AD's
    ``test/good``, ``test/<kind>``); without that normal subfolder, only ``anomalous/`` itself is."""
    names, folders = tuple(class_names), set(subfolders)
    out = {f: f for f in folders if f in names}
    if len(names) == 2 and names[1] == ANOMALOUS and names[0] in folders:
        out.update({f: ANOMALOUS for f in folders if f not in names})
    return out


def pick_normal(classes: Iterable[str], normal: str | None) -> str:
    """The normal class of a dataset: ``normal`` when given, else ``good``/``ok``/``normal``/``ok_front``.

    Raises:
        DefectlensError: naming the dataset's classes, when there is no such class.
    """
    names = list(classes)
    if normal is not None:
        if normal not in names:
            raise DefectlensError(f"normal class {normal!r} is not a class of the dataset ({', '.join(names)})")
        return normal
    found = [n for n in names if n.lower() in ("good", "ok", "normal", "ok_front", "functional", "pass")]
    if len(found) != 1:
        raise DefectlensError(
            f"anomaly mode fits on the normal class only; name it with --normal (the dataset's classes: "
            f"{', '.join(names)})"
        )
    return found[0]
