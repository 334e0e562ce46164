"""Interferon-beta stimulated and control PBMCs shipped with scivae (``datasets/ifnb/``)."""

from __future__ import annotations

from pathlib import Path

from scivae.datasets._files import data_file
from scivae.datasets._pbmc import read_subset


def ifnb_path() -> Path:
    """Path of the shipped ``datasets/ifnb/ifnb_pbmc.h5ad`` (gzip-compressed h5ad)."""
    return data_file("ifnb", "ifnb_pbmc.h5ad")


def ifnb(n_obs: int | None = None, seed: int = 0):
    """PBMCs of one study in two conditions, control and interferon-beta stimulated: a real batch-like pair.

    2,000 cells (1,000 per condition, ``obs["condition"]`` = ``"ctrl"`` / ``"stim"``) x 1,504 genes (the most
    variable genes of both conditions plus PBMC markers and interferon-response genes), raw UMI counts (float32
    CSR holding integers); no cell-type labels. Provenance and licence: ``datasets/ifnb/README.md``.

    Parameters
    ----------
    n_obs
        Number of cells of a seeded random subset (kept in file order); ``None`` (the default) reads all.
    seed
        Seed of that subset.

    Returns
    -------
    anndata.AnnData
        Read into memory; the shipped file is never written.
    """
    return read_subset(ifnb_path(), n_obs, seed, "the interferon PBMC")
