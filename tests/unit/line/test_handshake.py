"""The PLC handshake as a pure state machine, with no network: trigger edges and readiness, results
presented in order one per acknowledgement, NoDecision (never OK) for every undecided status, the FIFO's
overrun counted rather than silent, the station's alarm, and callbacks made without the lock held."""

from __future__ import annotations

import logging
import threading

import pytest

from defectlens.line.base import Frame, Result
from defectlens.line.handshake import ErrorCode, Handshake, Verdict


class FakeControl:
    """The station as a sink sees it: records triggers, readiness set by the test."""

    def __init__(self, ready: bool = True) -> None:
        self.ready = ready
        self.calls: list[str | None] = []

    def trigger(self, part_id: str | None = None) -> bool:
        self.calls.append(part_id)
        return True


def result(
    inspection_id: int, status: str = "ok", *, ok: bool | None = True, p: float | None = 0.25, index: int | None = 0
) -> Result:
    decided = status == "ok"
    return Result(
        frame=Frame(data=b"", name=f"part-{inspection_id}.png", source="test:plc", part_id=f"P{inspection_id}"),
        status=status,
        inspection_id=inspection_id,
        decision=("good" if ok else "defect") if decided else None,
        class_index=index if decided else None,
        ok=ok if decided else None,
        defect_probability=p,
        reason="" if decided else f"{status} reason",
    )


def online(**kwargs: object) -> tuple[Handshake, FakeControl]:
    control = FakeControl()
    hs = Handshake(**kwargs)  # type: ignore[arg-type]
    hs.attach(control)
    hs.set_status(True)
    return hs, control


def ack(hs: Handshake) -> None:
    hs.write_ack(True)
    hs.write_ack(False)


def test_trigger_when_not_ready_is_refused_and_counted():
    hs, control = online()
    control.ready = False
    assert not hs.state().trigger_ready
    assert hs.write_trigger(True) is False
    assert control.calls == []
    assert hs.state().triggers_refused == 1
    assert hs.state().triggers == 0


def test_trigger_fires_once_per_rising_edge_with_a_part_id():
    hs, control = online()
    assert hs.state().trigger_ready
    assert hs.write_trigger(True) is True
    assert hs.write_trigger(True) is None  # held high: no second acquisition
    assert hs.write_trigger(False) is None
    assert hs.write_trigger(True, "SN-42") is True
    assert control.calls == ["plc-1", "SN-42"]
    assert hs.state().triggers == 2


def test_offline_station_or_no_control_is_not_trigger_ready():
    hs, control = online()
    hs.set_status(False)
    assert not hs.state().trigger_ready
    assert hs.write_trigger(True) is False
    assert control.calls == []
    bare = Handshake()
    bare.set_status(True)
    assert not bare.state().trigger_ready


def test_results_are_presented_in_order_one_per_acknowledgement():
    hs, _ = online()
    for i in (11, 12, 13):
        assert hs.publish(result(i)) is True
    state = hs.state()
    assert (state.results_valid, state.inspection_id, state.result_counter, state.pending) == (True, 11, 1, 2)
    hs.write_ack(True)
    state = hs.state()
    # ResultsValid falls on the ack; the verdict bits fall with it; the next result waits for ack to drop
    assert (state.results_valid, state.ok, state.results_ack, state.inspection_id, state.pending) == (
        False, False, True, 11, 2,
    )  # fmt: skip
    hs.write_ack(False)
    state = hs.state()
    assert (state.results_valid, state.ok, state.inspection_id, state.result_counter, state.pending) == (
        True, True, 12, 2, 1,
    )  # fmt: skip
    ack(hs)
    assert (hs.state().inspection_id, hs.state().result_counter, hs.state().pending) == (13, 3, 0)
    ack(hs)
    assert not hs.state().results_valid
    assert hs.state().result_counter == 3


def test_a_result_waits_while_the_plc_holds_ack_high():
    hs, _ = online()
    hs.write_ack(True)
    hs.publish(result(5))
    assert not hs.state().results_valid
    assert hs.state().pending == 1
    hs.write_ack(False)
    assert hs.state().results_valid
    assert hs.state().inspection_id == 5


def test_ack_without_a_presented_result_changes_nothing():
    hs, _ = online()
    ack(hs)
    assert hs.state().result_counter == 0
    hs.publish(result(1))
    assert hs.state().results_valid


@pytest.mark.parametrize(
    ("status", "code"),
    [("needs_review", ErrorCode.GATE_REFUSED), ("error", ErrorCode.UNREADABLE), ("dropped", ErrorCode.DROPPED)],
)
def test_undecided_results_are_no_decision_never_ok(status: str, code: ErrorCode):
    hs, _ = online()
    hs.publish(result(7, status, p=None))
    state = hs.state()
    assert (state.ok, state.ng, state.no_decision) == (False, False, True)
    assert (state.error, state.error_code, state.error_text) == (True, int(code), f"{status} reason")
    assert (state.class_index, state.defect_per_mille, state.class_name) == (-1, -1, "")


def test_a_result_claiming_ok_without_a_decision_is_still_no_decision():
    # the sink does not trust ``ok`` on an undecided status, nor a decision without OK/NG
    claimed = Result(frame=Frame(data=b"", name="x", source="t"), status="needs_review", inspection_id=1, ok=True)
    assert (Verdict.of(claimed).ok, Verdict.of(claimed).no_decision) == (False, True)
    no_verdict = Verdict.of(result(2, ok=None))
    assert (no_verdict.ok, no_verdict.no_decision, no_verdict.error_code) == (False, True, ErrorCode.NO_VERDICT)


def test_good_part_and_defect_fields():
    hs, _ = online()
    hs.publish(result(1, ok=True, p=0.0304, index=0))
    state = hs.state()
    assert (state.ok, state.ng, state.no_decision, state.error, state.error_code) == (True, False, False, False, 0)
    assert (state.class_index, state.class_name, state.defect_per_mille, state.part_id) == (0, "good", 30, "P1")
    ack(hs)
    hs.publish(result(2, ok=False, p=0.8706, index=1))
    state = hs.state()
    assert (state.ok, state.ng, state.no_decision) == (False, True, False)
    assert (state.class_index, state.class_name, state.defect_per_mille, state.defect_score) == (
        1,
        "defect",
        871,
        0.8706,
    )


def test_a_full_fifo_refuses_counts_and_logs_and_lowers_trigger_ready(caplog: pytest.LogCaptureFixture):
    hs, _ = online(queue_size=2)
    with caplog.at_level(logging.WARNING, logger="defectlens.line.handshake"):
        assert [hs.publish(result(i)) for i in (1, 2, 3, 4)] == [True, True, True, False]
    state = hs.state()
    assert (state.inspection_id, state.pending, state.overruns, state.trigger_ready) == (1, 2, 1, False)
    assert "inspection 4 not presented" in caplog.text
    ack(hs)
    assert hs.state().trigger_ready  # one place free again
    assert hs.state().inspection_id == 2


def test_wait_for_ack_holds_trigger_ready_until_every_result_is_acknowledged():
    hs, _ = online(wait_for_ack=True)
    assert hs.state().trigger_ready
    hs.publish(result(1))
    assert not hs.state().trigger_ready
    assert hs.write_trigger(True) is False
    hs.write_ack(True)
    assert not hs.state().trigger_ready  # ack still high
    hs.write_ack(False)
    assert hs.state().trigger_ready


def test_station_alarm_is_an_error_code_and_state():
    hs, _ = online()
    assert hs.state().state_name == "Operational"
    hs.set_status(True, "camera lost")
    state = hs.state()
    assert (state.alarm, state.alarm_text, state.error, state.error_code, state.state_name) == (
        True, "camera lost", True, int(ErrorCode.STATION_ALARM), "Error",
    )  # fmt: skip
    hs.publish(result(3, "dropped"))
    assert hs.state().error_code == int(ErrorCode.DROPPED)  # the result's own reason comes first
    hs.set_status(False)
    assert (hs.state().online, hs.state().state_name) == (False, "Halted")


def test_the_station_may_publish_from_inside_trigger_without_deadlock():
    """control.trigger runs without the (non-reentrant) lock: a station that publishes at once cannot deadlock."""
    hs = Handshake()

    class Reentrant:
        ready = True

        def trigger(self, part_id: str | None = None) -> bool:
            hs.publish(result(99))
            return True

    hs.attach(Reentrant())
    hs.set_status(True)
    worker = threading.Thread(target=hs.write_trigger, args=(True,), daemon=True)
    worker.start()
    worker.join(30)
    assert not worker.is_alive()
    assert hs.state().inspection_id == 99


def test_concurrent_publishers_and_an_acking_plc_lose_nothing():
    hs, _ = online(queue_size=1000)
    seen: list[int] = []
    done = threading.Event()

    def plc() -> None:
        while len(seen) < 400:
            state = hs.state()
            if state.results_valid:
                seen.append(state.inspection_id)
                ack(hs)
        done.set()

    publishers = [
        threading.Thread(target=lambda k=k: [hs.publish(result(k * 100 + i)) for i in range(100)]) for k in range(4)
    ]
    reader = threading.Thread(target=plc, daemon=True)
    reader.start()
    for thread in publishers:
        thread.start()
    for thread in publishers:
        thread.join(30)
    assert done.wait(30)
    assert sorted(seen) == [k * 100 + i for k in range(4) for i in range(100)]
    for k in range(4):  # each publisher's results in its own order
        mine = [i for i in seen if i // 100 == k]
        assert mine == sorted(mine)
    assert (hs.state().result_counter, hs.state().overruns) == (400, 0)
