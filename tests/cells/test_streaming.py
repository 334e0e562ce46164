"""Streaming a backed .h5ad: the same preparation as in memory, chunked epochs, rank shards, flat outputs."""

from __future__ import annotations

import hashlib
import math
from pathlib import Path

import anndata as ad
import h5py
import numpy as np
import pytest
import scipy.sparse as sp

from scivae.cells import CellVAE, prepare
from scivae.cells.streaming import BackedCellData, BackedCounts, prepare_backed, write_with_latent
from scivae.core.data.streaming import _ChunkStream
from scivae.errors import ScivaeInputError

from .conftest import pbmc_subset


def _sha(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def _with_batches(adata: ad.AnnData) -> ad.AnnData:
    adata.obs["sample"] = np.where(np.arange(adata.n_obs) % 3 == 0, "s1", "s2")
    return adata


def test_backed_preparation_matches_in_memory(pbmc_full, tmp_path):
    adata = _with_batches(pbmc_full.copy())
    keep = np.ones(adata.n_obs)
    keep[:5] = 0  # empty cells: kept for embedding, left out of training
    adata.X = sp.csr_matrix(sp.diags(keep) @ adata.X)
    adata.X.eliminate_zeros()
    path = tmp_path / "pbmc.h5ad"
    adata.write_h5ad(path)
    before = _sha(path)
    mem, genes, enc, source = prepare(adata, batch_key="sample", n_top_genes=400)
    disk, genes_d, enc_d, source_d = prepare_backed(path, batch_key="sample", n_top_genes=400, chunk_rows=300)
    assert genes_d == genes  # the streamed seurat_v3 (batch-aware) picks scanpy's genes
    assert source_d == source == "X" and enc_d.to_dict() == enc.to_dict()
    assert np.array_equal(disk.nonempty, mem.nonempty) and disk.nonempty.size == adata.n_obs - 5
    assert {k: v for k, v in disk.summary.items() if k != "backed"} == mem.summary
    assert np.array_equal(disk.covariates["batch"], mem.arrays["batch"])
    x_streamed = np.concatenate([b["x"].numpy() for b in disk.batches(256)])
    np.testing.assert_array_equal(x_streamed, mem.arrays["x"].toarray())
    # library-size statistics of the latent library, from the streamed totals
    m_mem = CellVAE(adata, batch_key="sample", n_top_genes=400, library="latent")
    m_disk = CellVAE(path, backed=True, batch_key="sample", n_top_genes=400, library="latent")
    np.testing.assert_allclose(m_disk.module.library_log_mean, m_mem.module.library_log_mean, rtol=1e-6)
    np.testing.assert_allclose(m_disk.module.library_log_var, m_mem.module.library_log_var, rtol=1e-6)
    assert _sha(path) == before


def test_counts_source_raw_layer_and_errors(tmp_path):
    adata = pbmc_subset(300, 200)
    counts = adata.X.copy()
    adata.layers["counts"] = counts.copy()
    adata.raw = adata.copy()
    adata.X = sp.csr_matrix(np.log1p(counts.toarray()))
    path = tmp_path / "raw.h5ad"
    adata.write_h5ad(path)
    data, _, _, source = prepare_backed(path)
    assert source == "raw" and data.summary["counts_source"] == "raw"
    assert prepare_backed(path, layer="counts")[3] == "layers['counts']"
    with pytest.raises(ScivaeInputError, match="layer 'nope' is not in adata.layers"):
        prepare_backed(path, layer="nope")
    del adata.raw
    del adata.layers["counts"]
    adata.write_h5ad(tmp_path / "lognorm.h5ad")
    with pytest.raises(ScivaeInputError, match="looks log-normalised") as e:
        prepare_backed(tmp_path / "lognorm.h5ad")
    assert "\n" not in str(e.value)
    with pytest.raises(ScivaeInputError, match="batch key 'donor' is not a column"):
        prepare_backed(path, batch_key="donor")
    with pytest.raises(ScivaeInputError, match="backed=True streams a file"):
        prepare_backed(adata)  # an AnnData in memory


def test_csc_is_refused_and_dense_is_streamed(tmp_path):
    adata = pbmc_subset(300, 200)
    csc = adata.copy()
    csc.X = csc.X.tocsc()
    csc.write_h5ad(tmp_path / "csc.h5ad")
    with pytest.raises(ScivaeInputError, match=r"stored by columns \(CSC\).*tocsr\(\)") as e:
        BackedCounts(tmp_path / "csc.h5ad")
    assert "\n" not in str(e.value)
    dense = adata.copy()
    dense.X = dense.X.toarray()
    dense.write_h5ad(tmp_path / "dense.h5ad")
    data, genes, _, _ = prepare_backed(tmp_path / "dense.h5ad", chunk_rows=64)
    mem, genes_m, _, _ = prepare(adata)
    assert data.counts.dense and genes == genes_m
    np.testing.assert_array_equal(
        np.concatenate([b["x"].numpy() for b in data.batches(100)]), mem.arrays["x"].toarray()
    )


def _row_tagged(path: Path, n: int, chunk_rows: int) -> BackedCellData:
    """A tiny backed data set whose covariate ``row`` names each cell's file row."""
    rng = np.random.default_rng(0)
    ad.AnnData(sp.csr_matrix(rng.poisson(1.0, (n, 6)).astype(np.float32))).write_h5ad(path)
    counts = BackedCounts(path)
    return BackedCellData(counts, np.arange(6), {"row": np.arange(n)}, np.arange(n), {}, np.zeros(0), chunk_rows)


def test_stream_epochs_shuffle_chunks_and_windows(tmp_path):
    data = _row_tagged(tmp_path / "rows.h5ad", 1000, chunk_rows=50)
    rows = np.sort(np.random.default_rng(1).choice(1000, 700, replace=False))
    stream = _ChunkStream(data, rows, batch_size=64, shuffle=True, seed=3, window_chunks=3)
    epochs = []
    for _ in range(2):
        batches = [b["row"].numpy() for b in stream]
        assert len(batches) == len(stream) == math.ceil(700 / 64)
        seen = np.concatenate(batches)
        assert np.array_equal(np.sort(seen), rows)  # every training row once per epoch
        for b in batches:  # rows of one batch come from one window of chunks (and the rows left from the last)
            assert len(np.unique(b // 50)) <= 2 * 3
        epochs.append(seen)
    first_chunks = [np.unique(e[:64] // 50) for e in epochs]
    assert not np.array_equal(first_chunks[0], first_chunks[1])  # chunk order reshuffled every epoch
    assert not np.array_equal(np.sort(epochs[0][:64]), np.arange(64))  # not file order


@pytest.mark.parametrize("world", [2, 3])
def test_stream_shards_by_rank(world, tmp_path):
    data = _row_tagged(tmp_path / "rows.h5ad", 500, chunk_rows=40)
    rows = np.arange(0, 500, 2)[:-1]  # 249 rows, batch 62: a last batch of 1 row
    per_rank = [
        [b["row"].numpy() for b in _ChunkStream(data, rows, 62, True, 5, 2, rank=r, world=world)] for r in range(world)
    ]
    single = [b["row"].numpy() for b in _ChunkStream(data, rows, 62, True, 5, 2, rank=0, world=1)]
    assert len({len(p) for p in per_rank}) == 1
    seen = np.concatenate([np.concatenate(p) for p in per_rank])
    assert np.array_equal(np.sort(seen), rows)
    for i in range(len(per_rank[0]) - 1):  # the same global batches as one process
        assert np.array_equal(np.sort(np.concatenate([p[i] for p in per_rank])), np.sort(single[i]))


def test_backed_fit_embed_and_untouched_input(tmp_path):
    adata = _with_batches(pbmc_subset(600, 300))
    path = tmp_path / "cells.h5ad"
    adata.write_h5ad(path)
    before = _sha(path)
    model = CellVAE(path, backed=True, batch_key="sample", n_latent=4, n_hidden=32)
    model.fit(max_epochs=2, batch_size=128, progress_bar=False, accelerator="cpu")
    m = model.fit_result.metrics
    assert m["epochs_trained"] == 2 and m["n_obs_train"] == 540 and np.isfinite(m["elbo_validation"])
    z_stream = model.get_latent()
    z_mem = model.get_latent(adata)  # the same cells in memory
    np.testing.assert_allclose(z_stream, z_mem, rtol=1e-5, atol=1e-5)
    backed = ad.read_h5ad(path, backed="r")
    np.testing.assert_allclose(model.get_elbo(backed), model.get_elbo(adata), rtol=1e-5, atol=1e-3)
    backed.file.close()
    model.save(tmp_path / "model")
    loaded = CellVAE.load(tmp_path / "model", adata=str(path))
    np.testing.assert_allclose(loaded.get_latent(), z_mem, rtol=1e-5, atol=1e-5)
    with pytest.raises(ScivaeInputError, match="dense cells x genes"):
        model.get_normalized_expression()

    out = tmp_path / "embedded.h5ad"
    write_with_latent(path, out, "X_scivae", z_stream, {"note": "test"})
    written = ad.read_h5ad(out)
    assert (written.X != adata.X).nnz == 0 and written.obs_names.equals(adata.obs_names)
    np.testing.assert_array_equal(written.obsm["X_scivae"], z_stream)
    assert written.uns["scivae"]["note"] == "test"
    with h5py.File(path, "r") as f:
        assert "X_scivae" not in f.get("obsm", {})
    assert _sha(path) == before  # nothing written into the input
