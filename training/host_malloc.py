"""glibc malloc set for a CPU training loop: freed tensors stay in the process for the next step to reuse.

By default glibc hands every block above its mmap threshold (128 KiB, raised dynamically up to 32 MiB) back to
the kernel when it is freed, and trims the heap top above 128 KiB; the next step's tensors of the same sizes then
fault in fresh, zeroed pages. On the cached-state path that was ~540k minor page faults per 20 steps and 7-10 % of
the time (benchmarks/results/train_throughput), and building a state cache took 1.14x as long. Fixing the
threshold at its ceiling and not trimming keeps those pages mapped: the process's resident memory stays at its
high-water mark instead (the same trade jemalloc and tcmalloc make, which PyTorch's CPU performance guide
recommends preloading; this needs no preload). Used by training.finetune and training.cache_states.
"""

from __future__ import annotations

import ctypes
import logging
import sys

logger = logging.getLogger(__name__)

M_TRIM_THRESHOLD, M_TOP_PAD, M_MMAP_THRESHOLD = -1, -2, -3  # <malloc.h>
MMAP_THRESHOLD = 32 << 20  # glibc's ceiling on 64-bit: blocks larger than this are always mmapped
TRIM_THRESHOLD = (1 << 31) - 1  # mallopt takes an int: never trim below 2 GiB of free heap top
TOP_PAD = 64 << 20  # grow the heap in 64 MiB steps rather than one block at a time


def keep_freed_memory() -> bool:
    """Apply the settings to this process; True when applied, False where the C library is not glibc."""
    if not sys.platform.startswith("linux"):
        return False
    try:
        libc = ctypes.CDLL("libc.so.6")
        libc.gnu_get_libc_version  # noqa: B018 - glibc only (musl has no mallopt thresholds to set)
    except (OSError, AttributeError):
        return False
    done = all(libc.mallopt(opt, value) == 1 for opt, value in (
        (M_MMAP_THRESHOLD, MMAP_THRESHOLD), (M_TRIM_THRESHOLD, TRIM_THRESHOLD), (M_TOP_PAD, TOP_PAD)))
    if not done:
        logger.warning("mallopt refused the training settings; malloc left as it was")
    return done
