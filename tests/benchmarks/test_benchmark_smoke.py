"""The speed benchmarks' smoke modes run end to end (seconds each), print their tables and write raw JSON.

The full benchmarks are not run here (they take minutes to hours, see benchmarks/*/RESULTS.md); scvi-tools'
own venv is not needed (the scripts fall back to scivae alone and say so).
"""

import json
import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def _run(module: str, args: list[str]) -> str:
    """``python -m <module> <args>`` from the repository root, as the benchmarks' RESULTS.md quote them."""
    env = dict(os.environ, OMP_NUM_THREADS="1", PYTHONWARNINGS="ignore")
    cmd = [sys.executable, "-m", module, *args]
    proc = subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, text=True, timeout=1800)
    assert proc.returncode == 0, proc.stderr[-2000:]
    return proc.stdout


def test_cells_throughput_smoke(tmp_path):
    out = _run(
        "benchmarks.cells.throughput",
        [
            "--smoke",
            "--scvi-python",
            str(tmp_path / "no-venv"),
            "--data-dir",
            str(tmp_path),
            "--json",
            str(tmp_path / "t.json"),
            "--tools",
            "scvi",
            "scivae",
            "scivae-glibc",
        ],
    )
    assert "scivae only" in out and "| smoke | 128 |" in out
    raw = json.loads((tmp_path / "t.json").read_text())
    run, glibc = raw["runs"]  # scvi-tools dropped: no venv
    assert run["tool"] == "scivae" and run["cells_per_s"] > 0 and run["test_elbo"] < 0
    assert run["kl_warmup_steps"] >= 1 and run["peak_rss_mb"] > 0
    # scivae's process tunes malloc as `scivae fit` does; the allocator variant turns that off and trains the same
    # model (same seed): only malloc differs
    assert run["allocator"] in ("tuned", "unavailable") and glibc["allocator"] == "off"
    assert glibc["tool"] == "scivae-glibc" and glibc["test_elbo"] == run["test_elbo"]


def test_cells_seeds_smoke(tmp_path):
    out = _run(
        "benchmarks.cells.seeds",
        [
            "compare",
            "--smoke",
            "--scvi-python",
            str(tmp_path / "no"),
            "--out",
            str(tmp_path),
        ],
    )
    assert "| scivae |" in out
    summary = json.loads((tmp_path / "smoke" / "results" / "seeds_seeds_smoke.json").read_text())
    s = summary["tools"]["scivae"]["test_elbo"]
    assert s["n"] == 2 and s["sd"] > 0 and s["mean"] < 0


def test_molecules_throughput_smoke(tmp_path):
    out = _run("benchmarks.molecules.throughput", ["--smoke", "--json", str(tmp_path / "m.json")])
    assert "plain MOSES VAE" in out and "valid/s" in out
    raw = json.loads((tmp_path / "m.json").read_text())
    assert raw["same_batches"]["scivae"]["tokens_per_s"] > 0 and raw["same_batches"]["plain"]["tokens_per_s"] > 0
    assert 0.0 <= raw["sampling"]["raw"]["valid_fraction"] <= 1.0
