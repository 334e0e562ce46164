"""Data of the reference-mapping benchmark (``mapping_vs_scvi``): the bundled IFN-beta PBMCs with marker labels.

Imported by both tools' runs (``mapping_scivae`` in scivae's venv, ``mapping_scvi`` in scvi-tools' venv), so it
needs only the standard library, numpy, pandas and anndata (never scivae).

The data ship without cell types (``obs["condition"]`` = ctrl / stim only). Labels come from marker sets, per cell
on its own normalised counts (counts per 10,000), so the labels of stimulated cells do not depend on the control
cells:

* **lineage** (the rule of ``tutorials/cells_batch.py``): the lineage whose summed marker counts are at least
  twice every other's (T, NK, B, myeloid), else ``"Unknown"``;
* **CD14 monocytes**: myeloid cells whose classical-monocyte markers (CD14, LYZ, S100A8, S100A9) sum to at least
  twice their CD16-monocyte markers (FCGR3A, MS4A7). CD14 itself falls in stimulated monocytes, hence the
  wider set.

:func:`prepare` writes the file both tools read: the genes detected in the reference cells, at most the 1,500
with the most counts over all cells (1,485 of the bundled 1,504: scivae drops genes that a model's training cells
never show, so both tools are given the genes scivae keeps), ``obs``
columns ``condition`` (the batch key: ctrl = reference, stim = query), ``lineage`` (the marker lineage of every
cell: the truth of the label transfer), ``label`` (the lineage for reference cells, ``"Unknown"`` for every query
cell: what the models are given) and ``de_group`` (``ctrl`` / ``stim`` for CD14 monocytes, ``other`` else).
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import anndata as ad
import numpy as np
import pandas as pd

#: the bundled data (``scivae.datasets.ifnb()`` reads the same file)
IFNB_FILE = Path(__file__).resolve().parents[2] / "datasets" / "ifnb" / "ifnb_pbmc.h5ad"
LINEAGES = {
    "T": ["CD3E", "IL7R", "CCR7", "CD8A"],
    "NK": ["GNLY", "NKG7"],
    "B": ["MS4A1", "CD79A"],
    "myeloid": ["LYZ", "CD14", "FCGR3A", "MS4A7"],
}
CD14_MONO = ["CD14", "LYZ", "S100A8", "S100A9"]
CD16_MONO = ["FCGR3A", "MS4A7"]
#: interferon-stimulated genes whose ranks the benchmark reports (those present in the data)
ISGS = ["ISG15", "IFI6", "IFIT1", "IFIT3", "MX1", "ISG20", "CXCL10"]
UNKNOWN = "Unknown"
BATCH_KEY, LABEL_KEY, TRUTH_KEY, DE_KEY = "condition", "label", "lineage", "de_group"
REFERENCE, QUERY = "ctrl", "stim"
#: genes kept (the 1,500 with the most counts over all cells, among those detected in the reference)
N_GENES = 1500


def _per_10k(adata: ad.AnnData):
    """Counts per 10,000 of each cell (CSR)."""
    import scipy.sparse as sp

    x = sp.csr_matrix(adata.X)
    return sp.csr_matrix(x.multiply(1e4 / np.maximum(np.asarray(x.sum(1)), 1))), x


def _dominant(score: np.ndarray, names: list[str]) -> np.ndarray:
    """Per row, the name of the column at least twice every other (and above 0), else ``"Unknown"``."""
    top2 = np.sort(score, axis=1)[:, -2:]
    dominant = (top2[:, 1] >= 2 * top2[:, 0] + 1e-9) & (top2[:, 1] > 0)
    return np.where(dominant, np.asarray(names)[score.argmax(1)], UNKNOWN).astype(object)


def _set_scores(per_10k, var_names: pd.Index, sets: list[list[str]]) -> np.ndarray:
    cols = []
    for genes in sets:
        idx = var_names.get_indexer([g for g in genes if g in var_names])
        cols.append(np.asarray(per_10k[:, idx].sum(1)).ravel())
    return np.column_stack(cols)


def lineage_labels(adata: ad.AnnData) -> np.ndarray:
    """One lineage per cell (object array): T, NK, B, myeloid, or ``"Unknown"`` where no marker set dominates."""
    per_10k, _ = _per_10k(adata)
    return _dominant(_set_scores(per_10k, adata.var_names, list(LINEAGES.values())), list(LINEAGES))


def cd14_monocytes(adata: ad.AnnData, lineage: np.ndarray) -> np.ndarray:
    """Boolean mask of the CD14 monocytes: myeloid cells whose CD14-monocyte markers are twice their CD16 ones."""
    per_10k, _ = _per_10k(adata)
    kind = _dominant(_set_scores(per_10k, adata.var_names, [CD14_MONO, CD16_MONO]), ["CD14", "CD16"])
    return (np.asarray(lineage) == "myeloid") & (kind == "CD14")


def annotate(adata: ad.AnnData) -> pd.DataFrame:
    """The benchmark's ``obs`` of cells with ``obs["condition"]`` (ctrl / stim) and the marker genes: ``condition``,
    ``lineage`` (the truth), ``label`` (the lineage for reference cells, ``"Unknown"`` for query cells) and
    ``de_group`` (``ctrl`` / ``stim`` for CD14 monocytes, ``other`` else)."""
    lineage = lineage_labels(adata).astype(str)
    cd14 = cd14_monocytes(adata, lineage)
    cond = adata.obs[BATCH_KEY].astype(str).to_numpy()
    obs = pd.DataFrame(index=adata.obs_names)
    obs[BATCH_KEY] = pd.Categorical(cond, categories=[REFERENCE, QUERY])
    obs[TRUTH_KEY] = pd.Categorical(lineage)
    obs[LABEL_KEY] = pd.Categorical(np.where(cond == REFERENCE, lineage, UNKNOWN))
    obs[DE_KEY] = pd.Categorical(np.where(cd14, cond, "other"))
    return obs


def prepare(out: Path, n_cells_per_condition: int | None = None, seed: int = 0) -> dict:
    """Write the benchmark's AnnData to ``out`` (see the module docstring) and return a summary of it.

    ``n_cells_per_condition``: a random subset of that many cells of each condition (the smoke mode), else all.
    """
    adata = ad.read_h5ad(IFNB_FILE)
    if n_cells_per_condition is not None:
        rng = np.random.default_rng(seed)
        cond = adata.obs[BATCH_KEY].astype(str).to_numpy()
        n = n_cells_per_condition
        picks = [rng.choice(np.flatnonzero(cond == c), n, replace=False) for c in (REFERENCE, QUERY)]
        adata = adata[np.sort(np.concatenate(picks))].copy()
    # labels on all genes, before the gene selection
    obs = annotate(adata)
    lineage, cd14 = obs[TRUTH_KEY].astype(str).to_numpy(), obs[DE_KEY].astype(str).to_numpy() != "other"
    _, x = _per_10k(adata)
    cond = adata.obs[BATCH_KEY].astype(str).to_numpy()
    # genes never detected in the reference are left out: scivae drops them from a model (scvi-tools keeps them),
    # and both tools must fit the same genes
    totals = np.asarray(x.sum(0)).ravel()
    in_reference = np.asarray(x[cond == REFERENCE].sum(0)).ravel() > 0
    detected = np.flatnonzero(in_reference)
    keep_genes = np.sort(detected[np.argsort(-totals[detected], kind="stable")[:N_GENES]])
    adata = adata[:, keep_genes].copy()
    adata.X = x[:, keep_genes].astype(np.float32)
    adata.obs = obs
    missing = [g for g in ISGS + sum(LINEAGES.values(), []) if g not in adata.var_names]
    out.parent.mkdir(parents=True, exist_ok=True)
    adata.write_h5ad(out)
    return {
        "file": str(out),
        "n_cells": {c: int((cond == c).sum()) for c in (REFERENCE, QUERY)},
        "n_genes": int(adata.n_vars),
        "genes_of_interest_missing": missing,
        "isgs_present": [g for g in ISGS if g in adata.var_names],
        "genes_not_in_reference_left_out": int((~in_reference).sum()),
        "lineages": {c: pd.Series(lineage[cond == c].astype(str)).value_counts().to_dict() for c in (REFERENCE, QUERY)},
        "cd14_monocytes": {c: int((cd14 & (cond == c)).sum()) for c in (REFERENCE, QUERY)},
    }


def split(adata: ad.AnnData) -> tuple[ad.AnnData, ad.AnnData, ad.AnnData]:
    """Reference (ctrl), query (stim) and both, each a copy in file order."""
    cond = adata.obs[BATCH_KEY].astype(str).to_numpy()
    return adata[cond == REFERENCE].copy(), adata[cond == QUERY].copy(), adata.copy()


# -- one tool's run (mapping_scivae / mapping_scvi): the same arguments and output files -----------------------
def run_arguments(description: str) -> argparse.ArgumentParser:
    """The arguments both tools' runs take."""
    ap = argparse.ArgumentParser(description=description)
    ap.add_argument("--data", type=Path, required=True, help="the file of prepare()")
    ap.add_argument("--out", type=Path, required=True)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--reference-epochs", type=int, default=100)
    ap.add_argument("--query-epochs", type=int, default=100)
    ap.add_argument(
        "--scanvi-epochs",
        type=int,
        default=10,
        help="scvi-tools only: of the reference epochs, how many train SCANVI after SCVI (its default after "
        "pre-training, 10 here); SCVI trains the rest",
    )
    ap.add_argument("--delta", type=float, default=0.25)
    ap.add_argument("--de-samples", type=int, default=5000, help="draws per group of the DE (both tools' default)")
    ap.add_argument("--threads", type=int, default=1)
    return ap


#: the steps whose wall time each run reports, in order
STEPS = ("reference_fit", "query_fit", "predict", "de")


def write_run(
    out: Path,
    head: dict,
    times: dict,
    z_reference: np.ndarray,
    z_query: np.ndarray,
    predicted: np.ndarray,
    de: pd.DataFrame,
) -> None:
    """Write a tool's run into ``out``: ``latent_reference.npy`` / ``latent_query.npy`` (the query model's latent
    of the reference and query cells, file order), ``predicted.json`` (labels of the query cells), ``de.csv``
    (the tool's stim-vs-ctrl table in its own order, with ``tool_rank``) and ``run.json`` (``head`` + times)."""
    out.mkdir(parents=True, exist_ok=True)
    np.save(out / "latent_reference.npy", np.asarray(z_reference, dtype=np.float32))
    np.save(out / "latent_query.npy", np.asarray(z_query, dtype=np.float32))
    (out / "predicted.json").write_text(json.dumps([str(p) for p in predicted]))
    cols = [c for c in ("lfc_mean", "lfc_median", "proba_de", "bayes_factor", "scale1", "scale2") if c in de.columns]
    cols += [c for c in de.columns if str(c).startswith("is_de_fdr")]
    table = de[cols].copy()
    table.index = pd.Index([str(g) for g in de.index], name="gene")
    table["tool_rank"] = np.arange(1, len(table) + 1)
    table.to_csv(out / "de.csv")
    (out / "run.json").write_text(json.dumps({**head, "times_s": times}, indent=2, default=float) + "\n")
