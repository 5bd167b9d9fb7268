"""The inspector's one thread on the inspection log: verdicts and history look-ups, never on the window's thread.

A log another program holds locked, a read-only file or a full disk must not freeze the window, so every
read and write of the log runs here, one job after another (a verdict given twice is written in the order
given), and each outcome is posted as a :class:`~defectlens.gui.scoring.JobDone` on the window's queue.
The log waits :data:`LOCK_TIMEOUT_S` for a lock, not the store's 30 s: an operator is told within seconds
that a verdict was not saved. After a failed write the connection is opened afresh, so a transaction the
failure left open cannot hold up the next verdict.

The writer also keeps which log row each image (by SHA-256) has for each model, filled by
:func:`history` and by every verdict written, so judging an image again updates its row instead of adding
a second row that contradicts the first.
"""

from __future__ import annotations

import hashlib
import queue
import sqlite3
import threading
from collections.abc import Callable, Sequence
from contextlib import suppress
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from defectlens.core.errors import DefectlensError
from defectlens.gui.scoring import JobDone, Message
from defectlens.inspections import Filters, Inspection, InspectionLog
from defectlens.inspections.engine import Location

#: How long a write waits for a log another program holds locked before the verdict is reported unsaved.
LOCK_TIMEOUT_S = 2.0
#: Rows read per query while looking up a batch's history.
PAGE = 1000


#: What the writer remembers: (image SHA-256, model id) -> the id of that image's row in the log.
Rows = dict[tuple[str, str | None], int]


@dataclass
class LogWriter:
    """Runs jobs ``fn(log, rows)`` on one background thread and posts each outcome to ``messages``.

    Args:
        path: the inspection log (opened at once, so a file that is not a log is said at start).
        messages: the window's queue (the :class:`~defectlens.gui.scoring.Worker`'s).
        lock_timeout_s: how long a write waits for a lock.
    """

    path: Location
    messages: queue.Queue[Message]
    lock_timeout_s: float = LOCK_TIMEOUT_S
    log: InspectionLog | None = field(init=False, default=None)
    _jobs: queue.Queue[tuple[str, Callable[..., Any], Any] | None] = field(init=False, default_factory=queue.Queue)
    _rows: Rows = field(init=False, default_factory=dict)

    def __post_init__(self) -> None:
        self.log = InspectionLog(self.path, timeout=self.lock_timeout_s)
        self._thread = threading.Thread(target=self._run, name="inspector-log", daemon=True)
        self._thread.start()

    def submit(self, kind: str, fn: Callable[[InspectionLog, Rows], Any], *, token: Any = None) -> None:
        """Queue ``fn(log, rows)``; a :class:`JobDone` of ``kind`` with ``token`` reports its result or error."""
        self._jobs.put((kind, fn, token))

    def _run(self) -> None:
        while (job := self._jobs.get()) is not None:
            kind, fn, token = job
            try:
                log = self._open()
                self.messages.put(JobDone(kind, token, result=fn(log, self._rows)))
            except Exception as exc:  # said in the window: the verdict was not saved, and why
                self.messages.put(JobDone(kind, token, error=describe_failure(exc, self.path)))
                self._reset()
        self._reset()

    def _open(self) -> InspectionLog:
        if self.log is None:
            self.log = InspectionLog(self.path, timeout=self.lock_timeout_s)
        return self.log

    def _reset(self) -> None:
        """Close the connection (reopened for the next job): a failed write may have left it in a transaction."""
        log, self.log = self.log, None
        if log is not None:
            with suppress(sqlite3.Error):  # a connection that cannot close cleanly is dropped all the same
                log.close()

    def close(self, timeout: float = 5.0) -> None:
        """Finish the queued jobs (waiting at most ``timeout`` seconds) and close the log."""
        self._jobs.put(None)
        self._thread.join(timeout)


def describe_failure(exc: Exception, path: Location) -> str:
    """What the operator reads when the log refused a write: what went wrong and what to do."""
    text = str(exc)
    if isinstance(exc, DefectlensError):
        return text
    if "locked" in text or "busy" in text:
        return f"the log {path} is locked by another program ({text}); try again when it is free"
    if "readonly" in text or "read-only" in text:
        return f"the log {path} is read-only ({text}); give a writable log with --db"
    if isinstance(exc, OSError):
        return f"{exc.strerror or text}: {exc.filename or path}"
    return f"the log {path} refused the write ({type(exc).__name__}: {text})"


def sha256_of(path: Path) -> str | None:
    """The file's SHA-256, None when it cannot be read any more."""
    try:
        return hashlib.sha256(path.read_bytes()).hexdigest()
    except OSError:
        return None


def history(files: Sequence[Path], model_id: str) -> Callable[[InspectionLog, Rows], list[Inspection | None]]:
    """A job giving, per file, the row the log already holds for that image and model (its newest row with
    a verdict, else its newest row; None for an image never logged with this model)."""

    def job(log: InspectionLog, rows: Rows) -> list[Inspection | None]:
        hashes = [sha256_of(f) for f in files]
        wanted = {h for h in hashes if h is not None}
        found: dict[str, Inspection] = {}
        offset = 0
        while page := log.query(Filters(model_id=model_id), limit=PAGE, offset=offset):
            for row in page:  # newest first: keep the first row seen, unless a later one has a verdict
                if row.image_sha256 in wanted:
                    kept = found.get(row.image_sha256)
                    if kept is None or (kept.verdict is None and row.verdict is not None):
                        found[row.image_sha256] = row
            offset += len(page)
        for h, row in found.items():
            rows[(h, model_id)] = row.id
        return [None if h is None else found.get(h) for h in hashes]

    return job
