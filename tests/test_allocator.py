"""keep_freed_memory: freed large tensors are reused instead of page-faulting in again."""
import subprocess
import sys

import pytest

# Like a training step: 20 times, allocate ten 9 MiB tensors (edge tensors of 64 SIRENs at width 32), use
# them, free them all. Prints the minor page faults that took; in a fresh process, so the test's own heap
# does not count. By default glibc trims the freed top of the heap, and every step faults it in again.
_SCRIPT = """
import resource, sys, torch
from nngraph.train import keep_freed_memory
applied = keep_freed_memory() if sys.argv[1] == "keep" else None
def step():
    alive = [torch.empty(71680, 32).fill_(1.0) for _ in range(10)]
    del alive
step()  # the first step faults in any case
before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
for _ in range(20):
    step()
print(applied, resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before)
"""


def _faults(mode: str) -> tuple[str, int]:
    out = subprocess.run([sys.executable, "-c", _SCRIPT, mode], capture_output=True, text=True, check=True)
    applied, faults = out.stdout.split()
    return applied, int(faults)


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="glibc malloc only")
def test_keep_freed_memory_stops_page_faults_on_reuse():
    applied, kept = _faults("keep")
    if applied != "True":
        pytest.skip("not glibc")
    _, default = _faults("default")
    assert default > 20 * 10_000  # by default each step faults in most of its ~23,000 pages
    assert kept < default / 20
