"""Scanpy-style tools: ``scivae.tl.embed`` fits a count VAE and writes the embedding into the AnnData.

>>> scivae.tl.embed(adata, n_latent=10)
>>> sc.pp.neighbors(adata, use_rep="X_scivae"); sc.tl.leiden(adata); sc.tl.umap(adata)
"""

from __future__ import annotations

import inspect
from typing import TYPE_CHECKING, Any

import anndata as ad
import numpy as np

from scivae.errors import ScivaeInputError

if TYPE_CHECKING:
    from scivae.cells import CellVAE

__all__ = ["embed"]


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


def __dir__() -> list[str]:
    # tab completion and dir() show the public API, not the modules this one imports
    return list(__all__)
