"""The VAE objective: Monte-Carlo reconstruction term plus a controlled KL term.

``loss = recon + w(t) * KL_term`` where ``KL_term`` is one of

* ``beta * sum_g max(lambda, mean_batch KL_g)`` (free bits, Kingma et al. 2016; ``g`` is a latent dimension
  or a group of dimensions; ``lambda = 0`` gives the plain beta-VAE term), or
* ``gamma * |KL - C(t)|`` (capacity form, Burgess et al. 2018), with ``C(t)`` rising linearly to ``capacity``.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any

import torch
from torch import Tensor

from scivae.errors import ScivaeInputError


@dataclass
class KLConfig:
    """Collapse controls on the KL term.

    Parameters
    ----------
    beta
        Multiplier of the KL term (beta-VAE). ``beta < 1`` weakens the pull towards the prior.
    free_bits
        ``lambda`` in nats: each dimension (or group) is only penalised above this much KL, so the
        optimiser gains nothing by collapsing it below. 0 disables.
    free_bits_groups
        ``None`` applies free bits per latent dimension; ``k`` splits the latent dimensions into ``k``
        contiguous groups with one floor each.
    capacity
        Target capacity ``C_max`` in nats; enables the capacity form ``gamma * |KL - C(t)|``.
    capacity_gamma
        ``gamma`` of the capacity form.
    capacity_steps
        Steps over which ``C(t)`` rises linearly from 0 to ``capacity``.
    """

    beta: float = 1.0
    free_bits: float = 0.0
    free_bits_groups: int | None = None
    capacity: float | None = None
    capacity_gamma: float = 100.0
    capacity_steps: int = 10_000

    def __post_init__(self) -> None:
        if self.beta < 0:
            raise ScivaeInputError(f"{{beta}}={self.beta!r} is not >= 0")
        if self.free_bits < 0:
            raise ScivaeInputError(f"{{free_bits}}={self.free_bits!r} is not >= 0 nats")
        if self.free_bits_groups is not None and self.free_bits_groups < 1:
            raise ScivaeInputError(f"{{free_bits_groups}}={self.free_bits_groups!r} is not >= 1")

    def capacity_at(self, step: int) -> float:
        """C(t): the capacity target at a global step."""
        if self.capacity is None:
            return 0.0
        return self.capacity * min(step / max(self.capacity_steps, 1), 1.0)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def kl_term(kl_per_dim: Tensor, config: KLConfig, step: int = 0) -> Tensor:
    """The regulariser added to the reconstruction loss (before the annealing weight).

    Parameters
    ----------
    kl_per_dim
        Closed-form KL per observation and latent dimension, shape ``(batch, n_latent)``.
    config
        Collapse controls.
    step
        Global step, for the capacity schedule.
    """
    mean_per_dim = kl_per_dim.mean(0)
    if config.capacity is not None:
        return config.capacity_gamma * (mean_per_dim.sum() - config.capacity_at(step)).abs()
    if config.free_bits > 0:
        if config.free_bits_groups is None:
            per_group = mean_per_dim
        else:
            per_group = torch.stack([g.sum() for g in mean_per_dim.tensor_split(config.free_bits_groups)])
        return config.beta * torch.clamp(per_group, min=config.free_bits).sum()
    return config.beta * mean_per_dim.sum()
