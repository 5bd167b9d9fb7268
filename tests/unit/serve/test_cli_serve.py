"""``defectlens serve`` refuses without a model, warns when exposed, and names an unusable port."""

from __future__ import annotations

import socket

from defectlens.cli import main


def test_serve_without_a_model_is_refused(capsys):
    assert main(["serve"]) == 2
    assert "serve needs a model: --model BUNDLE" in capsys.readouterr().err


def test_exposed_host_without_a_key_warns(tmp_path, capsys, monkeypatch):
    monkeypatch.delenv("DEFECTLENS_API_KEY", raising=False)
    code = main(["serve", "--model", str(tmp_path / "missing.dlens"), "--host", "0.0.0.0", "--db", str(tmp_path / "l")])
    err = capsys.readouterr().err
    assert code == 2 and "warning: listening on 0.0.0.0 without an API key" in err
    assert "missing.dlens" in err  # then the model that cannot be loaded is named


def test_key_from_the_environment_silences_the_warning(tmp_path, capsys, monkeypatch):
    monkeypatch.setenv("DEFECTLENS_API_KEY", "k" * 20)
    main(["serve", "--model", str(tmp_path / "missing.dlens"), "--host", "0.0.0.0"])
    assert "warning" not in capsys.readouterr().err


def test_a_port_in_use_is_named(bundle, tmp_path, capsys):
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        code = main(["serve", "--model", str(bundle), "--port", str(port), "--db", str(tmp_path / "log.sqlite")])
    assert code == 2 and f"cannot listen on 127.0.0.1:{port}" in capsys.readouterr().err


def test_allowed_hosts_come_from_the_flag_and_the_environment(tmp_path, monkeypatch):
    seen = []
    monkeypatch.setattr("defectlens.serve.server.serve", lambda model, config, on_ready=None: seen.append(config))
    monkeypatch.setenv("DEFECTLENS_ALLOWED_HOSTS", " inspect.plant.local, ,line-7 ,")
    assert main(["serve", "--model", "m.dlens", "--allowed-host", "mes.example", "--db", str(tmp_path / "l")]) == 0
    assert seen[0].allowed_hosts == ("mes.example", "inspect.plant.local", "line-7")
