"""The Lightning training plan: optimisation of a :class:`VAEModule`, kept apart from the module itself."""

from __future__ import annotations

import math
import warnings

import lightning as L
import torch
from torch import Tensor

from scivae.core.module import Batch, VAEModule

#: Learning-rate schedules of :class:`VAETrainingPlan`.
LR_SCHEDULES = ("constant", "cosine")
#: Metrics logged for the progress bar only (aliases): left out of the fit history.
PROGRESS_BAR_ONLY = ("val_elbo",)
#: Per-epoch means of the training steps (see :meth:`VAETrainingPlan.train_epoch_means`).
TRAIN_METRICS = ("loss_train", "elbo_train", "reconstruction_train", "kl_train", "kl_weight")


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
    """

    def __init__(
        self,
        module: VAEModule,
        lr: float = 1e-3,
        weight_decay: float = 0.0,
        n_samples: int = 1,
        adam_eps: float = 1e-8,
        lr_schedule: str = "constant",
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
        self._lr_total_steps: int | None = None
        self._epoch_sums: dict[str, Tensor] = {}
        self._epoch_count = 0
        self._val_mu: list[Tensor] = []
        self._val_logvar: list[Tensor] = []

    def training_step(self, batch: Batch, batch_idx: int) -> Tensor | None:
        out = self.module.loss(batch, kl_weight=self.kl_weight, step=self.global_step, n_samples=self.n_samples)
        if not torch.isfinite(out.loss):
            # NaN guard: skip this update instead of poisoning the weights; count it in the history.
            self.skipped_steps += 1
            # one message per kind (Python shows it once): the count goes to the fit report
            warnings.warn("non-finite loss: update skipped (see skipped_steps)", RuntimeWarning, stacklevel=2)
            return None
        n = out.reconstruction.shape[0]
        loss, elbo, rec, kl = out.loss.detach(), out.elbo.mean(), out.reconstruction.mean(), out.kl.mean()
        weight = torch.tensor(float(self.kl_weight), device=out.loss.device)
        values = dict(zip(TRAIN_METRICS, (loss, elbo.detach(), rec.detach(), kl.detach(), weight), strict=True))
        self.log_dict(values, on_step=False, on_epoch=True, batch_size=n)
        self._accumulate(values, n)
        return out.loss

    def _accumulate(self, values: dict[str, Tensor], n: int) -> None:
        # Lightning's own epoch means are lost when a fit resumes inside an epoch; these sums are checkpointed
        # (same float32 batch-size-weighted sums as Lightning's, so uninterrupted runs report the same figures).
        for key, value in values.items():
            term = value.float() * n
            self._epoch_sums[key] = self._epoch_sums[key] + term if key in self._epoch_sums else term
        self._epoch_count += n

    def on_train_epoch_start(self) -> None:
        self._epoch_sums, self._epoch_count = {}, 0

    def train_epoch_means(self) -> dict[str, float]:
        """Batch-size-weighted means of the training metrics over the current epoch (resumed parts included)."""
        if self._epoch_count == 0:
            return {}
        return {k: float(v / self._epoch_count) for k, v in self._epoch_sums.items()}

    def on_before_optimizer_step(self, optimizer: torch.optim.Optimizer) -> None:
        # A finite loss can still give non-finite gradients (an overflow in backward); clipping would spread the
        # NaN to every weight, so the update is skipped like a non-finite loss (no gradient, no Adam step).
        params = [p for group in optimizer.param_groups for p in group["params"] if p.grad is not None]
        if params and not bool(torch.stack([p.grad.isfinite().all() for p in params]).all()):  # one device sync
            for p in params:
                p.grad = None
            self.skipped_steps += 1
            warnings.warn("non-finite gradient: update skipped (see skipped_steps)", RuntimeWarning, stacklevel=2)

    def on_save_checkpoint(self, checkpoint: dict) -> None:
        checkpoint["scivae_plan"] = {
            "skipped_steps": self.skipped_steps,
            "lr_total_steps": self._lr_total_steps,
            "epoch_sums": {k: v.detach().cpu() for k, v in self._epoch_sums.items()},
            "epoch_count": self._epoch_count,
        }

    def on_load_checkpoint(self, checkpoint: dict) -> None:
        state = checkpoint.get("scivae_plan", {})
        self.skipped_steps = int(state.get("skipped_steps", 0))
        self._lr_total_steps = state.get("lr_total_steps")
        self._epoch_sums = {k: v.to(self.device) for k, v in state.get("epoch_sums", {}).items()}
        self._epoch_count = int(state.get("epoch_count", 0))

    def on_validation_epoch_start(self) -> None:
        self._val_mu, self._val_logvar = [], []

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
        )
        self.log(PROGRESS_BAR_ONLY[0], out.elbo.mean(), on_epoch=True, batch_size=n, prog_bar=True, logger=False)
        self._val_mu.append(out.posterior.mu.float().cpu())
        self._val_logvar.append(out.posterior.logvar.float().cpu())

    def validation_posterior(self) -> tuple[Tensor, Tensor] | None:
        """Posterior means and log-variances gathered over the last validation epoch."""
        if not self._val_mu:
            return None
        return torch.cat(self._val_mu), torch.cat(self._val_logvar)

    def configure_optimizers(self) -> torch.optim.Optimizer | dict:
        optimizer = torch.optim.Adam(
            self.module.parameters(), lr=self.lr, weight_decay=self.weight_decay, eps=self.adam_eps
        )
        if self.lr_schedule == "constant":
            return optimizer
        # A resumed fit keeps the planned length of the run it continues (restored by on_load_checkpoint).
        if self._lr_total_steps is None:
            self._lr_total_steps = max(int(self.trainer.estimated_stepping_batches), 1)
        total = self._lr_total_steps
        scheduler = torch.optim.lr_scheduler.LambdaLR(
            optimizer, lambda step: 0.5 * (1.0 + math.cos(math.pi * min(step, total) / total))
        )
        return {"optimizer": optimizer, "lr_scheduler": {"scheduler": scheduler, "interval": "step"}}
