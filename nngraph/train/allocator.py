"""Keeping freed memory in the process, so large CPU tensors stop arriving as fresh pages.

glibc's ``malloc`` serves every allocation above a threshold (128 KiB, raised adaptively up to a few
MiB) with its own ``mmap`` and returns it to the kernel on ``free``; the next tensor of that size
then page-faults every 4 KiB page, and the kernel zeroes each one. A training step of the encoder
allocates and frees a few hundred edge-sized tensors (64 SIRENs at width 32: 9 MiB each): ~28,000
page faults per step with glibc's defaults, ~2,000 with :func:`keep_freed_memory`. Measured with
``python -m benchmarks encoder`` (and ``--default-malloc``) on this project's 2-core machine: before
the encoder's fused ops the median step ran 1.24x faster with it (140 -> 174 graphs/s); after them,
which allocate less, 1.04x (196 -> 204).
"""
from __future__ import annotations

import ctypes
import sys

M_TRIM_THRESHOLD = -1  # mallopt parameters, from glibc's malloc.h
M_MMAP_THRESHOLD = -3


def keep_freed_memory(mmap_threshold: int = 32 * 2**20, trim_threshold: int = 2**30) -> bool:
    """Tells glibc ``malloc`` to keep freed memory for reuse instead of returning it to the kernel.

    Allocations up to ``mmap_threshold`` bytes come from the heap, and up to ``trim_threshold`` bytes of
    freed memory at its top stay in the process. The process's resident memory therefore stays near
    its peak between steps; the peak itself does not grow. Same effect as starting Python with
    ``MALLOC_MMAP_THRESHOLD_=33554432 MALLOC_TRIM_THRESHOLD_=1073741824`` in the environment.
    Affects the whole process; calling it again is harmless.

    Returns:
        ``True`` if applied; ``False`` where the C library is not glibc (macOS, Windows, musl), which
        changes nothing.
    """
    if not sys.platform.startswith("linux"):
        return False
    try:
        libc = ctypes.CDLL("libc.so.6")
        mallopt = libc.mallopt
    except (OSError, AttributeError):
        return False
    mallopt.argtypes, mallopt.restype = [ctypes.c_int, ctypes.c_int], ctypes.c_int
    return bool(mallopt(M_MMAP_THRESHOLD, mmap_threshold)) and bool(mallopt(M_TRIM_THRESHOLD, trim_threshold))
