"""Posterior-collapse diagnostics that a padded or ignored latent cannot fool.

Four views of how much the latent space is used, each on held-out data:

* **KL per dimension** and **active units** (Burda et al. 2016): what the encoder spends. Both can be inflated
  by free bits, which let each dimension hold KL on noise that nothing reads.
* **Mutual information** ``I(x; z)`` under q (He et al. 2019): ``E_x KL(q(z|x) || p(z)) - KL(q(z) || p(z))``,
  how much the code tells about the item. On ``N`` items it cannot exceed ``log N``.
* **Latent gain**: how many nats of reconstruction the *decoder* gets from z, measured by swapping each item's
  z for another item's. A decoder that ignores z has a gain of 0 whatever the KL says.

The collapse verdict uses all of them: a latent is collapsed when the encoder puts (almost) nothing in it, or
when the decoder takes (almost) nothing out.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field
from typing import TYPE_CHECKING, Any

import torch
from torch import Tensor

if TYPE_CHECKING:
    from scivae.core.module.base import Batch, VAEModule
    from scivae.core.module.posterior import GaussianPosterior

ACTIVE_UNIT_THRESHOLD = 0.01
COLLAPSED_KL_NATS = 0.1
#: Below this mutual information (nats) the code says next to nothing about the item.
COLLAPSED_MI_NATS = 0.1
#: Below this latent gain (nats per item) the decoder ignores the code.
COLLAPSED_GAIN_NATS = 0.1
#: Items used by the mutual-information estimate (its cost is quadratic in this number).
MI_MAX_ITEMS = 5000


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


@torch.no_grad()
def mutual_information(
    mu: Tensor, logvar: Tensor, *, max_items: int = MI_MAX_ITEMS, seed: int = 0, chunk: int = 128
) -> float:
    """Monte-Carlo estimate of ``I(x; z)`` under the encoder, in nats (He et al. 2019).

    ``I = E_x E_q(z|x)[log q(z|x)] - E_q(z)[log q(z)]`` where the aggregate posterior ``q(z)`` is the mixture of
    the ``N`` posteriors given; one ``z`` is drawn from each. This equals ``E_x KL(q(z|x) || p) - KL(q(z) || p)``.
    The estimate is at most ``log N``: ``N`` items can be told apart by at most ``log N`` nats.

    Parameters
    ----------
    mu, logvar
        Posterior means and log-variances of ``N`` items, shape ``(N, n_latent)``.
    max_items
        A random subset of at most this many items is used (the cost is ``O(N^2 n_latent)``).
    seed
        Seeds the subset and the draws, so the figure is reproducible.
    chunk
        Rows of the pairwise density matrix computed at once (memory ``chunk * N``).
    """
    n, d = mu.shape
    if n < 2:
        return 0.0
    g = torch.Generator(device="cpu").manual_seed(seed)
    if n > max_items:  # the subset first: the float64 copies and the pairwise blocks stay at max_items
        keep = torch.randperm(n, generator=g)[:max_items].to(mu.device)
        mu, logvar, n = mu[keep], logvar[keep], max_items
    mu, logvar = mu.double(), logvar.double()
    var = logvar.exp()
    z = mu + var.sqrt() * torch.randn(mu.shape, generator=g, dtype=mu.dtype).to(mu.device)
    inv = 1.0 / var  # (N, d)
    const = -0.5 * (d * math.log(2 * math.pi) + logvar.sum(-1) + (mu**2 * inv).sum(-1))  # (N,)
    total = 0.0
    for start in range(0, n, chunk):
        zc = z[start : start + chunk]  # (c, d)
        # log q(z_i | x_j) for every pair, from the expanded square: sum_d (z - mu)^2 / var
        log_density = -0.5 * ((zc**2) @ inv.T - 2.0 * zc @ (mu * inv).T) + const[None, :]  # (c, N)
        rows = torch.arange(zc.shape[0], device=mu.device)
        own = log_density[rows, rows + start]  # log q(z_i | x_i): same draw in both terms, less MC noise
        total += float((own - (torch.logsumexp(log_density, dim=1) - math.log(n))).sum())
    return total / n


@torch.no_grad()
def latent_gain(module: VAEModule, batch: Batch, posterior: GaussianPosterior) -> Tensor:
    """Per-item nats of reconstruction the decoder gets from z: ``log p(x|z_x) - log p(x|z_x')``.

    ``z_x`` is a draw from the item's own posterior and ``z_x'`` the draw of the next item in the batch (a
    derangement for batches of two or more). A decoder that ignores z scores 0, however large the KL.
    """
    z = posterior.rsample()
    own = module.log_likelihood(batch, z)
    if z.shape[0] < 2:
        return torch.zeros_like(own)
    return own - module.log_likelihood(batch, z.roll(1, dims=0))


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
        Number of active units (posterior mean varies by more than the threshold).
    n_latent
        Number of latent dimensions.
    au_variance
        ``Cov_x(E_q[z_u])`` per dimension.
    mutual_information
        Estimate of ``I(x; z)`` in nats (see :func:`mutual_information`); at most ``mi_upper_bound``.
    mi_upper_bound
        ``log N`` of the ``N`` items the estimate used.
    marginal_kl
        ``KL(q(z) || p(z)) = kl_total - mutual_information``: how far the aggregate posterior is from the prior
        (prior samples land where no item's code does when this is large).
    latent_gain
        Nats of reconstruction per item the decoder gets from z (see :func:`latent_gain`); ``None`` when not
        measured.
    extra
        Adapter figures such as reconstruction accuracy.
    """

    kl_per_dim: list[float]
    kl_total: float
    active_units: int
    n_latent: int
    au_variance: list[float]
    mutual_information: float = float("nan")
    mi_upper_bound: float = float("nan")
    marginal_kl: float = float("nan")
    latent_gain: float | None = None
    extra: dict[str, float] = field(default_factory=dict)

    @property
    def finite(self) -> bool:
        """False when the diagnostics hold NaN or inf (diverged weights, not a collapse)."""
        values = [self.kl_total, *self.kl_per_dim, *self.au_variance]
        if self.latent_gain is not None:
            values.append(self.latent_gain)
        return all(math.isfinite(v) for v in values)

    def reasons(self) -> list[str]:
        """Why the latent counts as collapsed (empty when it does not)."""
        if not self.finite:
            return []
        out = []
        if self.active_units == 0:
            out.append("no active unit")
        if self.kl_total < COLLAPSED_KL_NATS:
            out.append(f"total KL {self.kl_total:.3g} nats")
        if math.isfinite(self.mutual_information) and self.mutual_information < COLLAPSED_MI_NATS:
            out.append(f"mutual information {self.mutual_information:.3g} nats")
        if self.latent_gain is not None and self.latent_gain < COLLAPSED_GAIN_NATS:
            out.append(f"the decoder gains {self.latent_gain:.3g} nats from z")
        return out

    @property
    def collapsed(self) -> bool:
        return bool(self.reasons())

    def message(self) -> str:
        why = "; ".join(self.reasons()) or "no collapse"
        return (
            f"posterior collapse ({why}; {self.active_units}/{self.n_latent} active units, KL {self.kl_total:.3g} "
            "nats): the latent space carries (almost) no information. Remedies: beta < 1, a KL warm-up or "
            "cyclical schedule, or word dropout for sequence decoders; free bits alone can hold KL on noise "
            "the decoder ignores (watch the latent gain)"
        )

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready: NaN and inf become ``None``."""
        d = {k: _json_number(v) for k, v in asdict(self).items()}
        d["collapsed"] = self.collapsed
        return d


def _json_number(v: Any) -> Any:
    if isinstance(v, float):
        return v if math.isfinite(v) else None
    if isinstance(v, list):
        return [_json_number(x) for x in v]
    if isinstance(v, dict):
        return {k: _json_number(x) for k, x in v.items()}
    return v


def collapse_report(
    mu: Tensor,
    logvar: Tensor,
    threshold: float = ACTIVE_UNIT_THRESHOLD,
    *,
    latent_gain: float | None = None,
    extra: dict[str, float] | None = None,
    mi_items: int = MI_MAX_ITEMS,
) -> CollapseReport:
    """Build a :class:`CollapseReport` from posterior parameters over a data set.

    Parameters
    ----------
    mu, logvar
        Posterior parameters of held-out items, shape ``(N, n_latent)``.
    threshold
        Active-unit threshold on ``Var_x(E_q[z_u])``.
    latent_gain
        Mean :func:`latent_gain` over (a sample of) the same items, if measured.
    extra
        Adapter figures to carry along (reconstruction accuracy...).
    mi_items
        Items used by the mutual-information estimate.
    """
    mu, logvar = mu.float(), logvar.float()
    kl = kl_per_dimension(mu, logvar)
    var = active_unit_variance(mu)
    finite = bool(torch.isfinite(mu).all() and torch.isfinite(logvar).all())
    mi = mutual_information(mu, logvar, max_items=mi_items) if finite else float("nan")
    n_used = min(mu.shape[0], mi_items)
    return CollapseReport(
        kl_per_dim=kl.tolist(),
        kl_total=float(kl.sum()),
        active_units=int((var > threshold).sum()),
        n_latent=mu.shape[1],
        au_variance=var.tolist(),
        mutual_information=mi,
        mi_upper_bound=math.log(n_used) if n_used > 0 else float("nan"),
        marginal_kl=float(kl.sum()) - mi if finite else float("nan"),
        latent_gain=latent_gain,
        extra=dict(extra or {}),
    )
