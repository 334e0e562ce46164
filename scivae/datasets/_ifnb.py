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
        Return a random subset of this many cells (drawn with ``seed``, in file order); ``None``: all.
    seed
        Seed of the subset.

    Returns
    -------
    anndata.AnnData
        A new in-memory AnnData (the shipped file is only read).
    """
    return read_subset(ifnb_path(), n_obs, seed, "the interferon PBMC")
