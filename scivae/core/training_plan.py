"""The Lightning training plan: optimisation of a :class:`VAEModule`, kept apart from the module itself."""

from __future__ import annotations

import math
import time
import warnings

import lightning as L
import torch
from torch import Tensor

from scivae.core.diagnostics import latent_gain
from scivae.core.module import Batch, VAEModule

#: Learning-rate schedules of :class:`VAETrainingPlan`.
LR_SCHEDULES = ("constant", "cosine")


class VAETrainingPlan(L.LightningModule):
    """Trains a :class:`VAEModule` on its ELBO.

    The KL annealing weight ``kl_weight`` is set before every step by the
    :class:`~scivae.core.callbacks.KLAnnealing` callback; validation always uses weight 1 so the monitored
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
        measured (they cost extra decoder passes); 0 switches them off.
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
        self.time_budget_s = time_budget_s
        self._train_clock: float | None = None
        self._n_seen = 0  # training rows of this epoch in this process; summed over processes when logged
        self._val_mu: list[Tensor] = []
        self._val_logvar: list[Tensor] = []
        self._checks: dict[str, list[Tensor]] = {}
        self._train_sums: Tensor | None = None
        self._train_n = 0
        self._train_kl_weight = 0.0

    def training_step(self, batch: Batch, batch_idx: int) -> Tensor | None:
        out = self.module.loss(batch, kl_weight=self.kl_weight, step=self.global_step, n_samples=self.n_samples)
        self._n_seen += out.reconstruction.shape[0]
        if not torch.isfinite(out.loss):
            # NaN guard: skip this update instead of poisoning the weights; count it in the history.
            self.skipped_steps += 1
            warnings.warn(f"non-finite loss at step {self.global_step}: update skipped", RuntimeWarning, stacklevel=2)
            return None
        # Epoch sums kept on the device and logged once per epoch: a log_dict per step is Python-heavy.
        n = out.reconstruction.shape[0]
        terms = torch.stack([out.loss.detach() * n, -out.elbo.sum(), out.reconstruction.sum(), out.kl.sum()])
        self._train_sums = terms.detach() if self._train_sums is None else self._train_sums + terms.detach()
        self._train_n += n
        self._train_kl_weight += float(self.kl_weight) * n
        return out.loss

    def on_train_epoch_start(self) -> None:
        self._train_sums, self._train_n, self._train_kl_weight = None, 0, 0.0
        self._n_seen = 0

    def on_train_epoch_end(self) -> None:
        self.log("n_obs_train", float(self._n_seen), sync_dist=True, reduce_fx="sum")
        if self._train_sums is None or self._train_n == 0:
            return
        loss, neg_elbo, rec, kl = (self._train_sums.float() / self._train_n).tolist()
        self.log_dict(
            {
                "loss_train": loss,
                "elbo_train": -neg_elbo,
                "reconstruction_train": rec,
                "kl_train": kl,
                "kl_weight": self._train_kl_weight / self._train_n,
            },
            on_step=False,
            on_epoch=True,
            sync_dist=True,
        )

    def on_validation_epoch_start(self) -> None:
        self._val_mu, self._val_logvar = [], []
        self._checks = {}

    def validation_step(self, batch: Batch, batch_idx: int) -> None:
        out = self.module.loss(batch, kl_weight=1.0, step=self.global_step)
        n = out.reconstruction.shape[0]
        self.log_dict(
            {
                "elbo_validation": out.elbo.mean(),
                "reconstruction_validation": out.reconstruction.mean(),
                "kl_validation": out.kl.mean(),
            },
            on_step=False,
            on_epoch=True,
            batch_size=n,
            prog_bar=False,
            sync_dist=True,
        )
        self.log("val_elbo", out.elbo.mean(), on_epoch=True, batch_size=n, prog_bar=True, logger=False, sync_dist=True)
        self._val_mu.append(out.posterior.mu.float().cpu())
        self._val_logvar.append(out.posterior.logvar.float().cpu())
        checked = sum(len(v) for v in self._checks.get("latent_gain", []))
        if checked < self.latent_check_items:
            for name, values in latent_checks(self.module, batch, out.posterior).items():
                self._checks.setdefault(name, []).append(values.float().cpu())

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

    def schedule_progress(self, step: int, total_steps: int | None) -> float:
        """Fraction of the run done, in [0, 1]: by steps, or by the time budget when that is further along."""
        progress = min(step / total_steps, 1.0) if total_steps else 0.0
        if self.time_budget_s and self._train_clock is not None:
            progress = max(progress, min((time.perf_counter() - self._train_clock) / self.time_budget_s, 1.0))
        return progress

    def configure_optimizers(self) -> torch.optim.Optimizer | dict:
        params = list(self.module.parameters())
        # The fused kernel updates all parameters in one call instead of a Python loop of kernels per tensor.
        fused = bool(params) and all(p.device.type in ("cpu", "cuda") for p in params)
        optimizer = torch.optim.Adam(
            params, lr=self.lr, weight_decay=self.weight_decay, eps=self.adam_eps, fused=fused
        )
        if self.lr_schedule == "constant":
            return optimizer
        estimated = self.trainer.estimated_stepping_batches
        total = max(int(estimated), 1) if math.isfinite(estimated) else None
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
