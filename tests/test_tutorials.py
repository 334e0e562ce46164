"""The tutorials are executable documentation: each runs end to end (with few epochs) and shows its results."""

import os
import subprocess
import sys
from pathlib import Path

import pytest

TUTORIALS = sorted((Path(__file__).parents[1] / "tutorials").glob("*.py"))


@pytest.mark.parametrize("script", TUTORIALS, ids=lambda p: p.stem)
def test_tutorial_runs(script, tmp_path):
    env = {**os.environ, "SCIVAE_TUTORIAL_EPOCHS": "3", "SCIVAE_TUTORIAL_OUT": str(tmp_path), "OMP_NUM_THREADS": "1"}
    run = subprocess.run([sys.executable, str(script)], env=env, capture_output=True, text=True, timeout=600)
    assert run.returncode == 0, run.stderr[-3000:]
    assert any(tmp_path.iterdir()), "the tutorial wrote no output"
