"""Every scivae.pl function draws a non-empty PNG without a display, returns its figure, and takes ``ax``."""

from __future__ import annotations

import matplotlib

matplotlib.use("Agg")  # as on a machine without a display

import matplotlib.pyplot as plt
import numpy as np
import pytest
from matplotlib.figure import Figure

from scivae import latent, pl
from scivae.errors import ScivaeInputError
from scivae.pl import report
from scivae.pl.report import write_fit_report


def _png(path) -> bool:
    data = path.read_bytes()
    return data[:8] == b"\x89PNG\r\n\x1a\n" and len(data) > 2000


@pytest.fixture(autouse=True)
def _close_figures():
    yield
    plt.close("all")


@pytest.mark.parametrize("draw", [pl.training_curves, pl.kl_per_dim, pl.rate_distortion])
def test_fit_plots_from_a_model_and_from_a_fit_folder(draw, cell_model, tmp_path) -> None:
    fig = draw(cell_model, save=tmp_path / "a.png")
    assert isinstance(fig, Figure) and _png(tmp_path / "a.png")
    write_fit_report(tmp_path / "fit", cell_model.fit_result)
    fig = draw(tmp_path / "fit", save=tmp_path / "b.png")
    assert _png(tmp_path / "b.png")


def test_the_report_draws_with_scivae_pl() -> None:
    assert {draw for _, draw in report.PLOTS.values()} == {pl.training_curves, pl.kl_per_dim, pl.rate_distortion}


def test_kl_plot_shows_the_threshold_and_mutual_information(cell_model) -> None:
    fig, ax = plt.subplots()
    assert pl.kl_per_dim(cell_model, ax=ax) is fig
    title = ax.get_title()
    collapse = cell_model.fit_result.collapse
    assert f"{collapse.active_units}/8 active units" in title and f"I(x;z) {collapse.mutual_information:.2f}" in title
    twin = [a for a in fig.axes if a is not ax][0]
    assert any(line.get_ydata()[0] == 0.01 for line in twin.get_lines())  # the active-unit threshold


def test_curves_take_one_axes_per_panel(cell_model) -> None:
    fig, axes = plt.subplots(1, 2)
    assert pl.training_curves(cell_model, panels=["elbo", "kl"], ax=axes) is fig
    assert axes[0].get_title() == "ELBO" and len(axes[1].get_lines()) == 3
    with pytest.raises(ScivaeInputError, match="one Axes per panel"):
        pl.training_curves(cell_model, panels=["elbo", "kl"], ax=axes[0])
    with pytest.raises(ScivaeInputError, match="no fit record"):
        pl.training_curves(object())


def test_latent_umap_of_an_anndata_and_of_a_model(cell_model, tmp_path) -> None:
    adata = cell_model.adata.copy()
    adata.obsm["X_scivae"] = latent.encode(cell_model)
    adata.obs["cluster"] = latent.cluster(cell_model, method="kmeans", n_clusters=3)
    before = set(adata.obsm) | set(adata.uns)
    fig = pl.latent_umap(adata, color=["cluster", "LYZ"], save=tmp_path / "u.png")
    assert isinstance(fig, Figure) and _png(tmp_path / "u.png")
    assert set(adata.obsm) | set(adata.uns) == before  # computed on a light copy
    fig, ax = plt.subplots()
    assert pl.latent_umap(cell_model, color="cluster", data=adata, ax=ax, save=tmp_path / "v.png") is fig
    assert _png(tmp_path / "v.png")
    with pytest.raises(ScivaeInputError, match="neither an obs column nor a gene"):
        pl.latent_umap(adata, color="nothing")
    del adata.obsm["X_scivae"]
    with pytest.raises(ScivaeInputError, match="run scivae.tl.embed"):
        pl.latent_umap(adata)


def test_anomaly_histogram(cell_model, tmp_path) -> None:
    scores = latent.anomaly_scores(cell_model)
    fig = pl.anomaly_scores(scores, top=10, save=tmp_path / "a.png")
    assert _png(tmp_path / "a.png")
    cut = [line for line in fig.axes[0].get_lines() if line.get_label().startswith("top 10")]
    assert cut and cut[0].get_xdata()[0] == pytest.approx(np.sort(scores)[-10])
    pl.anomaly_scores(cell_model, method="elbo", save=tmp_path / "b.png")
    assert _png(tmp_path / "b.png")


def test_molecule_grid_with_smiles_legends(mol_model, tmp_path) -> None:
    path = mol_model.interpolate("CC(=O)Nc1ccc(O)cc1", "CC(C)Cc1ccc(C(C)C(=O)O)cc1", steps=4)
    fig = pl.molecules(path, save=tmp_path / "path.png")
    assert _png(tmp_path / "path.png")
    legends = [t.get_text() for t in fig.axes[0].texts]
    assert len(legends) == 4 and legends[0].endswith("t=0.00") and legends[-1].endswith("t=1.00")
    for text, smiles, valid in zip(legends, path["smiles"], path["valid"], strict=True):
        assert text.startswith(smiles[:20] if valid else "invalid: ")
    fig = pl.molecules(["CCO", "c1ccccc1O", "not a molecule"], n_cols=2, save=tmp_path / "list.png")
    assert _png(tmp_path / "list.png") and fig.axes[0].texts[2].get_text().startswith("invalid: ")
    nb = mol_model.neighbors("CC(=O)Nc1ccc(O)cc1", n=6, seed=0)
    pl.molecules(nb, color="distance", save=tmp_path / "nb.png")
    assert _png(tmp_path / "nb.png")
