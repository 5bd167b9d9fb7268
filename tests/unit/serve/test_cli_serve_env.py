"""``defectlens serve`` configured by the environment (a container's ``ENV``): model, log and port, flags first."""

from __future__ import annotations

from pathlib import Path

import pytest

from defectlens.cli import main


@pytest.fixture
def seen(monkeypatch):
    """The (model, config) serve() was called with, instead of serving."""
    calls: list[tuple[str, object]] = []
    monkeypatch.setattr(
        "defectlens.serve.server.serve", lambda model, config, on_ready=None: calls.append((model, config))
    )
    for name in ("DEFECTLENS_MODEL", "DEFECTLENS_DB", "DEFECTLENS_PORT", "DEFECTLENS_API_KEY"):
        monkeypatch.delenv(name, raising=False)
    return calls


def test_model_log_and_port_come_from_the_environment(seen, monkeypatch, tmp_path):
    monkeypatch.setenv("DEFECTLENS_MODEL", "/models/model.dlens")
    monkeypatch.setenv("DEFECTLENS_DB", str(tmp_path / "log.sqlite"))
    monkeypatch.setenv("DEFECTLENS_PORT", "8123")
    assert main(["serve"]) == 0
    model, config = seen[0]
    assert model == "/models/model.dlens" and config.db == tmp_path / "log.sqlite" and config.port == 8123


def test_flags_win_over_the_environment(seen, monkeypatch, tmp_path):
    monkeypatch.setenv("DEFECTLENS_MODEL", "/models/model.dlens")
    monkeypatch.setenv("DEFECTLENS_DB", "/data/inspections.sqlite")
    monkeypatch.setenv("DEFECTLENS_PORT", "8123")
    assert main(["serve", "--model", "m.dlens", "--db", str(tmp_path / "l"), "--port", "0"]) == 0
    model, config = seen[0]
    assert model == "m.dlens" and config.db == tmp_path / "l" and config.port == 0


def test_the_defaults_without_flags_or_environment(seen):
    assert main(["serve", "--model", "m.dlens"]) == 0
    assert seen[0][1].port == 8000 and seen[0][1].db == Path("inspections.sqlite")


@pytest.mark.parametrize("value", ["eighty", "-1", "65536", "80.0"])
def test_a_bad_port_in_the_environment_is_named(seen, monkeypatch, capsys, value):
    monkeypatch.setenv("DEFECTLENS_PORT", value)
    assert main(["serve", "--model", "m.dlens"]) == 2
    assert f"env DEFECTLENS_PORT={value!r} is not a TCP port" in capsys.readouterr().err
    assert not seen


def test_without_a_model_the_environment_variable_is_named(seen, capsys):
    assert main(["serve"]) == 2
    assert "--model BUNDLE or env DEFECTLENS_MODEL" in capsys.readouterr().err
