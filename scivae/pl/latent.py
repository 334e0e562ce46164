"""Pictures of the latent space: its UMAP (through scanpy) and the distribution of anomaly scores."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from scivae.core.model.base import BaseModel
from scivae.errors import ScivaeInputError
from scivae.pl.fit import _new_axes, finish

if TYPE_CHECKING:
    from matplotlib.axes import Axes
    from matplotlib.figure import Figure

#: obsm key of the latent means (as written by ``scivae.tl.embed`` and ``scivae fit``).
LATENT_KEY = "X_scivae"
#: Counts per cell that gene colours are normalised to before ``log1p`` (scanpy's ``normalize_total`` default).
TARGET_SUM = 1e4


def _holds_counts(matrix: Any) -> bool:
    """Whether ``matrix`` holds raw counts: non-negative integers (its stored values, or the first 1,000 rows)."""
    values = matrix.data if hasattr(matrix, "data") and hasattr(matrix, "indptr") else np.asarray(matrix[:1000])
    values = np.asarray(values).ravel()
    return bool(values.size) and bool((values >= 0).all()) and bool(np.equal(np.mod(values, 1), 0).all())


def gene_values(adata: Any, gene: str, *, layer: str | None = None, normalize: bool | None = None) -> np.ndarray:
    """One gene's values per cell, for colouring: ``log1p(count / cell total * 1e4)`` for counts (scanpy's
    ``normalize_total`` + ``log1p``), so that deep cells do not look like high expressers.

    Parameters
    ----------
    adata
        The cells.
    gene
        A name of ``adata.var_names``.
    layer
        Layer to read (default: ``X``).
    normalize
        Log-normalise (``True``), use the values as they are (``False``), or decide from the data (``None``):
        normalise raw counts (non-negative integers), keep anything else (already normalised values).
    """
    if layer is not None and layer not in adata.layers:
        raise ScivaeInputError(f"layer {layer!r} is not in adata.layers: pass an existing layer or leave it out")
    matrix = adata.layers[layer] if layer is not None else adata.X
    column = matrix[:, adata.var_names.get_loc(gene)]
    values = np.asarray(column.todense() if hasattr(column, "todense") else column, dtype=np.float64).ravel()
    if normalize is None:
        normalize = _holds_counts(matrix)
    if not normalize:
        return values
    totals = np.asarray(matrix.sum(1), dtype=np.float64).ravel()
    return np.log1p(np.divide(values * TARGET_SUM, totals, out=np.zeros_like(values), where=totals > 0))


def _umap_view(adata: Any, z: np.ndarray, use_rep: str, n_neighbors: int, seed: int) -> Any:
    """A light AnnData (``obs`` and the latent only) with a UMAP of ``z``; the caller's object is not changed.

    A UMAP already in ``adata`` is reused when scanpy's neighbour graph there was built on ``use_rep``.
    """
    import anndata as ad
    import scanpy as sc

    view = ad.AnnData(obs=adata.obs.copy(), obsm={use_rep: np.asarray(z)})
    built_on = adata.uns.get("neighbors", {}).get("params", {}).get("use_rep")
    if "X_umap" in adata.obsm and built_on == use_rep:
        view.obsm["X_umap"] = np.asarray(adata.obsm["X_umap"])
        return view
    sc.pp.neighbors(view, use_rep=use_rep, n_neighbors=min(n_neighbors, view.n_obs - 1), random_state=seed)
    sc.tl.umap(view, random_state=seed)
    return view


def latent_umap(
    adata_or_model: Any,
    *,
    color: str | Sequence[str] | None = None,
    data: Any = None,
    use_rep: str = LATENT_KEY,
    n_neighbors: int = 15,
    seed: int = 0,
    title: str | Sequence[str] | None = None,
    layer: str | None = None,
    normalize: bool | None = None,
    ax: Axes | Sequence[Axes] | None = None,
    show: bool | None = None,
    save: str | Path | None = None,
    **kwargs: Any,
) -> Figure:
    """UMAP of the latent space (scanpy's ``pp.neighbors`` + ``tl.umap``), coloured by ``obs`` columns or genes.

    Parameters
    ----------
    adata_or_model
        An AnnData holding the latent in ``obsm[use_rep]`` (as ``scivae.tl.embed`` writes it), or a trained
        :class:`~scivae.CellVAE` (its latent of ``data``, default the training AnnData).
    color
        ``obs`` column(s) or gene name(s); one panel each. Genes are coloured by their log-normalised counts
        (see ``normalize``).
    data
        Cells to embed when a model is given.
    use_rep, n_neighbors, seed
        Latent key, neighbours of the kNN graph, seed of the graph and the layout. A UMAP already computed in
        the AnnData on the same ``use_rep`` is reused; otherwise it is computed on a light copy (the AnnData
        given is never modified).
    title
        Panel title(s), as in ``sc.pl.umap``.
    layer
        Layer the gene colours are read from (default: ``X``).
    normalize
        Gene colours as ``log1p(counts / cell total * 1e4)`` (``True``), as stored (``False``), or (``None``, the
        default) log-normalised when the values are raw counts and as stored otherwise (:func:`gene_values`).
    ax
        An Axes for one colour, or one Axes per colour; default: a new figure.
    show, save
        ``plt.show()``; save path. The figure is returned in every case.
    **kwargs
        Passed to ``sc.pl.umap`` (``palette``, ``legend_loc``, ``size``...).
    """
    try:
        import anndata as ad
        import scanpy as sc
    except ImportError:
        raise ScivaeInputError("latent_umap needs scanpy: pip install 'scivae[cells]'") from None
    if isinstance(adata_or_model, BaseModel):
        adata = data if data is not None else getattr(adata_or_model, "adata", None)
        if not isinstance(adata, ad.AnnData):
            raise ScivaeInputError("pass data= (an AnnData) to draw the UMAP of a model without attached cells")
        z = adata_or_model.get_latent(adata)
    elif isinstance(adata_or_model, ad.AnnData):
        adata = adata_or_model
        if use_rep not in adata.obsm:
            raise ScivaeInputError(
                f"adata.obsm has no {use_rep!r}: run scivae.tl.embed(adata) first, or pass use_rep= or the model"
            )
        z = adata.obsm[use_rep]
    else:
        raise ScivaeInputError(f"expected an AnnData or a CellVAE, got {type(adata_or_model).__name__}")
    view = _umap_view(adata, z, use_rep, n_neighbors, seed)
    colors = [color] if isinstance(color, str) else list(color or [])
    for key in colors:
        if key in view.obs:
            continue
        if key not in adata.var_names:
            raise ScivaeInputError(f"{key!r} is neither an obs column nor a gene of the AnnData: pass one of those")
        view.obs[key] = gene_values(adata, key, layer=layer, normalize=normalize)
    import matplotlib.pyplot as plt

    if isinstance(ax, (list, tuple, np.ndarray)):  # one Axes per colour
        axes = list(np.ravel(ax))
        if len(axes) != max(len(colors), 1):
            raise ScivaeInputError(f"pass one Axes per color: {len(colors)} colors, {len(axes)} Axes")
        titles = [title] * len(axes) if title is None or isinstance(title, str) else list(title)
        for a, c, t in zip(axes, colors or [None], titles, strict=False):
            sc.pl.umap(view, color=c, title=t, ax=a, show=False, **kwargs)
        return finish(axes[0].figure, show, save)
    if ax is not None and len(colors) > 1:
        raise ScivaeInputError("ax= takes one panel: pass one Axes per color, or ax=None for a new figure")
    if ax is None and len(colors) <= 1:
        fig, ax = plt.subplots(figsize=(5.5, 4.5), layout="constrained")
    elif ax is None:
        kwargs.setdefault("wspace", 0.45)  # room for categorical legends between the panels
    drawn = sc.pl.umap(view, color=colors or None, title=title, ax=ax, show=False, **kwargs)
    if ax is not None:
        fig = ax.figure
    else:
        first = drawn[0] if isinstance(drawn, list) else drawn
        fig = first.figure if first is not None else plt.gcf()
    return finish(fig, show, save)


def anomaly_scores(
    scores_or_model: Any,
    data: Any = None,
    *,
    method: str | None = None,
    key: str = "scivae_anomaly",
    top: int | None = None,
    bins: int = 50,
    color: str = "tab:blue",
    ax: Axes | None = None,
    show: bool | None = None,
    save: str | Path | None = None,
) -> Figure:
    """Histogram of anomaly scores (negative ELBO or negative importance-sampled log-likelihood, in nats).

    Parameters
    ----------
    scores_or_model
        The scores (an array, such as :func:`scivae.latent.anomaly_scores` returns), an AnnData with them in
        ``obs[key]``, or a trained model (scores of ``data`` computed by :func:`scivae.latent.anomaly_scores`
        with ``method``).
    method
        Which score: ``"elbo"`` (negative ELBO) or ``"iwae"`` (importance-sampled ``-log p(x)``); it labels the
        axis. Default: the method the scores remember (arrays from :func:`scivae.latent.anomaly_scores`, or
        ``uns[key]["method"]`` of an AnnData), ``"elbo"`` for a model, else an unnamed score.
    top
        Mark the score above which the ``top`` most anomalous items lie.
    """
    from scivae.latent import ANOMALY_LABELS, ANOMALY_METHODS

    if method is not None and method not in ANOMALY_METHODS:
        raise ScivaeInputError(f"unknown anomaly method {method!r}: use 'elbo' or 'iwae'")
    if isinstance(scores_or_model, BaseModel):
        from scivae import latent

        method = method or "elbo"
        scores = latent.anomaly_scores(scores_or_model, data, method=method)
    elif hasattr(scores_or_model, "obs"):
        if key not in scores_or_model.obs:
            raise ScivaeInputError(f"adata.obs has no {key!r}: store scivae.latent.anomaly_scores there, or pass key=")
        scores = scores_or_model.obs[key].to_numpy()
        saved = scores_or_model.uns.get(key)
        method = method or (saved.get("method") if isinstance(saved, dict) else None)
    else:
        scores = scores_or_model
        method = method or getattr(scores, "method", None)  # scivae.latent.anomaly_scores remembers its method
    scores = np.asarray(scores, dtype=float).ravel()
    scores = scores[np.isfinite(scores)]
    if scores.size == 0:
        raise ScivaeInputError("no finite anomaly score to plot")
    fig, ax = _new_axes(ax, (5.5, 3.8))
    ax.hist(scores, bins=bins, color=color)
    if top is not None and 0 < int(top) <= scores.size:
        cut = float(np.sort(scores)[-int(top)])
        ax.axvline(cut, color="tab:red", ls="--", lw=1, label=f"top {int(top)} (>= {cut:.1f})")
        ax.legend(fontsize=8)
    what = ANOMALY_LABELS.get(method or "")
    ax.set_xlabel(f"anomaly score: {what} (nats)" if what else "anomaly score")
    ax.set_ylabel("items")
    ax.set_title(f"anomaly scores of {scores.size} items (median {np.median(scores):.1f})", fontsize=10)
    return finish(fig, show, save)
