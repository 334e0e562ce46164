"""scivae.tl.embed inside a scanpy workflow."""

from __future__ import annotations

import numpy as np
import pytest
import scanpy as sc
import scipy.sparse as sp
import torch

import scivae
from scivae.errors import ScivaeInputError
from tests.cells.conftest import pbmc_subset

FAST = {"progress_bar": False, "kl_warmup": 10}


@pytest.fixture(autouse=True)
def _one_thread():
    torch.set_num_threads(1)  # small models: see tests/cells/conftest.py


def test_embed_then_scanpy_neighbors_and_leiden(tmp_path) -> None:
    adata = pbmc_subset(500, 250, seed=11)
    x = adata.X.tolil()
    x[7, :] = 0  # an empty cell: left out of training, still embedded
    adata.X = sp.csr_matrix(x)
    obs_before, x_before = adata.obs.copy(), adata.X.copy()
    assert scivae.tl.embed(adata, n_latent=6, max_epochs=8, n_hidden=64, batch_size=64, **FAST) is None
    z = adata.obsm["X_scivae"]
    assert z.shape == (500, 6) and np.isfinite(z).all()
    uns = adata.uns["scivae"]
    assert {"key_added", "params", "metrics", "data", "genes"} <= set(uns)
    assert uns["params"]["n_latent"] == 6 and uns["params"]["n_hidden"] == 64 and uns["params"]["batch_size"] == 64
    assert uns["metrics"]["epochs_trained"] == 8 and "elbo_validation" in uns["metrics"]
    assert uns["metrics"]["active_units"] >= 2 and not uns["metrics"]["collapsed"]
    assert uns["data"]["n_cells_empty"] == 1 and uns["data"]["n_cells_trained"] == 499
    assert (adata.X != x_before).nnz == 0 and adata.obs.equals(obs_before)
    # method="gauss" avoids ~30 s of numba compilation of umap-learn in a unit test; the default method
    # consumes use_rep the same way
    sc.pp.neighbors(adata, use_rep="X_scivae", n_neighbors=10, method="gauss")
    sc.tl.leiden(adata, resolution=0.5, flavor="igraph", n_iterations=2, directed=False)
    assert adata.obsp["connectivities"].shape == (500, 500)
    assert adata.obs["leiden"].nunique() >= 2
    adata.write_h5ad(tmp_path / "out.h5ad")  # uns stays serialisable


def test_embed_copy_and_key_added() -> None:
    adata = pbmc_subset(300, 120, seed=12)
    out, model = scivae.tl.embed(
        adata, n_latent=3, max_epochs=2, key_added="X_vae", copy=True, return_model=True, n_hidden=32, **FAST
    )
    assert out is not adata and out.obsm["X_vae"].shape == (300, 3)
    assert isinstance(model, scivae.CellVAE) and model.adata is out
    np.testing.assert_array_equal(scivae.latent.encode(model), out.obsm["X_vae"])
    assert "X_vae" not in adata.obsm and "scivae" not in adata.uns
    assert out.uns["scivae"]["key_added"] == "X_vae"


def test_embed_errors() -> None:
    adata = pbmc_subset(100, 50, seed=13)
    with pytest.raises(ScivaeInputError, match="unknown argument"):
        scivae.tl.embed(adata, n_latnet=3)
    with pytest.raises(ScivaeInputError, match="batch key 'sample' is not a column"):
        scivae.tl.embed(adata, batch_key="sample")
    lognorm = adata.copy()
    sc.pp.normalize_total(lognorm)
    sc.pp.log1p(lognorm)
    with pytest.raises(ScivaeInputError, match="looks log-normalised"):
        scivae.tl.embed(lognorm)
