"""Process-level CPU settings that make eager PyTorch fast on small machines.

glibc returns every freed block above its mmap threshold (at most 32 MiB) straight to the kernel,
and trims the heap top eagerly, so each forward pass of a convolutional network re-faults and
re-zeroes its activation memory: on the 2-core development machine the kernel then takes most of
the CPU time. Raising the trim threshold and the top pad, and pinning the mmap threshold at its
maximum, keeps that memory in the process: EfficientNet-Lite0 inference at 192 px went from
58 to 16.5 ms per image at batch 32 there (measured with a one-off script; the training and
evaluation times in ``benchmarks/results`` come with it).
"""

from __future__ import annotations

import ctypes
import ctypes.util
import sys

_M_TRIM_THRESHOLD, _M_TOP_PAD, _M_MMAP_THRESHOLD = -1, -2, -3
_done: bool | None = None


def tune_cpu_allocator() -> bool:
    """Keep freed tensor memory in the process (glibc only; a no-op elsewhere). Idempotent.

    Returns:
        True when the allocator settings are in effect.
    """
    global _done
    if _done is not None:
        return _done
    _done = False
    if sys.platform.startswith("linux"):
        name = ctypes.util.find_library("c")
        try:
            libc = ctypes.CDLL(name or "libc.so.6")
            mallopt = libc.mallopt
        except (OSError, AttributeError):  # musl or an unusual libc: leave the defaults
            return False
        _done = all(
            mallopt(option, value) == 1
            for option, value in ((_M_TRIM_THRESHOLD, 2**30), (_M_TOP_PAD, 2**28), (_M_MMAP_THRESHOLD, 2**25))
        )
    return _done
