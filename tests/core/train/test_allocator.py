"""glibc malloc tuning: batch-sized buffers are reused instead of being unmapped and faulted in again."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

from scivae.core.train import allocator

_PROBE = """
import resource
import numpy as np
from scivae.core.train.allocator import tune_allocator
state = tune_allocator()
before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
for _ in range(20):
    arrays = [np.ones(2_000_000, dtype=np.float32) for _ in range(4)]  # 8 MB each, a training step's temporaries
    del arrays
print(state, resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before)
"""


def _probe(**env: str) -> tuple[str, int]:
    clean = {k: v for k, v in os.environ.items() if not k.startswith("MALLOC_") and k != "SCIVAE_MALLOPT"}
    out = subprocess.run([sys.executable, "-c", _PROBE], env={**clean, **env}, capture_output=True, text=True)
    assert out.returncode == 0, out.stderr
    state, faults = out.stdout.split()
    return state, int(faults)


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="glibc malloc settings: Linux only")
def test_tuned_process_reuses_freed_batch_buffers_instead_of_faulting_them_in_again() -> None:
    off_state, off_faults = _probe(SCIVAE_MALLOPT="0")
    state, faults = _probe()
    if state == "unavailable":
        pytest.skip("not glibc")
    assert (off_state, state) == ("off", "tuned")
    # default glibc: every round of 32 MB is returned to the kernel and zero-filled again (about 8,000 pages)
    assert off_faults > 20_000
    assert faults < off_faults / 5


def test_user_settings_and_the_opt_out_are_respected(monkeypatch) -> None:
    for env, expected in ((("SCIVAE_MALLOPT", "0"), "off"), (("MALLOC_TRIM_THRESHOLD_", "1000000"), "user")):
        monkeypatch.setattr(allocator, "_state", {})
        with monkeypatch.context() as m:
            m.delenv("SCIVAE_MALLOPT", raising=False)
            m.setenv(*env)
            assert allocator.tune_allocator() == expected
            assert allocator.tune_allocator() == expected  # decided once per process
