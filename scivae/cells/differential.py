"""Bayesian differential expression from a trained :class:`~scivae.CellVAE`, as scvi-tools' ``change`` mode.

For two groups of cells, the decoder's expression fractions ("scales", which sum to 1 over the genes) are drawn
from the model's posterior: cells of each group are taken in turn (every cell as often as the others, in a
seeded random order), each with one sample of z from its posterior, and decoded under the cell's own covariates
or, with ``batch_correction``, under every training batch in turn and averaged. Pairs of draws, one per group,
give the log fold change ``LFC = log2(scale1 + eps) - log2(scale2 + eps)`` of every gene, and from its
distribution:

* ``proba_de = P(|LFC| >= delta)``, ``bayes_factor = log(proba_de / (1 - proba_de))`` (natural log);
* the genes called DE at a target false discovery rate: the genes sorted by ``proba_de``, the longest head
  whose posterior expected FDR, the mean of ``1 - proba_de`` over the head, is at most ``fdr_target``
  (scvi-tools' rule).

``mode="vanilla"`` instead reports ``P(scale1 > scale2)`` (``proba_m1``) and its log odds.

References: Lopez et al., "Deep generative modeling for single-cell transcriptomics", Nature Methods (2018);
Boyeau et al., "An empirical Bayes method for differential expression analysis of single cells with deep
generative models", PNAS (2023); scvi-tools' ``DifferentialComputation``.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

import anndata as ad
import numpy as np
import pandas as pd
import scipy.sparse as sp
import torch

from scivae.cells.streaming import BackedCellData
from scivae.core.options import positive_int
from scivae.errors import ScivaeInputError

if TYPE_CHECKING:
    from scivae.cells.model import CellVAE

MODES = ("change", "vanilla")
#: Keeps the log odds of a probability of 0 or 1 finite (scvi-tools' value).
#: Mean count per cell below which a gene counts as unexpressed in a group, for the pseudocount (as scvi-tools).
RAW_MEAN_UNEXPRESSED = 0.01
_EPS = 1e-8
#: Covariate arrays the decoder reads (the counts themselves are not needed to decode).
_COVARIATES = ("batch", "cat", "cont")


def group_masks(
    obs: pd.DataFrame, groupby: str, group1: str | Sequence[str], group2: str | Sequence[str] | None
) -> tuple[np.ndarray, np.ndarray, str, str]:
    """Boolean masks of the cells of ``group1`` and ``group2`` (``None``: every other cell) and their names."""
    if not isinstance(groupby, str) or groupby not in obs.columns:
        choices = ", ".join(map(str, obs.columns[:20])) or "none"
        raise ScivaeInputError(
            f"{{groupby}}={groupby!r} is not an obs column of the cells: use one of {choices}", "groupby"
        )
    labels = obs[groupby].astype(str).to_numpy()
    values = list(dict.fromkeys(labels))
    shown = ", ".join(values[:20]) + (" ..." if len(values) > 20 else "")

    def mask(group: str | Sequence[str], option: str) -> tuple[np.ndarray, str]:
        wanted = [group] if isinstance(group, str) else [str(g) for g in group]
        unknown = [g for g in wanted if g not in set(values)]
        if not wanted or unknown:
            raise ScivaeInputError(
                f"{{{option}}}={', '.join(unknown) or '(none)'} is not a value of obs[{groupby!r}]: use one of {shown}",
                option,
            )
        return np.isin(labels, wanted), ",".join(wanted)

    m1, name1 = mask(group1, "group1")
    if group2 is None:
        m2, name2 = ~m1, "rest"
    else:
        m2, name2 = mask(group2, "group2")
        if (m1 & m2).any():
            raise ScivaeInputError("{group1} and {group2} share cells: pass two different groups", "group1", "group2")
    if not m2.any():
        raise ScivaeInputError(
            f"no cell is outside {{group1}}={name1} in obs[{groupby!r}]: pass {{group2}} or cells of other groups",
            "group1",
            "group2",
        )
    return m1, m2, name1, name2


@torch.no_grad()
def sample_scales(
    model: CellVAE,
    arrays: dict[str, Any],
    rows: np.ndarray,
    posterior: tuple[np.ndarray, np.ndarray],
    n_samples: int,
    *,
    batch_correction: bool,
    rng: np.random.Generator,
    generator: torch.Generator,
    batch_size: int = 1024,
) -> np.ndarray:
    """``n_samples`` draws of the expression fractions of the cells ``rows``: ``(n_samples, n_genes)`` float32.

    Each cell is drawn as often as the others (plus or minus one), each draw with a fresh z from the cell's
    posterior ``(mu, logvar)`` (rows aligned with ``arrays``); decoded under the cell's covariates, or under every
    training batch and averaged (``batch_correction``).
    """
    mu, logvar = posterior
    pick = rows[np.resize(rng.permutation(len(rows)), n_samples)]
    eps = torch.randn(n_samples, mu.shape[1], generator=generator)  # on the CPU: the same draws on every device
    z_all = torch.as_tensor(mu[pick]) + torch.as_tensor(np.exp(0.5 * logvar[pick])) * eps
    cond_all = {k: np.asarray(v)[pick] for k, v in arrays.items() if k in _COVARIATES}
    batches = range(model.encoder.n_batches) if batch_correction else [None]
    device = model._ready()
    out = np.empty((n_samples, len(model.genes)), dtype=np.float32)
    for start in range(0, n_samples, batch_size):
        part = slice(start, min(start + batch_size, n_samples))
        z = z_all[part].to(device)
        cond = {k: torch.as_tensor(v[part]).to(device) for k, v in cond_all.items()}
        total = None
        for b in batches:
            if b is not None:
                cond["batch"] = torch.full((z.shape[0],), b, dtype=torch.long, device=device)
            scale = model.module.expression_fractions(z, cond)
            total = scale if total is None else total + scale
        out[part] = (total / len(batches)).cpu().numpy()
    return out


def estimate_pseudocount(
    scales1: np.ndarray, scales2: np.ndarray, zero1: np.ndarray, zero2: np.ndarray, quantile: float = 0.9
) -> float:
    """scvi-tools' pseudocount (1.4.2, ``estimate_pseudocounts_offset``): per group, the ``quantile`` quantile of the
    largest drawn scale of the genes barely seen in it (``zero1``/``zero2``: mean count < 0.01), the larger of the
    two groups' divided by the number of genes, at least 1e-10. It shrinks the LFCs of unexpressed genes to 0."""
    eps = [
        float(np.quantile(scales.max(0)[zero], quantile)) if zero.any() else 1e-10
        for scales, zero in ((scales1, zero1), (scales2, zero2))
    ]
    return max(max(eps) / scales1.shape[1], 1e-10)


def fdr_calls(proba_de: np.ndarray, fdr_target: float) -> np.ndarray:
    """Which genes are called DE at posterior expected FDR <= ``fdr_target`` (scvi-tools' rule, see the module)."""
    order = np.argsort(-proba_de, kind="stable")
    expected_fdr = np.cumsum(1.0 - proba_de[order]) / np.arange(1, len(order) + 1)
    calls = np.zeros(len(proba_de), dtype=bool)
    calls[order[: int((expected_fdr <= fdr_target).sum())]] = True
    return calls


def _raw_summary(x: Any, rows: np.ndarray) -> dict[str, np.ndarray]:
    """Per-gene mean count, share of cells with a count, and mean count per 10,000 of the cells ``rows``."""
    counts = x[rows]
    counts = counts.tocsr() if sp.issparse(counts) else sp.csr_matrix(np.asarray(counts))
    totals = np.asarray(counts.sum(1)).ravel()
    per_10k = sp.diags(1e4 / np.maximum(totals, 1.0)) @ counts
    return {
        "raw_mean": np.asarray(counts.mean(0)).ravel(),
        "non_zeros_proportion": np.asarray((counts > 0).mean(0)).ravel(),
        "raw_normalized_mean": np.asarray(per_10k.mean(0)).ravel(),
    }


def _lfc_statistics(lfc: np.ndarray, delta: float, block: int = 128) -> dict[str, np.ndarray]:
    """Per gene of the drawn log fold changes ``lfc`` (draws x genes): mean, median, std, min, max, and the shares
    of draws with ``LFC >= delta`` (``proba_up``), ``<= -delta`` (``proba_down``) and ``|LFC| >= delta``
    (``proba_beyond``).

    Taken ``block`` genes at a time, each block copied gene by gene (contiguous draws: the median's partition and
    the reductions run along memory): the temporaries stay a few MB and are reused, where whole-array ones (a
    float64 copy for the std alone is 8 bytes x draws x genes) cost page faults on a first call.
    """
    n_genes = lfc.shape[1]
    out = {k: np.empty(n_genes) for k in ("lfc_mean", "lfc_median", "lfc_std", "lfc_min", "lfc_max")}
    out.update({k: np.empty(n_genes) for k in ("proba_up", "proba_down", "proba_beyond")})
    for start in range(0, n_genes, block):
        genes = slice(start, min(start + block, n_genes))
        b = np.ascontiguousarray(lfc[:, genes].T)
        out["lfc_mean"][genes] = b.mean(1, dtype=np.float64)
        out["lfc_std"][genes] = b.std(1, dtype=np.float64)
        out["lfc_min"][genes], out["lfc_max"][genes] = b.min(1), b.max(1)
        out["proba_up"][genes] = (b >= delta).mean(1)
        out["proba_down"][genes] = (b <= -delta).mean(1)
        out["proba_beyond"][genes] = (np.abs(b) >= delta).mean(1)
        out["lfc_median"][genes] = np.median(b, axis=1, overwrite_input=True)  # last: it reorders b
    return out


def _log_odds(p: np.ndarray) -> np.ndarray:
    return np.log(p + _EPS) - np.log(1.0 - p + _EPS)


def differential_expression(
    model: CellVAE,
    adata: ad.AnnData | None = None,
    *,
    groupby: str,
    group1: str | Sequence[str],
    group2: str | Sequence[str] | None = None,
    mode: str = "change",
    delta: float = 0.25,
    batch_correction: bool = False,
    n_samples: int = 5000,
    fdr_target: float = 0.05,
    pseudocount: float | None = None,
    seed: int = 0,
    layer: str | None = None,
    batch_size: int = 1024,
) -> pd.DataFrame:
    """Differential expression of the cells of ``group1`` against ``group2`` (default: all other cells).

    Parameters
    ----------
    model
        A trained :class:`~scivae.CellVAE`.
    adata
        Cells with the model's genes and ``obs[groupby]`` (default: the training AnnData), in memory.
    groupby
        ``obs`` column of the groups.
    group1, group2
        One value of ``obs[groupby]`` or several (their cells pooled); ``group2=None``: every cell not in
        ``group1``.
    mode
        ``"change"`` (LFC beyond ``delta``, see the module docstring) or ``"vanilla"`` (``P(scale1 > scale2)``).
    delta
        Smallest absolute log2 fold change that counts as a change.
    batch_correction
        Decode every cell under every training batch and average (the model needs a batch key); otherwise each
        cell under its own.
    n_samples
        Draws of the expression of each group.
    fdr_target
        Target posterior expected false discovery rate of the ``is_de_fdr_<fdr_target>`` calls.
    pseudocount
        Added to the scales before the logs; ``None``: estimated as scvi-tools does
        (:func:`estimate_pseudocount`).
    seed
        Seed of the draws: the same seed gives the same table (on one machine).
    layer
        Layer of ``adata`` holding the raw counts (default: the model's).
    batch_size
        Draws per forward pass of the decoder.

    Returns
    -------
    pandas.DataFrame
        One row per gene, indexed by gene name, sorted by ``proba_de`` then ``|lfc_mean|`` (change mode) or by
        ``|bayes_factor|`` (vanilla): ``proba_de``, ``proba_not_de``, ``bayes_factor``, ``proba_up``
        (``P(LFC >= delta)``), ``proba_down``, ``lfc_mean``, ``lfc_median``, ``lfc_std``, ``lfc_min``,
        ``lfc_max`` (log2), ``scale1``, ``scale2`` (mean drawn fractions), ``raw_mean1/2``,
        ``non_zeros_proportion1/2``, ``raw_normalized_mean1/2`` (counts per 10,000), ``is_de_fdr_<target>``,
        and ``comparison``, ``group1``, ``group2``, ``delta``; in vanilla mode ``proba_m1``, ``proba_m2`` and
        ``bayes_factor`` instead of the change-mode probabilities.
    """
    if mode not in MODES:
        raise ScivaeInputError(f"{{mode}}={mode!r} is unknown: use 'change' or 'vanilla'", "mode")
    if not (isinstance(delta, (int, float)) and delta >= 0):
        raise ScivaeInputError(f"{{delta}}={delta} must be a number >= 0 (a log2 fold change)", "delta")
    if not (isinstance(fdr_target, (int, float)) and 0 < fdr_target < 1):
        raise ScivaeInputError(f"{{fdr_target}}={fdr_target} must be between 0 and 1", "fdr_target")
    if pseudocount is not None and not pseudocount >= 0:
        raise ScivaeInputError(f"{{pseudocount}}={pseudocount} must be >= 0", "pseudocount")
    positive_int(n_samples, "n_samples")
    positive_int(batch_size, "batch_size")
    model._require_trained()
    if batch_correction and model.encoder.batch_key is None:
        raise ScivaeInputError(
            "{batch_correction} needs a model trained with a batch key: leave it out", "batch_correction"
        )
    source = adata if adata is not None else model.adata
    if not isinstance(source, ad.AnnData):
        raise ScivaeInputError("pass adata= (cells with the model's genes and the groups in obs): the model has none")
    if source.isbacked:
        raise ScivaeInputError("differential expression needs the cells in memory: pass adata.to_memory()")
    m1, m2, name1, name2 = group_masks(source.obs, groupby, group1, group2)
    cells = model._cell_data(adata, layer)
    if isinstance(cells, BackedCellData):  # pragma: no cover - backed AnnData are refused above
        raise ScivaeInputError("differential expression needs the cells in memory: pass adata.to_memory()")
    arrays = cells.arrays
    rows1, rows2 = np.flatnonzero(m1), np.flatnonzero(m2)
    used = np.union1d(rows1, rows2)
    from scivae.core.model.base import select_rows

    mu, logvar = model._posterior_from_arrays(select_rows(arrays, used), batch_size=batch_size)
    post = (np.zeros((cells.n_obs, mu.shape[1]), np.float32), np.zeros((cells.n_obs, mu.shape[1]), np.float32))
    post[0][used], post[1][used] = mu, logvar
    rng = np.random.default_rng(seed)
    generator = torch.Generator().manual_seed(int(seed))
    draw = dict(batch_correction=batch_correction, rng=rng, generator=generator, batch_size=batch_size)
    scales1 = sample_scales(model, arrays, rows1, post, int(n_samples), **draw)  # type: ignore[arg-type]
    scales2 = sample_scales(model, arrays, rows2, post, int(n_samples), **draw)  # type: ignore[arg-type]
    raw1, raw2 = _raw_summary(arrays["x"], rows1), _raw_summary(arrays["x"], rows2)
    if pseudocount is None:
        barely = RAW_MEAN_UNEXPRESSED  # scvi-tools' threshold_counts
        pseudocount = estimate_pseudocount(scales1, scales2, raw1["raw_mean"] < barely, raw2["raw_mean"] < barely)
    # float32 logs: their rounding (1e-7 of a log2 unit) is far below any delta
    offset = np.float32(pseudocount)
    log1, log2 = scales1 + offset, scales2 + offset  # in place from here: each fresh 5,000 x genes array costs
    np.log2(log1, out=log1)  # page faults on a first call
    np.log2(log2, out=log2)
    stats = _lfc_statistics(np.subtract(log1, log2, out=log1), float(delta))
    del log1, log2
    up, down, beyond = stats.pop("proba_up"), stats.pop("proba_down"), stats.pop("proba_beyond")
    table: dict[str, Any] = {}
    if mode == "change":
        proba_de = up + down if delta > 0 else beyond
        table.update(
            proba_de=proba_de,
            proba_not_de=1.0 - proba_de,
            bayes_factor=_log_odds(proba_de),
            proba_up=up,
            proba_down=down,
        )
    else:
        proba_m1 = (scales1 > scales2).mean(0)
        table.update(proba_m1=proba_m1, proba_m2=1.0 - proba_m1, bayes_factor=_log_odds(proba_m1))
    table.update(stats)
    table.update(scale1=scales1.mean(0), scale2=scales2.mean(0))
    for key in raw1:
        table[f"{key}1"], table[f"{key}2"] = raw1[key], raw2[key]
    if mode == "change":
        table[f"is_de_fdr_{fdr_target}"] = fdr_calls(table["proba_de"], float(fdr_target))
        order = np.lexsort((-np.abs(table["lfc_mean"]), -table["proba_de"]))
    else:
        order = np.argsort(-np.abs(table["bayes_factor"]), kind="stable")
    frame = pd.DataFrame(table, index=pd.Index(model.genes, name="gene"))
    frame["comparison"] = f"{name1} vs {name2}"
    frame["group1"], frame["group2"], frame["delta"] = name1, name2, float(delta)
    frame.attrs.update(
        {"groupby": groupby, "mode": mode, "n_samples": int(n_samples), "pseudocount": float(pseudocount)}
    )
    return frame.iloc[order]
