"""Write a large simulated count matrix to an .h5ad in chunks (never holding the matrix in memory).

Cells of 8 types with type-specific expression, negative-binomial counts (inverse dispersion 2), log-normal
library sizes and 4 samples in ``obs["sample"]``; X is CSR float32 (as most .h5ad files), uncompressed.
Chunks are seeded by (seed, chunk index), so a file is the same whatever the machine.

    python -m benchmarks.scale.make_data --cells 1000000 --genes 2000 --out benchmarks/out/scale/cells_1000000.h5ad

The file is written beside --out under a temporary name and renamed when complete (about 2.7 GB for 1M cells
x 2k genes, ~17% non-zeros; 0.28 GB for 100k). Generated on demand; never committed (benchmarks/out/ is git-ignored).
:func:`write_zarr_copy` writes the same cells as an AnnData Zarr v3 store, sharded (``run --zarr``).
"""

from __future__ import annotations

import argparse
import os
import time
from pathlib import Path

import anndata as ad
import h5py
import numpy as np
import pandas as pd
import scipy.sparse as sp

from scivae._atomic import atomic_dir

N_TYPES, N_SAMPLES, THETA = 8, 4, 2.0


def profiles(n_genes: int, seed: int) -> np.ndarray:
    """Expression fractions per cell type, ``(N_TYPES, n_genes)``: a shared base and type-specific genes."""
    rng = np.random.default_rng([seed, 10**9])
    base = rng.normal(-1.0, 1.8, n_genes)
    lfc = rng.normal(0.0, 1.5, (N_TYPES, n_genes)) * (rng.random((N_TYPES, n_genes)) < 0.1)
    logits = base + lfc
    return np.exp(logits) / np.exp(logits).sum(1, keepdims=True)


def simulate_chunk(start: int, stop: int, frac: np.ndarray, seed: int, chunk: int) -> tuple[sp.csr_matrix, np.ndarray]:
    """NB counts of cells ``start:stop`` and their sample codes."""
    rng = np.random.default_rng([seed, chunk])
    n = stop - start
    types = rng.integers(0, N_TYPES, n)
    samples = rng.integers(0, N_SAMPLES, n)
    library = np.exp(rng.normal(6.5, 0.5, n) + 0.15 * samples)  # samples differ a little in depth
    mean = library[:, None] * frac[types]
    counts = rng.poisson(rng.gamma(THETA, mean / THETA)).astype(np.float32)
    return sp.csr_matrix(counts), samples


def write(path: Path, n_cells: int, n_genes: int, chunk_rows: int = 20_000, seed: int = 0) -> dict:
    """Write the file atomically; return its size and density."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    frac = profiles(n_genes, seed)
    var = pd.DataFrame(index=pd.Index([f"gene-{g}" for g in range(n_genes)]))
    samples = np.zeros(n_cells, dtype=np.int64)
    nnz = 0
    try:
        with h5py.File(tmp, "w") as f:
            for start in range(0, n_cells, chunk_rows):
                stop = min(start + chunk_rows, n_cells)
                x, samples[start:stop] = simulate_chunk(start, stop, frac, seed, start // chunk_rows)
                nnz += x.nnz
                if start == 0:
                    ad.io.write_elem(f, "X", x, dataset_kwargs={"chunks": (1 << 18,)})
                    stored = ad.io.sparse_dataset(f["X"])
                else:
                    stored.append(x)
            obs = pd.DataFrame(
                {"sample": pd.Categorical([f"s{s}" for s in range(N_SAMPLES)])[samples]},
                index=pd.Index([f"cell-{i}" for i in range(n_cells)]),
            )
            ad.io.write_elem(f, "obs", obs)
            ad.io.write_elem(f, "var", var)
            for key in ("obsm", "varm", "obsp", "varp", "layers", "uns"):
                ad.io.write_elem(f, key, {})
            f.attrs.update({"encoding-type": "anndata", "encoding-version": "0.1.0"})
        os.replace(tmp, path)
    finally:
        if tmp.exists():
            tmp.unlink()
    return {
        "cells": n_cells,
        "genes": n_genes,
        "nnz": nnz,
        "density": nnz / (n_cells * n_genes),
        "bytes": path.stat().st_size,
    }


def _convert_streamed(h5ad: Path, tmp: Path, chunk: int = 1 << 17, shard: int = 1 << 25) -> None:
    """The ``.h5ad`` as an AnnData Zarr v3 store, X copied one shard at a time (never loaded whole)."""
    import zarr

    root = zarr.open_group(tmp, mode="w", zarr_format=3)
    with h5py.File(h5ad, "r") as f:
        for key in ("obs", "var"):
            ad.io.write_elem(root, key, ad.io.read_elem(f[key]))
        for key in ("obsm", "varm", "obsp", "varp", "layers", "uns"):
            ad.io.write_elem(root, key, {})
        x = root.create_group("X")
        x.attrs.update(
            {
                "encoding-type": "csr_matrix",
                "encoding-version": "0.1.0",
                "shape": [int(v) for v in f["X"].attrs["shape"]],
            }
        )
        for name in ("data", "indices", "indptr"):
            src = f["X"][name]
            n = int(src.shape[0])
            inner = min(chunk, n)
            outer = min(shard, -(-n // inner) * inner)  # a whole number of inner chunks
            dst = x.create_array(name, shape=(n,), dtype=src.dtype, chunks=(inner,), shards=(outer,))
            for start in range(0, n, shard):
                dst[start : start + shard] = src[start : start + shard]
    root.attrs.update({"encoding-type": "anndata", "encoding-version": "0.1.0"})
    zarr.consolidate_metadata(tmp)


def write_zarr_copy(h5ad: Path, store: Path, max_in_memory: int = 200_000) -> dict:
    """``h5ad`` written as a sharded Zarr v3 store (atomically, once: an existing store is kept); returns the layout
    of its X. Up to ``max_in_memory`` cells anndata writes it (``write_zarr`` with v3 auto-sharding, as a user
    would convert a file); larger files are copied without loading X (:func:`_convert_streamed`)."""
    import warnings

    import zarr

    if not store.exists():
        with h5py.File(h5ad, "r") as f:
            n_cells = int(f["X"].attrs["shape"][0])
        with atomic_dir(store) as tmp, warnings.catch_warnings():
            warnings.simplefilter("ignore")
            if n_cells > max_in_memory:
                _convert_streamed(h5ad, tmp)
            else:
                adata = ad.read_h5ad(h5ad)
                with ad.settings.override(zarr_write_format=3, auto_shard_zarr_v3=True):
                    adata.write_zarr(tmp)
                del adata
    x = zarr.open_group(store, mode="r")["X"]
    n_cells = int(x.attrs["shape"][0])
    layout = {
        name: {"shape": list(x[name].shape), "chunks": list(x[name].chunks), "shards": list(x[name].shards or [])}
        for name in ("data", "indices", "indptr")
    }
    size = sum(f.stat().st_size for f in store.rglob("*") if f.is_file())
    writer = "streamed" if n_cells > max_in_memory else "anndata write_zarr"
    return {
        "store": str(store),
        "writer": writer,
        "zarr_format": x.metadata.zarr_format,
        "X": layout,
        "bytes_on_disk": size,
    }


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--cells", type=int, required=True)
    p.add_argument("--genes", type=int, default=2000)
    p.add_argument("--out", type=Path, required=True)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--chunk-rows", type=int, default=20_000)
    a = p.parse_args()
    t = time.perf_counter()
    info = write(a.out, a.cells, a.genes, a.chunk_rows, a.seed)
    print(f"wrote {a.out}: {info} in {time.perf_counter() - t:.0f} s")


if __name__ == "__main__":
    main()
