"""``fit_module``: the one place where a :class:`VAEModule` meets a Lightning Trainer."""

from __future__ import annotations

import contextlib
import inspect
import logging
import random
import warnings
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import timedelta
from pathlib import Path
from typing import Any

import lightning as L
import numpy as np
import pandas as pd
import torch
from lightning.fabric.utilities.exceptions import MisconfigurationException
from lightning.pytorch.loggers import CSVLogger

from scivae.core.data.arrays import ArrayDataModule, RowOutputs, iterate_batches, n_rows_of
from scivae.core.data.device import TrainingDevice, iterate_device_batches
from scivae.core.diagnostics import CollapseReport, collapse_report
from scivae.core.distributed import is_global_zero
from scivae.core.module.base import VAEModule
from scivae.core.options import TrainingOptions, check_accelerator
from scivae.core.train.allocator import allocator_state
from scivae.core.train.callbacks import BestWeights, CollapseMonitor, KLAnnealing, WarmupAwareEarlyStopping
from scivae.core.train.divergence import DIVERGENCE_HINT, HINT_OPTIONS, DivergenceGuard, all_finite
from scivae.core.train.plan import VAETrainingPlan, diagnostic_items, latent_checks
from scivae.core.train.precision import check_bf16
from scivae.core.train.resume import HistoryRecorder, ResumableCheckpoint
from scivae.core.train.schedules import KLSchedule, make_schedule
from scivae.errors import CheckpointError, CollapseWarning, DivergenceError, OptionError

#: Early stopping and the best weights follow the negative training objective on the validation rows (beta and free
#: bits included): with beta < 1 the true ELBO can fall while the objective being optimised still improves.
MONITOR = "objective_validation"


@dataclass
class FitResult:
    """What a fit produced besides the trained weights.

    Attributes
    ----------
    history
        One row per epoch: train/validation ELBO, reconstruction, KL, KL weight, active units.
    metrics
        Final figures of the returned weights: ELBO, reconstruction, KL, active units, time (over all epochs,
        resumed runs included), ``optimizer_steps``, ``skipped_steps`` (non-finite steps skipped), ``resumes``.
        ``weights_epoch`` is the epoch those weights come from; ``best_epoch`` is set (to the same epoch)
        only when the best validation weights were restored. ``allocator`` says whether glibc's malloc was tuned
        for the fit (:func:`scivae.core.train.allocator.tune_allocator`).
    collapse
        Collapse diagnostics of the final model on the validation set; ``None`` when its latents are not finite
        (that is a divergence, not a collapse).
    kl_per_dim_history
        KL per latent dimension after every validation epoch.
    """

    history: pd.DataFrame
    metrics: dict[str, Any]
    collapse: CollapseReport | None
    kl_per_dim_history: list[list[float]] = field(default_factory=list)
    log_dir: str | None = None
    is_global_zero: bool = True  # False in the other processes of a distributed run: they write nothing


def resolve_precision(accelerator: str, precision: str | None) -> str:
    """bf16 mixed precision on a GPU that supports it, full precision elsewhere (CPU bf16 is slower)."""
    if precision is not None:
        return precision
    gpu = accelerator in ("auto", "gpu", "cuda") and torch.cuda.is_available()
    return "bf16-mixed" if gpu and torch.cuda.is_bf16_supported() else "32-true"


@torch.no_grad()
def posterior_over(module: VAEModule, arrays: Any, batch_size: int = 1024) -> tuple[np.ndarray, np.ndarray]:
    """Posterior means and log-variances of ``module`` over all rows of ``arrays`` (in order), float32.

    ``arrays``: row-aligned arrays or a batch source, as :func:`~scivae.core.data.device.iterate_device_batches`
    takes (batches are gathered on the module's device).
    """
    device = next(module.parameters()).device
    was_training = module.training
    module.eval()
    out = RowOutputs(n_rows_of(arrays))
    for batch in iterate_device_batches(arrays, batch_size, device):
        post = module.inference(batch)
        out.add(post.mu, post.logvar)
    module.train(was_training)
    mu, logvar = out.result()
    return mu, logvar


@torch.no_grad()
def latent_report(
    module: VAEModule, arrays: dict[str, Any], batch_size: int = 1024, check_items: int = 2048
) -> CollapseReport:
    """Collapse diagnostics of ``module`` on held-out ``arrays``: KL, active units, mutual information, and
    the latent gain and adapter accuracies on the first ``check_items`` rows."""
    device = next(module.parameters()).device
    was_training = module.training
    module.eval()
    out, checks, n_checked, finite = RowOutputs(n_rows_of(arrays)), {}, 0, True
    for batch in iterate_batches(arrays, batch_size, device):
        post = module.inference(batch)
        out.add(post.mu, post.logvar)
        finite = finite and bool(torch.isfinite(post.mu).all() and torch.isfinite(post.logvar).all())
        if n_checked < check_items and finite:  # decoding non-finite codes fails; the report says not finite
            for name, values in latent_checks(module, batch, post).items():
                checks.setdefault(name, []).append(values.float().cpu())
            n_checked += post.mu.shape[0]
    module.train(was_training)
    means = {name: float(torch.cat(v).mean()) for name, v in checks.items()}
    gain = means.pop("latent_gain", None)
    mu, logvar = out.result()
    return collapse_report(torch.from_numpy(mu), torch.from_numpy(logvar), latent_gain=gain, extra=means)


def fit_module(
    module: VAEModule,
    datamodule: ArrayDataModule,
    options: TrainingOptions | None = None,
    *,
    kl_schedule: KLSchedule | None = None,
    checkpoint_dir: str | Path | None = None,
    resume_from: str | Path | None = None,
    checkpoint_every_steps: int | None = None,
    log_dir: str | Path | None = None,
    callbacks: list[L.Callback] | None = None,
    **changes: Any,
) -> FitResult:
    """Train ``module`` on ``datamodule`` with Lightning and return the history and diagnostics.

    Nothing here changes process-wide state: the global random generators are seeded for the fit and given back
    as they were, Lightning's loggers are quietened for the fit only, and glibc's malloc is left alone (the CLI
    tunes it, :func:`scivae.core.train.allocator.tune_allocator`).

    Parameters
    ----------
    module
        The VAE to train (in place).
    datamodule
        Training and validation data (its batch size is the global batch).
    options
        How to train (:class:`~scivae.core.options.TrainingOptions`; ``None``: the defaults). ``max_epochs`` must
        be set. Under ``strategy="ddp"`` every process gets its share of every global batch, metrics are averaged
        across processes, and only rank 0 (``FitResult.is_global_zero``) should write outputs. ``precision=None``
        picks bf16-mixed on a GPU with bf16 support when it keeps the ELBO of the validation rows
        (:func:`scivae.core.train.precision.check_bf16`), else 32-bit.
    kl_schedule
        KL annealing schedule (default: built from ``options.kl_schedule`` and ``options.kl_warmup``).
    checkpoint_dir
        Where to keep a resumable checkpoint, ``last.ckpt``, rewritten atomically at every epoch end and every
        ``options.checkpoint_every_minutes`` inside an epoch; ``None`` writes none.
    resume_from
        A ``last.ckpt`` written by a fit with the same data and settings: the run continues where it was
        stopped (weights, optimiser, learning-rate and KL schedules, random generators, data order, early
        stopping, best weights, history and time), so the result matches an uninterrupted run. Checkpoints
        are pickles: they are loaded with ``weights_only=True``; load only your own.
    checkpoint_every_steps
        Also save every this many batches (tests of resumption).
    log_dir
        Where Lightning's CSV log goes (none by default; the history is in the result either way).
    callbacks
        Further Lightning callbacks (timers, custom logging...).
    **changes
        Training options as keywords, applied to ``options`` (``fit_module(module, data, max_epochs=5)``).

    Raises
    ------
    DivergenceError
        After more than ``options.max_skipped_steps`` steps with a non-finite loss or gradient (or a whole epoch of
        them); its ``fit_result`` holds the history, and the module is left with the last good weights.
    """
    options = (options if options is not None else TrainingOptions()).replace(**changes)
    if options.max_epochs is None:
        raise OptionError("{max_epochs} is not set: pass the number of epochs", "max_epochs")
    check_accelerator(options.accelerator, options.devices)
    if resume_from is not None and not Path(resume_from).is_file():
        raise CheckpointError(f"no checkpoint at {resume_from}: pass the last.ckpt of an interrupted fit")
    seed = int(options.seed) if options.seed is not None else 0
    with _quiet_lightning(), _seeded_globals(seed):
        return _fit(module, datamodule, options, seed, kl_schedule, checkpoint_dir, resume_from,
                    checkpoint_every_steps, log_dir, callbacks)


@contextlib.contextmanager
def _quiet_lightning() -> Iterator[None]:
    """Lightning's start-up banners (GPU/TPU available, tips) off for the fit; its warnings still show."""
    loggers = [logging.getLogger(name) for name in ("lightning.pytorch", "lightning.fabric", "lightning")]
    levels = [lg.level for lg in loggers]
    for lg in loggers:
        lg.setLevel(logging.WARNING)
    try:
        yield
    finally:
        for lg, level in zip(loggers, levels, strict=True):
            lg.setLevel(level)


@contextlib.contextmanager
def _seeded_globals(seed: int) -> Iterator[None]:
    """Python's, numpy's and torch's global generators seeded for the block, then given back as they were: a fit
    is reproducible and leaves the caller's random streams alone."""
    py_state, np_state = random.getstate(), np.random.get_state()
    devices = list(range(torch.cuda.device_count())) if torch.cuda.is_available() else []
    with torch.random.fork_rng(devices=devices):
        random.seed(seed)
        np.random.seed(seed % 2**32)
        torch.manual_seed(seed)
        try:
            yield
        finally:
            random.setstate(py_state)
            np.random.set_state(np_state)


def _fit(
    module: VAEModule,
    datamodule: ArrayDataModule,
    options: TrainingOptions,
    seed: int,
    kl_schedule: KLSchedule | None,
    checkpoint_dir: str | Path | None,
    resume_from: str | Path | None,
    checkpoint_every_steps: int | None,
    log_dir: str | Path | None,
    callbacks: list[L.Callback] | None,
) -> FitResult:
    o = options
    schedule = kl_schedule or make_schedule(o.kl_schedule, warmup=o.kl_warmup)
    budget = o.max_time * 60.0 if o.max_time is not None else None
    plan = VAETrainingPlan(
        module,
        lr=o.lr,
        weight_decay=o.weight_decay,
        n_samples=o.n_samples,
        adam_eps=o.adam_eps,
        lr_schedule=o.lr_schedule,
        time_budget_s=budget,
        latent_check_items=diagnostic_items(len(datamodule.train_indices)),
    )
    has_validation = len(datamodule.validation_indices) > 0
    monitor = CollapseMonitor()
    best = BestWeights(MONITOR, schedule)
    recorder = HistoryRecorder()
    guard = DivergenceGuard(o.max_skipped_steps)
    training_device = TrainingDevice()
    all_callbacks: list[L.Callback] = [
        KLAnnealing(schedule),
        monitor,
        recorder,
        guard,
        training_device,
        *(callbacks or []),
    ]
    if has_validation:
        if o.restore_best_weights:
            all_callbacks.append(best)
        if o.early_stopping:
            all_callbacks.append(
                WarmupAwareEarlyStopping(schedule, monitor=MONITOR, mode="max", patience=o.patience, check_finite=False)
            )
    checkpoint = None
    if checkpoint_dir is not None:
        checkpoint = ResumableCheckpoint(checkpoint_dir, o.checkpoint_every_minutes, checkpoint_every_steps)
        all_callbacks.append(checkpoint)
    logger = CSVLogger(save_dir=str(log_dir), name="", version="") if log_dir is not None else False
    n_batches = max(1, -(-len(datamodule.train_indices) // datamodule.batch_size))
    chosen_precision = resolve_precision(o.accelerator, o.precision)
    precision_check: dict[str, Any] = {}
    if o.precision is None and chosen_precision == "bf16-mixed":  # the default bf16 only where it keeps the ELBO
        precision_check = check_bf16(module, datamodule.validation_arrays(), "cuda", seed=seed)
        if not precision_check["bf16_keeps_elbo"]:
            chosen_precision = "32-true"
    try:
        trainer = L.Trainer(
            max_epochs=o.max_epochs,
            max_time=timedelta(seconds=budget) if budget is not None else None,
            accelerator=o.accelerator,
            devices=o.devices,
            strategy=o.strategy,
            num_nodes=o.num_nodes,
            use_distributed_sampler=False,  # the data modules shard by rank themselves (RankShardedBatchSampler)
            precision=chosen_precision,
            gradient_clip_val=o.gradient_clip_val,
            callbacks=all_callbacks,
            logger=logger,
            enable_checkpointing=checkpoint is not None,
            enable_progress_bar=o.progress_bar,
            enable_model_summary=False,
            num_sanity_val_steps=0,
            log_every_n_steps=min(50, n_batches),
            default_root_dir=str(log_dir) if log_dir is not None else None,
        )
    except (MisconfigurationException, ValueError, TypeError, RuntimeError) as e:
        first = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        raise OptionError(
            f"the trainer settings are not usable here ({first[:200]}): check {{accelerator}}, {{devices}}, "
            "{strategy} and {precision}",
            "accelerator",
            "devices",
            "strategy",
            "precision",
        ) from None
    _check_launch(trainer)
    fit_kwargs: dict[str, Any] = {"ckpt_path": str(resume_from) if resume_from else None}
    if resume_from and "weights_only" in inspect.signature(trainer.fit).parameters:
        fit_kwargs["weights_only"] = True  # tensors and plain containers only: no code runs on load
    diverged: DivergenceError | None = None
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=".*does not have many workers.*")
        warnings.filterwarnings("ignore", message=".*GPU available but not used.*")
        warnings.filterwarnings("ignore", message=".*IterableDataset.*__len__.*")  # streamed data, no workers
        # the data order is restored by ResumableCheckpoint, which Lightning does not know about
        warnings.filterwarnings("ignore", message=".*dataloader is not resumable.*")
        warnings.filterwarnings("ignore", message=".*`training_step` returned `None`.*")  # a skipped step
        try:
            trainer.fit(plan, datamodule=datamodule, **fit_kwargs)
        except DivergenceError as e:
            diverged = e
    if training_device.device is not None:  # inference then runs where training ran, not on the CPU
        module.to(training_device.device)
    run = {"precision": chosen_precision, **precision_check, "allocator": allocator_state()}
    report = None
    if diverged is None and not all_finite(plan.parameters()):
        diverged = DivergenceError(
            f"training diverged: the weights are not finite after the last step; {DIVERGENCE_HINT}",
            options=HINT_OPTIONS,
        )
    if diverged is None:
        report = latent_report(module, datamodule.validation_arrays())
        if not report.finite:
            # NaN latents mean the fit diverged; calling that a posterior collapse would send the user the wrong way
            diverged = DivergenceError(
                f"training diverged: the encoder gives non-finite latents on the validation data; {DIVERGENCE_HINT}",
                options=HINT_OPTIONS,
            )
    if diverged is None:
        result = _fit_result(module, datamodule, trainer, plan, recorder, monitor, best, checkpoint, report, run)
        if result.collapse is not None and result.collapse.collapsed:
            warnings.warn(result.collapse.message(), CollapseWarning, stacklevel=2)
        return result
    restored = _restore_last_good(plan, best, guard)
    result = _fit_result(module, datamodule, trainer, plan, recorder, monitor, best, checkpoint, None, run, restored)
    result.metrics["diverged"] = True
    diverged.fit_result = result
    raise diverged


def _check_launch(trainer: L.Trainer) -> None:
    """Refuse devices and nodes that do not match the processes a launcher started (SLURM's tasks per node and
    nodes, torchrun's world size): Lightning checks them only as the processes start, with a traceback."""
    environment = getattr(trainer.strategy, "cluster_environment", None)
    if environment is None:  # one process, no launcher
        return
    try:
        environment.validate_settings(num_devices=trainer.num_devices, num_nodes=trainer.num_nodes)
    except ValueError as e:
        first = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        raise OptionError(
            f"{{devices}} {trainer.num_devices} and {{num_nodes}} {trainer.num_nodes} do not match the processes the "
            f"launcher started ({first[:200]}): set {{devices}} to its processes per node and {{num_nodes}} to its "
            "nodes",
            "devices",
            "num_nodes",
        ) from None


def _restore_last_good(plan: VAETrainingPlan, best: BestWeights, guard: DivergenceGuard) -> tuple[bool, int | None]:
    """Load the best validation weights, else the last finite epoch-end weights: (loaded, their epoch)."""
    if best.best_state is not None:
        plan.load_state_dict(best.best_state)
        return True, best.best_epoch
    if guard.last_good is not None:
        plan.load_state_dict(guard.last_good)
        return True, guard.last_good_epoch
    return False, None


def _fit_result(
    module: VAEModule,
    datamodule: ArrayDataModule,
    trainer: L.Trainer,
    plan: VAETrainingPlan,
    recorder: HistoryRecorder,
    monitor: CollapseMonitor,
    best: BestWeights,
    checkpoint: ResumableCheckpoint | None,
    report: CollapseReport | None,
    run: dict[str, Any],
    restored: tuple[bool, int | None] | None = None,
) -> FitResult:
    """The result of the weights the module holds: ``report`` their latent report (``None``: measure it now),
    ``run`` figures of the run (precision), ``restored`` (after a divergence) whether the last good weights were
    loaded and from which epoch (``None``: the ones the run started from)."""
    history = recorder.history()
    report = report if report is not None else latent_report(module, datamodule.validation_arrays())
    collapse = report if report.finite else None
    elapsed = recorder.time_s
    # epochs whose training finished (current_epoch lags by one when a resume finds the run already complete)
    epochs = int(trainer.fit_loop.epoch_progress.current.processed)
    metrics: dict[str, Any] = {"epochs_trained": epochs, "time_s": round(elapsed, 3)}
    # the metrics of the epoch whose weights are returned (after a divergence: none for the starting weights)
    chosen = restored[1] if restored is not None else best.best_epoch
    rows = history[history["epoch"] == chosen] if chosen is not None and not history.empty else history.iloc[:0]
    if restored is None and rows.empty and not history.empty:
        rows = history.iloc[[-1]]
    if not rows.empty:
        row = rows.iloc[-1]
        if restored is None and best.best_epoch is not None and int(row["epoch"]) == best.best_epoch:
            metrics["best_epoch"] = int(row["epoch"])  # only when those weights are the ones returned
        metrics["weights_epoch"] = int(row["epoch"])
        for col in history.columns:
            if col != "epoch" and pd.notna(row[col]):
                metrics[col] = float(row[col])
    else:
        metrics["weights_epoch"] = None
    metrics["active_units"] = collapse.active_units if collapse is not None else None
    if collapse is not None and collapse.finite:
        metrics["mutual_information"] = collapse.mutual_information
        metrics["mutual_information_upper_bound"] = collapse.mi_upper_bound
    if collapse is not None and collapse.latent_gain is not None:
        metrics["latent_gain_validation"] = collapse.latent_gain
    for name, value in (collapse.extra if collapse is not None else {}).items():
        metrics[f"{name}_validation"] = value
    metrics["n_latent"] = module.n_latent
    metrics["device"] = str(next(module.parameters()).device)
    metrics.update(run)
    metrics["optimizer_steps"] = int(trainer.global_step)
    metrics["skipped_steps"] = plan.skipped_steps
    metrics["resumes"] = checkpoint.resumes if checkpoint is not None else 0
    n_seen = len(datamodule.train_indices) * max(epochs, 1)
    metrics["train_obs_per_s"] = round(n_seen / elapsed, 1) if elapsed > 0 else None
    metrics["collapsed"] = collapse.collapsed if collapse is not None else None
    # the per-epoch collapse diagnostics: on how many validation items, and their share of the training time
    metrics["diagnostics_items"] = plan.latent_check_items
    metrics["diagnostics_s"] = round(plan.diagnostics_s, 3)
    metrics["diagnostics_share"] = round(plan.diagnostics_s / elapsed, 4) if elapsed > 0 else None
    for k, v in list(metrics.items()):
        if isinstance(v, (np.floating, np.integer)):
            metrics[k] = v.item()
    return FitResult(
        history=history,
        metrics=metrics,
        collapse=collapse,
        kl_per_dim_history=[r.kl_per_dim for r in monitor.history],
        log_dir=str(trainer.logger.log_dir) if trainer.logger is not None else None,
        is_global_zero=is_global_zero(),
    )
