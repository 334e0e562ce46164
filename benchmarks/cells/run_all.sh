#!/usr/bin/env bash
# Cells benchmark, scivae vs scvi-tools, in one go (one tool at a time), from the repository root:
#   bash benchmarks/cells/run_all.sh
# Env: EPOCHS (default 200, same for both tools), THREADS (torch threads per tool, default 1),
#      N_MC (importance samples for log p(x), default 1000), FIGURES=0 skips the UMAP figures,
#      EXTRA=0 skips the two diagnostic runs: scvi-tools with scivae's default KL warm-up (the exact
#      number of optimiser steps scivae's run used, read from its run.json: a quarter of the run but at most
#      10 epochs) and scivae keeping its last epoch's weights (as scvi-tools does).
#      SEED (default 0). PBMC 3k comes from datasets/ (or SCIVAE_PBMC3K); the interferon-beta pair only
#      when SCIVAE_IFNB_DIR names its folder. Several seeds, mean +- sd: seeds.py.
set -euo pipefail
cd "$(dirname "$0")/../.."
EPOCHS="${EPOCHS:-200}"; THREADS="${THREADS:-1}"; N_MC="${N_MC:-1000}"; EXTRA="${EXTRA:-1}"; FIGURES="${FIGURES:-1}"
SEED="${SEED:-0}"
OUT=benchmarks/out/cells
SCIVAE_PY=.venv/bin/python
SCVI_PY=benchmarks/.venv-scvi/bin/python
[ -x "$SCVI_PY" ] || { echo "missing $SCVI_PY: run bash benchmarks/cells/setup_scvi_venv.sh" >&2; exit 2; }
export OMP_NUM_THREADS="$THREADS" MKL_NUM_THREADS="$THREADS" PYTHONWARNINGS=ignore

echo "== machine"
echo "cpu: $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2- | sed 's/^ //'), logical cores: $(nproc --all), torch threads per run: $THREADS"
echo "scivae venv: torch $($SCIVAE_PY -c 'import torch; print(torch.__version__)'), lightning $($SCIVAE_PY -c 'import lightning; print(lightning.__version__)')"
echo "scvi venv:   torch $($SCVI_PY -c 'import torch; print(torch.__version__)'), scvi-tools $($SCVI_PY -c 'import importlib.metadata as m; print(m.version("scvi-tools"))'), lightning $($SCVI_PY -c 'import lightning; print(lightning.__version__)')"
echo "epochs: $EPOCHS (both tools), importance samples: $N_MC"

t() { local s=$SECONDS; "$@"; echo "   [$(( SECONDS - s )) s wall] $*" | cut -c1-160; }

echo "== prepare data (HVGs, split, marker labels)"
t $SCIVAE_PY benchmarks/cells/prepare_data.py --out "$OUT" > "$OUT.prepare.log" 2>&1 || { cat "$OUT.prepare.log"; exit 1; }

datasets=(pbmc3k); [ -n "${SCIVAE_IFNB_DIR:-}" ] && datasets+=(ifnb)
for ds in "${datasets[@]}"; do
  bk=(); [ "$ds" = ifnb ] && bk=(--batch-key condition)
  common=(--data "$OUT/$ds.h5ad" --max-epochs "$EPOCHS" --threads "$THREADS" --n-mc-samples "$N_MC" --seed "$SEED" "${bk[@]}")
  echo "== $ds: scvi-tools"
  t $SCVI_PY benchmarks/cells/run_scvi.py "${common[@]}" --out "$OUT/scvi/$ds" 2>"$OUT/scvi_$ds.log"
  echo "== $ds: scivae"
  PYTHONPATH=. t $SCIVAE_PY benchmarks/cells/run_scivae.py "${common[@]}" --out "$OUT/scivae/$ds" 2>"$OUT/scivae_$ds.log"
  if [ "$EXTRA" = 1 ]; then
    warm=$($SCIVAE_PY -c 'import json,sys; print(json.load(open(sys.argv[1]))["settings"]["kl_warmup_steps"])' "$OUT/scivae/$ds/run.json")
    echo "== $ds: scvi-tools, KL warm-up $warm steps (scivae's default in the run above)"
    t $SCVI_PY benchmarks/cells/run_scvi.py "${common[@]}" --kl-warmup-steps "$warm" \
      --out "$OUT/scvi_warmup/$ds" 2>"$OUT/scvi_warmup_$ds.log"
    echo "== $ds: scivae, last epoch's weights (no best-epoch restoration, as scvi-tools)"
    PYTHONPATH=. t $SCIVAE_PY benchmarks/cells/run_scivae.py "${common[@]}" --last-epoch \
      --out "$OUT/scivae_last/$ds" 2>"$OUT/scivae_last_$ds.log"
  fi
done

echo "== evaluate"
tools=(scvi scivae); [ "$EXTRA" = 1 ] && tools+=(scvi_warmup scivae_last)
fig=(); [ "$FIGURES" = 1 ] && fig=(--figures benchmarks/cells/figures)
t $SCIVAE_PY benchmarks/cells/evaluate.py --root "$OUT" --tools "${tools[@]}" --datasets "${datasets[@]}" "${fig[@]}" 2>"$OUT/evaluate.log"
