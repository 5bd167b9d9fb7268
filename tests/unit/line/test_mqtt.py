"""The MQTT sink against a real Mosquitto on 127.0.0.1, with a paho subscriber as the MES: every result
arrives with its inspection id, the status is retained and the last will fires on kill -9, a 10 s broker
outage loses nothing and keeps the order, and the disk outbox survives kill -9 of the publishing process."""

from __future__ import annotations

import logging
import signal
import sqlite3
import subprocess
import sys
import textwrap
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.require import import_or_missing, missing

import_or_missing("paho.mqtt.client", flag="LINE", reason="the MQTT sink needs paho-mqtt (the [line] extra)")

from tests.unit.line.mosquitto import Broker, Mes, find_mosquitto, free_port, wait_until  # noqa: E402

if find_mosquitto() is None:
    missing("LINE", "the MQTT tests need the Mosquitto broker (Debian's mosquitto; make sysdeps)")

from defectlens.line.base import Frame, LineError, Result  # noqa: E402
from defectlens.line.mqtt import MqttSink  # noqa: E402

STATION = "st1"


def result(i: int) -> Result:
    frame = Frame(data=b"", name=f"part-{i}.png", source="test:mqtt", part_id=f"P{i}")
    return Result(
        frame=frame, status="ok", inspection_id=i, decision="ok", class_index=0, ok=True, defect_probability=0.125,
        probabilities={"ok": 0.875, "defect": 0.125}, model_id="model-1", station=STATION,
    )  # fmt: skip


def sink(port: int, outbox: Path, **options: object) -> MqttSink:
    return MqttSink.from_config(
        {"host": "127.0.0.1", "port": port, "topic_prefix": "plant", "outbox": str(outbox), **options},
        station=STATION,
        base=outbox.parent,
    )


def first_arrivals(ids: list[int]) -> list[int]:
    """At-least-once may repeat a message; the order that counts is each id's first arrival."""
    seen: set[int] = set()
    return [i for i in ids if not (i in seen or seen.add(i))]


def retained_status(port: int) -> dict[str, object]:
    """What a subscriber that connects now reads on the status topic (the broker's retained message)."""
    mes = Mes(port, f"plant/{STATION}/status")
    try:
        wait_until(lambda: mes.on("/status"), what="the retained status")
        message = mes.on("/status")[-1]
        assert message.retain, "the status must be retained"
        return mes.payloads("/status")[-1]
    finally:
        mes.close()


@pytest.fixture
def broker(tmp_path: Path) -> Iterator[Broker]:
    folder = tmp_path / "broker"
    folder.mkdir()
    b = Broker(folder)
    b.start()
    yield b
    b.stop()


# A station process for the kill -9 tests: publishes COUNT results through the sink, then says so and waits.
CHILD = textwrap.dedent(
    """
    import sys, time
    from pathlib import Path
    from defectlens.line.base import Frame, Result
    from defectlens.line.mqtt import MqttSink

    port, outbox, count = int(sys.argv[1]), Path(sys.argv[2]), int(sys.argv[3])
    sink = MqttSink(host="127.0.0.1", port=port, station="st1", outbox=outbox, topic_prefix="plant", keepalive=5)
    sink.open()
    for i in range(1, count + 1):
        frame = Frame(data=b"", name=f"part-{i}.png", source="test:child")
        sink.publish(Result(frame=frame, status="ok", inspection_id=i, decision="ok", ok=True, station="st1"))
    print("published", flush=True)
    time.sleep(600)
    """
)


def start_child(port: int, outbox: Path, count: int) -> subprocess.Popen[str]:
    child = subprocess.Popen(
        [sys.executable, "-c", CHILD, str(port), str(outbox), str(count)], stdout=subprocess.PIPE, text=True
    )
    assert child.stdout is not None
    assert child.stdout.readline().strip() == "published", "the child station did not publish"
    return child


def test_every_result_arrives_with_its_inspection_id_at_qos1_status_online_then_offline(
    broker: Broker, tmp_path: Path
) -> None:
    assert broker.port is not None
    mes = Mes(broker.port, "plant/#")
    s = sink(broker.port, tmp_path / "outbox.sqlite")
    s.open(None)
    wait_until(lambda: mes.payloads("/status"), what="the online status")
    assert retained_status(broker.port)["status"] == "online"
    for i in range(1, 21):
        s.publish(result(i))
    wait_until(lambda: len(mes.payloads("/result")) >= 20, what="20 results")
    s.close()

    results = mes.on("/result")
    assert {m.topic for m in results} == {f"plant/{STATION}/result"}
    assert {m.qos for m in results} == {1}
    payloads = mes.payloads("/result")
    assert [p["inspection_id"] for p in payloads] == list(range(1, 21))
    expected = result(5).to_message()
    for key in ("captured_utc", "decided_utc"):
        del expected[key], payloads[4][key]
    assert payloads[4] == expected
    assert payloads[4]["model_id"] == "model-1" and payloads[4]["probabilities"] == {"ok": 0.875, "defect": 0.125}
    status = retained_status(broker.port)
    assert status["status"] == "offline" and status["station"] == STATION
    with sqlite3.connect(tmp_path / "outbox.sqlite") as db:
        assert db.execute("SELECT COUNT(*) FROM outbox").fetchone()[0] == 0, "acknowledged results stay queued"
    mes.close()


def test_set_status_publishes_the_alarm_retained(broker: Broker, tmp_path: Path) -> None:
    assert broker.port is not None
    mes = Mes(broker.port, "plant/+/status")
    s = sink(broker.port, tmp_path / "outbox.sqlite")
    s.open(None)
    wait_until(lambda: s.connected, what="the sink connecting")
    s.set_status(True, alarm="5 frames in a row without a decision")
    wait_until(lambda: any(p["alarm"] for p in mes.payloads("/status")), what="the alarm")
    mes.close()
    assert retained_status(broker.port) | {"utc": None} == {
        "station": STATION, "status": "online", "alarm": "5 frames in a row without a decision", "utc": None,
    }  # fmt: skip
    s.close()


def test_last_will_reads_offline_after_the_station_is_killed(broker: Broker, tmp_path: Path) -> None:
    assert broker.port is not None
    mes = Mes(broker.port, "plant/#")
    child = start_child(broker.port, tmp_path / "outbox.sqlite", count=3)
    try:
        wait_until(lambda: len(mes.payloads("/result")) >= 3, what="the child's 3 results")
        assert mes.payloads("/status")[-1]["status"] == "online"
    finally:
        child.kill()  # SIGKILL: no clean disconnect, so the broker publishes the last will
        child.wait()
    wait_until(lambda: mes.payloads("/status")[-1]["status"] == "offline", what="the last will")
    status = retained_status(broker.port)
    assert status["status"] == "offline" and "last will" in str(status["alarm"])
    mes.close()


@pytest.mark.slow
def test_broker_down_for_10_s_loses_no_result_and_keeps_the_order(tmp_path: Path) -> None:
    folder = tmp_path / "broker"
    folder.mkdir()
    broker = Broker(folder, persistence=True)  # the MES's session (its subscription) survives the restart
    broker.start()
    assert broker.port is not None
    mes = Mes(broker.port, "plant/+/result", client_id="mes", clean_session=False)
    s = sink(broker.port, tmp_path / "outbox.sqlite", reconnect_max=2)
    s.open(None)
    count = 60

    def feed() -> None:
        for i in range(1, count + 1):
            s.publish(result(i))
            time.sleep(0.25)

    feeder = threading.Thread(target=feed)
    try:
        feeder.start()
        wait_until(lambda: len(mes.payloads("/result")) >= 5, what="the first results")
        broker.stop()
        time.sleep(10)  # the outage: the feeder keeps publishing into the outbox
        queued_in_outage = s.pending
        broker.start()
        feeder.join()
        wait_until(lambda: set(p["inspection_id"] for p in mes.payloads("/result")) >= set(range(1, count + 1)),
                   what="every result after the outage")  # fmt: skip
    finally:
        feeder.join()
        s.close()
        mes.close()
        broker.stop()
    ids = [p["inspection_id"] for p in mes.payloads("/result")]
    assert queued_in_outage >= 10, "results published while the broker was down wait in the outbox"
    assert first_arrivals(ids) == list(range(1, count + 1))
    assert s.pending == 0


def test_a_result_leaves_the_outbox_only_when_its_puback_arrives(broker: Broker, tmp_path: Path) -> None:
    assert broker.port is not None and broker.proc is not None
    mes = Mes(broker.port, "plant/+/result")
    s = sink(broker.port, tmp_path / "outbox.sqlite")
    s.open(None)
    wait_until(lambda: s.connected, what="the sink connecting")
    broker.proc.send_signal(signal.SIGSTOP)  # the broker freezes: the connection stays up, no PUBACK comes
    try:
        for i in range(1, 6):
            s.publish(result(i))  # returns at once: the outbox, not the broker, holds the result
        time.sleep(1.0)  # the sender hands them to paho meanwhile
        assert s.pending == 5, "a result handed to the network is still unacknowledged"
    finally:
        broker.proc.send_signal(signal.SIGCONT)
    wait_until(lambda: s.pending == 0, what="the PUBACKs emptying the outbox")
    wait_until(lambda: len(mes.payloads("/result")) >= 5, what="the 5 results")
    s.close()
    mes.close()
    assert first_arrivals([p["inspection_id"] for p in mes.payloads("/result")]) == [1, 2, 3, 4, 5]


def test_the_outbox_survives_kill_9_and_is_sent_first_on_the_next_start(broker: Broker, tmp_path: Path) -> None:
    assert broker.port is not None
    outbox = tmp_path / "outbox.sqlite"
    child = start_child(free_port(), outbox, count=10)  # a port nobody listens on: the broker is "down"
    child.kill()
    child.wait()
    with sqlite3.connect(outbox) as db:
        assert db.execute("SELECT COUNT(*) FROM outbox").fetchone()[0] == 10

    mes = Mes(broker.port, "plant/+/result")
    s = sink(broker.port, outbox)
    s.open(None)
    s.publish(result(11))
    wait_until(lambda: len(mes.payloads("/result")) >= 11, what="the 10 queued results and the new one")
    s.close()
    mes.close()
    assert [p["inspection_id"] for p in mes.payloads("/result")] == list(range(1, 12))
    assert s.pending == 0


def test_an_unreachable_broker_is_an_error_only_when_required(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    port = free_port()
    with pytest.raises(LineError, match=f"127.0.0.1:{port}"):
        sink(port, tmp_path / "a.sqlite", required=True).open(None)
    with pytest.raises(LineError, match=f"127.0.0.1:{port} unreachable"):
        sink(port, tmp_path / "b.sqlite").check()

    s = sink(port, tmp_path / "c.sqlite", drain_timeout=0.5)
    with caplog.at_level(logging.WARNING, logger="defectlens.line.mqtt"):
        s.open(None)
        for i in range(1, 4):
            s.publish(result(i))
        assert s.pending == 3
        s.close()
    warnings = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert sum(f"127.0.0.1:{port} unreachable" in w for w in warnings) == 1, warnings
    assert any("stay in" in w and "next start" in w for w in warnings), warnings
    with sqlite3.connect(tmp_path / "c.sqlite") as db:
        assert db.execute("SELECT COUNT(*) FROM outbox").fetchone()[0] == 3


def test_check_connects_to_a_running_broker(broker: Broker, tmp_path: Path) -> None:
    assert broker.port is not None
    sink(broker.port, tmp_path / "outbox.sqlite").check()


def test_from_config_and_the_cli_short_form(tmp_path: Path) -> None:
    with pytest.raises(LineError, match="'hots'"):
        MqttSink.from_config({"hots": "x"}, station=STATION, base=tmp_path)
    with pytest.raises(LineError, match="'port'"):
        MqttSink.from_config({"port": "many"}, station=STATION, base=tmp_path)
    s = MqttSink.from_config({"outbox": "q/out.sqlite"}, station=STATION, base=tmp_path)
    assert s.outbox_path == tmp_path / "q" / "out.sqlite"
    assert s.result_topic == f"defectlens/{STATION}/result" and s.status_topic == f"defectlens/{STATION}/status"
    assert MqttSink.from_config({}, station=STATION, base=tmp_path).outbox_path == tmp_path / "mqtt-outbox-st1.sqlite"
    assert MqttSink.options_from_url("mqtt://mes.local:1884/plant/a") == {
        "host": "mes.local", "port": 1884, "topic_prefix": "plant/a",
    }  # fmt: skip
    assert MqttSink.options_from_url("mqtt://10.0.0.5") == {"host": "10.0.0.5", "port": 1883}
    with pytest.raises(LineError, match="mqtt://HOST:PORT/TOPIC_PREFIX"):
        MqttSink.options_from_url("http://x/y")


def test_a_drift_alarm_reaches_the_mes_on_the_event_topic(broker, gated_bundle, tiny_dataset, tmp_path) -> None:
    """The station's drift alarm is published beside the results (through the outbox), so the MES hears it."""
    from defectlens.inference.drift import DriftConfig
    from defectlens.inference.predictor import Predictor
    from defectlens.inspections import InspectionLog
    from defectlens.line.drift import StationDrift
    from defectlens.line.station import Station
    from tests.unit.line.station_helpers import FeedSource, wait_for
    from tests.unit.line.test_drift import frames

    mes = Mes(broker.port, f"plant/{STATION}/#")
    out = sink(broker.port, tmp_path / "outbox.sqlite")
    with InspectionLog(tmp_path / "log.sqlite") as log:
        source = FeedSource()
        station = Station(source=source, predictor=Predictor.load(gated_bundle, threads=1), log=log, sinks=[out],
                          name=STATION)  # fmt: skip
        station.drift = StationDrift(None, DriftConfig(window=20))
        with station:
            for data, name in frames(tiny_dataset, 0.0) + frames(tiny_dataset, -90.0) * 2:
                source.put(data, name)
            wait_for(lambda: station.stats.published >= 96, "every frame")
            station.stop()
            assert station.wait(60)
    try:
        wait_until(lambda: mes.on("/event"), what="the drift event")
        events = mes.payloads("/event")
        assert [e["kind"] for e in events] == ["drift_alarm"]
        assert events[0]["station"] == STATION and str(events[0]["text"]).startswith("drift: ")
        assert len(mes.on("/result")) >= 96  # the results went on as before
    finally:
        mes.close()
