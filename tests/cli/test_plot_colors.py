"""`scivae plot --color GENE`: genes are coloured by log-normalised counts (per 10,000, log1p), not raw counts."""

from __future__ import annotations

import matplotlib
import numpy as np
import pytest
import scanpy as sc

from scivae import pl
from scivae_cli.plot import cell_umap_png
from tests.cells.conftest import pbmc_subset

matplotlib.use("Agg")


@pytest.fixture()
def drawn(monkeypatch) -> dict[str, np.ndarray]:
    """The colour values of the UMAP that ``cell_umap_png`` draws (before it closes the figure)."""
    seen: dict[str, np.ndarray] = {}
    real = pl.latent_umap

    def spy(*args, **kwargs):
        fig = real(*args, **kwargs)
        seen["values"] = np.asarray(fig.axes[0].collections[0].get_array())
        return fig

    monkeypatch.setattr(pl, "latent_umap", spy)
    return seen


def _embedded(layer: str | None):
    """Real PBMC cells as `scivae fit` writes them (the latent, uns["scivae"]), with a layout already made."""
    adata = pbmc_subset(300, 300, seed=5)
    rng = np.random.default_rng(0)
    adata.obsm["X_scivae"] = rng.normal(size=(adata.n_obs, 4)).astype(np.float32)
    adata.obsm["X_umap"] = adata.obsm["X_scivae"][:, :2]
    adata.uns["neighbors"] = {"params": {"use_rep": "X_scivae"}}  # the layout is reused: only colours are tested
    adata.uns["scivae"] = {"key_added": "X_scivae", "params": {} if layer is None else {"layer": layer}}
    return adata


def test_gene_colours_are_log_normalised_counts(drawn, tmp_path) -> None:
    adata = _embedded(None)
    expected = sc.pp.log1p(sc.pp.normalize_total(adata, target_sum=1e4, copy=True), copy=True)[:, "LYZ"].X
    expected = np.sort(np.asarray(expected.todense()).ravel())
    raw = np.asarray(adata[:, "LYZ"].X.todense()).ravel()
    cell_umap_png(tmp_path / "u.png", adata, ["LYZ"])
    assert (tmp_path / "u.png").read_bytes()[:4] == b"\x89PNG"
    np.testing.assert_allclose(np.sort(drawn["values"]), expected, rtol=1e-5)
    assert drawn["values"].max() < np.log1p(1e4) < raw.max()  # not the counts themselves
    # counts in the layer the model was fitted on, X already log-normalised: the same colours
    layered = _embedded("counts")
    layered.layers["counts"] = layered.X.copy()
    sc.pp.normalize_total(layered, target_sum=1e4)
    sc.pp.log1p(layered)
    layered.X = layered.X * 3.0  # whatever X holds, the colours come from the counts layer
    cell_umap_png(tmp_path / "v.png", layered, ["LYZ"])
    np.testing.assert_allclose(np.sort(drawn["values"]), expected, rtol=1e-5)
