"""The Modbus TCP sink against pymodbus's client playing the PLC: a coil write of Trigger reaches the
station, four results (good part, defect, needs_review, dropped) are read and acknowledged one by one from
the register map in the module docstring, the station's state shows, station-owned addresses refuse
writes, and a second sink on a busy port says which port."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.require import import_or_missing

import_or_missing("pymodbus", flag="LINE", reason="the Modbus sink needs pymodbus (the [line] extra)")

from pymodbus.client import ModbusTcpClient  # noqa: E402

from defectlens.line.base import Frame, LineError, Result  # noqa: E402
from defectlens.line.handshake import Handshake  # noqa: E402
from defectlens.line.modbus import COILS, REGISTERS, ModbusSink, coil_image, register_image  # noqa: E402
from tests.unit.line.plc_helpers import FakeControl, wait_until  # noqa: E402

C = {name: i for i, name in enumerate(COILS)}
R = {name: i for i, name in enumerate(REGISTERS)}


def result(
    inspection_id: int, status: str, *, ok: bool | None = None, p: float | None = None, index: int = 0
) -> Result:
    decided = status == "ok"
    return Result(
        frame=Frame(data=b"", name=f"part-{inspection_id}.png", source="test:modbus"),
        status=status, inspection_id=inspection_id, decision=("good" if ok else "defect") if decided else None,
        class_index=index if decided else None, ok=ok if decided else None, defect_probability=p,
        reason="" if decided else status,
    )  # fmt: skip


@pytest.fixture
def control() -> FakeControl:
    return FakeControl()


@pytest.fixture
def sink(control: FakeControl) -> Iterator[ModbusSink]:
    sink = ModbusSink(host="127.0.0.1", port=0)
    sink.open(control)
    sink.set_status(True)
    yield sink
    sink.close()


@pytest.fixture
def plc(sink: ModbusSink) -> Iterator[ModbusTcpClient]:
    client = ModbusTcpClient("127.0.0.1", port=sink.port, timeout=10)
    assert client.connect(), f"cannot connect to {sink.endpoint_url}"
    yield client
    client.close()


def coils(plc: ModbusTcpClient) -> dict[str, bool]:
    reply = plc.read_coils(0, count=len(COILS))
    assert not reply.isError(), reply
    return dict(zip(COILS, reply.bits, strict=False))


def registers(plc: ModbusTcpClient) -> dict[str, int]:
    reply = plc.read_holding_registers(0, count=len(REGISTERS))
    assert not reply.isError(), reply
    return dict(zip(REGISTERS, reply.registers, strict=True))


def test_port_zero_is_read_back(sink: ModbusSink):
    assert sink.port != 0
    assert sink.endpoint_url == f"modbus://127.0.0.1:{sink.port}"


def test_a_plc_trigger_reaches_the_station(sink: ModbusSink, plc: ModbusTcpClient, control: FakeControl):
    wait_until(lambda: coils(plc)["TriggerReady"], "TriggerReady")
    assert not plc.write_coil(C["Trigger"], True).isError()
    wait_until(lambda: control.calls == ["plc-1"], "the station's trigger")
    assert coils(plc)["Trigger"]
    assert not plc.write_coil(C["Trigger"], False).isError()
    assert not plc.write_registers(R["PartIdHigh"], [1, 2]).isError()  # part 65538
    assert not plc.write_coil(C["Trigger"], True).isError()
    wait_until(lambda: control.calls == ["plc-1", "65538"], "the trigger with the PLC's part id")
    control.ready = False
    wait_until(lambda: not coils(plc)["TriggerReady"], "TriggerReady low when the station is busy")
    plc.write_coil(C["Trigger"], False)
    plc.write_coil(C["Trigger"], True)
    wait_until(lambda: registers(plc)["TriggersRefused"] == 1, "the refused trigger counted")
    assert len(control.calls) == 2


def test_results_are_read_and_acknowledged_in_order(sink: ModbusSink, plc: ModbusTcpClient):
    sink.publish(result(101, "ok", ok=True, p=0.03, index=0))
    sink.publish(result(70000, "ok", ok=False, p=0.87, index=1))
    sink.publish(result(103, "needs_review", p=0.4))
    sink.publish(result(104, "dropped"))
    # (OK, NG, NoDecision), counter, class, per-mille, error code, id high, id low
    expected = [
        ((True, False, False), 1, 0, 30, 0, 0, 101),
        ((False, True, False), 2, 1, 870, 0, 1, 4464),
        ((False, False, True), 3, 0xFFFF, 400, 1, 0, 103),
        ((False, False, True), 4, 0xFFFF, 0xFFFF, 3, 0, 104),
    ]
    for verdict, counter, index, per_mille, code, high, low in expected:
        wait_until(lambda: coils(plc)["ResultsValid"], f"ResultsValid for result {counter}")
        bits, regs = coils(plc), registers(plc)
        assert (bits["OK"], bits["NG"], bits["NoDecision"]) == verdict
        assert bits["Error"] == (code != 0)
        assert (regs["ResultCounter"], regs["ClassIndex"], regs["DefectPerMille"], regs["ErrorCode"]) == (
            counter, index, per_mille, code,
        )  # fmt: skip
        assert (regs["InspectionIdHigh"], regs["InspectionIdLow"]) == (high, low)
        assert regs["StatusWord"] & 0b10 and regs["StatusWord"] >> 2 & 0b111 == sum(
            b << i for i, b in enumerate(verdict)
        )
        assert not plc.write_coil(C["ResultsAck"], True).isError()
        wait_until(lambda: not coils(plc)["ResultsValid"], f"ResultsValid falling after ack {counter}")
        assert not any(coils(plc)[name] for name in ("OK", "NG", "NoDecision"))
        assert not plc.write_coil(C["ResultsAck"], False).isError()
    assert registers(plc)["ResultsPending"] == 0


def test_a_plc_that_reconnects_finds_the_result_still_presented(sink: ModbusSink, plc: ModbusTcpClient):
    sink.publish(result(7, "ok", ok=True, p=0.1))
    wait_until(lambda: coils(plc)["ResultsValid"], "ResultsValid")
    plc.close()
    sink.publish(result(8, "ok", ok=False, p=0.9))
    again = ModbusTcpClient("127.0.0.1", port=sink.port, timeout=10)
    assert again.connect()
    try:
        bits, regs = coils(again), registers(again)
        assert (bits["ResultsValid"], bits["OK"], regs["InspectionIdLow"], regs["ResultsPending"]) == (True, True, 7, 1)
    finally:
        again.close()


def test_station_state_and_alarm_are_visible(sink: ModbusSink, plc: ModbusTcpClient):
    wait_until(lambda: coils(plc)["Online"], "Online")
    sink.set_status(True, "camera lost")
    wait_until(lambda: coils(plc)["Alarm"] and registers(plc)["ErrorCode"] == 4, "the alarm and its error code")
    sink.set_status(False)
    wait_until(lambda: not coils(plc)["Online"] and not coils(plc)["TriggerReady"], "Offline")
    discrete = plc.read_discrete_inputs(0, count=len(COILS))
    assert discrete.bits[: len(COILS)] == list(coils(plc).values())


def test_the_plc_cannot_write_what_the_station_owns(sink: ModbusSink, plc: ModbusTcpClient):
    reply = plc.write_coil(C["OK"], True)
    assert reply.isError() and reply.exception_code == 2
    reply = plc.write_register(R["ResultCounter"], 5)
    assert reply.isError() and reply.exception_code == 2
    assert not coils(plc)["OK"]


def test_a_second_sink_on_a_busy_port_names_it(sink: ModbusSink, control: FakeControl):
    other = ModbusSink(host="127.0.0.1", port=sink.port)
    with pytest.raises(LineError, match=f"127.0.0.1:{sink.port}"):
        other.open(control)
    other.close()


def test_counter_and_signed_fields_as_16_bit_words():
    hs = Handshake(queue_size=2)
    hs.set_status(True)
    for i in range(65537):
        hs.publish(result(i + 1, "ok", ok=True, p=0.5))
        hs.write_ack(True)
        hs.write_ack(False)
    state = hs.state()
    assert state.result_counter == 65537
    regs = register_image(state)
    assert regs[R["ResultCounter"]] == 1  # 65536 wrapped to 0, then one more
    assert (regs[R["InspectionIdHigh"]], regs[R["InspectionIdLow"]]) == (1, 1)
    hs.publish(result(1, "error"))
    regs = register_image(hs.state())
    assert regs[R["StatusWord"]] == 0b1110010  # ResultsValid, NoDecision, Error, Online (no station: not ready)
    assert (regs[R["ClassIndex"]], regs[R["DefectPerMille"]], regs[R["ErrorCode"]]) == (0xFFFF, 0xFFFF, 2)
    assert coil_image(hs.state())[C["NoDecision"]]


def test_from_config_options():
    sink = ModbusSink.from_config(
        {"type": "modbus", "host": "127.0.0.1", "port": 1502, "queue_size": 4}, station="s", base=Path()
    )
    assert (sink.endpoint, sink.handshake.queue_size, sink.handshake.wait_for_ack) == (
        "modbus://127.0.0.1:1502",
        4,
        False,
    )
    for bad, option in [({"port": 70000}, "port"), ({"port": "x"}, "port"), ({"queue_size": 0}, "queue_size"),
                        ({"wait_for_ack": "yes"}, "wait_for_ack"), ({"unit": 1}, "unit")]:  # fmt: skip
        with pytest.raises(LineError, match=option):
            ModbusSink.from_config(bad, station="s", base=Path())


def test_a_pymodbus_without_the_action_hook_is_refused_by_name(monkeypatch: pytest.MonkeyPatch, control: FakeControl):
    import pymodbus

    monkeypatch.setattr(pymodbus, "__version__", "3.12.1")
    with pytest.raises(LineError, match=r"pymodbus >=3.13,<4 \(found 3.12.1\)"):
        ModbusSink(host="127.0.0.1", port=0).open(control)
