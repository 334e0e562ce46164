"""Write a large simulated count matrix to an .h5ad in chunks (never holding the matrix in memory).

Cells of 8 types with type-specific expression, negative-binomial counts (inverse dispersion 2), log-normal
library sizes and 4 samples in ``obs["sample"]``; X is CSR float32 (as most .h5ad files), uncompressed.
Chunks are seeded by (seed, chunk index), so a file is the same whatever the machine.

    python -m benchmarks.scale.make_data --cells 1000000 --genes 2000 --out benchmarks/out/scale/cells_1000000.h5ad

The file is written beside --out under a temporary name and renamed when complete (about 1.2 GB for 1M cells
x 2k genes, ~15% non-zeros). Generated on demand; never committed (benchmarks/out/ is git-ignored).
"""

from __future__ import annotations

import argparse
import os
import time
from pathlib import Path

import anndata as ad
import h5py
import numpy as np
import pandas as pd
import scipy.sparse as sp

N_TYPES, N_SAMPLES, THETA = 8, 4, 2.0


def profiles(n_genes: int, seed: int) -> np.ndarray:
    """Expression fractions per cell type, ``(N_TYPES, n_genes)``: a shared base and type-specific genes."""
    rng = np.random.default_rng([seed, 10**9])
    base = rng.normal(-1.0, 1.8, n_genes)
    lfc = rng.normal(0.0, 1.5, (N_TYPES, n_genes)) * (rng.random((N_TYPES, n_genes)) < 0.1)
    logits = base + lfc
    return np.exp(logits) / np.exp(logits).sum(1, keepdims=True)


def simulate_chunk(start: int, stop: int, frac: np.ndarray, seed: int, chunk: int) -> tuple[sp.csr_matrix, np.ndarray]:
    """NB counts of cells ``start:stop`` and their sample codes."""
    rng = np.random.default_rng([seed, chunk])
    n = stop - start
    types = rng.integers(0, N_TYPES, n)
    samples = rng.integers(0, N_SAMPLES, n)
    library = np.exp(rng.normal(6.5, 0.5, n) + 0.15 * samples)  # samples differ a little in depth
    mean = library[:, None] * frac[types]
    counts = rng.poisson(rng.gamma(THETA, mean / THETA)).astype(np.float32)
    return sp.csr_matrix(counts), samples


def write(path: Path, n_cells: int, n_genes: int, chunk_rows: int = 20_000, seed: int = 0) -> dict:
    """Write the file atomically; return its size and density."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    frac = profiles(n_genes, seed)
    var = pd.DataFrame(index=pd.Index([f"gene-{g}" for g in range(n_genes)]))
    samples = np.zeros(n_cells, dtype=np.int64)
    nnz = 0
    try:
        with h5py.File(tmp, "w") as f:
            for start in range(0, n_cells, chunk_rows):
                stop = min(start + chunk_rows, n_cells)
                x, samples[start:stop] = simulate_chunk(start, stop, frac, seed, start // chunk_rows)
                nnz += x.nnz
                if start == 0:
                    ad.io.write_elem(f, "X", x, dataset_kwargs={"chunks": (1 << 18,)})
                    stored = ad.io.sparse_dataset(f["X"])
                else:
                    stored.append(x)
            obs = pd.DataFrame(
                {"sample": pd.Categorical([f"s{s}" for s in range(N_SAMPLES)])[samples]},
                index=pd.Index([f"cell-{i}" for i in range(n_cells)]),
            )
            ad.io.write_elem(f, "obs", obs)
            ad.io.write_elem(f, "var", var)
            for key in ("obsm", "varm", "obsp", "varp", "layers", "uns"):
                ad.io.write_elem(f, key, {})
            f.attrs.update({"encoding-type": "anndata", "encoding-version": "0.1.0"})
        os.replace(tmp, path)
    finally:
        if tmp.exists():
            tmp.unlink()
    return {
        "cells": n_cells,
        "genes": n_genes,
        "nnz": nnz,
        "density": nnz / (n_cells * n_genes),
        "bytes": path.stat().st_size,
    }


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--cells", type=int, required=True)
    p.add_argument("--genes", type=int, default=2000)
    p.add_argument("--out", type=Path, required=True)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--chunk-rows", type=int, default=20_000)
    a = p.parse_args()
    t = time.perf_counter()
    info = write(a.out, a.cells, a.genes, a.chunk_rows, a.seed)
    print(f"wrote {a.out}: {info} in {time.perf_counter() - t:.0f} s")


if __name__ == "__main__":
    main()
