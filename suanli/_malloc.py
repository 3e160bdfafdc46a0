"""Keep freed large NumPy buffers in the process heap instead of returning them to the kernel.

Why: glibc serves big allocations with fresh ``mmap`` pages and trims the heap top eagerly, so every
activation-sized array of a training step is page-faulted in again (~0.25 µs per 4 KiB page). On
the 2-core benchmark VM this was a third of a LeNet-5 step. Raising the mmap and trim thresholds
makes freed buffers reusable, like a caching allocator; the cost is that the process keeps its
peak heap. Opt out with ``SUANLI_MALLOC_TUNE=0``. No-op where glibc's ``mallopt`` is unavailable.
"""
from __future__ import annotations

import ctypes
import ctypes.util
import os

_M_TRIM_THRESHOLD = -1
_M_MMAP_THRESHOLD = -3
_MMAP_THRESHOLD_MAX = 32 << 20          # glibc's ceiling on 64-bit systems
_TRIM_THRESHOLD = 1 << 30


def tune() -> bool:
    """Apply the thresholds once; returns whether they were applied."""
    if os.environ.get("SUANLI_MALLOC_TUNE", "1") == "0":
        return False
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
        mallopt = libc.mallopt
    except (OSError, AttributeError):
        return False
    mallopt.argtypes = [ctypes.c_int, ctypes.c_int]
    ok = mallopt(_M_MMAP_THRESHOLD, _MMAP_THRESHOLD_MAX) == 1
    ok &= mallopt(_M_TRIM_THRESHOLD, _TRIM_THRESHOLD) == 1
    return bool(ok)


applied = tune()
