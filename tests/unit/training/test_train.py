"""Training on the tiny synthetic dataset: loss falls, checkpoints reload, resume, seeds, channels."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from defectlens.core.checkpoint import read_checkpoint
from defectlens.core.errors import DefectlensError
from defectlens.models import load_checkpoint
from defectlens.training import config_from_run, train
from defectlens.training.config import TrainConfig


@pytest.fixture(autouse=True)
def _two_threads():
    old = torch.get_num_threads()
    torch.set_num_threads(2)
    yield
    torch.set_num_threads(old)


def tiny_config(data, tmp_path, **kw) -> TrainConfig:
    base = {
        "data": str(data),
        "model": "simple_cnn",
        "pretrained": False,
        "channels": 1,
        "input_size": 32,
        "epochs": 2,
        "batch_size": 16,
        "lr": 3e-3,
        "augment": "light",
        "patience": 0,
        "workers": 1,
        "evaluate": False,
        "out": str(tmp_path / "runs"),
        "name": "tiny",
    }
    base.update(kw)
    return TrainConfig(**base)


def test_loss_falls_and_run_folder_is_complete(tiny_dataset, tmp_path):
    from defectlens.workflows.train import train_and_evaluate

    result = train_and_evaluate(tiny_config(tiny_dataset, tmp_path, epochs=4, evaluate=True))
    losses = [r["train_loss"] for r in result.history]
    assert losses[-1] < losses[0]
    run = result.run_dir
    for name in (
        "config.yaml",
        "hparams.json",
        "history.csv",
        "history.jsonl",
        "best.pt",
        "last.pt",
        "train.log",
        "curves.png",
    ):
        assert (run / name).is_file(), name
    assert (run / "train_samples.png").is_file()
    assert (run / "eval" / "metrics.json").is_file()
    rows = [json.loads(line) for line in (run / "history.jsonl").read_text().splitlines()]
    assert [r["epoch"] for r in rows] == [1, 2, 3, 4]
    assert {"train_loss", "train_accuracy", "val_loss", "val_accuracy", "val_macro_f1", "lr", "data_s"} <= set(rows[0])
    assert 0.0 <= rows[-1]["train_accuracy"] <= 1.0
    # the best checkpoint carries what export needs, and the evaluated decisions
    payload = read_checkpoint(run / "best.pt")
    assert payload["config"]["data"] == str(tiny_dataset.resolve())
    assert len(payload["data_fingerprint"]) == 64
    assert payload["evaluation"]["val"]["n"] == 16  # the evaluated figures travel with the weights
    assert payload["spec"]["positive_class"] == "defect"
    assert payload["spec"]["threshold"] is not None
    assert payload["spec"]["temperature"] > 0
    assert set(result.metrics) == {"val", "test"}  # train is reported only on request (evaluate --split)
    assert TrainConfig.from_yaml(run / "config.yaml").data == str(tiny_dataset.resolve())
    hparams = json.loads((run / "hparams.json").read_text())
    assert hparams["train_images"] == 48 and hparams["mode"] == "full"


def test_checkpoint_reloads_and_predicts_the_same(tiny_dataset, tmp_path):
    from defectlens.data.dataset import load_split
    from defectlens.data.manifest import Manifest
    from defectlens.training.loop import predict_logits

    result = train(tiny_config(tiny_dataset, tmp_path, epochs=1))
    model, spec, payload = load_checkpoint(result.run_dir / "best.pt")
    val = load_split(Manifest.read(tiny_dataset), "val", spec, workers=1)
    logits = predict_logits(model, val.images, device=torch.device("cpu"))
    from defectlens.training.loop import score

    assert score(logits, val.labels, positive=1)["val_macro_f1"] == pytest.approx(
        payload["metrics"]["val_macro_f1"], abs=1e-9
    )


def test_same_seed_same_metrics(tiny_dataset, tmp_path):
    a = train(tiny_config(tiny_dataset, tmp_path, name="a"))
    b = train(tiny_config(tiny_dataset, tmp_path, name="b"))
    keys = ("train_loss", "val_loss", "val_macro_f1")
    assert [[r[k] for k in keys] for r in a.history] == [[r[k] for k in keys] for r in b.history]
    c = train(tiny_config(tiny_dataset, tmp_path, name="c", seed=1))
    assert [r["train_loss"] for r in c.history] != [r["train_loss"] for r in a.history]


def test_resume_continues_from_the_right_epoch(tiny_dataset, tmp_path, monkeypatch):
    from defectlens.training import run as run_module

    full = train(tiny_config(tiny_dataset, tmp_path, epochs=3, name="full"))
    # stop a second, identical run during epoch 3 (after epoch 2's last.pt was written)
    real_append = run_module.append_history

    def crash_at_epoch_3(run_dir, row):
        if row["epoch"] == 3:
            raise KeyboardInterrupt
        real_append(run_dir, row)

    monkeypatch.setattr(run_module, "append_history", crash_at_epoch_3)
    with pytest.raises(KeyboardInterrupt):
        train(tiny_config(tiny_dataset, tmp_path, epochs=3, name="stopped"))
    monkeypatch.setattr(run_module, "append_history", real_append)
    stopped = next((tmp_path / "runs").glob("stopped-*"))
    assert read_checkpoint(stopped / "last.pt")["epoch"] == 2

    resumed = train(config_from_run(stopped), resume=stopped)
    assert resumed.run_dir == stopped
    assert [r["epoch"] for r in resumed.history] == [1, 2, 3]
    assert read_checkpoint(stopped / "last.pt")["epoch"] == 3
    # optimizer, schedule and RNG state were restored: epoch 3 is exactly the uninterrupted one
    keys = ("train_loss", "val_loss", "val_macro_f1", "lr")
    assert [resumed.history[2][k] for k in keys] == [full.history[2][k] for k in keys]


@pytest.mark.parametrize("channels", [1, 3])
def test_grayscale_and_rgb_train(tiny_dataset, tmp_path, channels):
    result = train(tiny_config(tiny_dataset, tmp_path, channels=channels, epochs=1))
    _, spec, payload = load_checkpoint(result.run_dir / "best.pt")
    assert spec.in_channels == channels
    assert payload["state_dict"]["features.0.weight"].shape[1] == channels


def test_frozen_feature_cache_path(tiny_dataset, tmp_path):
    config = tiny_config(
        tiny_dataset, tmp_path, model="mobilenet_v3_small", freeze_backbone=True, augment="none", epochs=3, lr=1e-2
    )
    result = train(config)
    log = (result.run_dir / "train.log").read_text()
    assert "cached 576-d features" in log
    assert result.history[-1]["train_loss"] < result.history[0]["train_loss"]
    payload = read_checkpoint(result.run_dir / "best.pt")
    assert np.isfinite(payload["metrics"]["val_loss"])
    # only the head moved: backbone weights equal a fresh build from the same seed
    from defectlens.models import create_model

    torch.manual_seed(config.seed)
    fresh = create_model("mobilenet_v3_small", num_classes=2, in_channels=1, input_size=32).state_dict()
    trained = payload["state_dict"]
    backbone = [k for k in fresh if k.startswith("features.")]
    assert backbone and all(torch.equal(fresh[k], trained[k]) for k in backbone)
    head = [k for k in fresh if k.startswith("head.") and k.endswith("weight")]
    assert any(not torch.equal(fresh[k], trained[k]) for k in head)


def test_missing_split_is_a_clear_error(tiny_dataset, tmp_path):
    from defectlens.data.manifest import Manifest

    m = Manifest.read(tiny_dataset)
    folder = tmp_path / "noval"
    m.with_records([r for r in m.records if r.split != "val"], root=str(m.root)).write(folder)
    with pytest.raises(DefectlensError, match="no 'val' images"):
        train(tiny_config(folder, tmp_path))
