"""Helpers shared by the cells benchmark scripts.

``run_scvi`` imports this module in scvi-tools' own venv, so it needs only the standard library and numpy
(lightning inside :func:`make_epoch_timer`), never scivae.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import time
from pathlib import Path

import numpy as np

#: the repository root: child processes run there (``python -m benchmarks.cells.<script>``)
ROOT = Path(__file__).resolve().parents[2]
#: where the data files and per-run outputs go (git-ignored)
DATA_DIR = Path(os.environ.get("SCIVAE_BENCH_OUT", ROOT / "benchmarks" / "out" / "cells"))
#: the committed raw figures that RESULTS.md quotes
RESULTS_DIR = ROOT / "benchmarks" / "cells" / "results"
#: the architecture both tools train in run_scivae / run_scvi and throughput
ARCHITECTURE = {"n_latent": 10, "n_hidden": 128, "n_layers": 1}
#: scvi-tools 1.4.2's venv (setup_scvi_venv.sh)
SCVI_PYTHON = os.environ.get("SCVI_PYTHON", str(ROOT / "benchmarks" / ".venv-scvi" / "bin" / "python"))


def machine() -> dict:
    """CPU model, logical cores, Python: stated next to every timing."""
    cpu = "unknown"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    return {"cpu": cpu, "logical_cores": os.cpu_count(), "python": platform.python_version()}


def child_env(threads: int, extra: dict | None = None) -> dict:
    """Environment of a benchmark child process: its thread count, quiet warnings, this checkout importable."""
    env = dict(os.environ, OMP_NUM_THREADS=str(threads), MKL_NUM_THREADS=str(threads), PYTHONWARNINGS="ignore")
    env["PYTHONPATH"] = str(ROOT) + (os.pathsep + env["PYTHONPATH"] if env.get("PYTHONPATH") else "")
    env.update(extra or {})
    return env


def scvi_python_or_none(path: str) -> str | None:
    """``path`` if scvi-tools' venv exists there; else ``None``, said once (the scripts then run scivae alone)."""
    if Path(path).exists():
        return path
    print(f"scvi-tools venv missing ({path}): scivae only (bash benchmarks/cells/setup_scvi_venv.sh)")
    return None


def save_json(obj: dict, path: Path) -> None:
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(json.dumps(obj, indent=2, default=float) + "\n")
    os.replace(tmp, path)


def save_raw(obj: dict, path: Path) -> None:
    """Write a script's raw figures as JSON, with the load average at the end, and say where."""
    obj["loadavg_end"] = os.getloadavg()
    path.parent.mkdir(parents=True, exist_ok=True)
    save_json(obj, path)
    print(f"raw figures: {path}")


def save_npy(arr: np.ndarray, path: Path) -> None:
    tmp = path.with_name(path.name + ".tmp.npy")
    np.save(tmp, arr)
    os.replace(tmp, path)


# -- one tool's run (run_scivae / run_scvi): the same arguments, cells and output files -------------------------
def run_arguments(description: str) -> argparse.ArgumentParser:
    """The arguments both tools' runs take."""
    ap = argparse.ArgumentParser(description=description)
    ap.add_argument("--data", type=Path, required=True)
    ap.add_argument("--out", type=Path, required=True)
    ap.add_argument("--batch-key", default=None)
    ap.add_argument("--max-epochs", type=int, default=200)
    ap.add_argument("--batch-size", type=int, default=128)
    ap.add_argument("--n-mc-samples", type=int, default=1000, help="importance samples for log p(x)")
    ap.add_argument(
        "--validation-mc-samples",
        type=int,
        default=None,
        help="importance samples for log p(x) of the validation cells (default: --n-mc-samples; 0 skips it)",
    )
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--threads", type=int, default=1)
    return ap


def split_cells(adata):
    """The ``train``, ``test`` and ``validation`` cells of a prepared file (validation: for choosing defaults)."""
    split = adata.obs["split"].to_numpy()
    return tuple(adata[split == name].copy() for name in ("train", "test", "validation"))


def likelihoods(elbo, marginal_ll, cells, n_mc: int, n_mc_validation: int | None) -> dict:
    """The per-cell likelihoods a run reports, from the tool's ``elbo(adata)`` and ``marginal_ll(adata, n)``.

    Called in this order (scvi-tools draws from the global generator, seeded once before); validation log p(x) with
    ``n_mc_validation`` samples (``None``: ``n_mc``; 0 skips it).
    """
    train, test, val, _ = cells
    n_val = n_mc if n_mc_validation is None else n_mc_validation
    out = {"elbo_test": elbo(test), "elbo_train": elbo(train), "marginal_ll_test": marginal_ll(test, n_mc)}
    out["elbo_validation"] = elbo(val) if val.n_obs else np.zeros(0)
    out["marginal_ll_validation"] = marginal_ll(val, n_val) if val.n_obs and n_val > 0 else np.zeros(0)
    return out


def write_run(out: Path, head: dict, cells, epoch_seconds, fit_s, eval_s, latent, lik: dict, history) -> dict:
    """Write a tool's run into ``out`` and return its ``run.json`` record.

    ``cells`` = (train, test, validation AnnData, number of cells fitted); ``lik``: per-cell ``elbo_test``,
    ``marginal_ll_test``, ``elbo_validation``, ``marginal_ll_validation``, ``elbo_train`` (nats, higher is better);
    ``history``: the tool's per-epoch table (written with its index when that is named). Files: ``latent.npy``
    (all cells, file order), one ``.npy`` per test and validation likelihood, ``history.csv``, and ``run.json`` =
    ``head`` (tool, versions, data, settings) plus the machine, cell counts, times, throughput and mean likelihoods.
    """
    train, test, val, n_fit_cells = cells
    save_npy(np.asarray(latent, dtype=np.float32), out / "latent.npy")
    for name in ("elbo_test", "marginal_ll_test", "elbo_validation", "marginal_ll_validation"):
        save_npy(np.asarray(lik[name], dtype=np.float64), out / f"{name}.npy")
    tmp = out / "history.csv.tmp"
    history.to_csv(tmp, index=history.index.name is not None)
    tmp.replace(out / "history.csv")
    import torch

    mean = {k: float(np.mean(v)) if np.size(v) else None for k, v in lik.items()}
    run = {
        **head,
        "machine": machine() | {"torch_threads": torch.get_num_threads()},
        "n_cells": {
            "train_split": int(train.n_obs),
            "fitted": n_fit_cells,
            "validation": int(val.n_obs),
            "test": int(test.n_obs),
        },
        "epochs_run": len(epoch_seconds),
        "fit_s": fit_s,
        "eval_s": eval_s,
        "throughput": throughput(epoch_seconds, n_fit_cells),
        "test": {"elbo_mean": mean["elbo_test"], "marginal_ll_mean": mean["marginal_ll_test"]},
        "validation": {
            "n_cells": int(val.n_obs),
            "elbo_mean": mean["elbo_validation"],
            "marginal_ll_mean": mean["marginal_ll_validation"],
        },
        "train": {"elbo_mean": mean["elbo_train"]},
    }
    save_json(run, out / "run.json")
    return run


def make_epoch_timer():
    """A Lightning callback recording wall time of each training epoch (training loop only)."""
    from lightning.pytorch import Callback

    class EpochTimer(Callback):
        def __init__(self) -> None:
            self.seconds: list[float] = []
            self._t0 = 0.0

        def on_train_epoch_start(self, trainer, pl_module) -> None:  # noqa: ARG002
            self._t0 = time.perf_counter()

        def on_train_epoch_end(self, trainer, pl_module) -> None:  # noqa: ARG002
            self.seconds.append(time.perf_counter() - self._t0)

    return EpochTimer()


def throughput(epoch_seconds: list[float], n_cells_per_epoch: int) -> dict:
    s = np.asarray(epoch_seconds, dtype=float)
    if s.size == 0:
        return {"epochs_timed": 0}
    # Skip the first epoch (warm-up allocations) when there are enough epochs.
    body = s[1:] if s.size > 2 else s
    return {
        "epochs_timed": int(s.size),
        "median_epoch_s": float(np.median(body)),
        "median_cells_per_s": float(n_cells_per_epoch / np.median(body)),
        "total_epoch_s": float(s.sum()),
    }
