"""Count likelihoods: negative binomial, zero-inflated negative binomial and Poisson.

All three are parameterised by the log-mean ``log_mu`` (and the log inverse-dispersion ``log_theta``), which
is what the decoder produces (log-softmax plus log library size). Working in logs keeps every term finite:
with ``d = log_mu - log_theta``,

    log NB(x; mu, theta) = lgamma(x + theta) - lgamma(theta) - lgamma(x + 1)
                           - theta * softplus(d) + x * logsigmoid(d)

because ``log(theta / (theta + mu)) = -softplus(d)`` and ``log(mu / (theta + mu)) = logsigmoid(d)``; no
``log(theta + mu + eps)`` and no division. The variance is ``mu + mu^2 / theta``.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor

LIKELIHOODS = ("nb", "zinb", "poisson")


def _lgamma_terms(x: Tensor, theta: Tensor) -> Tensor:
    """``lgamma(x + theta) - lgamma(theta) - lgamma(x + 1)``, in float64, cast back to ``x.dtype``.

    The difference of two large lgamma values cancels badly in float32 (0.05 nats per entry at
    theta = 1e5), so it is evaluated in float64. It is exactly 0 where ``x == 0`` (most entries of
    single-cell counts): on the CPU it is only evaluated at the non-zero entries, which makes the float64
    version no slower than a dense float32 one; on accelerators the dense form avoids a host sync.
    """
    theta = theta.expand_as(x)
    if x.device.type == "cpu":
        nz = x > 0
        xs, ts = x[nz].double(), theta[nz].double()
        term = (torch.lgamma(xs + ts) - torch.lgamma(ts) - torch.lgamma(xs + 1.0)).to(x.dtype)
        return torch.zeros_like(x, dtype=term.dtype).masked_scatter(nz, term)
    xd, td = x.double(), theta.double()
    return (torch.lgamma(xd + td) - torch.lgamma(td) - torch.lgamma(xd + 1.0)).to(x.dtype)


def _nb_mean_terms(x: Tensor, log_mu: Tensor, log_theta: Tensor) -> Tensor:
    """Elementwise ``-theta * softplus(d) + x * logsigmoid(d)``, ``d = log_mu - log_theta``: the part of log NB
    that depends on the mean."""
    d = log_mu - log_theta
    return -log_theta.exp() * F.softplus(d) + x * F.logsigmoid(d)


def nb_log_prob(x: Tensor, log_mu: Tensor, log_theta: Tensor) -> Tensor:
    """Elementwise log NB(x; mean exp(log_mu), inverse dispersion exp(log_theta))."""
    x, log_mu, log_theta = torch.broadcast_tensors(x, log_mu, log_theta)
    return _lgamma_terms(x, log_theta.exp()) + _nb_mean_terms(x, log_mu, log_theta)


class _NBRows(torch.autograd.Function):
    """``sum_g x * (d - softplus(d)) - theta * softplus(d)`` with ``d = log_mu - log_theta``, and its gradient.

    The part of the row-summed log NB that is dense in the genes. A hand-written backward,
    ``dL/dlog_mu = x - (x + theta) * sigmoid(d)``, makes about half as many passes over the ``(B, G)``
    arrays as autograd does (see ``benchmarks/cells/microbench.py``). The ``x`` term is summed over the
    non-zero counts only (``rows``, flat positions ``flat = rows * G + cols`` and ``values``): three passes
    over the ``(B, G)`` arrays fewer, which matters once they outgrow the cache (batch 1,024).
    """

    @staticmethod
    def forward(  # type: ignore[override]
        ctx, log_mu: Tensor, log_theta: Tensor, x: Tensor, rows: Tensor, flat: Tensor, values: Tensor
    ) -> Tensor:
        d = log_mu - log_theta
        sp = F.softplus(d)
        theta = log_theta.exp()
        # .to(d.dtype): under bf16 autocast the product comes back in bf16; the row sums stay in d's precision
        out = (-(sp @ theta) if theta.dim() == 1 else -(sp * theta).sum(-1)).to(d.dtype)
        logsigmoid_nz = d.reshape(-1).take(flat).sub_(sp.reshape(-1).take(flat))
        out.index_add_(0, rows, logsigmoid_nz.mul_(values))
        ctx.save_for_backward(d, sp, theta, x)
        ctx.theta_shape = log_theta.shape
        return out

    @staticmethod
    def backward(ctx, grad: Tensor) -> tuple[Tensor, Tensor, None, None, None, None]:  # type: ignore[override]
        d, sp, theta, x = ctx.saved_tensors
        g = torch.sigmoid(d).mul_(x + theta).neg_().add_(x).mul_(grad.unsqueeze(-1))  # (x - (x+theta) s) grad
        if theta.dim() == 1:
            g_theta = -g.sum(0) - theta * (grad @ sp)
        else:
            g_theta = (-g - theta * sp * grad.unsqueeze(-1)).sum_to_size(ctx.theta_shape)
        return g, g_theta, None, None, None, None


#: Counts up to this value take ``lgamma(k + theta) - lgamma(theta)`` from a per-gene table; the few larger
#: counts of single-cell data are evaluated with lgamma. The table costs ``_TABLE_COUNTS x n_genes`` logs per
#: step; the size was chosen by a sweep (benchmarks/cells/RESULTS.md).
_TABLE_COUNTS = 12


def _counts(values: Tensor) -> bool:
    """Whether the non-zero entries are integers >= 1, as counts are (the table needs it)."""
    return values.numel() > 0 and bool(values.min() >= 1) and bool(torch.equal(values, torch.floor(values)))


def _lgamma_ratio_table(values: Tensor, cols: Tensor, theta: Tensor, max_count: int = _TABLE_COUNTS) -> Tensor:
    """``lgamma(v + theta[cols]) - lgamma(theta[cols])`` for integral counts ``v >= 1`` (float64).

    For an integer count it is ``sum_{j < v} log(theta + j)``: a cumulative sum of logs, tabulated per gene for
    counts up to ``max_count`` and gathered. On the CPU, where torch's lgamma and digamma are scalar
    loops, this is faster forward and backward than lgamma (benchmarks/cells/RESULTS.md), and no less
    accurate: it has no difference of two large lgamma values.
    """
    k = max_count
    n_genes = theta.shape[0]
    table = torch.log(theta + torch.arange(k, dtype=theta.dtype, device=theta.device).unsqueeze(1)).cumsum(0)
    index = (values.clamp(max=k).long() - 1) * n_genes + cols
    term = table.reshape(-1).take(index)
    large = (values > k).nonzero().squeeze(1)
    if large.numel():
        th = theta[cols[large]]
        term = term.index_add(0, large, torch.lgamma(values[large] + th) - torch.lgamma(th + k))
    return term


def nb_count_terms(
    x: Tensor,
    log_theta: Tensor,
    nz: tuple[Tensor, Tensor, Tensor] | None = None,
    log_factorial: Tensor | None = None,
) -> Tensor:
    """``sum_g lgamma(x + theta) - lgamma(theta) - lgamma(x + 1)`` per row, ``(B,)``: the part of the row-summed
    log NB that does not depend on the mean (float64 sums, returned as float64).

    It vanishes at zero counts, so it is evaluated on the non-zero entries only (``nz``, or found here). A model
    that evaluates many means for the same counts (importance sampling) computes it once and hands it to
    :func:`nb_log_likelihood` as ``count_terms``. Arguments as in :func:`nb_log_likelihood`.
    """
    if nz is None:
        rows, cols = x.nonzero(as_tuple=True)
        values = x[rows, cols]
    else:
        rows, cols, values = nz
    theta = log_theta.exp()
    per_gene = log_theta.dim() == 1 or (log_theta.dim() == 2 and log_theta.shape[0] == 1)
    vd = values.double()
    if per_gene and x.device.type == "cpu" and _counts(values):
        term = _lgamma_ratio_table(vd, cols, theta.reshape(-1).double())
    elif per_gene:
        theta_d = theta.reshape(-1).double()
        term = torch.lgamma(vd + theta_d[cols]) - torch.lgamma(theta_d)[cols]
    else:
        th = theta.expand_as(x)[rows, cols].double()
        term = torch.lgamma(vd + th) - torch.lgamma(th)
    if log_factorial is None:
        term = term - torch.lgamma(vd + 1.0)
    out = torch.zeros(x.shape[0], dtype=torch.float64, device=x.device).index_add_(0, rows, term)
    return out if log_factorial is None else out - log_factorial.double()


def nb_log_likelihood(
    x: Tensor,
    log_mu: Tensor,
    log_theta: Tensor,
    nz: tuple[Tensor, Tensor, Tensor] | None = None,
    log_factorial: Tensor | None = None,
    count_terms: Tensor | None = None,
) -> Tensor:
    """log NB summed over the last axis: one value per row, ``(B,)`` (the same as ``nb_log_prob(...).sum(-1)``).

    The terms that vanish at zero counts (the lgamma terms, in float64, :func:`nb_count_terms`) are evaluated on
    the non-zero entries only, from their coordinates ``nz = (rows, cols, values)`` when the batch carries them
    (see :mod:`scivae.core.data.device`) or found here otherwise; with a per-gene ``log_theta`` of shape
    ``(n_genes,)`` its lgamma is taken once per gene. ``log_factorial`` is the per-row sum of
    ``lgamma(x + 1)`` when it is known (a constant of the data). The dense part uses
    ``-theta * softplus(d) + x * logsigmoid(d) = x * (d - softplus(d)) - theta * softplus(d)`` with a
    hand-written gradient (:class:`_NBRows`).

    Parameters
    ----------
    x
        Counts ``(B, G)``.
    log_mu
        Log means ``(B, G)``.
    log_theta
        Log inverse dispersion, ``(G,)`` or broadcastable to ``(B, G)``.
    nz
        Batch row, column and value of every non-zero count of ``x``.
    log_factorial
        ``sum_g lgamma(x_bg + 1)`` per row, ``(B,)``.
    count_terms
        :func:`nb_count_terms` of the same ``x``, ``log_theta`` and ``log_factorial``, when already computed
        (no gradient flows into ``log_theta`` through them then).
    """
    if nz is None and x.device.type != "cpu":  # dense: no host sync to find the non-zeros
        if count_terms is None:
            return nb_log_prob(x, log_mu, log_theta).sum(-1)
        return _nb_mean_terms(x, log_mu, log_theta).sum(-1) + count_terms.to(log_mu.dtype)
    if nz is None:
        rows, cols = x.nonzero(as_tuple=True)
        nz = (rows, cols, x[rows, cols])
    rows, cols, values = nz
    out = _NBRows.apply(log_mu, log_theta, x, rows, rows * x.shape[-1] + cols, values.to(log_mu.dtype))
    if count_terms is None:
        count_terms = nb_count_terms(x, log_theta, nz, log_factorial)
    return out + count_terms.to(out.dtype)


def zinb_log_prob(x: Tensor, log_mu: Tensor, log_theta: Tensor, zi_logits: Tensor) -> Tensor:
    """Elementwise log ZINB: with probability ``pi = sigmoid(zi_logits)`` a structural zero, else NB."""
    log_pi = F.logsigmoid(zi_logits)
    log_not_pi = F.logsigmoid(-zi_logits)
    nb = nb_log_prob(x, log_mu, log_theta)
    # log NB(0) = -theta * softplus(log_mu - log_theta)
    nb_zero = -log_theta.exp() * F.softplus(log_mu - log_theta)
    zero = torch.logaddexp(log_pi, log_not_pi + nb_zero)
    return torch.where(x < 0.5, zero, log_not_pi + nb)


def poisson_log_prob(x: Tensor, log_mu: Tensor) -> Tensor:
    """Elementwise log Poisson(x; exp(log_mu))."""
    return x * log_mu - log_mu.exp() - torch.lgamma(x + 1.0)


class NegativeBinomial:
    """NB(mu, theta) with ``mu = exp(log_mu)``, ``theta = exp(log_theta)`` (broadcast together).

    Parameters
    ----------
    log_mu
        Log of the mean.
    log_theta
        Log of the inverse dispersion (``theta -> inf`` is Poisson).
    """

    def __init__(self, log_mu: Tensor, log_theta: Tensor) -> None:
        self._log_theta = log_theta  # unbroadcast: per-gene terms are then computed once per gene
        self.log_mu, self.log_theta = torch.broadcast_tensors(log_mu, log_theta)

    @property
    def mean(self) -> Tensor:
        return self.log_mu.exp()

    @property
    def variance(self) -> Tensor:
        mu = self.mean
        return mu + mu * mu / self.log_theta.exp()

    def log_prob(self, x: Tensor) -> Tensor:
        return nb_log_prob(x, self.log_mu, self.log_theta)

    def log_prob_rows(
        self,
        x: Tensor,
        nz: tuple[Tensor, Tensor, Tensor] | None = None,
        log_factorial: Tensor | None = None,
        count_terms: Tensor | None = None,
    ) -> Tensor:
        """``log_prob(x).sum(-1)`` computed faster (see :func:`nb_log_likelihood`)."""
        return nb_log_likelihood(x, self.log_mu, self._log_theta, nz, log_factorial, count_terms)

    @torch.no_grad()
    def sample(self) -> Tensor:
        """One draw per element via the Gamma-Poisson mixture (uses torch's global random state)."""
        theta = self.log_theta.exp()
        rate = torch.distributions.Gamma(theta, theta / self.mean.clamp_min(1e-30)).sample()
        return torch.poisson(rate)


class ZeroInflatedNegativeBinomial(NegativeBinomial):
    """ZINB: a structural zero with probability ``sigmoid(zi_logits)``, otherwise NB(mu, theta)."""

    def __init__(self, log_mu: Tensor, log_theta: Tensor, zi_logits: Tensor) -> None:
        super().__init__(log_mu, log_theta)
        self.zi_logits = zi_logits.expand_as(self.log_mu)

    @property
    def mean(self) -> Tensor:
        return torch.sigmoid(-self.zi_logits) * self.log_mu.exp()

    @property
    def variance(self) -> Tensor:
        pi = torch.sigmoid(self.zi_logits)
        mu = self.log_mu.exp()
        nb_var = mu + mu * mu / self.log_theta.exp()
        return (1 - pi) * (nb_var + pi * mu * mu)

    def log_prob(self, x: Tensor) -> Tensor:
        return zinb_log_prob(x, self.log_mu, self.log_theta, self.zi_logits)

    def log_prob_rows(
        self,
        x: Tensor,
        nz: tuple[Tensor, Tensor, Tensor] | None = None,
        log_factorial: Tensor | None = None,
        count_terms: Tensor | None = None,
    ) -> Tensor:
        return self.log_prob(x).sum(-1)  # the NB terms of the zero-inflated mixture are not separable

    @torch.no_grad()
    def sample(self) -> Tensor:
        nb = NegativeBinomial(self.log_mu, self.log_theta).sample()
        zero = torch.rand(nb.shape, device=nb.device) < torch.sigmoid(self.zi_logits)
        return torch.where(zero, torch.zeros_like(nb), nb)


class Poisson:
    """Poisson(mu) with ``mu = exp(log_mu)``."""

    def __init__(self, log_mu: Tensor) -> None:
        self.log_mu = log_mu

    @property
    def mean(self) -> Tensor:
        return self.log_mu.exp()

    @property
    def variance(self) -> Tensor:
        return self.mean

    def log_prob(self, x: Tensor) -> Tensor:
        return poisson_log_prob(x, self.log_mu)

    def log_prob_rows(
        self,
        x: Tensor,
        nz: tuple[Tensor, Tensor, Tensor] | None = None,
        log_factorial: Tensor | None = None,
        count_terms: Tensor | None = None,
    ) -> Tensor:
        if log_factorial is None:
            return self.log_prob(x).sum(-1)
        return (x * self.log_mu - self.log_mu.exp()).sum(-1) - log_factorial

    @torch.no_grad()
    def sample(self) -> Tensor:
        return torch.poisson(self.mean)
