"""The fit report: final metrics (JSON), per-epoch history (CSV) and plots (PNG, drawn by ``scivae.pl``)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from scivae._atomic import write_text_atomic
from scivae.core.train.fit import FitResult
from scivae.pl import fit as plots

METRICS_FILE = "metrics.json"
HISTORY_FILE = "history.csv"
CURVES_FILE = "training_curves.png"
KL_FILE = "kl_per_dim.png"
RATE_DISTORTION_FILE = "rate_distortion.png"
#: The report's plots: kind -> (file name, plotting function).
PLOTS = {
    "curves": (CURVES_FILE, plots.training_curves),
    "kl": (KL_FILE, plots.kl_per_dim),
    "rate_distortion": (RATE_DISTORTION_FILE, plots.rate_distortion),
}


def write_fit_plots(out_dir: str | Path, source: Any) -> dict[str, Path]:
    """Draw the report's plots of ``source`` (a :class:`FitResult`, a model, or a fit folder) into ``out_dir``."""
    import matplotlib.pyplot as plt

    out = Path(out_dir)
    paths = {}
    for kind, (name, draw) in PLOTS.items():
        paths[kind] = out / name
        plt.close(draw(source, save=paths[kind]))
    return paths


def write_fit_report(out_dir: str | Path, result: FitResult, extra: dict[str, Any] | None = None) -> dict[str, Path]:
    """Write ``metrics.json``, ``history.csv`` and the plots ``training_curves.png``, ``kl_per_dim.png``,
    ``rate_distortion.png``.

    Parameters
    ----------
    out_dir
        Report directory (created if needed).
    result
        What :func:`~scivae.core.train.fit.fit_module` returned.
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
    paths = {"metrics": out / METRICS_FILE, "history": out / HISTORY_FILE}
    write_text_atomic(paths["metrics"], json.dumps(metrics, indent=2, default=float))
    write_text_atomic(paths["history"], result.history.to_csv(index=False))
    paths.update(write_fit_plots(out, result))
    return paths
