"""Builders shared by several test packages: a tiny random-init checkpoint (the bundle fixtures in
tests/conftest.py export it)."""

from __future__ import annotations


def make_checkpoint(folder, *, arch="simple_cnn", in_channels=1, size=32, classes=("ok", "defect"), seed=0, tta="none"):
    """Write ``folder/best.pt`` for a random-init model; returns the run folder."""
    import torch

    from defectlens.core.checkpoint import save_checkpoint
    from defectlens.models import create_model, default_spec

    torch.manual_seed(seed)
    spec = default_spec(arch, in_channels=in_channels, input_size=size, class_names=classes).replace(tta=tta)
    if len(classes) == 2:
        spec = spec.replace(positive_class=classes[1], threshold=0.5)
    model = create_model(arch, num_classes=len(classes), in_channels=in_channels, input_size=size)
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
