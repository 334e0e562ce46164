"""benchmarks.scale.run in smoke mode: the measuring script runs end to end, trains full epochs and reports what
it measured."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def test_scale_benchmark_smoke(tmp_path):
    done = subprocess.run(
        [sys.executable, "-m", "benchmarks.scale.run", "--smoke", "--zarr", "--json", str(tmp_path / "r.json")],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    report = json.loads((tmp_path / "r.json").read_text())
    runs = report["runs"]
    assert [(r["mode"], r["n_cells"]) for r in runs] == [
        ("backed", 2000),
        ("memory", 2000),
        ("backed", 6000),
        ("zarr", 2000),
        ("zarr", 6000),
    ]
    assert runs[-1]["file"].endswith(".v3_sharded.zarr")
    for r in runs:
        assert r["full_epochs"] and r["epochs"] == 1 and r["latent_rows"] == r["n_cells"] and r["n_genes"] == 100
        # one full epoch: every non-empty cell was trained on or validated
        assert r["train_cells"] + r["validation_cells"] == r["n_cells_nonempty"] > 0.95 * r["n_cells"]
        assert r["train_batches"] == -(-r["train_cells"] // 128)  # the library's default batch size
        assert r["peak_rss_mb"] >= r["hwm_after_prepare_mb"] > 0 and r["train_cells_per_s"] > 0
        assert r["fit_s"] >= r["train_s"] > 0 and r["torch_threads"] == 1 and r["train_cells_per_cpu_s"] > 0
        assert len(r["load_before"]) == 3 and len(r["load_after"]) == 3
    summary = report["summary"]
    for key in ("throughput_ratio_backed_over_memory", "cpu_throughput_ratio_backed_over_memory"):
        assert summary[key]["2000"]["median"] > 0 and "6000" not in summary[key]  # no in-memory run at 6000
    assert summary["backed_peak_rss_ratio_large_over_small"]["median_over_median"] > 0
    assert summary["zarr_peak_rss_ratio_large_over_small"]["median_over_median"] > 0
    assert summary["zarr_over_backed_h5ad"]["6000"]["peak_rss"] > 0
    assert report["settings"]["tune_allocator"] is False and report["settings"]["max_epochs"] == 1
    assert report["machine"]["cpu"] and report["machine"]["torch"] and report["machine"]["torch_threads"] == 1
    assert (tmp_path / "r.csv").read_text().count("\n") == 6
