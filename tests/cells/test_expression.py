"""The cells API around expression: ``layer=`` on every method that reads counts, denoised expression as a
DataFrame, posterior predictive counts, training curves of a loaded model, anomaly-score labels and gene colours.
Real PBMC cells throughout (the shared ``cell_model``: 800 cells x 300 genes, 20 epochs)."""

from __future__ import annotations

import warnings

import anndata as ad
import matplotlib
import numpy as np
import pandas as pd
import pytest
import scanpy as sc
import torch

import scivae
from scivae import latent, pl
from scivae.cells import CellVAE
from scivae.errors import ScivaeInputError
from tests.cells.conftest import pbmc_subset

matplotlib.use("Agg")


@pytest.fixture(scope="module")
def lognormalised(cell_model) -> ad.AnnData:
    """The model's cells as a scanpy user keeps them: counts in layers["counts"], X log-normalised."""
    adata = cell_model.adata.copy()
    adata.layers["counts"] = adata.X.copy()
    sc.pp.normalize_total(adata, target_sum=1e4)
    sc.pp.log1p(adata)
    return adata


def test_every_method_that_reads_counts_takes_layer(cell_model, lognormalised) -> None:
    counts = cell_model.adata
    with pytest.raises(ScivaeInputError, match="layer"):  # X is log-normalised: refused, naming the fix
        cell_model.get_latent(lognormalised)
    np.testing.assert_array_equal(cell_model.get_latent(lognormalised, layer="counts"), cell_model.get_latent(counts))
    np.testing.assert_array_equal(
        cell_model.get_latent(lognormalised, give_mean=False, seed=3, layer="counts"),
        cell_model.get_latent(counts, give_mean=False, seed=3),
    )
    for a, b in zip(
        cell_model.get_posterior(lognormalised, layer="counts"), cell_model.get_posterior(counts), strict=True
    ):
        np.testing.assert_array_equal(a, b)
    np.testing.assert_array_equal(cell_model.get_elbo(lognormalised, layer="counts"), cell_model.get_elbo(counts))
    np.testing.assert_array_equal(
        cell_model.get_marginal_ll(lognormalised, n_samples=5, layer="counts"),
        cell_model.get_marginal_ll(counts, n_samples=5),
    )
    pd.testing.assert_frame_equal(
        cell_model.get_normalized_expression(lognormalised, layer="counts"), cell_model.get_normalized_expression()
    )
    np.testing.assert_array_equal(
        cell_model.posterior_predictive_sample(lognormalised, layer="counts"), cell_model.posterior_predictive_sample()
    )
    with pytest.raises(ScivaeInputError, match="'nope' is not in adata.layers"):
        cell_model.get_latent(lognormalised, layer="nope")


def test_normalized_expression_is_a_dataframe(cell_model) -> None:
    cells = cell_model.adata
    expr = cell_model.get_normalized_expression()
    assert isinstance(expr, pd.DataFrame) and expr.shape == (800, 300)
    assert list(expr.index) == list(cells.obs_names) and list(expr.columns) == cell_model.genes
    np.testing.assert_allclose(expr.sum(1), 1.0, rtol=1e-4)  # library_size=1: the expression fractions
    per_10k = cell_model.get_normalized_expression(library_size=1e4)
    np.testing.assert_allclose(per_10k.to_numpy(), expr.to_numpy() * 1e4, rtol=1e-5)
    # the cell's own library: its observed total count
    own = cell_model.get_normalized_expression(library_size="latent")
    np.testing.assert_allclose(own.sum(1), np.asarray(cells.X.sum(1)).ravel(), rtol=1e-4)
    # genes: a subset in the order asked for; the values follow the counts of the genes
    genes = ["LYZ", "CD74", cell_model.genes[0]]
    some = cell_model.get_normalized_expression(gene_list=genes)
    assert list(some.columns) == genes
    pd.testing.assert_frame_equal(some, expr[genes])
    corr = np.corrcoef(np.log(expr.mean(0)), np.log1p(np.asarray(cells.X.mean(0)).ravel()))[0, 1]
    assert corr > 0.8
    # posterior samples: averaged by default, seeded, close to the decoded mean; or all of them
    mean5 = cell_model.get_normalized_expression(n_samples=5, seed=1)
    pd.testing.assert_frame_equal(mean5, cell_model.get_normalized_expression(n_samples=5, seed=1))
    assert (
        not np.allclose(mean5, expr)
        and np.corrcoef(np.log(mean5.to_numpy().ravel()), np.log(expr.to_numpy().ravel()))[0, 1] > 0.95
    )
    draws = cell_model.get_normalized_expression(n_samples=3, return_mean=False, gene_list=genes)
    assert draws.shape == (3, 800, 3) and not np.allclose(draws[0], draws[1])
    with pytest.raises(ScivaeInputError, match="not genes of the model"):
        cell_model.get_normalized_expression(gene_list=["NOT_A_GENE"])
    with pytest.raises(ScivaeInputError, match="library_size='observed'"):
        cell_model.get_normalized_expression(library_size="observed")


@pytest.mark.parametrize("likelihood", ["nb", "zinb", "poisson"])
def test_posterior_predictive_counts_look_like_the_data(likelihood) -> None:
    adata = pbmc_subset(500, 150, seed=4)
    torch.set_num_threads(1)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        model = CellVAE(adata, n_latent=6, n_hidden=64, likelihood=likelihood, seed=0)
        model.fit(max_epochs=15, kl_warmup=5, progress_bar=False)
    x = adata.X.toarray()
    draws = model.posterior_predictive_sample(n_samples=4, seed=0)
    assert draws.shape == (500, 150, 4) and draws.dtype == np.float32
    assert (draws >= 0).all() and np.array_equal(draws, np.round(draws))
    np.testing.assert_array_equal(model.posterior_predictive_sample(n_samples=4, seed=0), draws)
    assert not np.array_equal(model.posterior_predictive_sample(n_samples=4, seed=1), draws)
    one = model.posterior_predictive_sample(gene_list=model.genes[:2])
    assert one.shape == (500, 2)
    # per gene, the drawn means follow the observed ones; the cells' drawn totals follow their observed totals
    gene_corr = np.corrcoef(np.log1p(draws.mean((0, 2))), np.log1p(x.mean(0)))[0, 1]
    assert gene_corr > 0.95, gene_corr
    ratio = draws.sum(1).mean(1).sum() / x.sum()
    if likelihood == "zinb":  # the zero inflation only removes counts
        assert 0.6 < ratio < 1.05, ratio
    else:  # NB and Poisson means sum to the observed library exactly
        assert abs(ratio - 1) < 0.03, ratio
    # (zeros are not compared: after 15 epochs the NB dispersions are still near their start, theta = 1, and the
    # draws hold 17% zeros against 7% in these well-detected genes; Poisson 5%, measured)


def test_training_curves_of_a_loaded_model(cell_model, tmp_path) -> None:
    import matplotlib.pyplot as plt

    folder = cell_model.save(tmp_path / "model")
    loaded = scivae.load(folder)
    assert loaded.fit_result is None
    pd.testing.assert_frame_equal(loaded.history, cell_model.history.reset_index(drop=True), check_dtype=False)
    fig = pl.training_curves(loaded)
    (line,) = [ln for ln in fig.axes[0].lines if ln.get_label() == "elbo_validation"]
    np.testing.assert_allclose(line.get_ydata(), cell_model.history["elbo_validation"], rtol=1e-6)
    plt.close(fig)
    plt.close(pl.training_curves(scivae.load(tmp_path)))  # the folder that holds model/ works too
    (folder / "history.csv").unlink()
    with pytest.raises(ScivaeInputError, match="no fit record"):
        pl.training_curves(scivae.load(folder))


def test_anomaly_score_histogram_names_the_score(cell_model) -> None:
    import matplotlib.pyplot as plt

    iwae = latent.anomaly_scores(cell_model, method="iwae", n_samples=5)
    assert (
        iwae.method == "iwae"
        and np.ndim(iwae.mean()) == 0
        and not isinstance(iwae.mean(), np.ndarray)
        and iwae.shape == (800,)
    )
    fig = pl.anomaly_scores(iwae)
    label = fig.axes[0].get_xlabel()
    assert "importance-sampled -log p(x)" in label and "ELBO" not in label
    plt.close(fig)
    elbo = latent.anomaly_scores(cell_model)
    assert "negative ELBO" in pl.anomaly_scores(elbo).axes[0].get_xlabel()
    plt.close("all")
    plain = pl.anomaly_scores(np.asarray(iwae))  # a plain array does not say which score it is
    assert plain.axes[0].get_xlabel() == "anomaly score"
    assert "importance-sampled" in pl.anomaly_scores(np.asarray(iwae), method="iwae").axes[0].get_xlabel()
    assert "importance-sampled" in pl.anomaly_scores(cell_model, method="iwae").axes[0].get_xlabel()
    plt.close("all")


def test_gene_colours_are_log_normalised(cell_model) -> None:
    import matplotlib.pyplot as plt

    from scivae.pl.latent import gene_values

    cells = cell_model.adata.copy()
    cells.obsm["X_scivae"] = cell_model.get_latent()
    expected = sc.pp.log1p(sc.pp.normalize_total(cells, target_sum=1e4, copy=True), copy=True)[:, "LYZ"].X
    expected = np.asarray(expected.todense()).ravel()
    np.testing.assert_allclose(gene_values(cells, "LYZ"), expected, rtol=1e-5)
    raw = np.asarray(cells[:, "LYZ"].X.todense()).ravel()
    np.testing.assert_array_equal(gene_values(cells, "LYZ", normalize=False), raw)
    # values that are already log-normalised are kept as they are
    lognorm = sc.pp.log1p(sc.pp.normalize_total(cells, target_sum=1e4, copy=True), copy=True)
    np.testing.assert_allclose(gene_values(lognorm, "LYZ"), expected, rtol=1e-5)
    # the UMAP's colours are those values, not the counts (a layout is given: only the colours are under test)
    cells.obsm["X_umap"] = cells.obsm["X_scivae"][:, :2]
    cells.uns["neighbors"] = {"params": {"use_rep": "X_scivae"}}
    fig = pl.latent_umap(cells, color="LYZ")
    drawn = fig.axes[0].collections[0].get_array()
    np.testing.assert_allclose(np.sort(np.asarray(drawn)), np.sort(expected), rtol=1e-5)
    assert np.asarray(drawn).max() < raw.max()
    plt.close(fig)
