#!/usr/bin/env bash
# Rebuild the scvi-tools reference environment used by the cells benchmark.
# Separate from /work/main/.venv so scvi-tools' dependencies never touch scivae's environment.
# torch is pinned to the CPU wheel (any other version pulls gigabytes of CUDA);
# pynndescent 0.7.0 crashes sc.pp.neighbors with scipy 1.17, hence 0.6.0.
set -euo pipefail
HERE="$(cd "$(dirname "$0")" && pwd)"
BENCH="$(dirname "$HERE")"
VENV="$BENCH/.venv-scvi"
SCVI_VERSION="${SCVI_VERSION:-1.4.*}"

python3 -m venv "$VENV"
CONSTRAINTS="$VENV/constraints-scvi.txt"
cat > "$CONSTRAINTS" <<'PINS'
torch==2.13.0
pynndescent==0.6.0
PINS
"$VENV/bin/pip" install -q --upgrade pip
"$VENV/bin/pip" install -c "$CONSTRAINTS" "scvi-tools==$SCVI_VERSION" scanpy scikit-misc leidenalg igraph matplotlib
"$VENV/bin/python" - <<'PY'
import torch, scvi, scanpy
assert torch.__version__.startswith("2.13.0"), torch.__version__
print(f"scvi-tools {scvi.__version__}, torch {torch.__version__}, scanpy {scanpy.__version__}")
PY
