"""Helpers shared by run_scvi.py (scvi venv) and run_scivae.py (scivae venv): only numpy/json/lightning."""

from __future__ import annotations

import json
import os
import platform
import time
from pathlib import Path

import numpy as np


def machine() -> dict:
    """CPU model, logical cores, threads used: stated next to every timing."""
    cpu = "unknown"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    return {"cpu": cpu, "logical_cores": os.cpu_count(), "python": platform.python_version()}


def save_json(obj: dict, path: Path) -> None:
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(json.dumps(obj, indent=2, default=float) + "\n")
    os.replace(tmp, path)


def save_npy(arr: np.ndarray, path: Path) -> None:
    tmp = path.with_name(path.name + ".tmp.npy")
    np.save(tmp, arr)
    os.replace(tmp, path)


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
