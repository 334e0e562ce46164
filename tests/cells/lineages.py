"""Coarse PBMC lineages of the bundled IFN-beta cells from marker sets (the rule of tutorials/cells_batch.py).

The data ship without cell types; per cell, the summed normalised counts of each marker set decide: a cell gets
the lineage whose sum is at least twice every other (T, NK, B, myeloid), else it stays ``"Unknown"``. Computed on
each cell's own counts, so the labels of stimulated cells do not depend on the control cells.
"""

from __future__ import annotations

import anndata as ad

# One rule for the tests and the mapping benchmark (benchmarks/cells/mapping_data.py holds it).
from benchmarks.cells.mapping_data import LINEAGES, UNKNOWN, lineage_labels

__all__ = ["LINEAGES", "UNKNOWN", "ifnb_with_lineages", "lineage_labels"]


def ifnb_with_lineages() -> ad.AnnData:
    """All 2,000 IFN-beta cells with ``obs["lineage"]``."""
    from scivae.datasets import ifnb

    adata = ifnb()
    adata.obs["lineage"] = lineage_labels(adata)
    return adata
