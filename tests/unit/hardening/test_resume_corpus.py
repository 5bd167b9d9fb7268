"""Issue #18 item 8: ``train --resume`` on a damaged or foreign run folder is refused before anything
is written, or resumes after repairing what it safely can; checkpoints are fsynced and checksummed."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import numpy as np
import pytest

from defectlens.core import checkpoint as ckpt_module
from defectlens.core.checkpoint import checksum_path, read_checkpoint, save_checkpoint
from defectlens.core.errors import DefectlensError
from tests.unit.hardening import corpus as C

pytestmark = pytest.mark.slow  # two tiny trainings (a few seconds each) for the whole module


@pytest.fixture(scope="module")
def dataset(tiny_dataset, tmp_path_factory) -> Path:
    """A private copy of the tiny dataset folder (its .cache is damaged by one case)."""
    folder = tmp_path_factory.mktemp("resume-data") / "tiny"
    shutil.copytree(tiny_dataset, folder, ignore=shutil.ignore_patterns(".cache"))
    return folder


@pytest.fixture(scope="module")
def runs(dataset, tmp_path_factory) -> dict[str, Path]:
    """Two finished 2-epoch runs on the same data (run ``a`` is the one resumed)."""
    import torch

    from defectlens.training import train
    from defectlens.training.config import TrainConfig

    out = tmp_path_factory.mktemp("resume-runs")
    threads = torch.get_num_threads()
    torch.set_num_threads(2)
    try:
        made = {}
        for name in ("a", "b"):
            config = TrainConfig(
                data=str(dataset), model="simple_cnn", pretrained=False, channels=1, input_size=32, epochs=2,
                batch_size=16, augment="light", patience=0, workers=1, evaluate=False, out=str(out), name=name,
            )  # fmt: skip
            made[name] = train(config).run_dir
    finally:
        torch.set_num_threads(threads)
    return made


def _copy(run: Path, tmp_path: Path) -> Path:
    return Path(shutil.copytree(run, tmp_path / run.name))


def _flip_bit(path: Path) -> None:
    data = bytearray(path.read_bytes())
    data[len(data) // 2] ^= 0x01
    path.write_bytes(bytes(data))


CASES = {
    "zero_byte_last": (2, "empty file"),
    "best_copied_over_last": (2, "does not match its recorded sha256"),
    "best_copied_over_last_with_checksum": (2, "lacks optimizer"),
    "bit_flipped_last": (2, "does not match its recorded sha256"),
    "last_from_another_run": (2, "belongs to another run"),
    "garbage_history_line": (0, "unreadable line"),
    "truncated_cache": (0, ""),
}


@pytest.mark.parametrize("case", sorted(CASES))
def test_resume_case(case, runs, dataset, tmp_path):
    run = _copy(runs["a"], tmp_path)
    last = run / "last.pt"
    if case == "zero_byte_last":
        last.write_bytes(b"")
    elif case == "best_copied_over_last":
        shutil.copyfile(run / "best.pt", last)
    elif case == "best_copied_over_last_with_checksum":
        shutil.copyfile(run / "best.pt", last)
        shutil.copyfile(checksum_path(run / "best.pt"), checksum_path(last))
    elif case == "bit_flipped_last":
        _flip_bit(last)
    elif case == "last_from_another_run":
        shutil.copyfile(runs["b"] / "last.pt", last)
        shutil.copyfile(checksum_path(runs["b"] / "last.pt"), checksum_path(last))
    elif case == "garbage_history_line":
        with (run / "history.jsonl").open("a") as fh:
            fh.write('{"epoch": 3, "train_loss": \n\x00garbage\n')
    elif case == "truncated_cache":
        for npy in (dataset / ".cache").glob("*.npy"):
            npy.write_bytes(npy.read_bytes()[:100])
    before = {p.name: p.read_bytes() for p in run.iterdir() if p.is_file()}
    code, words = CASES[case]
    result = C.run_cli(["train", "--resume", str(run)])
    assert not result.crash and result.code == code, (result.crash, result.err)
    assert words in (result.err if code else result.err + result.out)
    if code:  # refused: nothing in the run folder was touched
        after = {p.name: p.read_bytes() for p in run.iterdir() if p.is_file()}
        assert after == before
    elif case == "garbage_history_line":
        lines = (run / "history.jsonl").read_text().splitlines()
        assert [int(x.split('"epoch": ')[1].split(",")[0]) for x in lines] == [1, 2]
    else:
        cached = list((dataset / ".cache").glob("*.npy"))
        assert cached and all(np.load(p).shape[0] > 0 for p in cached)  # re-decoded and rewritten


def test_every_checkpoint_records_its_run(runs):
    import json

    run_id = json.loads((runs["a"] / "hparams.json").read_text())["run_id"]
    assert len(run_id) == 32
    assert read_checkpoint(runs["a"] / "last.pt")["run_id"] == run_id
    assert read_checkpoint(runs["a"] / "best.pt")["run_id"] == run_id
    assert read_checkpoint(runs["b"] / "last.pt")["run_id"] != run_id


def test_checkpoint_is_fsynced_before_it_replaces_the_old_one(tmp_path, monkeypatch):
    from defectlens.models import create_model, default_spec

    events: list[str] = []
    real_fsync, real_replace = os.fsync, Path.replace

    def fsync(fd: int) -> None:
        events.append("fsync")
        real_fsync(fd)

    def replace(self: Path, target: Path) -> Path:
        events.append(f"rename {Path(target).name}")
        return real_replace(self, target)

    monkeypatch.setattr(ckpt_module.os, "fsync", fsync)
    monkeypatch.setattr(Path, "replace", replace)
    spec = default_spec("simple_cnn", in_channels=1, input_size=32, class_names=("ok", "defect"))
    model = create_model("simple_cnn", num_classes=2, in_channels=1, input_size=32)
    path = save_checkpoint(tmp_path / "last.pt", model, spec)
    # data, then digest, on disk before the renames; the folder synced after them
    assert events == ["fsync", "fsync", "rename last.pt.sha256", "rename last.pt", "fsync"]
    assert read_checkpoint(path)["format"] == ckpt_module.FORMAT


def test_checksum_keeps_the_previous_digest_for_the_instant_between_renames(tmp_path):
    """A crash after the new digest is recorded but before the rename leaves the old file readable."""
    from defectlens.models import create_model, default_spec

    spec = default_spec("simple_cnn", in_channels=1, input_size=32, class_names=("ok", "defect"))
    model = create_model("simple_cnn", num_classes=2, in_channels=1, input_size=32)
    path = save_checkpoint(tmp_path / "last.pt", model, spec, epoch=1)
    old = path.read_bytes()
    save_checkpoint(path, model, spec, epoch=2)
    path.write_bytes(old)  # as if the rename to epoch 2 never happened
    assert read_checkpoint(path)["epoch"] == 1
    _flip_bit(path)
    with pytest.raises(DefectlensError, match="sha256"):
        read_checkpoint(path)
