"""Prepare the inputs shared by both tools in the cells benchmark (scivae vs scvi-tools).

Run with scivae's venv (needs scanpy + scikit-misc), from the repository root::

    python -m benchmarks.cells.prepare_data --out benchmarks/out/cells [--pbmc FILE] [--ifnb-dir DIR]

PBMC 3k is read from ``--pbmc`` (default ``$SCIVAE_PBMC3K``, else ``datasets/pbmc3k/pbmc3k_raw.h5ad``); the
interferon-beta ctrl/stim pair from ``--ifnb-dir`` (default ``$SCIVAE_IFNB_DIR``; skipped when neither is set).

Writes, for each data set, one ``<name>.h5ad`` holding raw integer counts (float32 CSR) of the selected
2,000 highly variable genes for ALL cells, with ``obs`` columns:

- ``split``: ``"test"`` (seeded 10 %), ``"validation"`` (10 % of the rest: only for choosing defaults) and
  ``"train"``, also saved as ``<name>_split.csv``; the tools train on ``"train"`` only,
- ``n_counts``: the cell's total count over those genes,
- ``condition``: ``"ctrl"`` / ``"stim"`` (interferon data set only).

Both tools read exactly these files, so they see the same genes, cells and counts. The HVG list is also
written as ``<name>_genes.txt``. ``pbmc3k_all.h5ad`` holds the same cells and split with every gene of the
input (16,634 in the shipped PBMC 3k: no gene filter, no HVG selection), for the all-genes speed runs.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import sys
from pathlib import Path

import anndata as ad
import numpy as np
import pandas as pd
import scanpy as sc
import scipy.sparse as sp

from scivae._atomic import write_text_atomic

REPO = Path(__file__).resolve().parents[2]
# Inputs come from arguments or environment variables: PBMC 3k defaults to the copy shipped in datasets/;
# the interferon-beta pair has no default (``--ifnb-dir`` / ``SCIVAE_IFNB_DIR``) and is skipped without it.
PBMC_DEFAULT = Path(os.environ.get("SCIVAE_PBMC3K", REPO / "datasets" / "pbmc3k" / "pbmc3k_raw.h5ad"))
IFNB_DEFAULT = os.environ.get("SCIVAE_IFNB_DIR")

N_TOP_GENES = 2000
TEST_FRACTION = 0.1
VALIDATION_FRACTION = 0.1  # of the cells left after the test cells: for choosing defaults, never for reports
SEED = 0


def _atomic_write_h5ad(adata: ad.AnnData, path: Path) -> None:
    tmp = path.with_name(path.name + ".tmp")
    adata.write_h5ad(tmp, compression="gzip")
    os.replace(tmp, path)


def _select_hvgs(adata: ad.AnnData, batch_key: str | None) -> list[str]:
    """seurat_v3 HVGs on raw counts (scikit-misc loess), as scvi-tools' tutorials do."""
    h = sc.pp.highly_variable_genes(
        adata, n_top_genes=N_TOP_GENES, flavor="seurat_v3", batch_key=batch_key, inplace=False
    )
    h.index = adata.var_names
    if batch_key is not None:
        ranked = h.sort_values(["highly_variable_nbatches", "highly_variable_rank"], ascending=[False, True])
        return ranked.index[ranked["highly_variable"]].tolist()
    return h.index[h["highly_variable"]].tolist()


def _split(n_obs: int, seed: int) -> np.ndarray:
    """train / validation / test. The test cells are the same as in the earlier two-way split (same draw)."""
    rng = np.random.default_rng(seed)
    perm = rng.permutation(n_obs)
    n_test = int(round(TEST_FRACTION * n_obs))
    split = np.full(n_obs, "train", dtype=object)
    split[perm[:n_test]] = "test"
    rest = perm[n_test:]
    n_val = int(round(VALIDATION_FRACTION * len(rest)))
    split[np.random.default_rng(seed + 1).permutation(rest)[:n_val]] = "validation"
    return split


def _finish(name: str, full: ad.AnnData, out: Path, batch_key: str | None, all_genes: bool = False) -> dict:
    full.X = sp.csr_matrix(full.X, dtype=np.float32)
    x = full.X
    if not np.allclose(x.data, np.round(x.data)):
        raise SystemExit(f"{name}: X does not hold integer counts")
    sc.pp.filter_cells(full, min_genes=200)
    if all_genes:
        genes = list(full.var_names)
    else:
        sc.pp.filter_genes(full, min_cells=3)
        genes = _select_hvgs(full, batch_key)
    sub = full[:, genes].copy()
    sub.obs["split"] = pd.Categorical(_split(sub.n_obs, SEED), categories=["train", "validation", "test"])
    sub.obs["n_counts"] = np.asarray(sub.X.sum(axis=1)).ravel()
    empty = int((sub.obs["n_counts"] == 0).sum())
    sub.uns["bench_prep"] = {
        "seed": SEED,
        "n_top_genes": None if all_genes else N_TOP_GENES,
        "test_fraction": TEST_FRACTION,
        "validation_fraction_of_rest": VALIDATION_FRACTION,
    }
    out.mkdir(parents=True, exist_ok=True)
    _atomic_write_h5ad(sub, out / f"{name}.h5ad")
    write_text_atomic(out / f"{name}_genes.txt", "\n".join(genes) + "\n")
    write_text_atomic(out / f"{name}_split.csv", sub.obs[["split"]].to_csv())
    summary = {
        "name": name,
        "n_obs": int(sub.n_obs),
        "n_vars": int(sub.n_vars),
        "n_train": int((sub.obs["split"] == "train").sum()),
        "n_validation": int((sub.obs["split"] == "validation").sum()),
        "n_test": int((sub.obs["split"] == "test").sum()),
        "cells_with_zero_hvg_counts": empty,
        "genes_sha256": hashlib.sha256("\n".join(genes).encode()).hexdigest()[:16],
    }
    if batch_key:
        summary["conditions"] = {k: int(v) for k, v in sub.obs[batch_key].value_counts().items()}
    return summary


def prepare_pbmc(out: Path, path: Path, all_genes: bool = False) -> dict:
    a = ad.read_h5ad(path)
    a.var_names = a.var_names.astype(str)
    a.var_names_make_unique()
    obs = pd.DataFrame(index=a.obs_names.astype(str))
    a = ad.AnnData(X=a.X, obs=obs, var=pd.DataFrame(index=a.var_names))
    return _finish("pbmc3k_all" if all_genes else "pbmc3k", a, out, batch_key=None, all_genes=all_genes)


def prepare_ifnb(out: Path, folder: Path) -> dict:
    parts = []
    for cond in ("ctrl", "stim"):
        a = ad.read_h5ad(folder / f"ifnb_{cond}_3k.h5ad")
        a.var_names = a.var_names.astype(str)
        a.var_names_make_unique()  # same gene order in both files -> same unique names
        obs = pd.DataFrame({"condition": cond}, index=a.obs_names.astype(str))
        parts.append(ad.AnnData(X=sp.csr_matrix(a.X), obs=obs, var=pd.DataFrame(index=a.var_names)))
    if not parts[0].var_names.equals(parts[1].var_names):
        raise SystemExit("ctrl and stim files have different genes")
    full = ad.concat(parts, join="inner")
    full.obs["condition"] = pd.Categorical(full.obs["condition"], categories=["ctrl", "stim"])
    return _finish("ifnb", full, out, batch_key="condition")


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", type=Path, default=Path("benchmarks/out/cells"))
    ap.add_argument("--pbmc", type=Path, default=PBMC_DEFAULT, help="PBMC 3k raw counts (env SCIVAE_PBMC3K)")
    ap.add_argument(
        "--ifnb-dir",
        type=Path,
        default=Path(IFNB_DEFAULT) if IFNB_DEFAULT else None,
        help="folder with ifnb_ctrl_3k.h5ad and ifnb_stim_3k.h5ad (env SCIVAE_IFNB_DIR); skipped if not given",
    )
    args = ap.parse_args(argv)
    sc.settings.verbosity = 0
    summary = {"pbmc3k": prepare_pbmc(args.out, args.pbmc), "pbmc3k_all": prepare_pbmc(args.out, args.pbmc, True)}
    if args.ifnb_dir is not None:
        summary["ifnb"] = prepare_ifnb(args.out, args.ifnb_dir)
    write_text_atomic(args.out / "prepare_summary.json", json.dumps(summary, indent=2) + "\n")
    print(json.dumps(summary, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
