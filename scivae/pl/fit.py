"""Pictures of a fit (training curves, KL per dimension, rate-distortion), shared by ``scivae.pl`` and the report.

Each function follows scanpy's plotting convention, ``f(source, *, ax=None, show=None, save=None)``, and
returns the matplotlib figure. ``source`` is a trained model, a :class:`~scivae.core.train.fit.FitResult`, or a
``scivae fit`` output folder (``history.csv`` and ``metrics.json``). Nothing here needs a display.
"""

from __future__ import annotations

import json
import math
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd

from scivae._atomic import atomic_path
from scivae.core.diagnostics import ACTIVE_UNIT_THRESHOLD
from scivae.core.train.fit import FitResult
from scivae.errors import ScivaeInputError

if TYPE_CHECKING:
    from matplotlib.axes import Axes
    from matplotlib.figure import Figure

#: Panels of :func:`training_curves`: name -> (title, history columns).
CURVE_PANELS: dict[str, tuple[str, list[str]]] = {
    "elbo": ("ELBO", ["elbo_train", "elbo_validation"]),
    "reconstruction": ("reconstruction", ["reconstruction_train", "reconstruction_validation"]),
    "kl": ("KL and mutual information (nats)", ["kl_train", "kl_validation", "mutual_information"]),
    "latent_gain": ("latent gain (nats)", ["latent_gain_validation"]),
    "kl_weight": ("KL weight / active units", ["kl_weight", "active_units"]),
    "accuracy": ("reconstruction accuracy", ["reconstruction_accuracy_validation", "token_accuracy_validation"]),
}
DPI = 90


def fit_record(source: Any) -> tuple[pd.DataFrame, dict[str, Any]]:
    """The per-epoch history and the final collapse diagnostics (a dict, possibly empty) of ``source``.

    ``source`` is a model (its ``fit_result``, or for a loaded model the ``history.csv`` saved in its folder, without
    the diagnostics), a :class:`FitResult`, or a folder written by ``scivae fit`` (or
    its ``model/``, which holds the history only).
    """
    if isinstance(source, FitResult):
        return source.history, (source.collapse.to_dict() if source.collapse is not None else {})
    if isinstance(source, (str, Path)):
        folder = Path(source)
        history_path = folder / "history.csv"
        if not history_path.is_file():
            raise ScivaeInputError(f"{folder} has no history.csv: pass the folder written by `scivae fit`")
        metrics_path = folder / "metrics.json"
        collapse = (json.loads(metrics_path.read_text()).get("collapse") or {}) if metrics_path.is_file() else {}
        return pd.read_csv(history_path), collapse
    fit_result = getattr(source, "fit_result", None)
    if isinstance(fit_result, FitResult):
        return fit_record(fit_result)
    history = getattr(source, "history", None)
    if isinstance(history, pd.DataFrame) and not history.empty:  # a loaded model: the history.csv of its folder
        return history, {}
    raise ScivaeInputError(
        f"no fit record in {type(source).__name__}: pass a trained model (or one loaded from a folder with its "
        "history.csv), its FitResult, or the output folder of `scivae fit`"
    )


def _number(value: Any) -> float:
    return float("nan") if value is None else float(value)


def _new_axes(ax: Axes | None, figsize: tuple[float, float]) -> tuple[Figure, Axes]:
    if ax is not None:
        return ax.figure, ax
    import matplotlib.pyplot as plt

    fig, new = plt.subplots(figsize=figsize, layout="constrained")
    return fig, new


def finish(fig: Figure, show: bool | None, save: str | Path | None) -> Figure:
    """Save ``fig`` atomically (format from the suffix, PNG when none) and show it if asked; return it."""
    if save is not None:
        path = Path(save)
        with atomic_path(path) as tmp:
            fig.savefig(tmp, format=path.suffix.lstrip(".").lower() or "png", dpi=DPI, bbox_inches="tight")
    if show:
        import matplotlib.pyplot as plt

        plt.show()
    return fig


def training_curves(
    source: Any,
    *,
    panels: Sequence[str] | None = None,
    ax: Sequence[Axes] | None = None,
    show: bool | None = None,
    save: str | Path | None = None,
) -> Figure:
    """Per-epoch curves: ELBO, reconstruction, KL with mutual information, latent gain, KL weight and active
    units, and (when the adapter logs one) reconstruction accuracy.

    Parameters
    ----------
    source
        A trained model, its :class:`FitResult`, or a ``scivae fit`` output folder.
    panels
        Names of the panels to draw (keys of :data:`CURVE_PANELS`); default: every panel with data.
    ax
        One matplotlib Axes per panel; default: a new figure.
    show, save
        Show the figure (``plt.show()``); save it to this path (atomically).
    """
    history, _ = fit_record(source)
    unknown = set(panels or ()) - set(CURVE_PANELS)
    if unknown:
        raise ScivaeInputError(f"unknown panel(s) {', '.join(sorted(unknown))}: use {', '.join(CURVE_PANELS)}")
    names = list(panels) if panels else [n for n, (_, cols) in CURVE_PANELS.items() if any(c in history for c in cols)]
    if ax is None:
        import matplotlib.pyplot as plt

        fig, axes = plt.subplots(1, len(names), figsize=(3.6 * len(names), 3.6), layout="constrained", squeeze=False)
        axes = list(axes[0])
    else:
        axes = list(ax) if isinstance(ax, (list, tuple, np.ndarray)) else [ax]
        if len(axes) != len(names):
            raise ScivaeInputError(f"pass one Axes per panel: {len(names)} panels ({', '.join(names)})")
        fig = axes[0].figure
    for a, name in zip(axes, names, strict=True):
        title, cols = CURVE_PANELS[name]
        for col in cols:
            if col in history and history[col].notna().any():
                a.plot(history["epoch"], history[col], label=col)
        a.set_title(title, fontsize=10)
        a.set_xlabel("epoch")
        if a.get_legend_handles_labels()[0]:
            a.legend(fontsize=7)
    return finish(fig, show, save)


def kl_per_dim(
    source: Any, *, ax: Axes | None = None, show: bool | None = None, save: str | Path | None = None
) -> Figure:
    """KL per latent dimension on the validation set, active units in colour, with the variance of each
    dimension's posterior mean against the active-unit threshold (right axis) and the mutual information.
    """
    _, collapse = fit_record(source)
    kl = np.asarray(collapse.get("kl_per_dim") or [], dtype=float)
    variance = np.asarray(collapse.get("au_variance") or [np.nan] * len(kl), dtype=float)
    active = variance > ACTIVE_UNIT_THRESHOLD
    fig, ax = _new_axes(ax, (max(6.5, 0.22 * len(kl) + 3), 4.2))
    dims = np.arange(len(kl))
    ax.bar(dims[active], kl[active], color="tab:blue", label="active unit")
    ax.bar(dims[~active], kl[~active], color="0.7", label="inactive unit")
    ax.set_xlabel("latent dimension")
    ax.set_ylabel("KL (nats)")
    twin = ax.twinx()
    if len(kl) and np.isfinite(variance).any():
        twin.scatter(dims, np.clip(variance, 1e-6, None), color="tab:red", s=12, zorder=3, label="Var_x(E[z])")
        twin.axhline(
            ACTIVE_UNIT_THRESHOLD, color="tab:red", ls="--", lw=0.8, label=f"threshold {ACTIVE_UNIT_THRESHOLD}"
        )
        twin.set_yscale("log")
    twin.set_ylabel("variance of the posterior mean", color="tab:red")
    handles = ax.get_legend_handles_labels()[0] + twin.get_legend_handles_labels()[0]
    if handles:
        ax.legend(handles=handles, fontsize=7, loc="upper right")
    details = f"{int(active.sum())}/{len(kl)} active units"
    mi, gain = _number(collapse.get("mutual_information")), collapse.get("latent_gain")
    if math.isfinite(mi):
        details += f", I(x;z) {mi:.2f} nats"
        bound = _number(collapse.get("mi_upper_bound"))
        if math.isfinite(bound):
            details += f" (at most {bound:.2f})"
    if gain is not None:
        details += f", latent gain {float(gain):.2f} nats"
    ax.set_title(f"KL per latent dimension (validation)\n{details}", fontsize=9)
    return finish(fig, show, save)


def rate_distortion(
    source: Any, *, ax: Axes | None = None, show: bool | None = None, save: str | Path | None = None
) -> Figure:
    """Validation rate (KL) against distortion (reconstruction NLL) per epoch, with lines of equal ELBO.

    A collapsed model sits on the distortion axis (rate 0); moving right along a line of equal ELBO trades
    reconstruction for information in z at no cost in the bound.
    """
    history, collapse = fit_record(source)
    fig, ax = _new_axes(ax, (5.5, 4.5))
    if {"kl_validation", "reconstruction_validation"} <= set(history.columns):
        pts = history[["epoch", "kl_validation", "reconstruction_validation"]].dropna()
        if not pts.empty:
            rate, dist = pts["kl_validation"].to_numpy(), pts["reconstruction_validation"].to_numpy()
            ax.plot(rate, dist, color="0.6", lw=0.8, zorder=1)
            points = ax.scatter(rate, dist, c=pts["epoch"], cmap="viridis", s=18, zorder=2)
            fig.colorbar(points, ax=ax, label="epoch")
            top = max(float((rate + dist).max()), 1e-9)
            for level in (0.25, 0.5, 0.75, 1.0):  # lines R + D = const (equal ELBO)
                c = level * top
                ax.plot([0, c], [c, 0], ls=":", color="0.8", lw=0.8, zorder=0)
            ax.set_xlim(0, max(float(rate.max()) * 1.1, 1.0))
            ax.set_ylim(0, float(dist.max()) * 1.1)
    mi = _number(collapse.get("mutual_information"))
    mi_text = f", I(x;z) {mi:.2f} nats" if math.isfinite(mi) else ""
    ax.set_title(f"rate-distortion (validation){mi_text}", fontsize=10)
    ax.set_xlabel("rate: KL(q(z|x) || p(z)) (nats)")
    ax.set_ylabel("distortion: -log p(x|z) (nats)")
    return finish(fig, show, save)
