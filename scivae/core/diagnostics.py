"""Posterior-collapse diagnostics: KL per latent dimension and active units (Burda et al. 2016)."""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any

import torch
from torch import Tensor

ACTIVE_UNIT_THRESHOLD = 0.01
COLLAPSED_KL_NATS = 0.1


def kl_per_dimension(mu: Tensor, logvar: Tensor) -> Tensor:
    """Data-mean closed-form KL(q(z_u|x) || N(0, 1)) per latent dimension ``u``, shape ``(n_latent,)``."""
    return (0.5 * (logvar.exp() + mu**2 - 1.0 - logvar)).mean(0)


def active_unit_variance(mu: Tensor) -> Tensor:
    """``Cov_x(E_q[z_u])``: the variance over observations of each posterior mean, shape ``(n_latent,)``."""
    if mu.shape[0] < 2:
        return torch.zeros(mu.shape[1], dtype=mu.dtype)
    return mu.var(0, unbiased=True)


def active_units(mu: Tensor, threshold: float = ACTIVE_UNIT_THRESHOLD) -> int:
    """Number of latent units whose posterior mean varies across the data by more than ``threshold``."""
    return int((active_unit_variance(mu) > threshold).sum())


@dataclass
class CollapseReport:
    """Summary of how much of the latent space the model uses.

    Attributes
    ----------
    kl_per_dim
        Mean KL per latent dimension (nats).
    kl_total
        Mean total KL per observation (nats).
    active_units
        Number of active units.
    n_latent
        Number of latent dimensions.
    au_variance
        ``Cov_x(E_q[z_u])`` per dimension.
    """

    kl_per_dim: list[float]
    kl_total: float
    active_units: int
    n_latent: int
    au_variance: list[float]

    @property
    def collapsed(self) -> bool:
        return self.active_units == 0 or self.kl_total < COLLAPSED_KL_NATS

    def message(self) -> str:
        return (
            f"posterior collapse: {self.active_units}/{self.n_latent} active units, total KL "
            f"{self.kl_total:.3g} nats; the latent space carries (almost) no information. Remedies: free bits "
            "(--free-bits 0.1-0.5), a KL warm-up or cyclical schedule (--kl-schedule cyclical), or beta < 1"
        )

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["collapsed"] = self.collapsed
        return d


def collapse_report(mu: Tensor, logvar: Tensor, threshold: float = ACTIVE_UNIT_THRESHOLD) -> CollapseReport:
    """Build a :class:`CollapseReport` from posterior parameters over a data set."""
    mu, logvar = mu.float(), logvar.float()
    kl = kl_per_dimension(mu, logvar)
    var = active_unit_variance(mu)
    return CollapseReport(
        kl_per_dim=kl.tolist(),
        kl_total=float(kl.sum()),
        active_units=int((var > threshold).sum()),
        n_latent=mu.shape[1],
        au_variance=var.tolist(),
    )
