"""``defectlens serve --drift-window N --drift-psi-alarm X --drift-share-alpha P`` / ``--no-drift``: the drift
watch runs with what the command line gives (``/metrics`` says its window) or not at all; a bad value exits 2
naming the option and the value."""

from __future__ import annotations

import pytest

from defectlens.cli import main
from defectlens.serve import ServeConfig
from tests.unit.serve.conftest import png_bytes
from tests.unit.serve.test_drift import gauge


def config_of(tmp_path, monkeypatch, *flags: str) -> ServeConfig:
    """The ServeConfig ``defectlens serve`` builds from ``flags`` (the server itself is not started)."""
    seen: list[ServeConfig] = []
    monkeypatch.setattr("defectlens.serve.server.serve", lambda model, config, on_ready=None: seen.append(config))
    assert main(["serve", "--model", "m.dlens", "--db", str(tmp_path / "log.sqlite"), *flags]) == 0
    return seen[0]


def test_the_drift_window_from_the_command_line_is_in_the_metrics(tmp_path, monkeypatch, make_client) -> None:
    config = config_of(tmp_path, monkeypatch, "--drift-window", "20", "--drift-psi-alarm", "0.5")
    assert (config.drift.window, config.drift.psi_alarm, config.drift.share_alpha, config.drift_watch) == (
        20, 0.5, 1e-6, True,
    )  # fmt: skip
    with make_client(drift=config.drift, drift_watch=config.drift_watch) as (client, _log):
        for seed in range(3):
            answer = client.post("/v1/predict", files={"files": ("p.png", png_bytes(seed), "image/png")})
            assert answer.status_code == 200
        text = client.get("/metrics").text
    assert gauge(text, "defectlens_drift_window_size") == 20.0
    assert gauge(text, "defectlens_drift_window_images") == 3.0


def test_no_drift_turns_the_watch_off(tmp_path, monkeypatch, make_client) -> None:
    config = config_of(tmp_path, monkeypatch, "--no-drift")
    assert not config.drift_watch
    with make_client(drift=config.drift, drift_watch=config.drift_watch) as (client, _log):
        assert client.post("/v1/predict", files={"files": ("p.png", png_bytes(0), "image/png")}).status_code == 200
        text = client.get("/metrics").text
    assert gauge(text, "defectlens_drift_window_size") == 0.0
    assert gauge(text, "defectlens_drift_window_images") == 0.0  # the frame was not counted: no watch


def test_a_short_window_checks_agreement_on_the_verdicts_it_holds(tmp_path, monkeypatch) -> None:
    config = config_of(tmp_path, monkeypatch, "--drift-window", "12")
    assert (config.drift.window, config.drift.min_verdicts) == (12, 12)


@pytest.mark.parametrize(
    ("flags", "named"),
    [
        (["--drift-window", "5"], "--drift-window 5: drift watch: window 5 must be an integer 10-100000"),
        (["--drift-psi-alarm", "0"], "--drift-psi-alarm 0.0: drift watch: psi_alarm 0.0 must be in (0, 10]"),
        (["--drift-share-alpha", "0.7"], "--drift-share-alpha 0.7: drift watch: share_alpha 0.7 must be in (0, 0.5)"),
    ],
)
def test_a_bad_drift_value_exits_2_naming_the_option(tmp_path, capsys, flags, named) -> None:
    assert main(["serve", "--model", "m.dlens", "--db", str(tmp_path / "log.sqlite"), *flags]) == 2
    assert named in capsys.readouterr().err
