"""Divergence guard: a bounded number of skipped non-finite steps, then a clear stop with the last good weights.

:class:`~scivae.core.train.plan.VAETrainingPlan` skips every step whose loss or gradient is not finite (the
weights are left untouched). :class:`DivergenceGuard` stops the fit with :class:`~scivae.errors.DivergenceError`
when more than ``max_skipped_steps`` steps were skipped, or when a whole epoch was skipped, and keeps a copy of
the last weights that were finite at the end of an epoch so that what is returned (and saved) is never NaN.
"""

from __future__ import annotations

from collections.abc import Iterable

import lightning as L
import torch

from scivae.errors import DivergenceError

#: Default bound on skipped steps in one fit.
MAX_SKIPPED_STEPS = 25
#: What to try when a fit diverges; the options it names (see :mod:`scivae.errors`).
DIVERGENCE_HINT = (
    "lower the learning rate ({lr}), keep gradient clipping on ({gradient_clip_val}), "
    "or add free bits ({free_bits}=0.1)"
)
HINT_OPTIONS = ("lr", "gradient_clip_val", "free_bits")


def all_finite(tensors: Iterable[torch.Tensor]) -> bool:
    """Whether every value of every tensor is finite (one device synchronisation)."""
    flags = [t.detach().isfinite().all() for t in tensors if t.is_floating_point()]
    return bool(torch.stack(flags).all()) if flags else True


class DivergenceGuard(L.Callback):
    """Stops a fit whose steps keep failing, and remembers the last good weights.

    Parameters
    ----------
    max_skipped_steps
        Stop once more steps than this were skipped (non-finite loss or gradient) in the whole fit.

    Attributes
    ----------
    last_good, last_good_epoch
        A CPU copy of the plan's weights at the last epoch end where they were finite (or at the start), and
        that epoch (``None``: the weights this run started from).
    """

    def __init__(self, max_skipped_steps: int = MAX_SKIPPED_STEPS) -> None:
        self.max_skipped_steps = int(max_skipped_steps)
        self.last_good: dict[str, torch.Tensor] | None = None
        self.last_good_epoch: int | None = None
        self._epoch_batches = 0
        self._epoch_skipped_at_start = 0

    def _snapshot(self, pl_module: L.LightningModule, epoch: int | None) -> None:
        state = pl_module.state_dict()
        if all_finite(state.values()):
            self.last_good = {k: v.detach().cpu().clone() for k, v in state.items()}
            self.last_good_epoch = epoch

    def on_train_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        # a resumed fit may start inside an epoch, without on_train_epoch_start
        self._epoch_batches = 0
        self._epoch_skipped_at_start = getattr(pl_module, "skipped_steps", 0)
        self._snapshot(pl_module, None)

    def on_train_epoch_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self._epoch_batches = 0
        self._epoch_skipped_at_start = getattr(pl_module, "skipped_steps", 0)

    def on_train_batch_end(self, trainer: L.Trainer, pl_module: L.LightningModule, outputs, batch, batch_idx) -> None:
        self._epoch_batches += 1
        skipped = getattr(pl_module, "skipped_steps", 0)
        if skipped > self.max_skipped_steps:
            self._stop(trainer, skipped, f"over the limit of {self.max_skipped_steps}")

    def on_train_epoch_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        skipped = getattr(pl_module, "skipped_steps", 0)
        if self._epoch_batches > 0 and skipped - self._epoch_skipped_at_start >= self._epoch_batches:
            self._stop(trainer, skipped, f"every step of epoch {trainer.current_epoch}")
        self._snapshot(pl_module, trainer.current_epoch)

    def _stop(self, trainer: L.Trainer, skipped: int, why: str) -> None:
        raise DivergenceError(
            f"training diverged: {skipped} steps skipped for a non-finite loss or gradient ({why}), stopped at step "
            f"{trainer.global_step}; {DIVERGENCE_HINT}",
            options=HINT_OPTIONS,
        )
