"""Freed memory kept by the process for its next products, instead of given back to the system.

glibc's malloc returns large freed blocks to the system: those it served by ``mmap`` (from 128
KB, a threshold it raises as such blocks are freed) and the top of a heap once more than twice
that threshold is free there. An importance-weighted evaluation allocates the same few
megabytes for every chunk of samples (its hidden layer, its logits, the likelihood's buffer),
and a chunk then often faulted every 4 KB page of them in again: up to 3,000 page faults a
chunk of 2²⁰ values with one thread (none where the process's earlier frees had happened to
raise the thresholds enough), 16.5 ms a chunk against 12.1 with the memory kept (the reference
model on a 2-core AMD EPYC; ``tests/test_memory.py`` counts the faults).
"""

from __future__ import annotations

import ctypes
import ctypes.util
import functools
import sys

#: ``mallopt``'s parameters (glibc's malloc.h).
M_TRIM_THRESHOLD = -1
M_MMAP_THRESHOLD = -3

#: Blocks up to this size come from the heaps and stay there when freed: glibc's largest
#: ``mmap`` threshold on 64-bit systems (4 MB · sizeof(long)), 32 chunks of 2²⁰ float32 values.
KEPT_BLOCK_BYTES = 32 * 2**20

#: Free memory a heap keeps at its top: twice the threshold, as glibc's own rule sets it.
KEPT_TOP_BYTES = 2 * KEPT_BLOCK_BYTES


@functools.cache
def keep_freed_memory() -> bool:
    """From now on this process keeps freed blocks of up to KEPT_BLOCK_BYTES, and up to
    KEPT_TOP_BYTES free at each heap's top, for its next allocations; True where that was set
    (glibc), False where the C library has no ``mallopt`` to set it. Process-wide and for the
    rest of the process: it changes where memory comes from, never a number computed in it.
    Called by the CPU evaluation before its first chunk."""
    if not sys.platform.startswith("linux"):
        return False
    try:
        mallopt = ctypes.CDLL(ctypes.util.find_library("c") or None).mallopt
    except (OSError, AttributeError):  # a C library without it (musl's does nothing, and says so)
        return False
    mallopt.argtypes = (ctypes.c_int, ctypes.c_int)
    blocks = mallopt(M_MMAP_THRESHOLD, KEPT_BLOCK_BYTES)  # 1 where set, 0 where not
    return bool(blocks and mallopt(M_TRIM_THRESHOLD, KEPT_TOP_BYTES))
