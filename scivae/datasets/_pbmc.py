"""10x Genomics PBMC 3k raw counts shipped with scivae (``datasets/pbmc3k/``)."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from scivae.datasets._files import data_file
from scivae.errors import ScivaeInputError


def pbmc3k_path() -> Path:
    """Path of the shipped ``datasets/pbmc3k/pbmc3k_raw.h5ad`` (gzip-compressed h5ad)."""
    return data_file("pbmc3k", "pbmc3k_raw.h5ad")


def pbmc3k(n_obs: int | None = None, seed: int = 0):
    """PBMC 3k (10x Genomics, CC BY 4.0): 2,700 cells x 16,634 detected genes, raw UMI counts.

    Raw counts in ``X`` (float32 CSR holding integers), gene symbols as ``var_names``, Ensembl ids in
    ``var["gene_ids"]``, barcodes as ``obs_names``; no cell-type labels. Provenance and checksum:
    ``datasets/pbmc3k/README.md``.

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
    return read_subset(pbmc3k_path(), n_obs, seed, "PBMC 3k")


def read_subset(path: Path, n_obs: int | None, seed: int, name: str):
    """Read a shipped .h5ad, optionally a seeded random subset of ``n_obs`` cells kept in file order."""
    try:
        import anndata as ad
    except ImportError:
        raise ScivaeInputError(f"the {name} data set needs anndata: pip install 'scivae[cells]'") from None
    adata = ad.read_h5ad(path)
    if n_obs is None:
        return adata
    if not 0 < n_obs <= adata.n_obs:
        raise ScivaeInputError(f"n_obs must be between 1 and {adata.n_obs} for {name}, got {n_obs}")
    idx = np.sort(np.random.default_rng(seed).choice(adata.n_obs, size=n_obs, replace=False))
    return adata[idx].copy()
