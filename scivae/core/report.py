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


def _plot_curves(result: FitResult, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    h = result.history
    panels = [
        ("ELBO", ["elbo_train", "elbo_validation"]),
        ("reconstruction", ["reconstruction_train", "reconstruction_validation"]),
        ("KL", ["kl_train", "kl_validation"]),
        ("KL weight / active units", ["kl_weight", "active_units"]),
    ]
    fig, axes = plt.subplots(1, 4, figsize=(16, 3.5))
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
    fig, ax = plt.subplots(figsize=(max(4, 0.25 * len(kl) + 2), 3.5))
    ax.bar(range(len(kl)), kl)
    ax.axhline(0.0, color="k", lw=0.5)
    au = result.collapse.active_units if result.collapse else 0
    ax.set_title(f"KL per latent dimension (validation), {au}/{len(kl)} active units")
    ax.set_xlabel("latent dimension")
    ax.set_ylabel("KL (nats)")
    fig.tight_layout()
    with atomic_path(path) as tmp:
        fig.savefig(tmp, format="png", dpi=90)
    plt.close(fig)


def write_fit_report(out_dir: str | Path, result: FitResult, extra: dict[str, Any] | None = None) -> dict[str, Path]:
    """Write ``metrics.json``, ``history.csv``, ``training_curves.png`` and ``kl_per_dim.png``.

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
    }
    write_text_atomic(paths["metrics"], json.dumps(metrics, indent=2, default=float))
    write_text_atomic(paths["history"], result.history.to_csv(index=False))
    _plot_curves(result, paths["curves"])
    _plot_kl(result, paths["kl"])
    return paths
