"""``fit_module``: the one place where a :class:`VAEModule` meets a Lightning Trainer."""

from __future__ import annotations

import logging
import tempfile
import time
import warnings
from dataclasses import dataclass, field
from datetime import timedelta
from pathlib import Path
from typing import Any

import lightning as L
import numpy as np
import pandas as pd
import torch
from lightning.pytorch.callbacks import ModelCheckpoint
from lightning.pytorch.loggers import CSVLogger

from scivae.core.callbacks import BestWeights, CollapseMonitor, KLAnnealing, WarmupAwareEarlyStopping
from scivae.core.data import ArrayDataModule, iterate_batches
from scivae.core.device_data import TrainingDevice
from scivae.core.diagnostics import CollapseReport, collapse_report
from scivae.core.distributed import is_global_zero
from scivae.core.module import VAEModule
from scivae.core.precision import check_bf16
from scivae.core.schedules import KLSchedule
from scivae.core.training_plan import VAETrainingPlan, latent_checks
from scivae.errors import CollapseWarning

MONITOR = "elbo_validation"


@dataclass
class FitResult:
    """What a fit produced besides the trained weights.

    Attributes
    ----------
    history
        One row per epoch: train/validation ELBO, reconstruction, KL, KL weight, active units.
    metrics
        Final figures of the returned weights: ELBO, reconstruction, KL, active units, time.
        ``weights_epoch`` is the epoch those weights come from; ``best_epoch`` is set (to the same epoch)
        only when the best validation weights were restored.
    collapse
        Collapse diagnostics of the final model on the validation set.
    kl_per_dim_history
        KL per latent dimension after every validation epoch.
    """

    history: pd.DataFrame
    metrics: dict[str, Any]
    collapse: CollapseReport | None
    kl_per_dim_history: list[list[float]] = field(default_factory=list)
    log_dir: str | None = None
    is_global_zero: bool = True  # False in the other processes of a distributed run: they write nothing


def _seconds(max_time: str | timedelta | None) -> float | None:
    """``"DD:HH:MM:SS"`` or a timedelta as seconds."""
    if max_time is None:
        return None
    if isinstance(max_time, timedelta):
        return max_time.total_seconds()
    parts = [float(p) for p in str(max_time).split(":")]
    if len(parts) != 4:
        raise ValueError(f"max_time must be 'DD:HH:MM:SS', got {max_time!r}")
    days, hours, minutes, seconds = parts
    return ((days * 24 + hours) * 60 + minutes) * 60 + seconds


def resolve_precision(accelerator: str, precision: str | None) -> str:
    """bf16 mixed precision on a GPU that supports it, full precision elsewhere (CPU bf16 is slower)."""
    if precision is not None:
        return precision
    gpu = accelerator in ("auto", "gpu", "cuda") and torch.cuda.is_available()
    return "bf16-mixed" if gpu and torch.cuda.is_bf16_supported() else "32-true"


def _epoch_history(csv_path: Path) -> pd.DataFrame:
    if not csv_path.exists():
        return pd.DataFrame()
    raw = pd.read_csv(csv_path)
    if "epoch" not in raw:
        return pd.DataFrame()
    # CSVLogger writes train and validation metrics of one epoch on separate rows.
    hist = raw.groupby("epoch", as_index=False).last()
    return hist.drop(columns=[c for c in ("step",) if c in hist])


@torch.no_grad()
def posterior_over(module: VAEModule, arrays: Any, batch_size: int = 1024) -> tuple[torch.Tensor, torch.Tensor]:
    """Posterior means and log-variances of ``module`` over all rows of ``arrays`` (in order).

    ``arrays``: row-aligned arrays or a batch source, as :func:`~scivae.core.data.iterate_batches` takes.
    """
    device = next(module.parameters()).device
    was_training = module.training
    module.eval()
    mus, logvars = [], []
    for batch in iterate_batches(arrays, batch_size, device):
        post = module.inference(batch)
        mus.append(post.mu.float().cpu())
        logvars.append(post.logvar.float().cpu())
    module.train(was_training)
    return torch.cat(mus), torch.cat(logvars)


@torch.no_grad()
def latent_report(
    module: VAEModule, arrays: dict[str, Any], batch_size: int = 1024, check_items: int = 2048
) -> CollapseReport:
    """Collapse diagnostics of ``module`` on held-out ``arrays``: KL, active units, mutual information, and
    the latent gain and adapter accuracies on the first ``check_items`` rows."""
    device = next(module.parameters()).device
    was_training = module.training
    module.eval()
    mus, logvars, checks, n_checked = [], [], {}, 0
    for batch in iterate_batches(arrays, batch_size, device):
        post = module.inference(batch)
        mus.append(post.mu.float().cpu())
        logvars.append(post.logvar.float().cpu())
        if n_checked < check_items:
            for name, values in latent_checks(module, batch, post).items():
                checks.setdefault(name, []).append(values.float().cpu())
            n_checked += post.mu.shape[0]
    module.train(was_training)
    means = {name: float(torch.cat(v).mean()) for name, v in checks.items()}
    gain = means.pop("latent_gain", None)
    return collapse_report(torch.cat(mus), torch.cat(logvars), latent_gain=gain, extra=means)


def fit_module(
    module: VAEModule,
    datamodule: ArrayDataModule,
    *,
    max_epochs: int = 100,
    kl_schedule: KLSchedule | None = None,
    lr: float = 1e-3,
    weight_decay: float = 0.0,
    adam_eps: float = 1e-8,
    lr_schedule: str = "constant",
    n_samples: int = 1,
    accelerator: str = "auto",
    devices: int | str = "auto",
    strategy: str = "auto",
    num_nodes: int = 1,
    precision: str | None = None,
    gradient_clip_val: float | None = 10.0,
    early_stopping: bool = True,
    patience: int = 20,
    checkpoint_dir: str | Path | None = None,
    log_dir: str | Path | None = None,
    seed: int = 0,
    progress_bar: bool = True,
    resume_from: str | Path | None = None,
    max_time: str | timedelta | None = None,
    restore_best_weights: bool = True,
    callbacks: list[L.Callback] | None = None,
) -> FitResult:
    """Train ``module`` on ``datamodule`` with Lightning and return the history and diagnostics.

    Parameters
    ----------
    module
        The VAE to train (in place).
    datamodule
        Training and validation data.
    max_epochs
        Upper bound on epochs; early stopping on the validation ELBO may stop sooner.
    kl_schedule
        KL annealing schedule (default: linear warm-up over the first quarter of the run).
    lr, weight_decay, adam_eps
        Adam settings.
    lr_schedule
        ``"constant"`` or ``"cosine"`` (decay to 0 at ``max_epochs``, or when ``max_time`` runs out if sooner).
    n_samples
        Monte-Carlo samples of z in the training objective.
    accelerator, devices
        Passed to :class:`lightning.Trainer` (``"auto"`` picks a GPU when there is one); a count may be given
        as a string (``"2"``), as the CLI does.
    strategy, num_nodes
        Passed to :class:`lightning.Trainer`: ``strategy="ddp"`` trains on ``devices`` processes per node and
        ``num_nodes`` nodes (Lightning reads the cluster from SLURM or torchrun). Every process gets its
        share of every global batch (``batch_size`` is the global batch), metrics are averaged across
        processes, and only rank 0 (``FitResult.is_global_zero``) should write outputs.
    precision
        Trainer precision; ``None`` picks bf16-mixed on a GPU with bf16 support when it keeps the ELBO of
        the validation rows (:func:`scivae.core.precision.check_bf16`), else 32-bit (always on the CPU).
    gradient_clip_val
        Gradient norm clipping; ``None`` disables.
    early_stopping, patience
        Stop when the validation ELBO has not improved for ``patience`` epochs at the full KL weight; the
        best weights (by validation ELBO, among epochs at the full KL weight) are restored.
    checkpoint_dir
        Where Lightning writes resumable checkpoints (``last.ckpt``); ``None`` writes none.
    log_dir
        Where the CSV history goes (a temporary folder by default).
    seed
        Seeds torch, numpy and Python (``seed_everything``).
    progress_bar
        Show Lightning's progress bar.
    resume_from
        A checkpoint to resume from (optimiser, epoch and step are restored).
    max_time
        Wall-clock limit of the training, ``"DD:HH:MM:SS"`` or a ``timedelta``; a cosine learning-rate schedule
        then reaches 0 when the time is up (or at ``max_epochs``, whichever comes first). The number of epochs
        then depends on the machine's speed.
    restore_best_weights
        Return the weights of the best validation epoch (default) rather than those of the last epoch.
    callbacks
        Further Lightning callbacks (timers, custom logging...).
    """
    # Lightning's start-up banners (GPU/TPU available, tips) are noise in a CLI; warnings still show.
    for name in ("lightning.pytorch", "lightning.fabric", "lightning"):
        logging.getLogger(name).setLevel(logging.WARNING)
    L.seed_everything(seed, workers=True, verbose=False)
    schedule = kl_schedule or KLSchedule("linear")
    budget = _seconds(max_time)
    plan = VAETrainingPlan(
        module,
        lr=lr,
        weight_decay=weight_decay,
        n_samples=n_samples,
        adam_eps=adam_eps,
        lr_schedule=lr_schedule,
        time_budget_s=budget,
    )
    has_validation = len(datamodule.validation_indices) > 0
    monitor = CollapseMonitor()
    best = BestWeights(MONITOR, schedule)
    training_device = TrainingDevice()
    all_callbacks: list[L.Callback] = [KLAnnealing(schedule), monitor, training_device, *(callbacks or [])]
    if has_validation:
        if restore_best_weights:
            all_callbacks.append(best)
        if early_stopping:
            all_callbacks.append(
                WarmupAwareEarlyStopping(schedule, monitor=MONITOR, mode="max", patience=patience, check_finite=False)
            )
    if checkpoint_dir is not None:
        all_callbacks.append(ModelCheckpoint(dirpath=str(checkpoint_dir), save_last=True, save_top_k=0))
    tmp = None
    if log_dir is None:
        tmp = tempfile.TemporaryDirectory(prefix="scivae-log-")
        log_dir = tmp.name
    logger = CSVLogger(save_dir=str(log_dir), name="", version="")
    n_batches = max(1, -(-len(datamodule.train_indices) // datamodule.batch_size))
    chosen_precision = resolve_precision(accelerator, precision)
    precision_check: dict[str, Any] = {}
    if precision is None and chosen_precision == "bf16-mixed":  # the default bf16 only where it keeps the ELBO
        precision_check = check_bf16(module, datamodule.validation_arrays(), "cuda", seed=seed)
        if not precision_check["bf16_keeps_elbo"]:
            chosen_precision = "32-true"
    trainer = L.Trainer(
        max_epochs=max_epochs,
        max_time=max_time,
        accelerator=accelerator,
        devices=int(devices) if isinstance(devices, str) and devices.isdigit() else devices,  # CLI gives "2"
        strategy=strategy,
        num_nodes=num_nodes,
        use_distributed_sampler=False,  # the data modules shard by rank themselves (RankShardedBatchSampler)
        precision=chosen_precision,
        gradient_clip_val=gradient_clip_val,
        callbacks=all_callbacks,
        logger=logger,
        enable_checkpointing=checkpoint_dir is not None,
        enable_progress_bar=progress_bar,
        enable_model_summary=False,
        num_sanity_val_steps=0,
        log_every_n_steps=min(50, n_batches),
        default_root_dir=str(log_dir),
    )
    start = time.perf_counter()
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=".*does not have many workers.*")
        warnings.filterwarnings("ignore", message=".*GPU available but not used.*")
        warnings.filterwarnings("ignore", message=".*IterableDataset.*__len__.*")  # streamed data, no workers
        trainer.fit(plan, datamodule=datamodule, ckpt_path=str(resume_from) if resume_from else None)
    elapsed = time.perf_counter() - start
    if training_device.device is not None:  # inference then runs where training ran, not on the CPU
        module.to(training_device.device)

    history = _epoch_history(Path(logger.log_dir) / "metrics.csv")
    if tmp is not None:
        tmp.cleanup()
        log_dir = None
    collapse = latent_report(module, datamodule.validation_arrays())
    if collapse.collapsed:
        warnings.warn(collapse.message(), CollapseWarning, stacklevel=2)

    metrics: dict[str, Any] = {"epochs_trained": int(trainer.current_epoch), "time_s": round(elapsed, 3)}
    if not history.empty:
        row = history.iloc[-1]
        if best.best_epoch is not None and (history["epoch"] == best.best_epoch).any():
            row = history[history["epoch"] == best.best_epoch].iloc[-1]
            metrics["best_epoch"] = int(row["epoch"])  # only when those weights are the ones returned
        metrics["weights_epoch"] = int(row["epoch"])
        for col in history.columns:
            if col != "epoch" and pd.notna(row[col]):
                metrics[col] = float(row[col])
    metrics["active_units"] = collapse.active_units
    if collapse.finite:
        metrics["mutual_information"] = collapse.mutual_information
        metrics["mutual_information_upper_bound"] = collapse.mi_upper_bound
    if collapse.latent_gain is not None:
        metrics["latent_gain_validation"] = collapse.latent_gain
    for name, value in collapse.extra.items():
        metrics[f"{name}_validation"] = value
    metrics["n_latent"] = module.n_latent
    metrics["device"] = str(next(module.parameters()).device)
    metrics["precision"] = chosen_precision
    metrics.update(precision_check)
    metrics["skipped_steps"] = plan.skipped_steps
    metrics["train_obs_per_s"] = round(len(datamodule.train_indices) * max(trainer.current_epoch, 1) / elapsed, 1)
    metrics["collapsed"] = collapse.collapsed
    for k, v in list(metrics.items()):
        if isinstance(v, (np.floating, np.integer)):
            metrics[k] = v.item()
    return FitResult(
        history=history,
        metrics=metrics,
        collapse=collapse,
        kl_per_dim_history=[r.kl_per_dim for r in monitor.history],
        log_dir=str(log_dir) if log_dir is not None else None,
        is_global_zero=is_global_zero(),
    )
