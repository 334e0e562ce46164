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
        self._val_mu: list[Tensor] = []
        self._val_logvar: list[Tensor] = []
        self._train_sums: Tensor | None = None
        self._train_n = 0
        self._train_kl_weight = 0.0

    def training_step(self, batch: Batch, batch_idx: int) -> Tensor | None:
        out = self.module.loss(batch, kl_weight=self.kl_weight, step=self.global_step, n_samples=self.n_samples)
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

    def on_train_epoch_end(self) -> None:
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
        )

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
        self.log("val_elbo", out.elbo.mean(), on_epoch=True, batch_size=n, prog_bar=True, logger=False)
        self._val_mu.append(out.posterior.mu.float().cpu())
        self._val_logvar.append(out.posterior.logvar.float().cpu())

    def validation_posterior(self) -> tuple[Tensor, Tensor] | None:
        """Posterior means and log-variances gathered over the last validation epoch."""
        if not self._val_mu:
            return None
        return torch.cat(self._val_mu), torch.cat(self._val_logvar)

    def configure_optimizers(self) -> torch.optim.Optimizer | dict:
        params = list(self.module.parameters())
        # The fused kernel updates all parameters in one call instead of a Python loop of kernels per tensor.
        fused = bool(params) and all(p.device.type in ("cpu", "cuda") for p in params)
        optimizer = torch.optim.Adam(
            params, lr=self.lr, weight_decay=self.weight_decay, eps=self.adam_eps, fused=fused
        )
        if self.lr_schedule == "constant":
            return optimizer
        total = max(int(self.trainer.estimated_stepping_batches), 1)
        scheduler = torch.optim.lr_scheduler.LambdaLR(
            optimizer, lambda step: 0.5 * (1.0 + math.cos(math.pi * min(step, total) / total))
        )
        return {"optimizer": optimizer, "lr_scheduler": {"scheduler": scheduler, "interval": "step"}}
