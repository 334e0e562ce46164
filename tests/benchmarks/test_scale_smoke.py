"""benchmarks.scale.run in smoke mode: the measuring script runs end to end and reports what it measured."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def test_scale_benchmark_smoke(tmp_path):
    done = subprocess.run(
        [sys.executable, "-m", "benchmarks.scale.run", "--smoke", "--json", str(tmp_path / "r.json")],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    report = json.loads((tmp_path / "r.json").read_text())
    runs = report["runs"]
    assert [(r["mode"], r["n_cells"]) for r in runs] == [("backed", 2000), ("memory", 2000), ("backed", 6000)]
    for r in runs:
        assert r["train_batches"] == 8 and r["latent_rows"] == r["n_cells"] and r["n_genes"] == 100
        assert r["peak_rss_mb"] >= r["hwm_after_prepare_mb"] > 0 and r["train_cells_per_s"] > 0
    assert report["summary"]["throughput_ratio_backed_over_memory"]["median"] > 0
    assert "backed_rss_growth" in report["summary"]
    assert report["settings"]["tune_allocator"] is False
    assert (tmp_path / "r.csv").read_text().count("\n") == 4
