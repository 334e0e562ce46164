"""The tutorials are executable documentation: each runs end to end in fast mode (``SCIVAE_FAST=1``: short fits),
asserts its key results itself, and saves its figures."""

import os
import subprocess
import sys
from pathlib import Path

import pytest

TUTORIALS = sorted((Path(__file__).parents[1] / "tutorials").glob("*.py"))


def test_the_tutorials_are_there():
    assert {p.stem for p in TUTORIALS} >= {"cells_pbmc3k", "cells_batch", "cells_reference_mapping", "molecules_moses"}


@pytest.mark.parametrize("script", TUTORIALS, ids=lambda p: p.stem)
def test_tutorial_runs_in_fast_mode(script, tmp_path):
    env = {**os.environ, "SCIVAE_FAST": "1", "SCIVAE_TUTORIAL_OUT": str(tmp_path), "OMP_NUM_THREADS": "1"}
    run = subprocess.run([sys.executable, str(script)], env=env, capture_output=True, text=True, timeout=1200)
    assert run.returncode == 0, run.stdout[-2000:] + run.stderr[-3000:]
    figures = list(tmp_path.glob("*.png"))
    assert len(figures) >= 3, f"{script.stem} saved {len(figures)} figures"
    assert all(p.read_bytes()[:4] == b"\x89PNG" and p.stat().st_size > 2000 for p in figures)
