"""Progress events: how a long step tells its caller what it is doing, without printing.

The library never writes to the console. A step that takes more than a moment (hashing an import,
decoding and caching a split, an epoch, an evaluation pass, the export parity check, a benchmark,
a folder of predictions) opens a :meth:`Progress.phase` and advances it; one-line events (an epoch's
figures, a warning) go to :meth:`Progress.note`. This base class ignores everything; the command
line renders the events (a live bar on a terminal, one plain line per event in a log file).
"""

from __future__ import annotations

from types import TracebackType


class Phase:
    """One running step; ``advance`` by the units done (images, files, batches)."""

    def advance(self, n: int = 1) -> None:
        """Record ``n`` more units done."""

    def __enter__(self) -> Phase:
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close(failed=exc_type is not None)

    def close(self, *, failed: bool = False) -> None:
        """The step ended (``failed`` when it raised)."""


class Progress:
    """Receiver of progress events; this one does nothing (the library default)."""

    def phase(self, name: str, *, total: int | None = None, unit: str = "", transient: bool = False) -> Phase:
        """Start a step called ``name`` of ``total`` ``unit`` (None when the size is unknown).

        A ``transient`` phase is shown while it runs but leaves no line behind (an epoch, whose
        figures follow as a note).
        """
        return Phase()

    def note(self, message: str) -> None:
        """A one-line event worth showing (an epoch's figures, a warning)."""
