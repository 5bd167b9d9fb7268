"""TrainConfig YAML round trip and errors; the CLI's one-line error; the demo's ELPV split."""

from __future__ import annotations

import pytest

from defectlens.cli import main
from defectlens.core.errors import DefectlensError
from defectlens.training.config import TrainConfig
from defectlens.workflows.recipes import recipe_path
from tests.require import import_or_missing


def test_yaml_round_trip(tmp_path):
    config = TrainConfig(data="d", model="resnet18", channels=1, epochs=3, augment="strong", name="x")
    path = tmp_path / "c.yaml"
    config.to_yaml(path)
    assert TrainConfig.from_yaml(path) == config


def test_unknown_key_and_bad_values_are_clear_errors(tmp_path):
    path = tmp_path / "c.yaml"
    path.write_text("epochz: 3\n")
    with pytest.raises(DefectlensError, match=r"c.yaml: unknown setting\(s\) epochz"):
        TrainConfig.from_yaml(path)
    with pytest.raises(DefectlensError, match="augment must be one of"):
        TrainConfig(augment="wild")
    with pytest.raises(DefectlensError, match="config file not found"):
        TrainConfig.from_yaml(tmp_path / "missing.yaml")


def test_replace_ignores_unset_options():
    assert TrainConfig(epochs=7).replace(epochs=None, lr=0.5) == TrainConfig(epochs=7, lr=0.5)


def test_shipped_demo_recipe_is_valid():
    config = TrainConfig.from_yaml(recipe_path("elpv"))
    assert config.model == "efficientnet_lite0" and config.pretrained


def test_cli_train_on_a_missing_folder_exits_2(tmp_path, capsys):
    assert main(["train", "--data", str(tmp_path / "nothing")]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "no such folder or CSV file" in err


@pytest.mark.slow
def test_demo_split_follows_deitsch(tmp_path):
    import_or_missing("elpv_dataset", flag="EXTRAS", reason="the ELPV demo data comes with the [train] extra")
    from defectlens.data.manifest import Manifest
    from defectlens.workflows.demo import prepare_elpv

    folder = prepare_elpv(tmp_path / "elpv")
    counts = {s: sum(c.values()) for s, c in Manifest.read(folder).counts().items()}
    assert sum(counts.values()) == 2624
    assert counts["test"] == pytest.approx(0.25 * 2624, abs=15)
    assert counts["val"] == pytest.approx(0.10 * 2624, abs=15)
