"""Lightning callbacks: KL annealing, collapse diagnostics and best-weight restoration (all resumable)."""

from __future__ import annotations

import copy
import dataclasses
import math
import time
from typing import Any

import lightning as L
import torch
from lightning.pytorch.callbacks import EarlyStopping

from scivae.core.diagnostics import CollapseReport, collapse_report
from scivae.core.distributed import gather_rows
from scivae.core.train.plan import VAETrainingPlan
from scivae.core.train.schedules import KLSchedule


class KLAnnealing(L.Callback):
    """Sets ``plan.kl_weight = schedule(global_step)`` before every training step.

    The schedule is bound to the run length once; a resumed fit restores the bound schedule from the checkpoint
    instead of re-binding it to the new run.
    """

    def __init__(self, schedule: KLSchedule) -> None:
        self.schedule = schedule
        self._restored = False

    def state_dict(self) -> dict[str, Any]:
        return {"schedule": self.schedule.to_dict()}

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        for key, value in state_dict["schedule"].items():
            setattr(self.schedule, key, value)
        self._restored = True

    def on_train_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        if self._restored:
            return
        total = trainer.estimated_stepping_batches
        if not math.isfinite(total):
            total = trainer.max_steps if trainer.max_steps and trainer.max_steps > 0 else 10_000
        self.schedule.bind(int(total))

    def on_train_batch_start(self, trainer: L.Trainer, pl_module: L.LightningModule, batch, batch_idx: int) -> None:
        pl_module.kl_weight = self.schedule(trainer.global_step)


class CollapseMonitor(L.Callback):
    """Logs the collapse diagnostics after every validation epoch.

    KL per latent dimension, active units, the mutual information ``I(x; z)``, the latent gain (nats of
    reconstruction the decoder gets from z) and the adapter's reconstruction accuracies: ``active_units``,
    ``kl_total_validation``, ``mutual_information``, ``latent_gain_validation`` and ``<name>_validation``.

    Under DDP the validation posteriors of all processes are gathered first, so the figures are those of the
    whole validation set.

    Attributes
    ----------
    history
        One :class:`CollapseReport` per validation epoch.
    """

    def __init__(self, threshold: float = 0.01) -> None:
        self.threshold = threshold
        self.history: list[CollapseReport] = []

    def state_dict(self) -> dict[str, Any]:
        return {"history": [dataclasses.asdict(r) for r in self.history]}

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        self.history = [CollapseReport(**r) for r in state_dict["history"]]

    def on_validation_epoch_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        if trainer.sanity_checking or not isinstance(pl_module, VAETrainingPlan):
            return
        start = time.perf_counter()
        self._report(pl_module)
        pl_module.diagnostics_s += time.perf_counter() - start

    def _report(self, pl_module: VAETrainingPlan) -> None:
        posterior = pl_module.validation_posterior()
        if posterior is None:
            return
        checks = {name: float(gather_rows(v).mean()) for name, v in sorted(pl_module.validation_check_values().items())}
        gain = checks.pop("latent_gain", None)
        report = collapse_report(
            *(gather_rows(t) for t in posterior), threshold=self.threshold, latent_gain=gain, extra=checks
        )
        self.history.append(report)
        pl_module.log("active_units", float(report.active_units), prog_bar=True, sync_dist=True)
        pl_module.log("kl_total_validation", report.kl_total, sync_dist=True)
        if math.isfinite(report.mutual_information):
            pl_module.log("mutual_information", report.mutual_information, prog_bar=True, sync_dist=True)
        if gain is not None and math.isfinite(gain):
            pl_module.log("latent_gain_validation", gain, sync_dist=True)
        for name, value in checks.items():
            pl_module.log(f"{name}_validation", value, prog_bar=name == "reconstruction_accuracy", sync_dist=True)


def _at_full_weight(schedule: KLSchedule | None, step: int) -> bool:
    return schedule is None or schedule(step) >= schedule.max_weight * (1.0 - 1e-6)


class WarmupAwareEarlyStopping(EarlyStopping):
    """Early stopping that only counts epochs trained at the full KL weight.

    During a warm-up the validation ELBO can peak early (a weak KL penalty fits the data well while the
    weight is small) and plain early stopping would then stop before the model ever trained on its real
    objective.
    """

    def __init__(self, schedule: KLSchedule | None, **kwargs) -> None:
        super().__init__(**kwargs)
        self.schedule = schedule

    def _should_skip_check(self, trainer: L.Trainer) -> bool:
        return super()._should_skip_check(trainer) or not _at_full_weight(self.schedule, trainer.global_step)


class BestWeights(L.Callback):
    """Keeps an in-memory copy of the weights with the best validation objective and restores it at the end.

    Early stopping stops *after* the best epoch; without this the returned model is the last, worse one.
    Only epochs at the full KL weight compete (see :class:`WarmupAwareEarlyStopping`); if the run never
    reaches it, the last weights are kept.
    """

    def __init__(self, monitor: str = "objective_validation", schedule: KLSchedule | None = None) -> None:
        self.monitor = monitor
        self.schedule = schedule
        self.best_score = -math.inf
        self.best_epoch: int | None = None
        self._state: dict[str, torch.Tensor] | None = None

    def on_validation_epoch_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        if trainer.sanity_checking or not _at_full_weight(self.schedule, trainer.global_step):
            return
        score = trainer.callback_metrics.get(self.monitor)
        if score is None or not torch.isfinite(score):
            return
        if float(score) > self.best_score:
            self.best_score = float(score)
            self.best_epoch = trainer.current_epoch
            self._state = copy.deepcopy({k: v.detach().cpu() for k, v in pl_module.state_dict().items()})

    def state_dict(self) -> dict[str, Any]:
        return {"best_score": self.best_score, "best_epoch": self.best_epoch, "weights": self._state}

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        self.best_score = float(state_dict["best_score"])
        self.best_epoch = state_dict["best_epoch"]
        self._state = state_dict["weights"]

    @property
    def best_state(self) -> dict[str, torch.Tensor] | None:
        """The best weights so far (a CPU copy of the plan's state dict), or ``None``."""
        return self._state

    def on_fit_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        if self._state is not None:
            pl_module.load_state_dict(self._state)
