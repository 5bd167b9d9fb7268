"""A structural check of JPEG files: the corruption Pillow decodes without a word.

Pillow reports neither libjpeg's recoverable warnings nor damage that keeps the file decodable, so
a JPEG with a block of its data zeroed or overwritten would be classified as if it were whole.
:func:`jpeg_problem` walks the marker structure and the entropy-coded data instead; the decode rule
in :mod:`defectlens.data.images` turns what it finds into a warning on the image.
"""

from __future__ import annotations

import numpy as np

#: A run of this many zero bytes inside JPEG compressed data means a zeroed block, not an image
#: (with the standard Huffman tables even a flat area codes as ``001010`` per block; see jpeg_problem).
JPEG_ZERO_RUN = 512
_JPEG_BAND = 1 << 22  # bytes of compressed data checked at a time


def jpeg_problem(data: np.ndarray) -> str | None:
    """Why the compressed data of a JPEG (bytes as uint8) looks corrupt, or None.

    Checks the marker structure (segments chain to an end-of-image marker; inside the compressed
    data every 0xFF byte is stuffing or a restart marker in order) and flags long runs of zero bytes
    where the Huffman tables make them implausible: when the all-zeros code of an AC table is a
    coefficient rather than end-of-block (as in the standard luminance table most cameras use), zero
    bits decode to a checkerboard of coefficients no photograph produces. Where every AC table codes
    end-of-block as zeros (optimised tables of a flat image), and in progressive files, a flat area
    is zero bits, so the run check is off. A corruption that keeps the structure valid cannot be
    seen without a checksum, which JPEG lacks.
    """
    n, i, progressive, ac_first = len(data), 2, False, []
    if n < 4 or data[0] != 0xFF or data[1] != 0xD8:
        return None
    while i < n:
        if data[i] != 0xFF:
            return f"expected a marker at byte {i}"
        while i < n and data[i] == 0xFF:  # fill bytes
            i += 1
        if i >= n:
            break
        marker, i = int(data[i]), i + 1
        if marker == 0xD9:
            return None
        if 0xD0 <= marker <= 0xD7 or marker == 0x01:
            continue
        if i + 2 > n:
            return "file ends inside a marker"
        if marker < 0xC0 or marker == 0xD8:
            return f"invalid marker 0xFF{marker:02X} at byte {i - 1}"
        end = i + (int(data[i]) << 8 | int(data[i + 1]))
        if end <= i + 1 or end > n:
            return f"segment 0xFF{marker:02X} at byte {i - 2} runs past the end of the file"
        progressive |= marker in (0xC2, 0xC6, 0xCA, 0xCE)
        if marker == 0xC4:
            ac_first += _ac_first_symbols(data[i + 2 : end])
        if marker != 0xDA:
            i = end
            continue
        suspicious = not progressive and (not ac_first or any(sym != 0x00 for sym in ac_first))
        i, problem = _entropy_segment(data, end, zero_runs=suspicious)
        if problem:
            return problem
    return "no end-of-image marker (file truncated)"


def _ac_first_symbols(tables: np.ndarray) -> list[int]:
    """The symbol of the all-zeros code (the first symbol) of each AC table in a DHT segment."""
    out, j = [], 0
    while j + 17 <= len(tables):
        count = int(tables[j + 1 : j + 17].sum())
        if tables[j] >> 4 == 1 and count and j + 17 < len(tables):
            out.append(int(tables[j + 17]))
        j += 17 + count
    return out


def _entropy_segment(data: np.ndarray, start: int, *, zero_runs: bool) -> tuple[int, str | None]:
    """Scan compressed scan data from ``start``, a band at a time (bounded memory on any file size).

    Returns:
        ``(index of the marker that ends the scan, problem or None)``.
    """
    n, pos, expected_rst, zeros, longest = len(data), start, 0, 0, 0
    while pos < n:
        band = data[pos : min(n, pos + _JPEG_BAND + 1)]  # one byte of look-ahead past the band
        ffs = np.flatnonzero(band[:-1] == 0xFF)
        nxt = band[ffs + 1]
        inside = (nxt == 0x00) | ((nxt >= 0xD0) & (nxt <= 0xD7)) | (nxt == 0xFF)
        ends = np.flatnonzero(~inside)
        stop = int(ffs[ends[0]]) if len(ends) else len(band) - 1
        rst = nxt[: ends[0] if len(ends) else len(nxt)]
        rst = rst[(rst >= 0xD0) & (rst <= 0xD7)].astype(np.int64) - 0xD0
        if len(rst) and np.any(rst != (np.arange(len(rst)) + expected_rst) % 8):
            return pos + stop, "restart markers out of order (data lost or shuffled)"
        expected_rst = (expected_rst + len(rst)) % 8
        nonzero = np.flatnonzero(band[:stop])
        if len(nonzero):
            gaps = np.diff(nonzero) - 1
            longest = max(longest, zeros + int(nonzero[0]), int(gaps.max(initial=0)))
            zeros = stop - int(nonzero[-1]) - 1
        else:
            zeros += stop
        if zero_runs and max(longest, zeros) >= JPEG_ZERO_RUN:
            run = max(longest, zeros)
            return pos + stop, f"a run of {run} zero bytes inside the compressed data (a block was zeroed)"
        if len(ends):
            return pos + stop, None
        if len(band) <= 1:
            break
        pos += stop
    return n, "no end-of-image marker (file truncated)"
