"""The Lightning training plan: optimisation of a :class:`VAEModule`, kept apart from the module itself."""

from __future__ import annotations

import math
import time
import warnings

import lightning as L
import torch
from torch import Tensor

from scivae.core.data.device import head_rows
from scivae.core.diagnostics import latent_gain
from scivae.core.module.base import Batch, VAEModule
from scivae.core.module.posterior import GaussianPosterior

#: Learning-rate schedules of :class:`VAETrainingPlan`.
LR_SCHEDULES = ("constant", "cosine")
#: Metrics logged for the progress bar only (aliases): left out of the fit history.
PROGRESS_BAR_ONLY = ("val_elbo",)


#: Per-epoch means of the training steps (see :meth:`VAETrainingPlan.train_epoch_means`).
def diagnostic_items(n_train: int) -> int:
    """Validation items per epoch for the latent checks of a fit on ``n_train`` training items.

    About 2 % of the items an epoch trains on, between 64 and 512: the checks decode every item twice, so their
    share of a fit stays small whatever the data size (the fits report it as ``diagnostics_share``; measured in
    ``benchmarks/cells/RESULTS.md``). KL per dimension, active units and the mutual information still use every
    validation item.
    """
    return int(min(512, max(64, n_train // 50)))


TRAIN_METRICS = ("loss_train", "elbo_train", "reconstruction_train", "kl_train", "kl_weight")


class VAETrainingPlan(L.LightningModule):
    """Trains a :class:`VAEModule` on its ELBO.

    The KL annealing weight ``kl_weight`` is set before every step by the
    :class:`~scivae.core.train.callbacks.KLAnnealing` callback; validation always uses weight 1 so the monitored
    validation ELBO is the true bound.

    Parameters
    ----------
    module
        The VAE.
    lr
        Adam learning rate.
    weight_decay
        Adam weight decay.
    n_samples
        Monte-Carlo samples of z per observation in the training objective.
    adam_eps
        Adam's epsilon (a large value, e.g. 0.01 as in scvi-tools, damps steps of rarely-updated weights).
    lr_schedule
        ``"constant"`` or ``"cosine"``: decay from ``lr`` to 0 over the planned optimiser steps
        (``max_epochs`` times the batches per epoch), step by step.
    time_budget_s
        Wall-clock training budget in seconds, if any: the cosine schedule then follows whichever of the
        step count and the elapsed time is further along, so the rate reaches 0 when the budget ends.
    latent_check_items
        Validation items per epoch on which the latent gain and the adapter's reconstruction accuracy are
        measured (they cost extra decoder passes); 0 switches them off. :func:`diagnostic_items` gives the
        default of a fit. The seconds they and the :class:`~scivae.core.train.callbacks.CollapseMonitor` take
        add up in ``diagnostics_s``.
    """

    def __init__(
        self,
        module: VAEModule,
        lr: float = 1e-3,
        weight_decay: float = 0.0,
        n_samples: int = 1,
        adam_eps: float = 1e-8,
        lr_schedule: str = "constant",
        latent_check_items: int = 2048,
        time_budget_s: float | None = None,
    ) -> None:
        super().__init__()
        if lr_schedule not in LR_SCHEDULES:
            raise ValueError(f"unknown lr_schedule {lr_schedule!r}: use one of {', '.join(LR_SCHEDULES)}")
        self.lr_schedule = lr_schedule
        self.module = module
        self.lr = lr
        self.adam_eps = adam_eps
        self.weight_decay = weight_decay
        self.n_samples = n_samples
        self.kl_weight = 1.0
        self.skipped_steps = 0
        self.latent_check_items = int(latent_check_items)
        self.diagnostics_s = 0.0
        self.time_budget_s = time_budget_s
        self._train_clock: float | None = None
        self._time_before = 0.0  # training seconds of the runs this one resumed (the time budget spans them)
        self._lr_total_steps: int | None = None
        self._epoch_sums: Tensor | None = None  # TRAIN_METRICS sums weighted by rows, then the row count
        self._n_seen = 0  # training rows of this epoch in this process, skipped steps included
        self._val_mu: list[Tensor] = []
        self._val_logvar: list[Tensor] = []
        self._checks: dict[str, list[Tensor]] = {}
        self._grad_norm: tuple[list[Tensor], Tensor] | None = None  # set by on_before_optimizer_step

    def training_step(self, batch: Batch, batch_idx: int) -> Tensor | None:
        out = self.module.loss(batch, kl_weight=self.kl_weight, step=self.global_step, n_samples=self.n_samples)
        n = out.reconstruction.shape[0]
        self._n_seen += n
        if not torch.isfinite(out.loss):
            # NaN guard: skip this update instead of poisoning the weights; count it in the history.
            self.skipped_steps += 1
            # one message per kind (Python shows it once): the count goes to the fit report
            warnings.warn("non-finite loss: update skipped (see skipped_steps)", RuntimeWarning, stacklevel=2)
            return None
        # Epoch sums kept on the device (a log_dict per step is Python-heavy) and checkpointed, so that a fit
        # resumed inside an epoch reports the same means as an uninterrupted one.
        weight = torch.full((), float(self.kl_weight), device=out.loss.device)
        terms = torch.stack(
            [
                out.loss.detach(),
                out.elbo.detach().mean(),
                out.reconstruction.detach().mean(),
                out.kl.detach().mean(),
                weight,
            ]
        ).float()
        terms = torch.cat([terms * n, terms.new_tensor([float(n)])])
        self._epoch_sums = terms if self._epoch_sums is None else self._epoch_sums.to(terms.device) + terms
        return out.loss

    def on_train_epoch_start(self) -> None:
        self._epoch_sums, self._n_seen = None, 0

    def train_epoch_means(self) -> dict[str, float]:
        """Row-weighted means of the training metrics over the current epoch (resumed parts included), over all
        processes of a distributed run, and ``n_obs_train``, the training rows seen."""
        sums = self._epoch_sums if self._epoch_sums is not None else torch.zeros(len(TRAIN_METRICS) + 1)
        sums = torch.cat([sums.to(self.device), sums.new_tensor([float(self._n_seen)]).to(self.device)])
        if self.trainer.world_size > 1:
            sums = self.trainer.strategy.reduce(sums, reduce_op="sum")
        values = sums.tolist()
        n_rows, n_seen = values[-2], values[-1]
        means = {"n_obs_train": n_seen}
        if n_rows > 0:
            means.update({k: v / n_rows for k, v in zip(TRAIN_METRICS, values[:-2], strict=True)})
        return means

    def on_train_epoch_end(self) -> None:
        # for the progress bar and loggers; the fit history takes train_epoch_means() itself (HistoryRecorder)
        self.log_dict(self.train_epoch_means(), on_step=False, on_epoch=True)

    def on_before_optimizer_step(self, optimizer: torch.optim.Optimizer) -> None:
        # A finite loss can still give non-finite gradients (an overflow in backward); clipping would spread the
        # NaN to every weight, so the update is skipped like a non-finite loss (no gradient, no Adam step).
        self._grad_norm = None
        params = [p for group in optimizer.param_groups for p in group["params"] if p.grad is not None]
        if not params:
            return
        # one fused norm over all gradients (non-finite if any entry is) and one device sync: an isfinite pass
        # per tensor cost a measurable share of a small model's CPU step; the same norm then serves the clipping
        # (configure_gradient_clipping)
        norm = torch.nn.utils.get_total_norm([p.grad for p in params])
        if not bool(torch.isfinite(norm)):
            for p in params:
                p.grad = None
            self.skipped_steps += 1
            warnings.warn("non-finite gradient: update skipped (see skipped_steps)", RuntimeWarning, stacklevel=2)
            return
        self._grad_norm = (params, norm)

    def configure_gradient_clipping(
        self,
        optimizer: torch.optim.Optimizer,
        gradient_clip_val: float | None = None,
        gradient_clip_algorithm: str | None = None,
    ) -> None:
        # Lightning calls this right after on_before_optimizer_step: clipping by norm reuses the norm found
        # there instead of a second pass over the gradients.
        grad_norm, self._grad_norm = self._grad_norm, None
        if not gradient_clip_val or gradient_clip_val <= 0:
            return
        if gradient_clip_algorithm in (None, "norm"):
            if grad_norm is not None:  # None: the update was skipped, no gradient to clip
                params, norm = grad_norm
                torch.nn.utils.clip_grads_with_norm_(params, gradient_clip_val, norm)
        else:
            self.clip_gradients(
                optimizer, gradient_clip_val=gradient_clip_val, gradient_clip_algorithm=gradient_clip_algorithm
            )

    def on_save_checkpoint(self, checkpoint: dict) -> None:
        checkpoint["scivae_plan"] = {
            "skipped_steps": self.skipped_steps,
            "lr_total_steps": self._lr_total_steps,
            "epoch_sums": self._epoch_sums.detach().cpu() if self._epoch_sums is not None else None,
            "n_seen": self._n_seen,
            "train_time_s": self.train_time_s(),
            "diagnostics_s": self.diagnostics_s,
        }

    def on_load_checkpoint(self, checkpoint: dict) -> None:
        state = checkpoint.get("scivae_plan", {})
        self.skipped_steps = int(state.get("skipped_steps", 0))
        self._lr_total_steps = state.get("lr_total_steps")
        sums = state.get("epoch_sums")
        self._epoch_sums = sums.to(self.device) if sums is not None else None
        self._n_seen = int(state.get("n_seen", 0))
        self._time_before = float(state.get("train_time_s", 0.0))
        self.diagnostics_s = float(state.get("diagnostics_s", 0.0))

    def on_validation_epoch_start(self) -> None:
        self._val_mu, self._val_logvar = [], []
        self._checks = {}

    def validation_step(self, batch: Batch, batch_idx: int) -> None:
        out = self.module.loss(batch, kl_weight=1.0, step=self.global_step)
        n = out.reconstruction.shape[0]
        self.log_dict(
            {
                "elbo_validation": out.elbo.mean(),
                # what training minimises, at the full KL weight (beta, free bits): the figure early stopping and
                # the best weights follow; it is -ELBO when beta is 1 without free bits
                "objective_validation": -out.loss.detach(),
                "reconstruction_validation": out.reconstruction.mean(),
                "kl_validation": out.kl.mean(),
            },
            on_step=False,
            on_epoch=True,
            batch_size=n,
            prog_bar=False,
            sync_dist=True,
        )
        self.log(
            PROGRESS_BAR_ONLY[0],
            out.elbo.mean(),
            on_epoch=True,
            batch_size=n,
            prog_bar=True,
            logger=False,
            sync_dist=True,
        )
        self._val_mu.append(out.posterior.mu.float().cpu())
        self._val_logvar.append(out.posterior.logvar.float().cpu())
        checked = sum(len(v) for v in self._checks.get("latent_gain", []))
        remaining = self.latent_check_items - checked
        if remaining > 0:
            start = time.perf_counter()
            posterior = out.posterior
            if remaining < n:  # the cap holds for batches larger than it
                batch = head_rows(batch, remaining)
                posterior = GaussianPosterior(posterior.mu[:remaining], posterior.logvar[:remaining])
            for name, values in latent_checks(self.module, batch, posterior).items():
                self._checks.setdefault(name, []).append(values.float().cpu())
            self.diagnostics_s += time.perf_counter() - start

    def validation_posterior(self) -> tuple[Tensor, Tensor] | None:
        """Posterior means and log-variances gathered over the last validation epoch."""
        if not self._val_mu:
            return None
        return torch.cat(self._val_mu), torch.cat(self._val_logvar)

    def validation_check_values(self) -> dict[str, Tensor]:
        """Per-item latent checks (``latent_gain``, adapter accuracies) of the last validation epoch."""
        return {name: torch.cat(v) for name, v in self._checks.items() if v}

    def on_train_start(self) -> None:
        self._train_clock = time.perf_counter()

    def train_time_s(self) -> float:
        """Seconds of training so far, the runs this one resumed included."""
        now = time.perf_counter() - self._train_clock if self._train_clock is not None else 0.0
        return self._time_before + now

    def schedule_progress(self, step: int, total_steps: int | None) -> float:
        """Fraction of the run done, in [0, 1]: by steps, or by the time budget when that is further along."""
        progress = min(step / total_steps, 1.0) if total_steps else 0.0
        if self.time_budget_s and self._train_clock is not None:
            progress = max(progress, min(self.train_time_s() / self.time_budget_s, 1.0))
        return progress

    def configure_optimizers(self) -> torch.optim.Optimizer | dict:
        params = list(self.module.parameters())
        # The fused kernel updates all parameters in one call instead of a Python loop of kernels per tensor.
        fused = bool(params) and all(p.device.type in ("cpu", "cuda") for p in params)
        optimizer = torch.optim.Adam(params, lr=self.lr, weight_decay=self.weight_decay, eps=self.adam_eps, fused=fused)
        if self.lr_schedule == "constant":
            return optimizer
        # A resumed fit keeps the planned length of the run it continues (restored by on_load_checkpoint);
        # streamed data has no length (None: the time budget or max_epochs alone ends the schedule).
        if self._lr_total_steps is None:
            estimated = self.trainer.estimated_stepping_batches
            self._lr_total_steps = max(int(estimated), 1) if math.isfinite(estimated) else None
        total = self._lr_total_steps
        scheduler = torch.optim.lr_scheduler.LambdaLR(
            optimizer, lambda step: 0.5 * (1.0 + math.cos(math.pi * self.schedule_progress(step, total)))
        )
        return {"optimizer": optimizer, "lr_scheduler": {"scheduler": scheduler, "interval": "step"}}


@torch.no_grad()
def latent_checks(module: VAEModule, batch: Batch, posterior) -> dict[str, Tensor]:
    """Per-item latent gain (nats the decoder gets from z) and the adapter's reconstruction accuracies."""
    was_training = module.training
    module.eval()
    out = {"latent_gain": latent_gain(module, batch, posterior)}
    out.update(module.reconstruction_accuracy(batch, posterior) or {})
    module.train(was_training)
    return out
