"""training.host_malloc: with the settings applied, a loop that allocates and frees tensors of changing sizes (as
a training step does) stops faulting in fresh pages every round; without them glibc returns the memory each time.
Each configuration runs in its own process (mallopt settings are process-wide and cannot be undone)."""

import subprocess
import sys
from pathlib import Path

import pytest

LOOP = r"""
import resource, sys, torch
from training.host_malloc import keep_freed_memory
if sys.argv[1] == "tuned":
    assert keep_freed_memory(), "mallopt not applied"
def faults():
    return resource.getrusage(resource.RUSAGE_SELF).ru_minflt
def rounds():
    for step in range(20):
        blocks = [torch.ones(((step * 7 + j * 13) % 24 + 4) << 18) for j in range(6)]  # 4..27 MiB each
        del blocks
rounds()  # the first round maps the memory in either case
f0 = faults()
rounds()
print(faults() - f0)
"""


def _faults(mode: str) -> int:
    out = subprocess.run([sys.executable, "-c", LOOP, mode], capture_output=True, text=True, check=True, timeout=300,
                         cwd=Path(__file__).resolve().parents[2])
    return int(out.stdout.strip().splitlines()[-1])


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="glibc mallopt: Linux only")
def test_kept_memory_is_reused_instead_of_faulted_in_again():
    default, tuned = _faults("default"), _faults("tuned")
    # 20 rounds of ~90 MiB: ~23k pages each way if every block is faulted in afresh (34k measured by default here)
    assert default > 10_000, default
    assert tuned < default / 4, (tuned, default)
