"""Prepare the inputs shared by both tools in the cells benchmark (scivae vs scvi-tools).

Run with scivae's venv (needs scanpy + scikit-misc)::

    .venv/bin/python benchmarks/cells/prepare_data.py --out benchmarks/out/cells [--pbmc FILE] [--ifnb-dir DIR]

PBMC 3k is read from ``--pbmc`` (default ``$SCIVAE_PBMC3K``, else ``datasets/pbmc3k/pbmc3k_raw.h5ad``); the
interferon-beta ctrl/stim pair from ``--ifnb-dir`` (default ``$SCIVAE_IFNB_DIR``; skipped when neither is set).

Writes, for each data set, one ``<name>.h5ad`` holding raw integer counts (float32 CSR) of the selected
2,000 highly variable genes for ALL cells, with ``obs`` columns:

- ``split``: ``"test"`` (seeded 10 %), ``"validation"`` (10 % of the rest: only for choosing defaults) and
  ``"train"``, also saved as ``<name>_split.csv``; the tools train on ``"train"`` only,
- ``label``: marker-based population label or ``"unassigned"`` (see :func:`marker_labels`),
- ``condition``: ``"ctrl"`` / ``"stim"`` (interferon data set only).

Both tools read exactly these files, so they see the same genes, cells and counts. The HVG list is also
written as ``<name>_genes.txt``.
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

REPO = Path(__file__).resolve().parents[2]
# Inputs come from arguments or environment variables: PBMC 3k defaults to the copy shipped in datasets/;
# the interferon-beta pair has no default (``--ifnb-dir`` / ``SCIVAE_IFNB_DIR``) and is skipped without it.
PBMC_DEFAULT = Path(os.environ.get("SCIVAE_PBMC3K", REPO / "datasets" / "pbmc3k" / "pbmc3k_raw.h5ad"))
IFNB_DEFAULT = os.environ.get("SCIVAE_IFNB_DIR")

# Marker panel from the benchmark specification (classic PBMC 3k markers).
MARKERS: dict[str, list[str]] = {
    "CD4 T": ["IL7R"],
    "CD8 T": ["CD8A"],
    "NK": ["GNLY", "NKG7"],
    "B": ["MS4A1"],
    "CD14 Mono": ["CD14", "LYZ"],
    "FCGR3A Mono": ["FCGR3A", "MS4A7"],
    "DC": ["FCER1A"],
    "Megakaryocyte": ["PPBP"],
}

N_TOP_GENES = 2000
TEST_FRACTION = 0.1
VALIDATION_FRACTION = 0.1  # of the cells left after the test cells: for choosing defaults, never for reports
SEED = 0
# Labelling: per-cell marker scores are averaged over the cell and its K nearest neighbours in a PCA of
# log-normalised expression (neither tool's latent space), because single markers drop out in most cells.
LABEL_NEIGHBOURS = 15
MIN_SCORE = 0.25  # smoothed z-score of the winning population
MIN_MARGIN = 0.1  # winning score minus runner-up


def _atomic_write_h5ad(adata: ad.AnnData, path: Path) -> None:
    tmp = path.with_name(path.name + ".tmp")
    adata.write_h5ad(tmp, compression="gzip")
    os.replace(tmp, path)


def _atomic_write_text(text: str, path: Path) -> None:
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(text)
    os.replace(tmp, path)


def _zscore_within(values: np.ndarray, groups: np.ndarray | None) -> np.ndarray:
    """Z-score each column, separately within each group (condition) when groups are given."""
    out = np.empty_like(values, dtype=np.float64)
    keys = np.zeros(len(values), dtype=int) if groups is None else pd.factorize(groups)[0]
    for g in np.unique(keys):
        m = keys == g
        v = values[m]
        sd = v.std(axis=0)
        sd[sd == 0] = 1.0
        out[m] = (v - v.mean(axis=0)) / sd
    return out


def marker_labels(counts: ad.AnnData, groups: np.ndarray | None = None) -> tuple[pd.Series, pd.DataFrame]:
    """Assign each cell a population from the marker panel, or ``"unassigned"``.

    Steps: normalise to 10,000 counts per cell and log1p (all genes); z-score each marker gene over cells
    (within each condition when ``groups`` is given, so a global shift such as interferon stimulation
    does not move whole conditions between populations); score each population by the mean z of its
    markers; smooth scores over the cell's kNN graph in a 50-PC PCA of log-normalised HVG expression;
    take the argmax; mark cells whose best smoothed score is below ``MIN_SCORE`` or beats the runner-up
    by less than ``MIN_MARGIN`` as ``"unassigned"``.
    """
    a = counts.copy()
    sc.pp.normalize_total(a, target_sum=1e4)
    sc.pp.log1p(a)
    missing = [g for gs in MARKERS.values() for g in gs if g not in a.var_names]
    if missing:
        raise SystemExit(f"marker genes missing from the data: {missing}")
    genes = [g for gs in MARKERS.values() for g in gs]
    x = a[:, genes].X
    x = x.toarray() if sp.issparse(x) else np.asarray(x)
    z = np.clip(_zscore_within(x, groups), -10, 10)
    col = {g: i for i, g in enumerate(genes)}
    scores = np.stack([z[:, [col[g] for g in gs]].mean(axis=1) for gs in MARKERS.values()], axis=1)

    # kNN smoothing in an independent PCA space.
    p = a.copy()
    sc.pp.highly_variable_genes(p, n_top_genes=N_TOP_GENES, flavor="seurat")
    p = p[:, p.var["highly_variable"]].copy()
    sc.pp.scale(p, max_value=10)
    sc.tl.pca(p, n_comps=50, random_state=SEED)
    sc.pp.neighbors(p, n_neighbors=LABEL_NEIGHBOURS, use_rep="X_pca", random_state=SEED)
    w = (p.obsp["distances"] > 0).astype(np.float64) + sp.identity(p.n_obs, format="csr")
    w = sp.diags(1.0 / np.asarray(w.sum(axis=1)).ravel()) @ w
    smooth = np.asarray(w @ scores)

    names = np.array(list(MARKERS))
    order = np.argsort(-smooth, axis=1)
    best = smooth[np.arange(len(smooth)), order[:, 0]]
    second = smooth[np.arange(len(smooth)), order[:, 1]]
    label = names[order[:, 0]].astype(object)
    label[(best < MIN_SCORE) | (best - second < MIN_MARGIN)] = "unassigned"
    score_df = pd.DataFrame(smooth, index=counts.obs_names, columns=[f"score_{n}" for n in names])
    return pd.Series(label, index=counts.obs_names, name="label"), score_df


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


def _finish(name: str, full: ad.AnnData, out: Path, batch_key: str | None) -> dict:
    full.X = sp.csr_matrix(full.X, dtype=np.float32)
    x = full.X
    if not np.allclose(x.data, np.round(x.data)):
        raise SystemExit(f"{name}: X does not hold integer counts")
    sc.pp.filter_cells(full, min_genes=200)
    sc.pp.filter_genes(full, min_cells=3)
    groups = full.obs[batch_key].to_numpy() if batch_key else None
    labels, scores = marker_labels(full, groups)
    genes = _select_hvgs(full, batch_key)
    sub = full[:, genes].copy()
    sub.obs["label"] = pd.Categorical(labels)
    for c in scores.columns:
        sub.obs[c] = scores[c].to_numpy(dtype=np.float32)
    sub.obs["split"] = pd.Categorical(_split(sub.n_obs, SEED), categories=["train", "validation", "test"])
    sub.obs["n_counts"] = np.asarray(sub.X.sum(axis=1)).ravel()
    empty = int((sub.obs["n_counts"] == 0).sum())
    sub.uns["bench_prep"] = {
        "seed": SEED,
        "n_top_genes": N_TOP_GENES,
        "test_fraction": TEST_FRACTION,
        "validation_fraction_of_rest": VALIDATION_FRACTION,
        "markers": json.dumps(MARKERS),
        "min_score": MIN_SCORE,
        "min_margin": MIN_MARGIN,
    }
    out.mkdir(parents=True, exist_ok=True)
    _atomic_write_h5ad(sub, out / f"{name}.h5ad")
    _atomic_write_text("\n".join(genes) + "\n", out / f"{name}_genes.txt")
    _atomic_write_text(sub.obs[["split"]].to_csv(), out / f"{name}_split.csv")
    counts = sub.obs["label"].value_counts().to_dict()
    summary = {
        "name": name,
        "n_obs": int(sub.n_obs),
        "n_vars": int(sub.n_vars),
        "n_train": int((sub.obs["split"] == "train").sum()),
        "n_validation": int((sub.obs["split"] == "validation").sum()),
        "n_test": int((sub.obs["split"] == "test").sum()),
        "cells_with_zero_hvg_counts": empty,
        "labels": {k: int(v) for k, v in counts.items()},
        "genes_sha256": hashlib.sha256("\n".join(genes).encode()).hexdigest()[:16],
    }
    if batch_key:
        summary["conditions"] = {k: int(v) for k, v in sub.obs[batch_key].value_counts().items()}
    return summary


def prepare_pbmc(out: Path, path: Path) -> dict:
    a = ad.read_h5ad(path)
    a.var_names = a.var_names.astype(str)
    a.var_names_make_unique()
    obs = pd.DataFrame(index=a.obs_names.astype(str))
    a = ad.AnnData(X=a.X, obs=obs, var=pd.DataFrame(index=a.var_names))
    return _finish("pbmc3k", a, out, batch_key=None)


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
    summary = {"pbmc3k": prepare_pbmc(args.out, args.pbmc)}
    if args.ifnb_dir is not None:
        summary["ifnb"] = prepare_ifnb(args.out, args.ifnb_dir)
    _atomic_write_text(json.dumps(summary, indent=2) + "\n", args.out / "prepare_summary.json")
    print(json.dumps(summary, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
