"""The reference-mapping benchmark's smoke mode (scivae only, 200 + 200 cells, 2 epochs) runs end to end in seconds.

The full side-by-side run with scvi-tools takes minutes (benchmarks/cells/RESULTS.md); scvi-tools' venv is not
needed here.
"""

import json
import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def test_mapping_vs_scvi_smoke(tmp_path: Path) -> None:
    env = dict(os.environ, OMP_NUM_THREADS="1", PYTHONWARNINGS="ignore")
    cmd = [sys.executable, "-m", "benchmarks.cells.mapping_vs_scvi", "--smoke", "--out-dir", str(tmp_path)]
    proc = subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert "scivae only" in proc.stdout and "| label-transfer accuracy, query cells |" in proc.stdout
    raw = json.loads((tmp_path / "smoke.json").read_text())
    (seed,) = raw["per_seed"]
    run = seed["tools"]["scivae"]
    assert set(seed["tools"]) == {"scivae"} and "de_lfc_spearman" not in seed
    assert 0.0 <= run["label_transfer"]["accuracy"] <= 1.0 and run["label_transfer"]["n_cells"] > 0
    assert run["mixing"]["score"] >= 0.0 and run["mixing"]["k"] == 15
    assert set(run["de"]["lfc_rank"]) == set(raw["data"]["isgs_present"])
    assert all(run["times_s"][step] >= 0.0 for step in ("reference_fit", "query_fit", "predict", "de"))
    assert 0 < raw["data"]["n_genes"] <= 1500 and raw["data"]["n_cells"] == {"ctrl": 200, "stim": 200}
