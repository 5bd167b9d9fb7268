"""The station file: every key checked with a message naming the file, the key and the value; the command
line's short forms; sources and sinks found through the registry; ``defectlens line --check``."""

from __future__ import annotations

from pathlib import Path

import pytest

from defectlens.cli import main
from defectlens.line import config as line_config
from defectlens.line.base import LineError
from defectlens.line.config import (
    config_from_args,
    create_sinks,
    create_source,
    load_station_file,
    parse_sink,
    parse_source,
)
from tests.require import import_or_missing

import_or_missing("watchdog", flag="LINE", reason="the station files here use the hot folder (the [line] extra)")

GOOD_FILE = """
station: line-1
model: {model}
gate: warn
log: logs/inspections.sqlite
queue: {{size: 4, policy: drop}}
alarm_after: 2
source: {{type: folder, path: in, after: leave}}
sinks:
  - {{type: sort, path: sorted}}
metrics: {{port: 0, host: 127.0.0.1}}
"""


def write(tmp_path: Path, text: str, name: str = "station.yaml") -> Path:
    (tmp_path / "in").mkdir(exist_ok=True)
    path = tmp_path / name
    path.write_text(text)
    return path


def test_a_station_file_is_read_with_paths_from_its_folder(tmp_path) -> None:
    config = load_station_file(write(tmp_path, GOOD_FILE.format(model="m.dlens")))
    assert (config.station, config.gate, config.queue_size, config.policy, config.alarm_after) == (
        "line-1", "warn", 4, "drop", 2,
    )  # fmt: skip
    assert config.model == tmp_path / "m.dlens" and config.log == tmp_path / "logs" / "inspections.sqlite"
    assert config.metrics_port == 0 and config.metrics_host == "127.0.0.1"
    source = create_source(config)
    assert source.endpoint == f"folder:{tmp_path / 'in'}"
    (sink,) = create_sinks(config)
    assert sink.endpoint == f"sort:{tmp_path / 'sorted'}"


@pytest.mark.parametrize(
    ("change", "named"),
    [
        ("colour: red\n", "colour: unknown key"),
        ("queue: {size: 0}\n", "queue.size: must be a whole number"),
        ("queue: {size: 4, policy: block}\n", "queue.policy: must be one of hold, drop, got 'block'"),
        ("queue: {depth: 3}\n", "queue.depth: unknown key"),
        ("gate: strict\n", "gate: must be one of refuse, warn, off, got 'strict'"),
        ("alarm_after: true\n", "alarm_after: must be a whole number"),
        ("good: ok\n", "good: must be a list of class names, got 'ok'"),
        ("metrics: {port: 70000}\n", "metrics.port: must be a port number"),
        ("source: {type: ftp}\n", "source.type: must be one of folder, video, genicam, got 'ftp'"),
        ("sinks: [{type: sort, path: out}, {type: plc}]\n", "sinks[1].type: must be one of sort, mqtt"),
    ],
)
def test_a_bad_key_is_named_with_the_file_and_the_value(tmp_path, change, named) -> None:
    base = "station: s\nmodel: m.dlens\nsource: {type: folder, path: in}\n"
    key = change.split(":")[0]
    text = "".join(line + "\n" for line in base.splitlines() if not line.startswith(key)) + change
    with pytest.raises(LineError) as info:
        load_station_file(write(tmp_path, text))
    assert str(info.value).startswith(f"{tmp_path / 'station.yaml'}: ") and named in str(info.value)


def test_missing_keys_a_bad_option_and_bad_yaml_are_named(tmp_path) -> None:
    with pytest.raises(LineError, match="model: required"):
        load_station_file(write(tmp_path, "station: s\nsource: {type: folder, path: in}\n"))
    with pytest.raises(LineError, match="not valid YAML"):
        load_station_file(write(tmp_path, "station: [s\n"))
    with pytest.raises(LineError, match="cannot read the station file"):
        load_station_file(tmp_path / "absent.yaml")
    config = load_station_file(write(tmp_path, "station: s\nmodel: m\nsource: {type: folder, path: in, every: 3}\n"))
    with pytest.raises(LineError, match=r"station.yaml: source: folder source: unknown option 'every'"):
        create_source(config)
    config = load_station_file(write(tmp_path, "station: s\nmodel: m\nsource: {type: folder, path: in}\n"
                                               "sinks: [{type: sort, path: out, mode: shred}]\n"))  # fmt: skip
    with pytest.raises(LineError, match=r"sinks\[0\]: sort sink: mode must be one of copy, move, got 'shred'"):
        create_sinks(config)


def test_short_forms_map_to_the_station_file_options() -> None:
    assert parse_source("folder:/srv/in") == {"type": "folder", "path": "/srv/in"}
    assert parse_source("video:line.mp4") == {"type": "video", "path": "line.mp4"}
    assert parse_source("video:rtsp://cam/1") == {"type": "video", "url": "rtsp://cam/1"}
    assert parse_source("video:0") == {"type": "video", "device": 0}
    assert parse_sink("sort:/out") == {"type": "sort", "path": "/out"}
    assert parse_sink("mqtt://broker:1884/plant/l1") == {
        "type": "mqtt", "host": "broker", "port": 1884, "topic_prefix": "plant/l1",
    }  # fmt: skip
    assert parse_sink("opcua://0.0.0.0:4841") == {"type": "opcua", "endpoint": "opc.tcp://0.0.0.0:4841/defectlens"}
    assert parse_sink("modbus://0.0.0.0:5020") == {"type": "modbus", "host": "0.0.0.0", "port": 5020}
    assert parse_sink("modbus://127.0.0.1:0")["port"] == 0 and parse_sink("mqtt://h")["port"] == 1883
    for bad in ("ftp://x", "mqtt://:1883", "modbus://h:port", "sort:"):
        with pytest.raises(LineError, match="--sink"):
            parse_sink(bad)
    with pytest.raises(LineError, match="--source 'camera:1'"):
        parse_source("camera:1")
    config = config_from_args(model="m.dlens", source="folder:in", sinks=["sort:out"], station="s2")
    assert config.source == {"type": "folder", "path": "in"} and config.sinks == ({"type": "sort", "path": "out"},)


def test_a_type_whose_module_or_library_is_missing_says_which(tmp_path, monkeypatch) -> None:
    config = load_station_file(write(tmp_path, "station: s\nmodel: m\nsource: {type: folder, path: in}\n"
                                               "sinks: [{type: sort, path: out}]\n"))  # fmt: skip
    monkeypatch.setitem(line_config.SINK_TYPES, "sort", "defectlens.line.nowhere:Sink")
    with pytest.raises(LineError, match="the sort sink is not part of this defectlens"):
        create_sinks(config)
    monkeypatch.setitem(line_config.SINK_TYPES, "sort", "tests.unit.line.needs_a_library:Sink")
    with pytest.raises(
        LineError, match=r"needs the 'not_installed_protocol_lib' package: pip install 'defectlens\[line\]'"
    ):
        create_sinks(config)


def test_check_opens_and_closes_everything_and_inspects_nothing(tmp_path, constant_bundle, capsys) -> None:
    path = write(tmp_path, GOOD_FILE.format(model=constant_bundle("defect_last")))
    (tmp_path / "in" / "waiting.png").write_bytes(b"left for the real run")
    assert main(["line", "--check", str(path)]) == 0
    out = capsys.readouterr().out
    assert "OK = ok" in out and "source folder:" in out and "sink sort:" in out and "metrics: port" in out
    assert out.rstrip().endswith(f"{path}: ok")
    assert not (tmp_path / "logs" / "inspections.sqlite").exists()
    assert [p.name for p in (tmp_path / "in").iterdir() if p.is_file()] == ["waiting.png"]


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("station: s\nmodel: {model}\nsource: {{type: folder, path: nowhere}}\n", "the hot folder does not exist"),
        ("station: s\nmodel: absent.dlens\nsource: {{type: folder, path: in}}\n", "absent.dlens"),
        ("station: s\nmodel: {model}\nsource: {{type: folder, path: in}}\ngood: [crack]\n", "'crack' is not a class"),
        ("station: s\nmodel: {model}\nsource: {{type: folder, path: in}}\nsinks: [{{type: tape}}]\n", "sinks[0].type"),
    ],
)
def test_check_of_a_bad_station_exits_2_naming_it(tmp_path, constant_bundle, capsys, text, message) -> None:
    path = write(tmp_path, text.format(model=constant_bundle("defect_last")))
    assert main(["line", "--check", str(path)]) == 2
    err = capsys.readouterr().err
    assert err.startswith("defectlens: error: ") and message in err


def test_the_command_line_needs_a_config_or_a_model_and_a_source(capsys) -> None:
    assert main(["line", "--model", "m.dlens"]) == 2
    assert "--config STATION.yaml, or --model BUNDLE and --source" in capsys.readouterr().err


def test_check_opens_the_plc_servers_on_ports_the_system_picks(tmp_path, constant_bundle, capsys) -> None:
    import_or_missing("asyncua", flag="LINE", reason="the OPC UA sink needs asyncua (the [line] extra)")
    import_or_missing("pymodbus", flag="LINE", reason="the Modbus sink needs pymodbus (the [line] extra)")
    text = (
        f"station: plc\nmodel: {constant_bundle('defect_last')}\nsource: {{type: folder, path: in}}\n"
        "sinks:\n  - {type: opcua, endpoint: 'opc.tcp://127.0.0.1:0/defectlens'}\n"
        "  - {type: modbus, host: 127.0.0.1, port: 0}\n"
    )
    assert main(["line", "--check", str(write(tmp_path, text))]) == 0, capsys.readouterr().err
    out = capsys.readouterr().out
    assert "sink opc.tcp://127.0.0.1:" in out and "sink modbus://127.0.0.1:" in out


def test_a_station_file_runs_with_its_sort_sink_and_metrics(tmp_path, constant_bundle) -> None:
    import urllib.request

    from defectlens.inspections import InspectionLog
    from defectlens.line.config import open_station
    from tests.unit.line.station_helpers import wait_for

    import_or_missing("prometheus_client", flag="SERVE", reason="metrics use prometheus_client (the [serve] extra)")
    config = load_station_file(write(tmp_path, GOOD_FILE.format(model=constant_bundle("defect_last"))))
    (tmp_path / "in" / "x.png").write_bytes((tmp_path / "station.yaml").read_bytes())  # not an image: an error row
    run = open_station(config)
    with run:
        assert run.metrics_port is not None and run.metrics_port > 0
        wait_for(lambda: run.station.stats.published == 1, "the file's result")
        text = urllib.request.urlopen(f"http://127.0.0.1:{run.metrics_port}/metrics", timeout=30).read().decode()
        run.station.stop()
    assert 'defectlens_line_results_total{status="error"} 1.0' in text
    assert (tmp_path / "sorted" / "error" / "x.png").exists() and (tmp_path / "in" / "x.png").exists()  # after: leave
    with InspectionLog(config.log) as log:
        (row,) = log.query()
    assert (row.station, row.status, row.client_name) == ("line-1", "error", "x.png")
