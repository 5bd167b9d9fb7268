"""The hot folder: a PLC or a camera's software writes image files into a folder; each is inspected once.

When a file is complete: on Linux the kernel says so (inotify "closed after writing", or "moved into the
folder" for a file written elsewhere and renamed in); never on "created", which fires before the first byte.
With ``poll: true`` (network shares, where inotify sees nothing) and on other systems, a file is complete once
its size and modification time have stayed the same over one check interval. Files whose names start with a
dot or end in ``.tmp``/``.part`` are ignored (``ignore:``), so a writer may write ``.x.tmp`` and rename it.

Exactly once, across restarts: a ledger (SQLite, ``<folder>/.defectlens/ledger.sqlite`` unless ``ledger:``
says where) knows each file by name, size and modification time (ns). A file is claimed in the ledger before
the station decides it, finished after its result is published, then moved to ``done/`` (``after: move``, the
default, whatever the outcome) or left where it is (``after: leave``: the ledger keeps it from being inspected
again). On start, :meth:`FolderSource.resume` settles what a crash interrupted: a claimed file whose row is in
the inspection log is published again (at least once) and finished, never decided twice; one without a row is
inspected again. Files that arrived while the station was down are inspected first, in arrival order
(modification time, then name), then live events.

A file's name is data: the log gets it as text (undecodable bytes escaped), the ledger its exact bytes.
"""

from __future__ import annotations

import contextlib
import fnmatch
import hashlib
import os
import queue
import shutil
import sqlite3
import stat
import sys
import threading
import time
from collections import OrderedDict
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from defectlens.inspections.store import Filters, InspectionLog
from defectlens.line.base import Frame, LineError, Result

AFTER = ("move", "leave")
DEFAULT_IGNORE = (".*", "*.tmp", "*.part", "*.partial")
_OPTIONS = ("type", "path", "after", "done", "poll", "interval", "settle", "ledger", "ignore")
Key = tuple[bytes, int, int]  # the file name's bytes, its size, its modification time (ns)


@dataclass(frozen=True)
class FileFrame(Frame):
    """A hot folder's frame: the ledger key of its file, and ``error`` when the file could not be read."""

    key: Key | None = None


def display_name(name: str) -> str:
    """A file name as text for the log (bytes that are not UTF-8 shown as ``\\xNN``)."""
    return name.encode("utf-8", "surrogateescape").decode("utf-8", "backslashreplace")


class Ledger:
    """Which files were claimed (being decided) and finished, by name, size and modification time."""

    def __init__(self, path: Path):
        self.path = path
        path.parent.mkdir(parents=True, exist_ok=True)
        self._lock = threading.Lock()
        try:
            self._db = sqlite3.connect(path, check_same_thread=False, isolation_level=None, timeout=30)
            self._db.execute("PRAGMA journal_mode=WAL")
            self._db.execute("PRAGMA synchronous=FULL")
            self._db.execute(
                "CREATE TABLE IF NOT EXISTS files (name BLOB, size INTEGER, mtime_ns INTEGER, display TEXT, "
                "sha256 TEXT, state TEXT, after_id INTEGER, inspection_id INTEGER, PRIMARY KEY (name, size, mtime_ns))"
            )
        except sqlite3.DatabaseError as exc:
            raise LineError(f"{path}: not a usable hot-folder ledger ({exc}); remove it or set 'ledger:'") from None

    def state(self, key: Key) -> str | None:
        with self._lock:
            row = self._db.execute("SELECT state FROM files WHERE name=? AND size=? AND mtime_ns=?", key).fetchone()
        return None if row is None else str(row[0])

    def claim(self, key: Key, *, display: str, sha256: str, after_id: int | None) -> None:
        with self._lock:
            self._db.execute(
                "INSERT OR REPLACE INTO files VALUES (?, ?, ?, ?, ?, 'pending', ?, NULL)",
                (*key, display, sha256, after_id),
            )

    def finish(self, key: Key, inspection_id: int | None) -> None:
        with self._lock:
            self._db.execute(
                "UPDATE files SET state='done', inspection_id=? WHERE name=? AND size=? AND mtime_ns=?",
                (inspection_id, *key),
            )

    def forget(self, key: Key) -> None:
        with self._lock:
            self._db.execute("DELETE FROM files WHERE name=? AND size=? AND mtime_ns=?", key)

    def entries(self) -> list[tuple[Key, str, str, str, int | None]]:
        """Every entry: key, display name, sha256, state, the log's newest id when it was claimed."""
        with self._lock:
            rows = self._db.execute(
                "SELECT name, size, mtime_ns, display, sha256, state, after_id FROM files"
            ).fetchall()
        return [((bytes(r[0]), r[1], r[2]), r[3], r[4], r[5], r[6]) for r in rows]

    def close(self) -> None:
        with self._lock:
            self._db.close()


class FolderSource:
    """Frames from the files written into ``folder`` (see the module docstring).

    Args:
        folder: the folder to watch (not its subfolders).
        after: ``move`` (into ``done``) or ``leave`` each inspected file.
        done: where ``move`` puts files (default ``folder/done``).
        poll: find complete files by polling (network shares) instead of the kernel's events.
        interval: seconds between polls (``poll: true``).
        settle: seconds a file found at start (or, without inotify, any file) must keep its size and time.
        ledger: the ledger file (default ``folder/.defectlens/ledger.sqlite``).
        ignore: glob patterns of names never inspected.
    """

    triggerable = False

    def __init__(
        self,
        folder: Path,
        *,
        after: str = "move",
        done: Path | None = None,
        poll: bool = False,
        interval: float = 1.0,
        settle: float = 0.5,
        ledger: Path | None = None,
        ignore: tuple[str, ...] = DEFAULT_IGNORE,
    ):
        if after not in AFTER:
            raise LineError(f"folder source: after must be one of {', '.join(AFTER)}, got {after!r}")
        self.folder = Path(folder).absolute()  # events name files by the path watched: compare like with like
        self.endpoint = f"folder:{self.folder}"
        self.after, self.poll, self.interval, self.settle, self.ignore = after, poll, interval, settle, ignore
        self.done_folder = done or self.folder / "done"
        self.ledger_path = ledger or self.folder / ".defectlens" / "ledger.sqlite"
        self._native = sys.platform.startswith("linux") and not poll  # inotify tells when a file is closed
        self._ledger: Ledger | None = None
        self._log: InspectionLog | None = None
        self._events: queue.Queue[str] = queue.Queue()
        self._handled: OrderedDict[str, Key] = OrderedDict()  # names inspected in this run (stale events)

    @classmethod
    def from_config(cls, options: dict[str, Any], *, station: str, base: Path) -> FolderSource:
        """Build from a station file's ``source:`` mapping (relative paths are taken from ``base``)."""
        unknown = sorted(set(options) - set(_OPTIONS))
        if unknown:
            raise LineError(f"folder source: unknown option {unknown[0]!r} (options: {', '.join(_OPTIONS[1:])})")
        if not isinstance(options.get("path"), str) or not options["path"]:
            raise LineError(f"folder source: 'path' must name the folder to watch, got {options.get('path')!r}")

        def path(key: str) -> Path | None:
            value = options.get(key)
            if value is None:
                return None
            if not isinstance(value, str):
                raise LineError(f"folder source: {key!r} must be a path, got {value!r}")
            return base / Path(value).expanduser()

        for key in ("interval", "settle"):
            value = options.get(key, 1.0)
            if isinstance(value, bool) or not isinstance(value, (int, float)) or value <= 0:
                raise LineError(f"folder source: {key!r} must be a positive number of seconds, got {value!r}")
        if not isinstance(options.get("poll", False), bool):
            raise LineError(f"folder source: 'poll' must be true or false, got {options['poll']!r}")
        ignore = options.get("ignore", list(DEFAULT_IGNORE))
        if not isinstance(ignore, list) or not all(isinstance(p, str) for p in ignore):
            raise LineError(f"folder source: 'ignore' must be a list of glob patterns, got {ignore!r}")
        folder = path("path")
        assert folder is not None
        return cls(
            folder,
            after=str(options.get("after", "move")),
            done=path("done"),
            poll=options.get("poll", False),
            interval=float(options.get("interval", 1.0)),
            settle=float(options.get("settle", 0.5)),
            ledger=path("ledger"),
            ignore=tuple(ignore),
        )

    # -- Source ------------------------------------------------------------------------------------------------------

    def open(self) -> None:
        try:
            import watchdog  # noqa: F401  (here, not on the capture thread: a missing extra is a start-up error)
        except ModuleNotFoundError:
            raise LineError(f"{self.endpoint}: the hot folder needs watchdog: pip install 'defectlens[line]'") from None
        if not self.folder.is_dir():
            raise LineError(f"{self.endpoint}: the hot folder does not exist or is not a folder")
        if self.after == "move":
            try:
                self.done_folder.mkdir(parents=True, exist_ok=True)
            except OSError as exc:
                raise LineError(f"{self.endpoint}: cannot create the done folder {self.done_folder} ({exc})") from None
        if self._ledger is None:
            try:
                self._ledger = Ledger(self.ledger_path)
            except OSError as exc:
                raise LineError(f"{self.endpoint}: cannot open the ledger {self.ledger_path} ({exc})") from None

    def resume(self, log: InspectionLog, station: str) -> list[tuple[Frame, int]]:
        """Settle what a crash interrupted (see the module docstring); the frames logged but not finished."""
        self._log = log
        ledger = self._require_ledger()
        entries = ledger.entries()
        pending = [e for e in entries if e[3] == "pending"]
        logged = _logged_rows(log, station, min((e[4] or 0 for e in pending), default=0)) if pending else {}
        again: list[tuple[Frame, int]] = []
        for key, display, sha, state, after_id in entries:
            path = self.folder / os.fsdecode(key[0])
            if state == "done":
                if self.after == "move":
                    self._move_and_forget(path, key)
                continue
            found = logged.get((display, sha))
            if found is None or found <= (after_id or 0):
                ledger.forget(key)  # never logged: inspected again from the folder
                continue
            data, same = b"", _stat_key(path) == key[1:]  # the very file, not a later one of the same name
            if same:
                with contextlib.suppress(OSError):
                    data = path.read_bytes()
            again.append((FileFrame(data, display, self.endpoint, path=path if same else None, key=key), found))
        return again

    def frames(self, stop: threading.Event) -> Iterator[Frame]:
        observer = self._observer()
        observer.start()
        try:
            candidates = self._startup(stop)
            for path in sorted(candidates, key=lambda p: (candidates[p][1], p.name)):
                if candidates[path] == _stat_key(path):
                    yield from self._take(path)
                    del candidates[path]
            yield from self._watch(stop, candidates)
        finally:
            observer.stop()
            observer.join()

    def trigger(self, part_id: str | None = None) -> bool:
        return False  # a hot folder is fed by its writer

    def done(self, frame: Frame, result: Result) -> None:
        if not isinstance(frame, FileFrame) or frame.key is None:
            return  # a file that could not be read is left where it is
        ledger = self._require_ledger()
        ledger.finish(frame.key, result.inspection_id)
        if self.after == "move":  # only the very file (name, size, time): never a later one of the same name
            self._move_and_forget(self.folder / os.fsdecode(frame.key[0]), frame.key)

    def close(self) -> None:
        if self._ledger is not None:
            self._ledger.close()
            self._ledger = None

    # -- finding complete files ----------------------------------------------------------------------------------------

    def _observer(self) -> Any:
        from watchdog.events import FileSystemEvent, FileSystemEventHandler

        source = self

        class Handler(FileSystemEventHandler):
            def on_any_event(self, event: FileSystemEvent) -> None:
                source._on_event(event)

        if self.poll:
            from watchdog.observers.polling import PollingObserver

            observer: Any = PollingObserver(timeout=self.interval)
        elif self._native:
            from watchdog.observers.inotify import InotifyObserver

            observer = InotifyObserver(generate_full_events=True)  # a file moved in from outside is a move
        else:
            from watchdog.observers import Observer

            observer = Observer()
        observer.schedule(Handler(), str(self.folder), recursive=False)
        return observer

    def _on_event(self, event: Any) -> None:
        if event.is_directory:
            return
        kind = event.event_type
        target = os.fsdecode(event.dest_path) if kind == "moved" else os.fsdecode(event.src_path)
        if not target or Path(target).parent != self.folder:
            return  # moved out of the folder (into done/), or not ours
        if (
            kind == "moved"
            or (kind == "closed" and self._native)
            or (not self._native and kind in ("created", "modified"))
        ):
            self._events.put(target)

    def _startup(self, stop: threading.Event) -> dict[Path, tuple[int, int]]:
        """The files already here that keep their size and time over ``settle`` seconds (a file still being
        written waits for its event); returns path -> (size, mtime_ns) of each file seen."""
        seen = {p: k for p in _files(self.folder) if (k := _stat_key(p)) is not None}
        stop.wait(self.settle)
        return {p: k for p, k in seen.items() if not self._ignored(p.name)}

    def _watch(self, stop: threading.Event, candidates: dict[Path, tuple[int, int]]) -> Iterator[Frame]:
        """Live events until ``stop``; files that need a stability check are checked every ``interval``."""
        period = self.interval if self.poll else self.settle
        next_check = time.monotonic() + period
        while not stop.is_set():
            try:
                target = Path(self._events.get(timeout=min(0.2, period)))
            except queue.Empty:
                target = None
            if target is not None and not self._ignored(target.name):
                if self._native:
                    yield from self._take(target)
                else:
                    candidates.setdefault(target, (-1, -1))
            if time.monotonic() >= next_check:
                yield from self._settled(candidates)
                next_check = time.monotonic() + period

    def _settled(self, candidates: dict[Path, tuple[int, int]]) -> Iterator[Frame]:
        ready = []
        for path, before in list(candidates.items()):
            now = _stat_key(path)
            if now is None:
                del candidates[path]  # gone before it was complete (a temporary file)
            elif now == before:
                ready.append(path)
                del candidates[path]
            else:
                candidates[path] = now
        for path in sorted(ready, key=lambda p: (_mtime(p), p.name)):
            yield from self._take(path)

    # -- one file ----------------------------------------------------------------------------------------------------

    def _take(self, path: Path) -> Iterator[Frame]:
        """The frame of one complete file, unless the ledger already has it (or it is not a file)."""
        name, display = path.name, display_name(path.name)
        try:
            st = path.stat()
        except FileNotFoundError:
            if name not in self._handled:  # not an event about a file this run already took
                yield FileFrame(
                    b"", display, self.endpoint, path=path, error=f"{display}: the file vanished before it was read"
                )
            return
        if not stat.S_ISREG(st.st_mode):
            return
        key: Key = (os.fsencode(name), st.st_size, st.st_mtime_ns)
        ledger = self._require_ledger()
        state = ledger.state(key)
        if state is not None:
            if state == "done" and self.after == "move":
                self._move_and_forget(path, key)
            return
        try:
            data = path.read_bytes()
        except OSError as exc:
            reason = (
                "the file vanished before it was read"
                if isinstance(exc, FileNotFoundError)
                else f"cannot read it ({exc})"
            )
            yield FileFrame(b"", display, self.endpoint, path=path, error=f"{display}: {reason}")
            return
        ledger.claim(key, display=display, sha256=hashlib.sha256(data).hexdigest(), after_id=self._newest_id())
        self._remember(name, key)
        closed = st.st_mtime_ns / 1e9  # the writer closed it then: latency counts from there
        captured_utc = datetime.fromtimestamp(closed, timezone.utc).isoformat(timespec="milliseconds")
        captured_at = time.monotonic() - max(0.0, time.time() - closed)
        yield FileFrame(data, display, self.endpoint, captured_utc, captured_at, path=path, key=key)

    def _move_and_forget(self, path: Path, key: Key) -> None:
        if _stat_key(path) == key[1:]:
            target = _unique(self.done_folder, path.name)
            with contextlib.suppress(FileNotFoundError):  # a sink moved it (sort, mode move), or someone took it
                _move_out(path, target)
        self._require_ledger().forget(key)

    def _remember(self, name: str, key: Key) -> None:
        self._handled[name] = key
        self._handled.move_to_end(name)
        while len(self._handled) > 10_000:
            self._handled.popitem(last=False)

    def _newest_id(self) -> int | None:
        if self._log is None:
            return None
        rows = self._log.query(limit=1)
        return rows[0].id if rows else 0

    def _ignored(self, name: str) -> bool:
        return any(fnmatch.fnmatchcase(name, pattern) for pattern in self.ignore)

    def _require_ledger(self) -> Ledger:
        if self._ledger is None:
            raise LineError(f"{self.endpoint}: the source is not open")
        return self._ledger


def _files(folder: Path) -> list[Path]:
    with os.scandir(folder) as entries:
        return [folder / e.name for e in entries if e.is_file(follow_symlinks=False)]


def _stat_key(path: Path) -> tuple[int, int] | None:
    try:
        st = path.stat()
    except OSError:
        return None
    return (st.st_size, st.st_mtime_ns) if stat.S_ISREG(st.st_mode) else None


def _mtime(path: Path) -> int:
    key = _stat_key(path)
    return key[1] if key is not None else 0


def _move_out(path: Path, target: Path) -> None:
    """Move ``path`` to ``target`` without renaming it out of the watched folder where the file system allows.

    A rename out of the folder is an IN_MOVED_FROM that watchdog cannot pair (``done/`` is not watched); it holds
    such an event for 0.5 s at the head of its event queue, so every file closed meanwhile would wait behind it.
    A hard link and an unlink send no such event. Where links are not possible (another file system, SMB/FAT):
    ``shutil.move``. A file already linked under its own name (a crash between link and unlink) is only unlinked.
    """
    with contextlib.suppress(OSError):
        if (target.parent / path.name).samefile(path):
            path.unlink()
            return
    try:
        os.link(path, target)
    except OSError:
        shutil.move(path, target)
        return
    path.unlink()


def _unique(folder: Path, name: str) -> Path:
    """``folder/name``, or ``folder/stem-N.suffix`` for the first N that is free (never overwrites)."""
    target = folder / name
    stem, suffix = target.stem, target.suffix
    n = 1
    while target.exists():
        target = folder / f"{stem}-{n}{suffix}"
        n += 1
    return target


def _logged_rows(log: InspectionLog, station: str, after_id: int) -> dict[tuple[str, str], int]:
    """(file name, sha256) -> id of this station's rows logged after ``after_id`` (the newest claim's window)."""
    found: dict[tuple[str, str], int] = {}
    offset = 0
    while True:
        rows = log.query(Filters(station=station), limit=200, offset=offset)
        for row in rows:
            if row.id > after_id:
                found.setdefault((row.client_name, row.image_sha256), row.id)
        if not rows or rows[-1].id <= after_id:
            return found
        offset += len(rows)
