"""The OPC UA sink against asyncua's client playing the PLC: the bound port is read back, a write of
Trigger reaches the station, four results (good part, defect, needs_review, dropped) are read and
acknowledged one by one with the node types of the module docstring, the station's state shows, the PLC
cannot write what the station owns, and a second sink on a busy port says which port."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.require import import_or_missing

import_or_missing("asyncua", flag="LINE", reason="the OPC UA sink needs asyncua (the [line] extra)")

from asyncua import ua  # noqa: E402
from asyncua.sync import Client  # noqa: E402

from defectlens.line.base import Frame, LineError, Result  # noqa: E402
from defectlens.line.opcua import NAMESPACE, PLC_NODES, STATION_NODES, OpcUaSink, parse_endpoint  # noqa: E402
from tests.unit.line.plc_helpers import FakeControl, wait_until  # noqa: E402

STATION = "cell7"


def result(
    inspection_id: int, status: str, *, ok: bool | None = None, p: float | None = None, index: int = 0
) -> Result:
    decided = status == "ok"
    return Result(
        frame=Frame(data=b"", name=f"part-{inspection_id}.png", source="test:opcua", part_id=f"P{inspection_id}"),
        status=status, inspection_id=inspection_id, decision=("good" if ok else "defect") if decided else None,
        class_index=index if decided else None, ok=ok if decided else None, defect_probability=p,
        reason="" if decided else f"{status}: test",
    )  # fmt: skip


class Plc:
    """asyncua's client reading and writing the station's variables by name."""

    def __init__(self, url: str) -> None:
        self.client = Client(url, timeout=10)
        self.client.connect()
        self.ns = self.client.get_namespace_index(NAMESPACE)

    def node(self, name: str) -> Any:
        return self.client.get_node(f"ns={self.ns};s={STATION}.{name}")

    def read(self, name: str) -> Any:
        return self.node(name).read_value()

    def write(self, name: str, value: object) -> None:
        self.node(name).write_value(value)

    def close(self) -> None:
        self.client.disconnect()


@pytest.fixture
def control() -> FakeControl:
    return FakeControl()


@pytest.fixture
def sink(control: FakeControl) -> Iterator[OpcUaSink]:
    sink = OpcUaSink(endpoint="opc.tcp://127.0.0.1:0/defectlens", station=STATION)
    sink.open(control)
    sink.set_status(True)
    yield sink
    sink.close()


@pytest.fixture
def plc(sink: OpcUaSink) -> Iterator[Plc]:
    plc = Plc(sink.endpoint_url)
    yield plc
    plc.close()


def test_port_zero_is_read_back_and_the_nodes_have_their_types(sink: OpcUaSink, plc: Plc):
    assert sink.port != 0
    assert sink.endpoint_url == f"opc.tcp://127.0.0.1:{sink.port}/defectlens"
    for name, kind, *_ in (*PLC_NODES, *STATION_NODES):
        assert plc.node(name).read_data_type_as_variant_type() == getattr(ua.VariantType, kind), name
    assert plc.read("ClassIndex") == -1
    assert plc.read("State") == "Operational"


def test_a_plc_trigger_reaches_the_station(sink: OpcUaSink, plc: Plc, control: FakeControl):
    wait_until(lambda: plc.read("TriggerReady"), "TriggerReady")
    plc.write("Trigger", True)
    wait_until(lambda: control.calls == ["plc-1"], "the station's trigger")
    plc.write("Trigger", False)
    plc.write("NextPartId", "SN-0042")
    plc.write("Trigger", True)
    wait_until(lambda: control.calls == ["plc-1", "SN-0042"], "the trigger with the PLC's part id")
    control.ready = False
    wait_until(lambda: not plc.read("TriggerReady"), "TriggerReady low when the station is busy")
    plc.write("Trigger", False)
    plc.write("Trigger", True)
    wait_until(lambda: plc.read("TriggersRefused") == 1, "the refused trigger counted")
    assert len(control.calls) == 2


def test_results_are_read_and_acknowledged_in_order(sink: OpcUaSink, plc: Plc):
    sink.publish(result(101, "ok", ok=True, p=0.03, index=0))
    sink.publish(result(102, "ok", ok=False, p=0.87, index=1))
    sink.publish(result(103, "needs_review", p=0.4))
    sink.publish(result(104, "dropped"))
    # (OK, NG, NoDecision), counter, class index, class name, score, error code
    expected = [
        ((True, False, False), 1, 0, "good", 0.03, 0),
        ((False, True, False), 2, 1, "defect", 0.87, 0),
        ((False, False, True), 3, -1, "", 0.4, 1),
        ((False, False, True), 4, -1, "", -1.0, 3),
    ]
    for i, (verdict, counter, index, name, score, code) in enumerate(expected):
        wait_until(lambda: plc.read("ResultsValid"), f"ResultsValid for result {counter}")
        assert (plc.read("OK"), plc.read("NG"), plc.read("NoDecision")) == verdict
        assert (plc.read("ResultCounter"), plc.read("ClassIndex"), plc.read("ClassName")) == (counter, index, name)
        assert (plc.read("DefectScore"), plc.read("ErrorCode"), plc.read("Error")) == (score, code, code != 0)
        assert (plc.read("InspectionId"), plc.read("ResultId"), plc.read("PartId")) == (
            101 + i,
            str(101 + i),
            f"P{101 + i}",
        )
        assert plc.read("ErrorText") == ("" if code == 0 else expected_reason(code))
        plc.write("ResultsAck", True)
        wait_until(lambda: not plc.read("ResultsValid"), f"ResultsValid falling after ack {counter}")
        assert not any(plc.read(bit) for bit in ("OK", "NG", "NoDecision"))
        plc.write("ResultsAck", False)
    assert plc.read("ResultsPending") == 0


def expected_reason(code: int) -> str:
    return {1: "needs_review: test", 3: "dropped: test"}[code]


def test_station_state_and_alarm_are_visible(sink: OpcUaSink, plc: Plc):
    assert plc.read("Online")
    sink.set_status(True, "camera lost")
    wait_until(lambda: plc.read("Alarm") and plc.read("State") == "Error", "the alarm")
    assert (plc.read("AlarmText"), plc.read("ErrorCode")) == ("camera lost", 4)
    sink.set_status(False)
    wait_until(lambda: not plc.read("Online") and plc.read("State") == "Halted", "offline")
    assert not plc.read("TriggerReady")


def test_the_plc_cannot_write_what_the_station_owns(sink: OpcUaSink, plc: Plc):
    with pytest.raises(ua.UaStatusCodeError):
        plc.write("OK", True)
    with pytest.raises(ua.UaStatusCodeError):
        plc.write("ResultsValid", True)
    assert not plc.read("OK")


def test_a_second_sink_on_a_busy_port_names_it(sink: OpcUaSink, control: FakeControl):
    other = OpcUaSink(endpoint=f"opc.tcp://127.0.0.1:{sink.port}", station="other")
    with pytest.raises(LineError, match=f"127.0.0.1:{sink.port}"):
        other.open(control)
    other.close()


def test_endpoints_and_options():
    assert parse_endpoint("opcua://10.0.0.5:4841") == (
        "opc.tcp://10.0.0.5:4841/defectlens",
        "10.0.0.5",
        4841,
        "/defectlens",
    )
    assert parse_endpoint("opc.tcp://plc-gw/vision")[0] == "opc.tcp://plc-gw:4840/vision"
    assert parse_endpoint("127.0.0.1:0")[2] == 0
    for bad in ("http://x:1", "opc.tcp://x:99999", "opc.tcp://:4840"):
        with pytest.raises(LineError, match="endpoint"):
            parse_endpoint(bad)
    sink = OpcUaSink.from_config(
        {"type": "opcua", "endpoint": "opcua://0.0.0.0:4850", "wait_for_ack": True}, station="s", base=Path()
    )
    assert (sink.endpoint, sink.station, sink.handshake.wait_for_ack) == (
        "opc.tcp://0.0.0.0:4850/defectlens",
        "s",
        True,
    )
    for options, option in [({"queue_size": 0}, "queue_size"), ({"endpoint": 4840}, "endpoint"), ({"port": 1}, "port")]:
        with pytest.raises(LineError, match=option):
            OpcUaSink.from_config(options, station="s", base=Path())


def test_a_rising_results_valid_is_written_after_its_fields_and_a_falling_one_first(control: FakeControl):
    """The order of the server-side writes, recorded without a network: a PLC subscribed to ResultsValid
    must never see it rise before the result's fields, nor see the verdict bits clear while it is still high."""
    import asyncio

    class Recorder:
        def __init__(self) -> None:
            self.names: list[str] = []

        async def write_attribute_value(self, nodeid: str, datavalue: Any) -> None:
            self.names.append(nodeid)

    class FakeNode:
        def __init__(self, name: str) -> None:
            self.nodeid = name

    sink = OpcUaSink(endpoint="opc.tcp://127.0.0.1:0", station=STATION)
    recorder = Recorder()
    sink._server = recorder
    sink._nodes = {name: FakeNode(name) for name, *_ in (*PLC_NODES, *STATION_NODES)}
    sink.handshake.attach(control)
    sink.set_status(True)
    asyncio.run(sink._write_state())
    recorder.names.clear()
    sink.publish(result(5, "ok", ok=True, p=0.2))
    asyncio.run(sink._write_state())
    assert recorder.names[-1] == "ResultsValid"
    assert {"OK", "InspectionId", "ResultCounter", "DefectScore"} <= set(recorder.names[:-1])
    recorder.names.clear()
    sink.handshake.write_ack(True)
    asyncio.run(sink._write_state())
    assert recorder.names == ["ResultsValid", "OK"]
