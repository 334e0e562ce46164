"""Scanpy-style tools: ``scivae.tl.embed`` fits a count VAE and writes the embedding into the AnnData;
``scivae.tl.rank_genes_groups`` ranks genes per group by the model's differential expression.

>>> scivae.tl.embed(adata, n_latent=10)
>>> sc.pp.neighbors(adata, use_rep="X_scivae"); sc.tl.leiden(adata); sc.tl.umap(adata)
>>> scivae.tl.rank_genes_groups(adata, model, groupby="leiden"); sc.pl.rank_genes_groups(adata)
"""

from __future__ import annotations

import inspect
from typing import TYPE_CHECKING, Any

import anndata as ad
import numpy as np

from scivae.errors import ScivaeInputError

if TYPE_CHECKING:
    from scivae.cells import CellVAE

__all__ = ["embed", "rank_genes_groups"]


def _jsonable(value: Any) -> Any:
    """Values storable in ``adata.uns`` and writable to .h5ad (no None, numpy scalars as Python ones)."""
    if isinstance(value, dict):
        return {str(k): _jsonable(v) for k, v in value.items() if v is not None}
    if isinstance(value, (list, tuple)):
        return [_jsonable(v) for v in value]
    if isinstance(value, (np.integer, np.floating, np.bool_)):
        return value.item()
    return value


def _param(value: Any) -> Any:
    return value if value is None or isinstance(value, (int, float, str, bool, list)) else str(value)


def embed(
    adata: ad.AnnData,
    *,
    layer: str | None = None,
    batch_key: str | None = None,
    n_latent: int = 10,
    max_epochs: int | None = None,
    key_added: str = "X_scivae",
    copy: bool = False,
    return_model: bool = False,
    **kwargs: Any,
) -> ad.AnnData | CellVAE | tuple[ad.AnnData, CellVAE] | None:
    """Fit a :class:`~scivae.CellVAE` on ``adata`` and store the latent means in ``adata.obsm[key_added]``.

    Every cell of ``adata`` gets a row, in ``obs`` order: cells without counts (left out of training) are
    embedded by the trained encoder like any other cell, so ``sc.pp.neighbors(adata, use_rep=key_added)``
    follows directly. Nothing else in ``adata`` is changed apart from ``uns["scivae"]``.

    Parameters
    ----------
    adata
        Cells x genes with raw counts (``layer``, else ``adata.raw`` if it holds counts, else ``X``).
    layer
        Layer holding the counts.
    batch_key
        ``obs`` column of the batch (conditional VAE).
    n_latent
        Latent dimensions.
    max_epochs
        Upper bound on epochs (``None``: scvi-tools' rule, see :func:`scivae.cells.default_max_epochs`).
    key_added
        ``obsm`` key of the embedding.
    copy
        Work on a copy and return it instead of modifying ``adata``.
    return_model
        Also return the trained :class:`~scivae.CellVAE` (for :mod:`scivae.latent` and :mod:`scivae.pl`).
    **kwargs
        Further arguments of :class:`~scivae.CellVAE` (``likelihood``, ``n_top_genes``, ``n_hidden``...) and
        training options of :meth:`~scivae.CellVAE.fit` (:class:`~scivae.core.options.TrainingOptions`:
        ``batch_size``, ``accelerator``, ``seed``, ``kl_schedule``...).

    Returns
    -------
    AnnData, CellVAE, (AnnData, CellVAE) or None
        The copy if ``copy=True``, the model if ``return_model=True`` (both, in that order, if both), else
        ``None``.

    Notes
    -----
    ``adata.uns["scivae"]`` receives ``params`` (model and fit arguments), ``metrics`` (final validation
    ELBO, reconstruction, KL, active units, epochs, time), ``data`` (counts source, filtered genes and
    cells) and ``key_added``.
    """
    from scivae.cells import CellVAE

    if not isinstance(adata, ad.AnnData):
        raise ScivaeInputError(f"embed needs an AnnData, got {type(adata).__name__}")
    from scivae.core.model.base import RUN_ARGS
    from scivae.core.options import FIELDS

    init_names = set(inspect.signature(CellVAE.__init__).parameters) - {"self", "adata"}
    unknown = set(kwargs) - init_names - FIELDS - RUN_ARGS
    if unknown:
        raise ScivaeInputError(
            f"unknown argument(s) {', '.join(sorted(unknown))}: see help(scivae.tl.embed) for the accepted ones"
        )
    init_kw = {k: v for k, v in kwargs.items() if k in init_names}
    fit_kw = {k: v for k, v in kwargs.items() if k not in init_names}
    target = adata.copy() if copy else adata
    model = CellVAE(target, layer=layer, batch_key=batch_key, n_latent=n_latent, **init_kw)
    model.fit(max_epochs=max_epochs, **fit_kw)
    latent = model.get_latent()
    assert model.fit_result is not None
    metrics = {k: v for k, v in model.fit_result.metrics.items() if not isinstance(v, list)}
    target.obsm[key_added] = latent
    params = {"layer": layer, "batch_key": batch_key, "n_latent": n_latent, "max_epochs": max_epochs}
    params.update(kwargs)
    target.uns["scivae"] = _jsonable(
        {
            "key_added": key_added,
            "params": {k: _param(v) for k, v in params.items()},
            "metrics": metrics,
            "data": model.data_summary,
            "genes": list(model.genes),
        }
    )
    returned = ([target] if copy else []) + ([model] if return_model else [])
    return returned[0] if len(returned) == 1 else (tuple(returned) if returned else None)


def rank_genes_groups(
    adata: ad.AnnData,
    model: CellVAE,
    groupby: str,
    groups: str | list[str] | None = None,
    reference: str = "rest",
    *,
    key_added: str = "rank_genes_groups",
    delta: float = 0.25,
    batch_correction: bool = False,
    n_samples: int = 5000,
    seed: int = 0,
    layer: str | None = None,
    copy: bool = False,
) -> ad.AnnData | None:
    """Rank genes per group with the model's Bayesian differential expression, in scanpy's format.

    For each group, :meth:`~scivae.CellVAE.differential_expression` of its cells against ``reference`` (change
    mode) gives ``P(LFC >= delta)``, the posterior probability that the gene is up in the group by at least
    ``delta`` (log2). ``adata.uns[key_added]`` then holds what ``sc.tl.rank_genes_groups`` writes, so that
    ``sc.pl.rank_genes_groups(adata)``, ``sc.get.rank_genes_groups_df`` and friends read it:

    * ``names``: the model's genes per group, most likely up first;
    * ``scores``: the log odds of being up, ``log(P(LFC >= delta) / (1 - P(LFC >= delta)))``;
    * ``logfoldchanges``: the posterior mean log2 fold change;
    * ``pvals``: not p-values but their Bayesian stand-in, ``1 - P(LFC >= delta)``: the posterior probability
      that the gene is *not* up in the group (small: confidently up);
    * ``pvals_adj``: the posterior expected false discovery rate of the ranked list down to the gene (the mean
      of ``pvals`` over it, non-decreasing down the ranks): ``sc.get.rank_genes_groups_df(adata, None,
      pval_cutoff=0.05)`` keeps, per group, the longest head of up genes whose expected FDR is at most 5%.

    Parameters
    ----------
    adata
        Cells with the model's genes and ``obs[groupby]``; the ranking is written into it.
    model
        A trained :class:`~scivae.CellVAE`.
    groupby
        ``obs`` column of the groups.
    groups
        Groups to rank (default: every value of ``obs[groupby]``, in category order, but the reference).
    reference
        ``"rest"`` (every other cell) or one value of ``obs[groupby]``.
    key_added
        ``uns`` key of the result.
    delta, batch_correction, n_samples, seed, layer
        As in :meth:`~scivae.CellVAE.differential_expression`.
    copy
        Write into a copy and return it.

    Returns
    -------
    AnnData or None
        The copy when ``copy=True``.
    """
    import pandas as pd

    if not isinstance(adata, ad.AnnData):
        raise ScivaeInputError(f"rank_genes_groups needs an AnnData, got {type(adata).__name__}")
    if groupby not in adata.obs.columns:
        raise ScivaeInputError(
            f"{{groupby}}={groupby!r} is not an obs column: use one of {', '.join(map(str, adata.obs.columns[:20]))}",
            "groupby",
        )
    column = adata.obs[groupby]
    values = [str(c) for c in column.cat.categories] if hasattr(column, "cat") else sorted(set(column.astype(str)))
    present = set(column.astype(str))
    values = [v for v in values if v in present]
    if reference != "rest" and reference not in present:
        raise ScivaeInputError(
            f"{{reference}}={reference!r} is not a value of obs[{groupby!r}]: use 'rest' or one of {', '.join(values)}",
            "reference",
        )
    chosen = values if groups is None else ([groups] if isinstance(groups, str) else [str(g) for g in groups])
    chosen = [g for g in chosen if g != reference]
    if not chosen:
        raise ScivaeInputError("no group to rank besides the reference: pass {groups} or another {reference}")
    target = adata.copy() if copy else adata
    names, scores, lfcs, pvals, padj = {}, {}, {}, {}, {}
    for group in chosen:
        de = model.differential_expression(
            target,
            groupby=groupby,
            group1=group,
            group2=None if reference == "rest" else reference,
            delta=delta,
            batch_correction=batch_correction,
            n_samples=n_samples,
            seed=seed,
            layer=layer,
        )
        p_up = de["proba_up"].to_numpy()
        # most likely up first; among equally likely ones (p = 1 for many strong genes) the larger change first
        order = np.lexsort((-de["lfc_mean"].to_numpy(), -p_up))
        not_up = 1.0 - p_up[order]
        names[group] = de.index.to_numpy()[order].astype(object)
        scores[group] = (np.log(p_up[order] + 1e-8) - np.log(not_up + 1e-8)).astype(np.float32)
        lfcs[group] = de["lfc_mean"].to_numpy()[order].astype(np.float32)
        pvals[group] = not_up
        padj[group] = np.cumsum(not_up) / np.arange(1, len(not_up) + 1)

    def records(columns: dict[str, np.ndarray]) -> np.recarray:
        return pd.DataFrame(columns).to_records(index=False)

    target.uns[key_added] = {
        "params": {
            "groupby": groupby,
            "reference": reference,
            "method": "scivae_change",
            "use_raw": False,
            "layer": layer,
            "corr_method": "posterior_expected_fdr",
            "delta": float(delta),
            "n_samples": int(n_samples),
            "batch_correction": bool(batch_correction),
            "seed": int(seed),
        },
        "names": records(names),
        "scores": records(scores),
        "logfoldchanges": records(lfcs),
        "pvals": records(pvals),
        "pvals_adj": records(padj),
    }
    if layer is None:  # h5ad cannot store None
        del target.uns[key_added]["params"]["layer"]
    return target if copy else None


def __dir__() -> list[str]:
    # tab completion and dir() show the public API, not the modules this one imports
    return list(__all__)
