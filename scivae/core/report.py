"""The fit report: final metrics (JSON), per-epoch history (CSV) and plots (PNG)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from scivae._atomic import atomic_path, write_text_atomic
from scivae.core.fit import FitResult

METRICS_FILE = "metrics.json"
HISTORY_FILE = "history.csv"
CURVES_FILE = "training_curves.png"
KL_FILE = "kl_per_dim.png"
RATE_DISTORTION_FILE = "rate_distortion.png"


def _plot_curves(result: FitResult, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    h = result.history
    panels = [
        ("ELBO", ["elbo_train", "elbo_validation"]),
        ("reconstruction", ["reconstruction_train", "reconstruction_validation"]),
        ("KL and mutual information (nats)", ["kl_train", "kl_validation", "mutual_information"]),
        ("latent gain (nats)", ["latent_gain_validation"]),
        ("KL weight / active units", ["kl_weight", "active_units"]),
    ]
    if any(c in h for c in ("reconstruction_accuracy_validation", "token_accuracy_validation")):
        panels.append(("reconstruction accuracy", ["reconstruction_accuracy_validation", "token_accuracy_validation"]))
    fig, axes = plt.subplots(1, len(panels), figsize=(3.6 * len(panels), 3.6))
    for ax, (title, cols) in zip(axes, panels, strict=True):
        for col in cols:
            if col in h and h[col].notna().any():
                ax.plot(h["epoch"], h[col], label=col)
        ax.set_title(title)
        ax.set_xlabel("epoch")
        ax.legend(fontsize=7)
    fig.tight_layout()
    with atomic_path(path) as tmp:
        fig.savefig(tmp, format="png", dpi=90)
    plt.close(fig)


def _plot_kl(result: FitResult, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    kl = result.collapse.kl_per_dim if result.collapse else []
    fig, ax = plt.subplots(figsize=(max(6, 0.2 * len(kl) + 2), 3.8))
    ax.bar(range(len(kl)), kl)
    ax.axhline(0.0, color="k", lw=0.5)
    au = result.collapse.active_units if result.collapse else 0
    mi = result.collapse.mutual_information if result.collapse else float("nan")
    gain = result.collapse.latent_gain if result.collapse else None
    details = f"{au}/{len(kl)} active units"
    if mi == mi:
        details += f", I(x;z) {mi:.2f} nats"
    if gain is not None:
        details += f", latent gain {gain:.2f} nats"
    ax.set_title(f"KL per latent dimension (validation)\n{details}", fontsize=10)
    ax.set_xlabel("latent dimension")
    ax.set_ylabel("KL (nats)")
    fig.tight_layout()
    with atomic_path(path) as tmp:
        fig.savefig(tmp, format="png", dpi=90)
    plt.close(fig)


def _plot_rate_distortion(result: FitResult, path: Path) -> None:
    """Validation rate (KL) against distortion (reconstruction NLL) per epoch, with lines of equal ELBO.

    A collapsed model sits on the distortion axis (rate 0); moving right along a line of equal ELBO trades
    reconstruction for information in z at no cost in the bound.
    """
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    h = result.history
    fig, ax = plt.subplots(figsize=(5.5, 4.5))
    if {"kl_validation", "reconstruction_validation"} <= set(h.columns):
        pts = h[["epoch", "kl_validation", "reconstruction_validation"]].dropna()
        if not pts.empty:
            rate, dist = pts["kl_validation"].to_numpy(), pts["reconstruction_validation"].to_numpy()
            ax.plot(rate, dist, color="0.6", lw=0.8, zorder=1)
            sc = ax.scatter(rate, dist, c=pts["epoch"], cmap="viridis", s=18, zorder=2)
            fig.colorbar(sc, ax=ax, label="epoch")
            top = max(float((rate + dist).max()), 1e-9)
            for level in (0.25, 0.5, 0.75, 1.0):  # lines R + D = const (equal ELBO)
                c = level * top
                ax.plot([0, c], [c, 0], ls=":", color="0.8", lw=0.8, zorder=0)
            ax.set_xlim(0, max(float(rate.max()) * 1.1, 1.0))
            ax.set_ylim(0, float(dist.max()) * 1.1)
    mi = result.collapse.mutual_information if result.collapse else float("nan")
    mi_text = f", I(x;z) {mi:.2f} nats" if mi == mi else ""
    ax.set_title(f"rate-distortion (validation){mi_text}", fontsize=10)
    ax.set_xlabel("rate: KL(q(z|x) || p(z)) (nats)")
    ax.set_ylabel("distortion: -log p(x|z) (nats)")
    fig.tight_layout()
    with atomic_path(path) as tmp:
        fig.savefig(tmp, format="png", dpi=90)
    plt.close(fig)


def write_fit_report(out_dir: str | Path, result: FitResult, extra: dict[str, Any] | None = None) -> dict[str, Path]:
    """Write ``metrics.json``, ``history.csv`` and the plots ``training_curves.png``, ``kl_per_dim.png``,
    ``rate_distortion.png``.

    Parameters
    ----------
    out_dir
        Report directory (created if needed).
    result
        What :func:`~scivae.core.fit.fit_module` returned.
    extra
        More JSON-serialisable entries for ``metrics.json`` (data summary, parameters...).

    Returns
    -------
    dict
        The written paths by kind.
    """
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    metrics = dict(result.metrics)
    if result.collapse is not None:
        metrics["collapse"] = result.collapse.to_dict()
    if extra:
        metrics.update(extra)
    paths = {
        "metrics": out / METRICS_FILE,
        "history": out / HISTORY_FILE,
        "curves": out / CURVES_FILE,
        "kl": out / KL_FILE,
        "rate_distortion": out / RATE_DISTORTION_FILE,
    }
    write_text_atomic(paths["metrics"], json.dumps(metrics, indent=2, default=float))
    write_text_atomic(paths["history"], result.history.to_csv(index=False))
    _plot_curves(result, paths["curves"])
    _plot_kl(result, paths["kl"])
    _plot_rate_distortion(result, paths["rate_distortion"])
    return paths
