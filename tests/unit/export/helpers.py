"""A tiny random-init checkpoint and its exported bundle; the fixtures are re-exported by each test package."""

from __future__ import annotations

import warnings

import pytest


def make_checkpoint(folder, *, arch="simple_cnn", in_channels=1, size=32, classes=("ok", "defect"), seed=0, tta="none"):
    """Write ``folder/best.pt`` for a random-init model; returns the run folder."""
    import torch

    from defectlens.models import create_model, default_spec
    from defectlens.training.checkpoint import save_checkpoint

    torch.manual_seed(seed)
    spec = default_spec(arch, in_channels=in_channels, input_size=size, class_names=classes).replace(tta=tta)
    if len(classes) == 2:
        spec = spec.replace(positive_class=classes[1], threshold=0.5)
    model = create_model(arch, num_classes=len(classes), in_channels=in_channels, input_size=size)
    save_checkpoint(folder / "best.pt", model, spec, config={}, metrics={"val": {"accuracy": 0.5}})
    return folder


@pytest.fixture(scope="session")
def run_dir(tmp_path_factory):
    return make_checkpoint(tmp_path_factory.mktemp("run"))


@pytest.fixture(scope="session")
def bundle(run_dir, tmp_path_factory):
    from defectlens.export import export_bundle

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # the synthetic-inputs warning is tested on its own
        return export_bundle(run_dir, tmp_path_factory.mktemp("bundle") / "model.dlens").path
