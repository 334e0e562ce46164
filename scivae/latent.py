"""One latent-space toolkit for every scivae model: cells, molecules and dense tables alike.

Each function takes a trained model first and the model's own kind of data: an AnnData for a
:class:`~scivae.CellVAE` (items are cells, by ``obs`` name or position), SMILES strings for a
:class:`~scivae.MolVAE` (items are molecules), an array for a :class:`~scivae.dense.GaussianVAE` (items are row
numbers). ``data=None`` means the training data. Functions that decode return what the model's ``decode``
returns, one row per latent point: a DataFrame of molecules (``smiles``, ``valid``), an AnnData of denoised
expression (cells x genes), or a DataFrame of decoder means; the function adds its own columns (``t``,
``value``, ``distance``...) to it (to ``obs`` for an AnnData). Decoding options (``greedy``, ``temperature``,
``batch``, ``library_size``...) are passed through to the model's ``decode``.

>>> from scivae import latent
>>> z = latent.encode(model, adata)                                    # posterior means
>>> adata.obs["cluster"] = latent.cluster(model, adata, method="leiden")
>>> latent.interpolate(mol_model, "CCO", "c1ccccc1O", steps=8)         # molecules along the path
>>> scores = latent.anomaly_scores(model, adata)                       # negative ELBO per cell (nats)

Adapters plug in through four small hooks of :class:`~scivae.core.BaseModel` (``_labelled_arrays``,
``_item_arrays``, ``decode`` and optionally ``_annotate_decoded``); nothing here knows about a domain.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import numpy as np
import pandas as pd
import torch

from scivae.core.data.arrays import RowOutputs, iterate_batches
from scivae.core.model.base import BaseModel, select_rows
from scivae.core.seeding import cpu_generator, next_seed
from scivae.errors import ScivaeInputError

__all__ = [
    "anomaly_scores",
    "cluster",
    "decode",
    "encode",
    "interpolate",
    "latent_path",
    "nearest_neighbors",
    "reconstruct",
    "sample",
    "sample_around",
    "traverse",
]

INTERPOLATION_METHODS = ("slerp", "linear")
#: Most points decoded by one call (sample, sample_around) and on one path (interpolate): the points and their
#: decoded rows are held in memory together.
MAX_POINTS = 1_000_000
MAX_PATH_STEPS = 10_000


def _check_count(n: Any, name: str, minimum: int, maximum: int) -> int:
    """``n`` as an int in [minimum, maximum], or :class:`~scivae.errors.OptionError` naming the option."""
    from scivae.core.options import positive_int
    from scivae.errors import OptionError

    n = positive_int(n, name, minimum=minimum)
    if n > maximum:
        raise OptionError(f"{{{name}}}={n} is over the limit of {maximum} at once: use fewer", name)
    return n
_LATENT = "_latent_points"
CLUSTER_METHODS = ("leiden", "kmeans")
ANOMALY_METHODS = ("elbo", "iwae")


def _trained(model: Any) -> BaseModel:
    if not isinstance(model, BaseModel):
        raise ScivaeInputError(f"expected a scivae model (CellVAE, MolVAE, GaussianVAE), got {type(model).__name__}")
    model._require_trained()
    return model


def _with_columns(out: Any, columns: dict[str, Any], *, front: bool = False) -> Any:
    """Add columns to a decoded DataFrame, or to the ``obs`` of a decoded AnnData."""
    frame = out.obs if hasattr(out, "obs") else out
    if not isinstance(frame, pd.DataFrame):
        raise TypeError(f"decode returned {type(out).__name__}: expected a DataFrame or an AnnData")
    if front:
        for i, (name, values) in enumerate(columns.items()):
            if name in frame:
                del frame[name]
            frame.insert(i, name, np.asarray(values))
    else:
        for name, values in columns.items():
            frame[name] = np.asarray(values)
    return out


def _repeat(arrays: dict[str, Any], n: int) -> dict[str, Any]:
    return select_rows(arrays, np.zeros(n, dtype=np.int64))


@torch.no_grad()
def _log_likelihood(model: BaseModel, arrays: dict[str, Any], z: np.ndarray, batch_size: int = 512) -> np.ndarray:
    """``log p(x_i | z_i)`` in nats for each row ``i`` of the items' ``arrays`` and latent points ``z``."""
    device = model._ready()
    out = RowOutputs(len(z))
    for batch in iterate_batches({**arrays, _LATENT: z}, batch_size, device):
        zb = batch.pop(_LATENT)
        out.add(model.module.log_likelihood(batch, zb))
    return out.result()[0]


def _posterior_of_items(model: BaseModel, items: Sequence[Any], data: Any):
    labels, arrays = model._item_arrays(list(items), data)
    mu, logvar = model._posterior_from_arrays(arrays)
    return labels, arrays, mu, logvar


# -- encoding ----------------------------------------------------------------------------------------------
def encode(
    model: BaseModel, data: Any = None, *, give_mean: bool = True, seed: int | None = 0, batch_size: int = 1024
) -> np.ndarray:
    """Latent posterior means (or one posterior sample each, seeded) of every item of ``data``.

    Returns
    -------
    numpy.ndarray
        ``(n_items, n_latent)`` float32, in the order of ``data``.
    """
    return _trained(model).get_latent(data, give_mean=give_mean, batch_size=batch_size, seed=seed)


def decode(model: BaseModel, z: np.ndarray, **options: Any) -> Any:
    """Decode latent points ``(n, n_latent)`` (molecules, denoised expression or decoder means)."""
    z = np.asarray(z, dtype=np.float32)
    if z.ndim != 2 or z.shape[1] != _trained(model).n_latent:
        raise ScivaeInputError(f"z must have shape (n, {model.n_latent}), got {z.shape}")
    return model.decode(z, **options)


def reconstruct(model: BaseModel, data: Any = None, **options: Any) -> Any:
    """Encode every item of ``data`` to its posterior mean and decode it again.

    The result has one row per item with the item's label in ``input``, ``log_likelihood`` (``log p(x | mu)``
    of the item at its own code, nats) and the adapter's comparison with the item (molecules: ``similarity``,
    Tanimoto, and ``same``).
    """
    labels, arrays = _trained(model)._labelled_arrays(data)
    mu, _ = model._posterior_from_arrays(arrays)
    out = model.decode(mu, like=arrays, **options)
    _with_columns(out, {"input": labels}, front=True)
    _with_columns(out, {"log_likelihood": _log_likelihood(model, arrays, mu)})
    return _with_columns(out, model._annotate_decoded(out, labels, arrays))


# -- clustering --------------------------------------------------------------------------------------------
def cluster(
    model_or_latent: BaseModel | np.ndarray,
    data: Any = None,
    *,
    method: str = "leiden",
    n_clusters: int | None = None,
    resolution: float = 1.0,
    n_neighbors: int = 15,
    seed: int = 0,
) -> pd.Categorical:
    """Cluster items in the latent space: Leiden on a kNN graph (scanpy) or k-means (scikit-learn).

    Parameters
    ----------
    model_or_latent
        A trained model (its posterior means of ``data`` are clustered) or a latent matrix ``(n, n_latent)``.
    data
        The model's data (``None``: the training data).
    method
        ``"leiden"`` (``sc.pp.neighbors`` with ``n_neighbors``, then ``sc.tl.leiden`` at ``resolution``) or
        ``"kmeans"`` (``n_clusters`` clusters).
    seed
        Seed of the neighbour graph and Leiden, or of k-means' initialisations.

    Returns
    -------
    pandas.Categorical
        One label per item (``"0"`` is the largest cluster), ready for ``adata.obs[...] = ``.
    """
    if method not in CLUSTER_METHODS:
        raise ScivaeInputError(f"unknown clustering method {method!r}: use 'leiden' or 'kmeans'")
    z = encode(model_or_latent, data) if isinstance(model_or_latent, BaseModel) else np.asarray(model_or_latent)
    if z.ndim != 2 or len(z) < 2:
        raise ScivaeInputError(f"clustering needs a latent matrix of at least 2 items, got shape {z.shape}")
    if method == "kmeans":
        if n_clusters is None or not 1 <= int(n_clusters) <= len(z):
            raise ScivaeInputError(f"k-means needs n_clusters between 1 and {len(z)}, got {n_clusters}")
        from sklearn.cluster import KMeans

        labels = KMeans(n_clusters=int(n_clusters), n_init=10, random_state=seed).fit_predict(z)
        order = np.argsort(-np.bincount(labels), kind="stable")  # "0" = the largest cluster, as scanpy's Leiden
        rank = np.empty_like(order)
        rank[order] = np.arange(len(order))
        return pd.Categorical([str(r) for r in rank[labels]], categories=[str(i) for i in range(len(order))])
    try:
        import anndata as ad
        import scanpy as sc
    except ImportError:
        raise ScivaeInputError(
            "Leiden clustering needs scanpy: pip install 'scivae[cells]', or use method='kmeans'"
        ) from None
    graph = ad.AnnData(obs=pd.DataFrame(index=[str(i) for i in range(len(z))]), obsm={"X_latent": z})
    sc.pp.neighbors(graph, use_rep="X_latent", n_neighbors=min(int(n_neighbors), len(z) - 1), random_state=seed)
    sc.tl.leiden(graph, resolution=resolution, random_state=seed, flavor="igraph", n_iterations=2, directed=False)
    return pd.Categorical(graph.obs["leiden"].astype(str), categories=list(graph.obs["leiden"].cat.categories))


# -- moving through the latent space -----------------------------------------------------------------------
def _check_path(steps: int, method: str) -> None:
    if int(steps) < 2:
        raise ScivaeInputError(f"steps must be >= 2 (the two end points included), got {steps}")
    _check_count(steps, "steps", 2, MAX_PATH_STEPS)
    if method not in INTERPOLATION_METHODS:
        raise ScivaeInputError(f"unknown interpolation method {method!r}: use 'slerp' or 'linear'")


def latent_path(za: np.ndarray, zb: np.ndarray, steps: int = 10, method: str = "slerp") -> np.ndarray:
    """``steps`` points from ``za`` to ``zb`` (both included): straight (``"linear"``) or along the great
    circle (``"slerp"``, which keeps the norms typical of the prior instead of cutting through its centre)."""
    _check_path(steps, method)
    za, zb = np.asarray(za, dtype=np.float64), np.asarray(zb, dtype=np.float64)
    t = np.linspace(0.0, 1.0, int(steps))
    cos = float(np.dot(za, zb) / (np.linalg.norm(za) * np.linalg.norm(zb) + 1e-12))
    omega = math.acos(max(-1.0, min(1.0, cos)))
    if method == "linear" or omega < 1e-6:
        return ((1 - t)[:, None] * za + t[:, None] * zb).astype(np.float32)
    path = (np.sin((1 - t) * omega)[:, None] * za + np.sin(t * omega)[:, None] * zb) / math.sin(omega)
    return path.astype(np.float32)


def interpolate(
    model: BaseModel,
    a: Any,
    b: Any,
    *,
    steps: int = 10,
    method: str = "slerp",
    data: Any = None,
    **options: Any,
) -> Any:
    """Decode ``steps`` points on the path between the posterior means of items ``a`` and ``b``.

    Cells are decoded with ``a``'s covariates (batch...) unless ``batch=`` says otherwise. The result gets a
    first column ``t`` (0 at ``a``, 1 at ``b``).
    """
    _check_path(steps, method)
    _, arrays, mu, _ = _posterior_of_items(_trained(model), [a, b], data)
    path = latent_path(mu[0], mu[1], steps, method)
    out = model.decode(path, like=_repeat(select_rows(arrays, [0]), len(path)), **options)
    return _with_columns(out, {"t": np.linspace(0.0, 1.0, len(path))}, front=True)


def sample(model: BaseModel, n: int, *, seed: int | None = None, prior: str | None = None, **options: Any) -> Any:
    """Decode ``n`` points drawn from the model's prior.

    ``prior``: ``None`` (default) draws from the learned prior when the model has one (see
    :meth:`~scivae.core.BaseModel.fit_prior`), else from ``N(0, I)``; ``"learned"`` or ``"standard"`` choose.
    ``seed`` seeds the points (drawn on the CPU, so the same on every device) and, plus one, any sampling in
    the decoder: the same seed gives the same result on one machine.
    """
    _trained(model)
    if int(n) < 1:
        raise ScivaeInputError(f"n must be >= 1, got {n}")
    _check_count(n, "n", 1, MAX_POINTS)
    density = model.get_prior(prior)
    generator, s = cpu_generator(seed)
    z = density.sample(int(n), generator).numpy()
    return model.decode(z, seed=next_seed(s), **options)


def sample_around(
    model: BaseModel,
    item: Any,
    n: int = 10,
    *,
    scale: float = 1.0,
    data: Any = None,
    seed: int | None = None,
    **options: Any,
) -> Any:
    """Decode ``n`` points around one item: ``z = mu + scale * sigma * eps`` with ``eps ~ N(0, I)``.

    ``mu`` and ``sigma`` are the item's posterior mean and standard deviation, so ``scale`` is in units of the
    encoder's own uncertainty: at 1 the points are codes the encoder could have given this very item.

    Returns
    -------
    DataFrame or AnnData
        The decoded points with ``distance`` (latent distance from ``mu``), ``log_likelihood`` (``log p(x | z)``
        of the item at each point, nats: how well the point still explains the item) and the adapter's
        comparison with the item (molecules: ``similarity``, Tanimoto, and ``same``).
    """
    if int(n) < 1 or not scale >= 0:
        raise ScivaeInputError(f"need n >= 1 and scale >= 0, got n={n}, scale={scale}")
    _check_count(n, "n", 1, MAX_POINTS)
    labels, arrays, mu, logvar = _posterior_of_items(_trained(model), [item], data)
    generator, s = cpu_generator(seed)
    eps = torch.randn(int(n), model.n_latent, generator=generator).numpy()
    z = (mu + scale * np.exp(0.5 * logvar) * eps).astype(np.float32)
    like = _repeat(arrays, int(n))
    out = model.decode(z, like=like, seed=next_seed(s), **options)
    _with_columns(out, {"distance": np.linalg.norm(z - mu, axis=1), "log_likelihood": _log_likelihood(model, like, z)})
    return _with_columns(out, model._annotate_decoded(out, labels * int(n), like))


def traverse(
    model: BaseModel,
    dim: int,
    *,
    values: Sequence[float] | np.ndarray | None = None,
    item: Any = None,
    data: Any = None,
    **options: Any,
) -> Any:
    """Decode points that differ only in latent dimension ``dim``, set to each of ``values``.

    The other dimensions stay at ``item``'s posterior mean, or at the prior mean 0 when no item is given.
    ``values`` defaults to -3 to 3 prior standard deviations in 7 steps. The result gets a first column
    ``value``.
    """
    _trained(model)
    if not 0 <= int(dim) < model.n_latent:
        raise ScivaeInputError(f"dim must be between 0 and {model.n_latent - 1}, got {dim}")
    grid = np.linspace(-3.0, 3.0, 7) if values is None else np.asarray(values, dtype=np.float64).ravel()
    if grid.size == 0:
        raise ScivaeInputError("values is empty: pass the values of the latent dimension to decode")
    like = None
    start = np.zeros(model.n_latent, dtype=np.float32)
    if item is not None:
        _, arrays, mu, _ = _posterior_of_items(model, [item], data)
        start, like = mu[0], _repeat(arrays, grid.size)
    z = np.repeat(start[None, :], grid.size, axis=0).astype(np.float32)
    z[:, int(dim)] = grid
    out = model.decode(z, like=like, **options)
    return _with_columns(out, {"value": grid}, front=True)


# -- scores and neighbours ---------------------------------------------------------------------------------
#: What each anomaly method scores, as plots label it.
ANOMALY_LABELS = {"elbo": "negative ELBO", "iwae": "importance-sampled -log p(x)"}


class AnomalyScores(np.ndarray):
    """A float array of anomaly scores that remembers the ``method`` that made it (``"elbo"`` or ``"iwae"``), so
    that :func:`scivae.pl.anomaly_scores` labels them right; otherwise an ordinary array."""

    method: str | None = None

    def __array_finalize__(self, obj: Any) -> None:
        self.method = getattr(obj, "method", None)

    def __array_wrap__(self, arr: Any, context: Any = None, return_scalar: bool = False) -> Any:
        out = super().__array_wrap__(arr, context, return_scalar)
        # reductions (mean, max...) give plain numbers, as they do on an ordinary array
        return out[()] if isinstance(out, np.ndarray) and out.ndim == 0 else out


def anomaly_scores(
    model: BaseModel,
    data: Any = None,
    *,
    method: str = "elbo",
    n_samples: int | None = None,
    seed: int | None = 0,
) -> np.ndarray:
    """Per-item anomaly score: the negative ELBO (``"elbo"``) or the negative importance-sampled log-likelihood
    (``"iwae"``), in nats. Higher means the model explains the item worse.

    The score counts nats over the whole item, so it grows with the amount of data in it (a cell's counts, a
    molecule's tokens): rank items of similar size against each other, or divide by the size.

    ``n_samples``: Monte-Carlo samples per item (default 1 for the ELBO, 100 for IWAE); ``seed`` seeds them.

    Returns
    -------
    AnomalyScores
        A float array, one score per item, whose ``method`` attribute says which score it holds.
    """
    if method not in ANOMALY_METHODS:
        raise ScivaeInputError(f"unknown anomaly method {method!r}: use 'elbo' or 'iwae'")
    _trained(model)
    if method == "elbo":
        scores = -model.get_elbo(data, n_samples=n_samples or 1, seed=seed)
    else:
        scores = -model.get_marginal_ll(data, n_samples=n_samples or 100, seed=seed)
    out = np.asarray(scores).view(AnomalyScores)
    out.method = method
    return out


def nearest_neighbors(model: BaseModel, item: Any, data: Any = None, *, k: int = 10) -> pd.DataFrame:
    """The ``k`` items of ``data`` whose posterior means lie closest (Euclidean) to ``item``'s.

    ``item`` is an item of the model's kind (a molecule, or a cell of ``data`` by name or position); entries
    with the item's own label are left out.

    Returns
    -------
    pandas.DataFrame
        ``item`` (label), ``position`` (row in ``data``) and ``distance``, nearest first.
    """
    if int(k) < 1:
        raise ScivaeInputError(f"k must be >= 1, got {k}")
    (query,), _, mu, _ = _posterior_of_items(_trained(model), [item], data)
    labels, arrays = model._labelled_arrays(data)
    z = model._latent_from_arrays(arrays)
    dist = np.linalg.norm(z - mu[0], axis=1)
    keep = np.flatnonzero(np.asarray(labels, dtype=object) != query)
    best = keep[np.argsort(dist[keep], kind="stable")[: int(k)]]
    return pd.DataFrame({"item": [labels[i] for i in best], "position": best, "distance": dist[best]})


def __dir__() -> list[str]:
    # tab completion and dir() show the public API, not the modules this one imports
    return list(__all__)
