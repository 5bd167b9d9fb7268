"""What the PLC sinks' tests share: the station as a sink sees it, and a bounded wait."""

from __future__ import annotations

import time
from collections.abc import Callable


class FakeControl:
    """Records the triggers a PLC fires; ``ready`` is set by the test."""

    def __init__(self) -> None:
        self.ready = True
        self.calls: list[str | None] = []

    def trigger(self, part_id: str | None = None) -> bool:
        self.calls.append(part_id)
        return True


def wait_until(predicate: Callable[[], object], what: str, deadline_s: float = 30.0) -> None:
    """Poll until ``predicate()`` holds; the deadline only bounds a hang."""
    end = time.monotonic() + deadline_s
    while not predicate():
        if time.monotonic() > end:
            raise AssertionError(f"{what}: not seen within {deadline_s:g} s")
        time.sleep(0.02)
