"""Untrusted text (file names, class names) made safe for where it goes: a CSV cell, a terminal line,
a file name.

A file name comes from a camera share or a user and can hold anything the file system allows: bytes
that are not UTF-8, control characters, terminal escape sequences, a newline, right-to-left override
marks, or a leading ``=`` that a spreadsheet would run as a formula. Every surface that writes such a
name (the predict CSV, the inspection log's CSV export, the summary on the terminal) goes through
these helpers, so they all escape the same way.
"""

from __future__ import annotations

import hashlib
import re
from typing import Any

#: First characters a spreadsheet (Excel, LibreOffice, Sheets) reads as the start of a formula.
FORMULA_PREFIXES = ("=", "+", "-", "@", "\t", "\r")
#: Bidirectional controls: they reorder what follows, so ``part_\u202egnp.exe`` reads as ``part_exe.png``.
BIDI_CONTROLS = frozenset("\u061c\u200e\u200f\u202a\u202b\u202c\u202d\u202e\u2066\u2067\u2068\u2069")
_UNSAFE = re.compile("[\x00-\x1f\x7f-\x9f\ud800-\udfff" + "".join(sorted(BIDI_CONTROLS)) + "]")
_SURROGATE = re.compile("[\ud800-\udfff]")
#: Longest file name (in bytes) that the common file systems (ext4, XFS, APFS, NTFS in UTF-16 units) allow.
MAX_NAME_BYTES = 255


def csv_cell(value: Any) -> Any:
    """A value for a CSV file a person may open in a spreadsheet.

    ``None`` becomes an empty cell; text a spreadsheet would run as a formula (a file name such as
    ``=HYPERLINK(...)``) gets a leading apostrophe, as OWASP advises against CSV injection; a name that
    is not valid UTF-8 (held by Python as surrogate escapes) keeps its bytes visible as ``\\xNN``.
    """
    if value is None:
        return ""
    if not isinstance(value, str):
        return value
    value = utf8_text(value)
    return "'" + value if value[:1] in FORMULA_PREFIXES else value


def utf8_text(text: str) -> str:
    """``text`` encodable as UTF-8: the undecodable bytes of a file name (surrogate escapes) as ``\\xNN``."""
    return _SURROGATE.sub(_escape, text)


def terminal_safe(text: str) -> str:
    """``text`` as one harmless line for a terminal.

    Control characters (escape sequences, newline, carriage return, backspace), bidirectional controls
    and undecodable bytes are shown as Python escapes (``\\x1b``, ``\\n``, ``\\u202e``, ``\\xff``), so a
    name can neither move the cursor, recolour the screen, forge a line of the summary nor disguise
    its extension. Everything else, including non-Latin letters, is kept.
    """
    if not _UNSAFE.search(text):
        return text
    return _UNSAFE.sub(_escape, text)


def _escape(match: re.Match[str]) -> str:
    c = match.group(0)
    if "\udc80" <= c <= "\udcff":  # a byte that was not UTF-8, as Python holds it (surrogateescape)
        return f"\\x{ord(c) - 0xDC00:02x}"
    if "\ud800" <= c <= "\udfff":
        return f"\\u{ord(c):04x}"
    return c.encode("unicode_escape").decode("ascii")


def short_name(stem: str, suffix: str, *, prefix: str = "", limit: int = MAX_NAME_BYTES) -> str:
    """``prefix + stem + suffix`` as a file name of at most ``limit`` UTF-8 bytes.

    A name that fits is kept; a longer one keeps as much of the stem as fits beside a short hash of the
    whole stem, so two long names that share a beginning still get different files.
    """
    stem = utf8_text(stem)
    name = f"{prefix}{stem}{suffix}"
    if len(name.encode("utf-8")) <= limit:
        return name
    tag = "~" + hashlib.sha256(stem.encode("utf-8")).hexdigest()[:10]
    room = limit - len(f"{prefix}{tag}{suffix}".encode())
    cut = stem.encode("utf-8")[: max(room, 0)].decode("utf-8", errors="ignore")
    return f"{prefix}{cut}{tag}{suffix}"
