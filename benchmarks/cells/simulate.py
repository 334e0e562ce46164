"""Simulated single-cell counts for the cells speed benchmark: NB counts with cell types and two batches.

Run with scivae's venv (from the repository root; ``throughput`` writes its data sets itself)::

    python -m benchmarks.cells.simulate --n-cells 20000 --out benchmarks/out/cells/sim20k.h5ad

Writes a ``.h5ad`` with float32 CSR counts (``n_cells`` x ``n_genes``, integers), ``obs["cell_type"]``
(``n_types`` types), ``obs["batch"]`` (two batches) and ``obs["split"]`` (seeded: 10 % test, 9 % validation,
the rest train). Cells are generated in chunks, so memory stays at the size of the sparse matrix plus one dense chunk.

Model (all draws seeded):

- gene baseline log-expression ~ N(-log(n_genes), 1.5^2), renormalised to fractions;
- each type changes 10 % of the genes by a log fold ~ N(0, 1.5^2);
- batch 2 changes every gene by a log fold ~ N(0, 0.3^2) (a mild technical batch effect);
- library size ~ LogNormal(log(lib_mean), 0.5^2); gene inverse dispersion theta ~ LogNormal(log 5, 0.8^2);
- count ~ NB(mean = library x fraction, theta) via the Gamma-Poisson mixture.

With the defaults (library mean 400 over 2,000 genes) about 12 % of the entries are non-zero, close to
PBMC 3k restricted to its 2,000 most variable genes (9.4 %, median 434 counts per cell).
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

import numpy as np
import scipy.sparse as sp


def simulate(
    n_cells: int,
    n_genes: int = 2000,
    n_types: int = 8,
    lib_mean: float = 400.0,
    seed: int = 0,
    chunk: int = 5000,
):
    """Return an AnnData of simulated NB counts (see the module docstring)."""
    import anndata as ad
    import pandas as pd

    rng = np.random.default_rng(seed)
    base = rng.normal(-np.log(n_genes), 1.5, n_genes)
    type_effect = np.where(rng.random((n_types, n_genes)) < 0.1, rng.normal(0.0, 1.5, (n_types, n_genes)), 0.0)
    batch_effect = np.stack([np.zeros(n_genes), rng.normal(0.0, 0.3, n_genes)])
    theta = np.exp(rng.normal(np.log(5.0), 0.8, n_genes))
    cell_type = rng.integers(0, n_types, n_cells)
    batch = rng.integers(0, 2, n_cells)
    library = np.exp(rng.normal(np.log(lib_mean), 0.5, n_cells))
    # fractions per (type, batch) combination, each row summing to 1
    logits = base[None, None, :] + type_effect[:, None, :] + batch_effect[None, :, :]
    frac = np.exp(logits - logits.max(-1, keepdims=True))
    frac /= frac.sum(-1, keepdims=True)
    blocks = []
    for start in range(0, n_cells, chunk):
        sl = slice(start, min(start + chunk, n_cells))
        mu = library[sl, None] * frac[cell_type[sl], batch[sl]]
        rate = rng.gamma(theta[None, :], mu / theta[None, :])
        blocks.append(sp.csr_matrix(rng.poisson(rate).astype(np.float32)))
    x = sp.vstack(blocks, format="csr")
    u = np.random.default_rng(seed + 1).random(n_cells)
    split = np.where(u < 0.1, "test", np.where(u < 0.19, "validation", "train"))  # 10 %, 9 %, 81 %
    obs = pd.DataFrame(
        {
            "cell_type": pd.Categorical([f"type{t}" for t in cell_type]),
            "batch": pd.Categorical([f"batch{b}" for b in batch]),
            "split": pd.Categorical(split),
        },
        index=[f"cell{i}" for i in range(n_cells)],
    )
    var = pd.DataFrame(index=[f"gene{g}" for g in range(n_genes)])
    return ad.AnnData(X=x, obs=obs, var=var)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description="Write simulated NB counts with cell types and two batches (.h5ad).")
    ap.add_argument("--n-cells", type=int, default=20000)
    ap.add_argument("--n-genes", type=int, default=2000)
    ap.add_argument("--n-types", type=int, default=8)
    ap.add_argument("--lib-mean", type=float, default=400.0)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--out", type=Path, required=True)
    args = ap.parse_args(argv)
    adata = simulate(args.n_cells, args.n_genes, args.n_types, args.lib_mean, args.seed)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    tmp = args.out.with_name(args.out.name + ".tmp")
    adata.write_h5ad(tmp)
    os.replace(tmp, args.out)
    density = adata.X.nnz / (adata.n_obs * adata.n_vars)
    print(f"{args.out}: {adata.n_obs} cells x {adata.n_vars} genes, {density:.1%} non-zero")
    return 0


if __name__ == "__main__":
    sys.exit(main())
