"""Coarse PBMC lineages of the bundled IFN-beta cells from marker sets (the rule of tutorials/cells_batch.py).

The data ship without cell types; per cell, the summed normalised counts of each marker set decide: a cell gets
the lineage whose sum is at least twice every other (T, NK, B, myeloid), else it stays ``"Unknown"``. Computed on
each cell's own counts, so the labels of stimulated cells do not depend on the control cells.
"""

from __future__ import annotations

import anndata as ad
import numpy as np

LINEAGES = {
    "T": ["CD3E", "IL7R", "CCR7", "CD8A"],
    "NK": ["GNLY", "NKG7"],
    "B": ["MS4A1", "CD79A"],
    "myeloid": ["LYZ", "CD14", "FCGR3A", "MS4A7"],
}
UNKNOWN = "Unknown"


def lineage_labels(adata: ad.AnnData) -> np.ndarray:
    """One lineage per cell (object array), ``"Unknown"`` where no marker set dominates."""
    per_10k = adata.X.multiply(1e4 / np.maximum(adata.X.sum(1), 1)).tocsr()
    score = np.column_stack(
        [np.asarray(per_10k[:, adata.var_names.get_indexer(g)].sum(1)).ravel() for g in LINEAGES.values()]
    )
    top2 = np.sort(score, axis=1)[:, -2:]
    dominant = (top2[:, 1] >= 2 * top2[:, 0] + 1e-9) & (top2[:, 1] > 0)
    return np.where(dominant, np.array(list(LINEAGES))[score.argmax(1)], UNKNOWN).astype(object)


def ifnb_with_lineages() -> ad.AnnData:
    """All 2,000 IFN-beta cells with ``obs["lineage"]``."""
    from scivae.datasets import ifnb

    adata = ifnb()
    adata.obs["lineage"] = lineage_labels(adata)
    return adata
