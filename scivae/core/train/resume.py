"""Resumable fits: checkpoints that restore the whole run, and the per-epoch history that survives a resume.

A Lightning checkpoint already holds the weights, the optimiser and learning-rate scheduler, the loop counters
and the state of every callback that has one (early stopping, best weights, KL schedule, collapse monitor).
:class:`ResumableCheckpoint` adds what an exact continuation also needs: the random number generators, the
position in the shuffled data order, and whether early stopping had already ended the run. It writes
``last.ckpt`` atomically (temporary file, then rename) at the end of every epoch and every few minutes inside
long epochs, so a process killed at any moment leaves the previous checkpoint or the new one, never half a file.

Checkpoints are pickles: scivae loads them with ``weights_only=True`` (tensors and plain containers only) and
only from the folder the user's own fit wrote. The shareable model folder stays safetensors + JSON.
"""

from __future__ import annotations

import os
import random
import time
import warnings
from pathlib import Path
from typing import Any

import lightning as L
import numpy as np
import pandas as pd
import torch
from lightning.pytorch.callbacks import Checkpoint

from scivae.core.train.divergence import all_finite
from scivae.core.train.plan import PROGRESS_BAR_ONLY, TRAIN_METRICS

#: File name of the checkpoint a fit keeps (the latest one only).
CHECKPOINT_FILE = "last.ckpt"


def rng_state() -> dict[str, Any]:
    """The states of torch (CPU and initialised CUDA devices), numpy and Python's ``random``, as plain data."""
    kind, keys, pos, has_gauss, cached = np.random.get_state()
    return {
        "torch": torch.get_rng_state(),
        "cuda": torch.cuda.get_rng_state_all() if torch.cuda.is_available() and torch.cuda.is_initialized() else [],
        "numpy": [kind, torch.from_numpy(np.asarray(keys, dtype=np.int64)), int(pos), int(has_gauss), float(cached)],
        "python": random.getstate(),
    }


def set_rng_state(state: dict[str, Any]) -> None:
    """Restore :func:`rng_state` (CUDA states only when the same number of devices is in use)."""
    torch.set_rng_state(state["torch"])
    cuda = state.get("cuda") or []
    if cuda and torch.cuda.is_available() and len(cuda) == torch.cuda.device_count():
        torch.cuda.set_rng_state_all(cuda)
    kind, keys, pos, has_gauss, cached = state["numpy"]
    np.random.set_state((kind, keys.numpy().astype(np.uint32), pos, has_gauss, cached))
    version, internal, gauss = state["python"]
    random.setstate((version, tuple(internal), gauss))


class HistoryRecorder(L.Callback):
    """One history row per epoch (the epoch's logged metrics) and the wall time spent training, over resumes.

    Attributes
    ----------
    rows
        ``{"epoch": e, metric: value, ...}`` per finished epoch, including those of the runs this one resumed.
    """

    def __init__(self) -> None:
        self.rows: list[dict[str, float]] = []
        self._time_before = 0.0
        self._started: float | None = None

    @property
    def time_s(self) -> float:
        """Seconds spent training, this run and the runs it resumed (up to their last checkpoint)."""
        return self._time_before + (time.perf_counter() - self._started if self._started is not None else 0.0)

    def on_train_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self._started = time.perf_counter()

    def on_train_epoch_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        # Called before Lightning logs the epoch's training means, but they are already in callback_metrics.
        # The training means come from the plan: exact over a resume inside the epoch, and absent (not stale, as
        # Lightning's callback_metrics would keep them) for an epoch whose every step was skipped.
        own = hasattr(pl_module, "train_epoch_means")
        row: dict[str, float] = {"epoch": int(trainer.current_epoch)}
        for key, value in trainer.callback_metrics.items():
            if key in PROGRESS_BAR_ONLY or (own and key in TRAIN_METRICS) or torch.as_tensor(value).numel() != 1:
                continue
            row[key] = float(value)
        if own:
            row.update(pl_module.train_epoch_means())
        self.rows.append(row)

    def history(self) -> pd.DataFrame:
        """The rows as a DataFrame (one row per epoch, ``epoch`` first)."""
        if not self.rows:
            return pd.DataFrame()
        frame = pd.DataFrame(self.rows)
        return frame[["epoch", *sorted(c for c in frame.columns if c != "epoch")]]

    def state_dict(self) -> dict[str, Any]:
        return {"rows": self.rows, "time_s": self.time_s}

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        self.rows = [dict(r) for r in state_dict["rows"]]
        self._time_before = float(state_dict["time_s"])


class ResumableCheckpoint(Checkpoint):
    """Writes ``dirpath/last.ckpt`` at every epoch end and every ``every_minutes`` inside an epoch.

    Being a :class:`~lightning.pytorch.callbacks.Checkpoint`, Lightning runs it after early stopping, so the
    saved early-stopping state is the one of the finished epoch. On resume (``trainer.fit(ckpt_path=...)``) it
    restores the RNG states just before the first training step, the data order (through the datamodule's
    :meth:`~scivae.core.data.arrays.ArrayDataModule.resume_train_sampler`) and a stop already decided.

    Parameters
    ----------
    dirpath
        Folder of ``last.ckpt`` (created if needed).
    every_minutes
        Also save inside an epoch when this much time has passed since the last save (``None``: epoch ends only).
    every_steps
        Also save inside an epoch every this many training batches (for tests and short runs).
    """

    def __init__(self, dirpath: str | Path, every_minutes: float | None = 10.0, every_steps: int | None = None) -> None:
        self.dirpath = Path(dirpath)
        self.every_s = None if every_minutes is None else max(float(every_minutes), 0.0) * 60.0
        self.every_steps = every_steps
        self.resumes = 0
        self.skipped_saves = 0
        self._trainer: L.Trainer | None = None
        self._batches_done: int | None = None
        self._last_save = time.monotonic()
        self._pending: dict[str, Any] | None = None
        self._pending_rng: dict[str, Any] | None = None

    @property
    def path(self) -> Path:
        return self.dirpath / CHECKPOINT_FILE

    def setup(self, trainer: L.Trainer, pl_module: L.LightningModule, stage: str) -> None:
        self._trainer = trainer

    # -- saving ------------------------------------------------------------------------------------------
    def on_train_batch_end(self, trainer: L.Trainer, pl_module: L.LightningModule, outputs, batch, batch_idx) -> None:
        done = batch_idx + 1
        if done >= trainer.num_training_batches:
            return  # the epoch-end checkpoint follows (Lightning cannot resume a save on an epoch's last batch)
        by_steps = self.every_steps is not None and done % self.every_steps == 0
        by_time = self.every_s is not None and time.monotonic() - self._last_save >= self.every_s
        if by_steps or by_time:
            self._save(trainer, pl_module, batches_done=done)

    def on_train_epoch_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self._save(trainer, pl_module, batches_done=None)

    def _save(self, trainer: L.Trainer, pl_module: L.LightningModule, batches_done: int | None) -> None:
        if not all_finite(pl_module.parameters()):
            # the previous checkpoint stays the last good one
            self.skipped_saves += 1
            return
        self._batches_done = batches_done
        self.dirpath.mkdir(parents=True, exist_ok=True)
        tmp = self.dirpath / f".{CHECKPOINT_FILE}.{os.getpid()}.tmp"
        try:
            trainer.save_checkpoint(tmp)  # every process takes part; the first one writes
            if trainer.is_global_zero:
                os.replace(tmp, self.path)
        finally:
            if tmp.exists():
                tmp.unlink()
        self._last_save = time.monotonic()

    def state_dict(self) -> dict[str, Any]:
        trainer = self._trainer
        datamodule = getattr(trainer, "datamodule", None) if trainer is not None else None
        sampler = None
        if datamodule is not None and hasattr(datamodule, "train_sampler_state"):
            sampler = datamodule.train_sampler_state(self._batches_done)
        return {
            "rng": rng_state(),
            "sampler": sampler,
            "batches_done": self._batches_done,
            "should_stop": bool(trainer.should_stop) if trainer is not None else False,
            "resumes": self.resumes,
        }

    # -- resuming ----------------------------------------------------------------------------------------
    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        self._pending = state_dict
        self.resumes = int(state_dict.get("resumes", 0)) + 1

    def on_fit_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        state, self._pending = self._pending, None
        if state is None:
            return
        datamodule = getattr(trainer, "datamodule", None)
        if state.get("sampler") is not None:
            if datamodule is not None and hasattr(datamodule, "resume_train_sampler"):
                datamodule.resume_train_sampler(state["sampler"])
            else:
                warnings.warn("the data order could not be restored: the datamodule is not resumable", stacklevel=2)
        if state.get("should_stop"):
            trainer.should_stop = True
        self._pending_rng = state["rng"]

    def on_train_batch_start(self, trainer: L.Trainer, pl_module: L.LightningModule, batch, batch_idx) -> None:
        # Restored here, not on load: between the save and this point an uninterrupted run draws nothing from
        # the global generators, while a resumed one has been through set-up in between.
        if self._pending_rng is not None:
            set_rng_state(self._pending_rng)
            self._pending_rng = None


def checkpoint_position(path: str | Path) -> dict[str, Any]:
    """Where a checkpoint stands: ``epoch`` (0-based, the one in progress or next), ``batches_done`` in it
    (``None`` at an epoch end) and ``global_step``.

    Raises
    ------
    CheckpointError
        The file cannot be read as a scivae checkpoint.
    """
    from scivae.errors import CheckpointError

    try:
        ckpt = torch.load(str(path), map_location="cpu", weights_only=True)
        state = next(v for k, v in ckpt["callbacks"].items() if k.startswith(ResumableCheckpoint.__qualname__))
    except Exception as exc:  # torch raises many types for a damaged file
        raise CheckpointError(
            f"cannot read the checkpoint {path} ({type(exc).__name__}): start the fit over (without {{resume}})"
        ) from None
    done = state.get("batches_done")
    epoch = int(ckpt.get("epoch", 0))
    return {
        "epoch": epoch if done is not None else epoch + 1,
        "batches_done": done,
        "global_step": int(ckpt.get("global_step", 0)),
        "should_stop": bool(state.get("should_stop", False)),
    }
