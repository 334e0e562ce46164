#!/usr/bin/env bash
# Training throughput, scivae vs scvi-tools, measured in alternating short runs (scvi, scivae, scvi, ...)
# so that load from other processes on a shared machine hits both tools alike. From the repository root:
#   bash benchmarks/cells/throughput.sh          (after prepare_data.py; env: REPS=3 EPOCHS=30 THREADS=1 DATA=pbmc3k)
set -euo pipefail
cd "$(dirname "$0")/../.."
REPS="${REPS:-3}"; EPOCHS="${EPOCHS:-30}"; THREADS="${THREADS:-1}"; DATA="${DATA:-pbmc3k}"
OUT=benchmarks/out/cells
T="$OUT/throughput/$DATA"
export OMP_NUM_THREADS="$THREADS" MKL_NUM_THREADS="$THREADS" PYTHONWARNINGS=ignore
bk=(); [ "$DATA" = ifnb ] && bk=(--batch-key condition)
common=(--data "$OUT/$DATA.h5ad" --max-epochs "$EPOCHS" --threads "$THREADS" --n-mc-samples 10 "${bk[@]}")
echo "cpu: $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2- | sed 's/^ //'), logical cores: $(nproc --all), load average: $(cut -d' ' -f1-3 /proc/loadavg)"
for r in $(seq 1 "$REPS"); do
  benchmarks/.venv-scvi/bin/python benchmarks/cells/run_scvi.py "${common[@]}" --out "$T/scvi_$r" >/dev/null 2>&1
  PYTHONPATH=. .venv/bin/python benchmarks/cells/run_scivae.py "${common[@]}" --out "$T/scivae_$r" >/dev/null 2>&1
done
.venv/bin/python - "$T" "$REPS" <<'PY'
import json, sys
from pathlib import Path
import numpy as np
t, reps = Path(sys.argv[1]), int(sys.argv[2])
rows = []
for r in range(1, reps + 1):
    a = json.loads((t / f"scivae_{r}" / "run.json").read_text())["throughput"]["median_cells_per_s"]
    b = json.loads((t / f"scvi_{r}" / "run.json").read_text())["throughput"]["median_cells_per_s"]
    rows.append((a, b, a / b))
    print(f"rep {r}: scivae {a:.0f} cells/s, scvi-tools {b:.0f} cells/s, ratio {a / b:.2f}")
ratios = np.array([x[2] for x in rows])
print(f"median ratio scivae / scvi-tools over {reps} alternating pairs: {np.median(ratios):.2f}"
      f" (range {ratios.min():.2f}-{ratios.max():.2f})")
PY
echo "load average after: $(cut -d' ' -f1-3 /proc/loadavg)"
