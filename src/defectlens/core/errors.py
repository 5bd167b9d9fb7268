"""Errors a user can act on.

Every error raised for bad input is a :class:`DefectlensError` whose message names the file or
value that was wrong and what to do. The CLI prints it as one line and exits with code 2.
"""

from __future__ import annotations


class DefectlensError(Exception):
    """A problem with the user's input, files or settings (not a bug in defectlens)."""

    exit_code = 2


class ImageError(DefectlensError):
    """One image could not be read or converted; carries the path and the reason."""

    def __init__(self, path: object, reason: str) -> None:
        self.path = str(path)
        self.reason = reason
        super().__init__(f"{self.path}: {reason}")
