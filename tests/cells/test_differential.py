"""Differential expression (``CellVAE.differential_expression``) and ``scivae.tl.rank_genes_groups`` on the real
interferon-beta PBMCs: stimulated monocytes must show the interferon response."""

from __future__ import annotations

import warnings

import anndata as ad
import matplotlib
import numpy as np
import pytest
import torch

from scivae.cells import CellVAE
from scivae.cells.differential import fdr_calls
from scivae.datasets import ifnb
from scivae.errors import ScivaeInputError

matplotlib.use("Agg")

#: Interferon-stimulated genes of the bundled gene set (datasets/ifnb/README.md); the first five are the core.
ISGS = ["ISG15", "IFI6", "IFIT1", "IFIT3", "MX1", "IFIT2", "ISG20", "OAS1", "LY6E", "IFITM3", "RSAD2"]
CORE_ISGS = ISGS[:5]
#: Markers of CD14 monocytes among the bundled genes (the data set has no cell-type labels).
MONOCYTE_MARKERS = ["LYZ", "S100A8", "S100A9", "FCN1", "CST3"]
FIT = {"max_epochs": 30, "progress_bar": False}


def ifnb_cells() -> ad.AnnData:
    """All 2,000 IFN-beta PBMCs x the 400 genes detected in most cells (every gene above among them), with
    ``obs["cell_type"]``: "CD14 Mono" for cells with at least 10 counts of the monocyte markers (about a fifth of
    each condition, as CD14 monocytes in PBMCs), else "other"."""
    adata = ifnb()
    detected = np.asarray((adata.X > 0).sum(0)).ravel()
    adata = adata[:, np.sort(np.argsort(-detected, kind="stable")[:400])].copy()
    markers = np.asarray(adata[:, MONOCYTE_MARKERS].X.sum(1)).ravel()
    adata.obs["cell_type"] = np.where(markers >= 10, "CD14 Mono", "other")
    return adata


def _fit(adata: ad.AnnData, **kwargs) -> CellVAE:
    torch.set_num_threads(1)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return CellVAE(adata, n_latent=10, n_hidden=64, seed=0, **kwargs).fit(**FIT)


@pytest.fixture(scope="module")
def cells() -> ad.AnnData:
    return ifnb_cells()


@pytest.fixture(scope="module")
def model(cells) -> CellVAE:
    """No batch key: the condition lives in the latent space (30 epochs, about 2 s on one core)."""
    return _fit(cells)


@pytest.fixture(scope="module")
def monocytes(cells) -> ad.AnnData:
    mono = cells[cells.obs["cell_type"] == "CD14 Mono"].copy()
    assert 150 < (mono.obs["condition"] == "stim").sum() < 300 and 150 < (mono.obs["condition"] == "ctrl").sum() < 300
    return mono


def test_stimulated_monocytes_put_interferon_genes_at_the_top(model, monocytes) -> None:
    de = model.differential_expression(monocytes, groupby="condition", group1="stim", group2="ctrl")
    expected = {"lfc_mean", "lfc_median", "lfc_std", "proba_de", "proba_not_de", "bayes_factor", "scale1", "scale2"}
    assert expected | {"raw_mean1", "raw_mean2", "is_de_fdr_0.05"} <= set(de.columns)
    assert de.index.name == "gene" and sorted(de.index) == sorted(model.genes)
    # sorted by proba_de, then |lfc_mean|
    assert de["proba_de"].is_monotonic_decreasing
    rank = {gene: i for i, gene in enumerate(de.index)}
    # measured (seed 0): core ISGs at 0-based ranks 2-9 of 400, the eleven ISGs at 1-15, core ones up 4.4-6.6 log2
    assert max(rank[g] for g in CORE_ISGS) < 30, {g: rank[g] for g in ISGS}
    assert np.median([rank[g] for g in ISGS]) < 40
    assert (de.loc[CORE_ISGS, "lfc_mean"] > 2).all() and de.loc[CORE_ISGS, "is_de_fdr_0.05"].all()
    assert (de.loc[CORE_ISGS, "bayes_factor"] > 3).all()
    np.testing.assert_allclose(de["proba_de"] + de["proba_not_de"], 1.0)
    np.testing.assert_allclose(de["bayes_factor"], np.log(de["proba_de"] + 1e-8) - np.log(de["proba_not_de"] + 1e-8))
    # the decoded scales follow the counts: stimulated monocytes hold many more ISG15 counts
    assert de.loc["ISG15", "scale1"] > 10 * de.loc["ISG15", "scale2"]
    assert de.loc["ISG15", "raw_mean1"] > 10 * de.loc["ISG15", "raw_mean2"]
    # the same seed gives the same table; another seed the same top genes
    again = model.differential_expression(monocytes, groupby="condition", group1="stim", group2="ctrl")
    assert again.equals(de)
    other = model.differential_expression(monocytes, groupby="condition", group1="stim", group2="ctrl", seed=1)
    assert not other.equals(de) and max(list(other.index).index(g) for g in CORE_ISGS) < 30


def test_two_halves_of_one_group_show_no_change(model, monocytes) -> None:
    """The null: control monocytes split at random differ in nothing the model can see."""
    ctrl = monocytes[monocytes.obs["condition"] == "ctrl"].copy()
    ctrl.obs["half"] = np.where(np.random.default_rng(0).random(ctrl.n_obs) < 0.5, "a", "b")
    de = model.differential_expression(ctrl, groupby="half", group1="a")
    # measured: no gene called, largest |lfc_mean| 0.2 (against 4-7 for the ISGs after stimulation)
    assert de["is_de_fdr_0.05"].sum() == 0
    assert de["lfc_mean"].abs().max() < 1.0


def test_batch_correction_decodes_under_every_batch(cells, monocytes) -> None:
    """With the condition as batch key, the stimulation lives in the decoder: decoding every cell under both
    conditions (batch_correction) removes most of it, decoding each under its own keeps it."""
    batch_model = _fit(cells, batch_key="condition")
    args = {"groupby": "condition", "group1": "stim", "group2": "ctrl"}
    own = batch_model.differential_expression(monocytes, **args)
    corrected = batch_model.differential_expression(monocytes, batch_correction=True, **args)
    # measured: mean core-ISG log2 fold change 5.6 under own batches, 2.3 corrected (ratio 0.42)
    assert own.loc[CORE_ISGS, "lfc_mean"].mean() > 3
    assert corrected.loc[CORE_ISGS, "lfc_mean"].mean() < 0.7 * own.loc[CORE_ISGS, "lfc_mean"].mean()
    assert corrected["is_de_fdr_0.05"].sum() < own["is_de_fdr_0.05"].sum()


def test_vanilla_mode(model, monocytes) -> None:
    de = model.differential_expression(monocytes, groupby="condition", group1="stim", group2="ctrl", mode="vanilla")
    assert {"proba_m1", "proba_m2", "bayes_factor"} <= set(de.columns) and "proba_de" not in de
    assert (de.loc[CORE_ISGS, "proba_m1"] > 0.95).all()
    assert de["bayes_factor"].abs().is_monotonic_decreasing


def test_fdr_rule_is_scvi_tools() -> None:
    p = np.array([0.99, 0.2, 0.97, 0.9, 0.6])
    # sorted: 0.99, 0.97, 0.9, 0.6, 0.2 -> expected FDR 0.01, 0.02, 0.0467, 0.135, 0.268
    np.testing.assert_array_equal(fdr_calls(p, 0.05), [True, False, True, True, False])
    np.testing.assert_array_equal(fdr_calls(p, 0.015), [True, False, False, False, False])
    assert not fdr_calls(p, 0.001).any()


def test_bad_groups_name_the_fix(model, monocytes) -> None:
    with pytest.raises(ScivaeInputError, match=r"groupby='cell_typo' is not an obs column.*condition"):
        model.differential_expression(monocytes, groupby="cell_typo", group1="stim")
    with pytest.raises(ScivaeInputError, match=r"group1=STIM is not a value of obs\['condition'\]: use one of"):
        model.differential_expression(monocytes, groupby="condition", group1="STIM")
    with pytest.raises(ScivaeInputError, match="share cells"):
        model.differential_expression(monocytes, groupby="condition", group1="stim", group2=["stim", "ctrl"])
    with pytest.raises(ScivaeInputError, match="no cell is outside"):
        model.differential_expression(monocytes, groupby="cell_type", group1="CD14 Mono")
    with pytest.raises(ScivaeInputError, match="batch_correction needs a model trained with a batch key"):
        model.differential_expression(monocytes, groupby="condition", group1="stim", batch_correction=True)
    with pytest.raises(ScivaeInputError, match="delta"):
        model.differential_expression(monocytes, groupby="condition", group1="stim", delta=-1)


def test_rank_genes_groups_is_drawn_by_scanpy(model, cells, tmp_path) -> None:
    import matplotlib.pyplot as plt
    import scanpy as sc

    from scivae import tl

    adata = cells.copy()
    assert tl.rank_genes_groups(adata, model, groupby="cell_type", n_samples=2000) is None
    result = adata.uns["rank_genes_groups"]
    assert result["params"]["groupby"] == "cell_type" and result["params"]["reference"] == "rest"
    assert set(result["names"].dtype.names) == {"CD14 Mono", "other"}
    for key in ("scores", "logfoldchanges", "pvals", "pvals_adj"):
        assert result[key].dtype.names == result["names"].dtype.names and len(result[key]) == len(model.genes)
    top = list(result["names"]["CD14 Mono"][:15])
    # measured: LYZ first, S100A9 and S100A8 9th and 13th (the group was defined by these markers' counts)
    assert "LYZ" in top[:5] and len({"S100A8", "S100A9", "CD14", "MS4A7", "FCN1", "CST3"} & set(top)) >= 1, top
    scores = result["scores"]["CD14 Mono"]
    assert np.all(np.diff(scores) <= 1e-6) and (result["logfoldchanges"]["CD14 Mono"][:10] > 0).all()
    padj = result["pvals_adj"]["CD14 Mono"]
    # random pairs of cells leave about 5 % of the draws of even the top markers below delta (measured 0.055 for
    # the first gene, under 0.05 with an earlier random stream of the fit), so the bound is 0.1, not 0.05
    assert np.all(np.diff(padj) >= -1e-12) and padj[0] < 0.1
    # scanpy reads it: the plot, the table with its cut-off, and the .h5ad round trip
    plt.close("all")
    sc.pl.rank_genes_groups(adata, n_genes=10, show=False)
    texts = [t.get_text() for ax in plt.gcf().axes for t in ax.texts]
    assert top[0] in texts and len(plt.gcf().axes) >= 2
    plt.close("all")
    table = sc.get.rank_genes_groups_df(adata, group="CD14 Mono")
    assert len(table) == len(model.genes) and list(table["names"][:5]) == top[:5]
    assert len(sc.get.rank_genes_groups_df(adata, group="CD14 Mono", pval_cutoff=0.1)) == (padj <= 0.1).sum()
    adata.write_h5ad(tmp_path / "ranked.h5ad")
    assert list(ad.read_h5ad(tmp_path / "ranked.h5ad").uns["rank_genes_groups"]["names"]["CD14 Mono"][:5]) == top[:5]
    # one group against a named reference; a reference that is not a group is refused
    tl.rank_genes_groups(adata, model, groupby="condition", groups="stim", reference="ctrl", key_added="stim")
    stim = list(adata.uns["stim"]["names"]["stim"][:20])
    assert adata.uns["stim"]["names"].dtype.names == ("stim",) and len(set(CORE_ISGS) & set(stim)) >= 4, stim
    # the genes up at an expected FDR of 5% (all cell types pooled, so P(up) stays below 0.98): measured 21 of
    # 400, every one an interferon-response gene, the five core ISGs among them
    up = sc.get.rank_genes_groups_df(adata, group="stim", key="stim", pval_cutoff=0.05)
    assert len(up) >= 10 and set(CORE_ISGS) <= set(up["names"])
    with pytest.raises(ScivaeInputError, match="reference='nope' is not a value"):
        tl.rank_genes_groups(adata, model, groupby="condition", reference="nope")
