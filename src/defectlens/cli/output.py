"""All console output of the command line: progress display, tables and messages.

Results go to stdout, progress and messages to stderr. On a terminal, progress is a live bar
with images per second and time left; when stderr is a file or a pipe (a log, CI), every phase is
one plain line when it starts and one when it ends, so logs stay readable and never wrap.
Every user-supplied string is printed with markup off, so a file name like ``part[1].png`` is
printed as it is.
"""

from __future__ import annotations

import contextlib
import json
import math
import sys
import time
from collections.abc import Iterator
from typing import Any

from rich.console import Console
from rich.table import Table

from defectlens.core.progress import Phase, Progress
from defectlens.core.text import terminal_safe

WIDTH = 100  # tables are laid out for this many columns when the terminal is wider


def stdout() -> Console:
    """The console for results (tables, JSON, summaries)."""
    return Console(markup=False, highlight=False, soft_wrap=True, width=None if sys.stdout.isatty() else 120)


def stderr() -> Console:
    """The console for progress, warnings and errors."""
    return Console(
        stderr=True, markup=False, highlight=False, soft_wrap=True, width=None if sys.stderr.isatty() else 120
    )


def warn(message: str) -> None:
    stderr().print(f"warning: {message}")


@contextlib.contextmanager
def warnings_as_lines() -> Iterator[None]:
    """Show the library's ``UserWarning``s (a defect filed as normal, training images left out...) as
    ``warning: ...`` lines, like the command's own, instead of Python's ``file:line: UserWarning`` and source
    line; other categories keep Python's display."""
    import warnings

    with warnings.catch_warnings():
        shown = warnings.showwarning

        def show(message: Warning | str, category: type[Warning], *args: Any, **kwargs: Any) -> None:
            if issubclass(category, UserWarning):
                warn(terminal_safe(str(message)))
            else:
                shown(message, category, *args, **kwargs)

        warnings.showwarning = show
        yield


class _PlainPhase(Phase):
    def __init__(self, console: Console, name: str, total: int | None, unit: str):
        self.console, self.name, self.total, self.unit = console, name, total, unit
        self.done = 0
        self.start = time.perf_counter()
        size = f" ({total} {unit})" if total else ""
        console.print(f"{name}{size} ...")

    def advance(self, n: int = 1) -> None:
        self.done += n

    def close(self, *, failed: bool = False) -> None:
        seconds = time.perf_counter() - self.start
        rate = f", {self.done / seconds:.0f} {self.unit}/s" if self.unit and self.done and seconds > 0 else ""
        status = "FAILED" if failed else "done"
        self.console.print(f"{self.name}: {status} in {seconds:.1f}s{rate}")


class PlainProgress(Progress):
    """One line when a phase starts and one when it ends (logs, pipes, CI)."""

    def __init__(self, console: Console | None = None):
        self.console = console or stderr()

    def phase(self, name: str, *, total: int | None = None, unit: str = "", transient: bool = False) -> Phase:
        return Phase() if transient else _PlainPhase(self.console, name, total, unit)

    def note(self, message: str) -> None:
        self.console.print(message)


class _RichPhase(Phase):
    def __init__(self, owner: RichProgress, name: str, total: int | None, unit: str, *, transient: bool = False):
        self.owner, self.name, self.transient = owner, name, transient
        self.start = time.perf_counter()
        self.task = owner.bar.add_task(name, total=total, unit=unit)

    def advance(self, n: int = 1) -> None:
        self.owner.bar.advance(self.task, n)

    def close(self, *, failed: bool = False) -> None:
        self.owner.bar.remove_task(self.task)
        seconds = time.perf_counter() - self.start
        if failed or (seconds >= 2.0 and not self.transient):  # a line for the phases a user waited for
            self.owner.bar.console.print(f"{self.name}: {'FAILED' if failed else 'done'} in {seconds:.0f}s")


class RichProgress(Progress):
    """A live bar per phase on a terminal: count, rate and time left (images, not batches)."""

    def __init__(self, console: Console | None = None):
        from rich.progress import BarColumn, MofNCompleteColumn, TextColumn, TimeElapsedColumn, TimeRemainingColumn
        from rich.progress import Progress as Bar

        self.bar = Bar(
            TextColumn("{task.description}"),
            BarColumn(bar_width=24),
            MofNCompleteColumn(),
            TextColumn("{task.fields[unit]}"),
            TimeElapsedColumn(),
            TimeRemainingColumn(),
            console=console or stderr(),
            transient=True,
        )

    def __enter__(self) -> RichProgress:
        self.bar.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.bar.stop()

    def phase(self, name: str, *, total: int | None = None, unit: str = "", transient: bool = False) -> Phase:
        return _RichPhase(self, name, total, unit, transient=transient)

    def note(self, message: str) -> None:
        self.bar.console.print(message)


class progress_display:
    """``with progress_display() as progress:``: a live bar on a terminal, plain lines elsewhere."""

    def __init__(self, *, quiet: bool = False):
        self.quiet = quiet
        self._rich: RichProgress | None = None

    def __enter__(self) -> Progress:
        if self.quiet:
            return Progress()
        if sys.stderr.isatty():
            self._rich = RichProgress()
            return self._rich.__enter__()
        return PlainProgress()

    def __exit__(self, *exc: object) -> None:
        if self._rich is not None:
            self._rich.__exit__(*exc)


def fmt(value: Any, digits: int = 4) -> str:
    """A metric for a table: numbers to ``digits`` decimals, a CI dict to its value, None as '-'."""
    if isinstance(value, dict):
        value = value.get("value", value.get("mean"))
    if isinstance(value, bool) or value is None:
        return "-"
    return f"{value:.{digits}f}" if isinstance(value, (int, float)) else str(value)


def table(title: str, columns: list[str], rows: list[list[str]], *, numeric_from: int = 1) -> Table:
    """A compact table (no box-drawing wider than needed) whose columns fit 80 characters."""
    t = Table(title=title, title_justify="left", box=None, pad_edge=False, header_style="bold")
    for i, c in enumerate(columns):
        t.add_column(c, justify="right" if i >= numeric_from else "left", overflow="fold")
    for r in rows:
        t.add_row(*r)
    return t


def safe(text: object) -> str:
    """``text`` (a file or class name) as one harmless terminal line: control characters, escape
    sequences, bidirectional controls and undecodable bytes shown as escapes (see
    :func:`defectlens.core.text.terminal_safe`); files keep the true name."""
    return terminal_safe(str(text))


def json_text(value: Any) -> str:
    """Strict JSON (RFC 8259) for standard output: a non-finite number, which JSON cannot hold (``NaN``
    is not JSON, and strict parsers refuse it), becomes null."""
    return json.dumps(_finite(value), indent=2, allow_nan=False)


def _finite(value: Any) -> Any:
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, dict):
        return {k: _finite(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_finite(v) for v in value]
    return value
