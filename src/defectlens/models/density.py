"""A feature-space density for the gate's out-of-distribution score, and the network that exports it.

The score is the class-conditional Mahalanobis distance with a tied covariance (Lee et al., NeurIPS
2018): the penultimate features of an image, whitened with the training features' within-class
covariance (Ledoit-Wolf shrinkage, so the estimate stays well conditioned with fewer images than
feature dimensions), and compared with each class mean; the score is the smallest distance, as a root
mean square per dimension (about 1 for a typical training image). Images from another line, another
product or a dead camera land far from every class.

A network gives one feature vector per layer it exposes (:meth:`Classifier.forward_with_features`: the
penultimate features, and for EfficientNet-Lite a middle block's pooled output too); each gets its own
density, its scores divided by their 99th percentile on validation, and the frame's score is the
largest of those (:class:`LayeredDensity`). On the ELPV recipe the penultimate features alone let half
of the generic photos through (they keep mainly what separates the classes); the middle block, still
the ImageNet features, flags them (``benchmarks/bench_gate.py``).

:class:`GatedNetwork` wraps a trained :class:`~defectlens.models.classifier.Classifier` so that one
pass returns the logits and the score: exported to ONNX it gives every runtime the same score, with no
second pass through the backbone.
"""

from __future__ import annotations

import numpy as np
import torch
from torch import nn

from defectlens.core.errors import DefectlensError
from defectlens.models.classifier import Classifier

#: Past this many feature dimensions the whitening keeps only the leading principal directions (a
#: flattened dense-head feature map can have tens of thousands).
MAX_DIMS = 2048
REDUCED_DIMS = 512
#: Fewest labelled training images the density is fitted on (two per class at least).
MIN_IMAGES = 10
#: Names of the exported graph's outputs (the CAM's feature map is :data:`~defectlens.core.bundle.CAM_OUTPUT`).
LOGITS_OUTPUT, OOD_OUTPUT = "logits", "ood"


class FeatureDensity(nn.Module):
    """Mahalanobis score of feature vectors (N, F) -> (N,), from fitted class centres and a whitening map.

    Args:
        whitening: (F, D) map taking centred features to unit within-class covariance.
        centres: (K, D) whitened class means.
    """

    whitening: torch.Tensor
    centres: torch.Tensor

    def __init__(self, whitening: np.ndarray, centres: np.ndarray):
        super().__init__()
        self.register_buffer("whitening", torch.as_tensor(whitening, dtype=torch.float32))
        self.register_buffer("centres", torch.as_tensor(centres, dtype=torch.float32))

    @property
    def features(self) -> int:
        return int(self.whitening.shape[0])

    def forward(self, feats: torch.Tensor) -> torch.Tensor:
        z = feats @ self.whitening
        d2 = (z.unsqueeze(1) - self.centres.unsqueeze(0)).square().mean(dim=2)
        return d2.min(dim=1).values.sqrt()


def fit_density(feats: np.ndarray, labels: np.ndarray) -> FeatureDensity:
    """Fit the class means and the tied, shrunk within-class covariance of training features.

    Args:
        feats: (N, F) penultimate features of the training images.
        labels: (N,) class index of each.

    Raises:
        DefectlensError: with fewer than two images of some class present, or too few images overall.
    """
    from sklearn.covariance import ledoit_wolf
    from sklearn.decomposition import PCA

    x = np.asarray(feats, dtype=np.float64)
    y = np.asarray(labels)
    classes = [k for k in np.unique(y) if np.count_nonzero(y == k) >= 2]
    if len(x) < MIN_IMAGES or not classes:
        raise DefectlensError(
            f"the gate needs at least {MIN_IMAGES} training images with 2 per class to fit on, got {len(x)}"
        )
    keep = np.isin(y, classes)
    x, y = x[keep], y[keep]
    means = np.stack([x[y == k].mean(axis=0) for k in classes])
    centred = x - means[np.searchsorted(classes, y)]
    basis = None
    if x.shape[1] > MAX_DIMS:  # keep the leading within-class directions only
        pca = PCA(n_components=min(REDUCED_DIMS, len(x) - 1), svd_solver="randomized", random_state=0)
        basis = pca.fit(centred).components_.T
        centred = centred @ basis
    cov, _ = ledoit_wolf(centred, assume_centered=True)
    values, vectors = np.linalg.eigh(cov)
    values = np.maximum(values, values.max() * 1e-6)
    whitening = vectors / np.sqrt(values)
    if basis is not None:
        whitening = basis @ whitening
    return FeatureDensity(whitening, means @ whitening)


class LayeredDensity(nn.Module):
    """One :class:`FeatureDensity` per feature vector; the score is the largest of their scores, each
    divided by its ``scales`` entry (its 99th percentile on validation), so every layer speaks in the
    same unit: about 1 at the edge of the validation images."""

    scales: torch.Tensor

    def __init__(self, densities: list[FeatureDensity], scales: np.ndarray):
        super().__init__()
        self.densities = nn.ModuleList(densities)
        self.register_buffer("scales", torch.as_tensor(scales, dtype=torch.float32))

    @property
    def features(self) -> int:
        return sum(d.features for d in self.densities)  # type: ignore[misc]

    def forward(self, feats: list[torch.Tensor]) -> torch.Tensor:
        scores = [d(f) / self.scales[i] for i, (d, f) in enumerate(zip(self.densities, feats, strict=True))]
        return torch.stack(scores, dim=1).amax(dim=1)


@torch.inference_mode()
def fit_layered(train: list[np.ndarray], labels: np.ndarray, validation: list[np.ndarray]) -> LayeredDensity:
    """A :class:`FeatureDensity` per feature vector, fitted on the training features, scaled on validation.

    Raises:
        DefectlensError: as :func:`fit_density`.
    """
    densities = [fit_density(f, labels) for f in train]
    scales = [
        max(float(np.quantile(d(torch.from_numpy(v).float()).numpy(), 0.99)), 1e-6)
        for d, v in zip(densities, validation, strict=True)
    ]
    return LayeredDensity(densities, np.asarray(scales))


class GatedNetwork(nn.Module):
    """A classifier whose forward returns its logits, the out-of-distribution score of each image (with
    a ``density``) and the untransformed image's last feature map (with ``cam``), in that order.

    The feature map is the class activation map's input (:meth:`Classifier.cam_head`); it is the
    identity view's, as Grad-CAM explains, also when test-time augmentation averages the logits of
    flipped and rotated views (their maps are of other orientations, and averaging them un-rotated
    would explain something else than what the torch path explains).
    """

    def __init__(self, classifier: Classifier, density: LayeredDensity | None, *, cam: bool = False):
        super().__init__()
        self.classifier = classifier
        self.density = density
        self.cam = cam

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, ...]:
        logits, feats, fmap = self.classifier.forward_outputs(x)
        outputs = [logits]
        if self.density is not None:
            outputs.append(self.density(feats))
        if self.cam:
            outputs.append(fmap)
        return tuple(outputs)


@torch.inference_mode()
def features_and_logits(
    model: Classifier, images: np.ndarray, *, batch_size: int = 32
) -> tuple[list[np.ndarray], np.ndarray]:
    """The pooled feature vectors (one array (N, F) per layer) and logits of uint8 images (N, C, H, W)."""
    model = model.eval()
    feats: list[list[np.ndarray]] = []
    logits = []
    for i in range(0, len(images), batch_size):
        x = torch.from_numpy(images[i : i + batch_size]).float().div(255.0)
        lg, fs = model.forward_with_features(x)
        feats.append([f.float().numpy() for f in fs])
        logits.append(lg.float().numpy())
    return [np.concatenate(layer) for layer in zip(*feats, strict=True)], np.concatenate(logits)
