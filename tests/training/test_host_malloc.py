"""training.host_malloc: with the settings applied, a large tensor (24 MiB, under the 32 MiB ceiling) comes from the
heap and its memory stays in the process when it is freed, ready for the next step; with glibc's defaults it is
mmapped and returned to the kernel on free (the next step faults it back in page by page). Read from glibc's own
counters (mallinfo2). Each configuration runs in its own process: mallopt settings are process-wide."""

import ctypes
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

PROBE = r"""
import ctypes, json, sys, torch
from training.host_malloc import keep_freed_memory
if sys.argv[1] == "kept":
    assert keep_freed_memory(), "mallopt not applied"
class Info(ctypes.Structure):
    _fields_ = [(n, ctypes.c_size_t) for n in ("arena", "ordblks", "smblks", "hblks", "hblkhd", "usmblks", "fsmblks",
                                             "uordblks", "fordblks", "keepcost")]
libc = ctypes.CDLL("libc.so.6")
libc.mallinfo2.restype = Info
before = libc.mallinfo2().hblkhd
t = torch.ones(24 << 18)  # 24 MiB
mapped = libc.mallinfo2().hblkhd - before
del t
print(json.dumps({"mapped": mapped, "free_kept": libc.mallinfo2().fordblks}))
"""


def _probe(mode: str) -> dict:
    # glibc's malloc in both: an earlier test's vLLM engine may have put its bundled tcmalloc into LD_PRELOAD
    env = {k: v for k, v in os.environ.items() if k != "LD_PRELOAD" and not k.startswith("MALLOC_")}
    out = subprocess.run([sys.executable, "-c", PROBE, mode], capture_output=True, text=True, check=True, timeout=300,
                         cwd=Path(__file__).resolve().parents[2], env=env)
    return json.loads(out.stdout.strip().splitlines()[-1])


def _has_mallinfo2() -> bool:
    try:
        return hasattr(ctypes.CDLL("libc.so.6"), "mallinfo2")
    except OSError:
        return False


@pytest.mark.skipif(not sys.platform.startswith("linux") or not _has_mallinfo2(), reason="glibc >= 2.33 only")
def test_a_freed_tensor_stays_in_the_process_instead_of_going_back_to_the_kernel():
    default, kept = _probe("default"), _probe("kept")
    mib = 1 << 20
    assert default["mapped"] >= 24 * mib and default["free_kept"] < 24 * mib, default  # mmapped, unmapped on free
    assert kept["mapped"] == 0 and kept["free_kept"] >= 24 * mib, kept  # from the heap, kept after free
