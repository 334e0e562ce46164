"""Diagonal Gaussian posterior q(z|x), its reparameterised sample and its closed-form KL to N(0, I)."""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
from torch import Tensor, nn

_LOG_2PI = math.log(2.0 * math.pi)


@dataclass
class GaussianPosterior:
    """q(z|x) = N(mu, diag(exp(logvar))), batched over the leading dimension.

    Parameters
    ----------
    mu
        Means, shape ``(batch, n_latent)``.
    logvar
        Log-variances, same shape.
    """

    mu: Tensor
    logvar: Tensor

    @property
    def std(self) -> Tensor:
        return torch.exp(0.5 * self.logvar)

    @property
    def n_latent(self) -> int:
        return self.mu.shape[-1]

    def rsample(self, n_samples: int | None = None) -> Tensor:
        """Reparameterised sample ``z = mu + sigma * eps``; shape ``(n_samples, batch, n_latent)`` if asked."""
        shape = self.mu.shape if n_samples is None else (n_samples, *self.mu.shape)
        eps = torch.randn(shape, dtype=self.mu.dtype, device=self.mu.device)
        return self.mu + self.std * eps

    def log_prob(self, z: Tensor) -> Tensor:
        """log q(z|x) summed over latent dimensions; ``z`` may carry leading sample dimensions."""
        return (-0.5 * (_LOG_2PI + self.logvar + (z - self.mu) ** 2 / torch.exp(self.logvar))).sum(-1)

    def kl_per_dim(self) -> Tensor:
        """Closed-form KL(q || N(0, I)) per observation and latent dimension, shape ``(batch, n_latent)``."""
        return 0.5 * (torch.exp(self.logvar) + self.mu**2 - 1.0 - self.logvar)

    def kl(self) -> Tensor:
        """Closed-form KL(q || N(0, I)) per observation, shape ``(batch,)``."""
        return self.kl_per_dim().sum(-1)

    def detach(self) -> GaussianPosterior:
        return GaussianPosterior(self.mu.detach(), self.logvar.detach())


def standard_normal_log_prob(z: Tensor) -> Tensor:
    """log N(z; 0, I) summed over the last dimension."""
    return (-0.5 * (_LOG_2PI + z**2)).sum(-1)


class GaussianHead(nn.Module):
    """Encoder head mapping features to a :class:`GaussianPosterior`.

    The log-variance is clamped: an unbounded head lets one bad batch produce ``exp(logvar) = inf`` and
    NaN gradients, which is the most common way a VAE fit dies.

    Parameters
    ----------
    n_in
        Width of the incoming features.
    n_latent
        Number of latent dimensions.
    logvar_bounds
        Clamp range of the log-variance.
    """

    def __init__(self, n_in: int, n_latent: int, logvar_bounds: tuple[float, float] = (-12.0, 8.0)) -> None:
        super().__init__()
        self.mean = nn.Linear(n_in, n_latent)
        self.logvar = nn.Linear(n_in, n_latent)
        self.logvar_bounds = logvar_bounds

    def forward(self, h: Tensor) -> GaussianPosterior:
        lo, hi = self.logvar_bounds
        return GaussianPosterior(self.mean(h), self.logvar(h).clamp(lo, hi))
