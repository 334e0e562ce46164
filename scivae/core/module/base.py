"""The ``nn.Module`` contract every domain adapter implements, and the objective built on it."""

from __future__ import annotations

import math
from abc import ABC, abstractmethod
from dataclasses import dataclass
from typing import Any

import torch
from torch import Tensor, nn

from scivae.core.module.objective import KLConfig, kl_term
from scivae.core.module.posterior import GaussianPosterior, standard_normal_log_prob

Batch = dict[str, Tensor]


@dataclass
class LossOutput:
    """Terms of one minibatch objective.

    Attributes
    ----------
    loss
        Scalar to minimise: ``mean(recon) + w(t) * KL_term (+ auxiliary KL)``.
    reconstruction
        ``-E_q[log p(x|z)]`` per observation (Monte-Carlo over ``n_samples``), shape ``(batch,)``.
    kl
        Closed-form KL(q(z|x) || p(z)) per observation, shape ``(batch,)``.
    kl_auxiliary
        KL of any extra latent variable of the adapter (e.g. a latent library size), or zeros.
    kl_regulariser
        The KL term actually penalised (after beta, free bits or capacity), before the annealing weight.
    posterior
        The posterior, detached, for diagnostics.
    """

    loss: Tensor
    reconstruction: Tensor
    kl: Tensor
    kl_auxiliary: Tensor
    kl_regulariser: Tensor
    posterior: GaussianPosterior

    @property
    def elbo(self) -> Tensor:
        """Per-observation ELBO (unweighted: the true bound on log p(x)), shape ``(batch,)``."""
        return -(self.reconstruction + self.kl + self.kl_auxiliary)


class VAEModule(nn.Module, ABC):
    """Domain-free VAE: adapters implement :meth:`inference` and :meth:`generative`.

    A batch is a ``dict`` of tensors whose first dimension is the observation; the data itself is under
    ``"x"`` unless the adapter overrides :meth:`log_likelihood`.

    Parameters
    ----------
    n_latent
        Number of latent dimensions.
    kl_config
        Collapse controls (beta, free bits, capacity).
    """

    def __init__(self, n_latent: int, kl_config: KLConfig | None = None) -> None:
        super().__init__()
        self.n_latent = n_latent
        self.kl_config = kl_config or KLConfig()

    @abstractmethod
    def inference(self, batch: Batch) -> GaussianPosterior:
        """Encode a batch into q(z|x)."""

    @abstractmethod
    def generative(self, z: Tensor, batch: Batch) -> Any:
        """Decode latent samples ``z`` of shape ``(batch, n_latent)`` into the likelihood p(x|z)."""

    def log_likelihood(self, batch: Batch, z: Tensor) -> Tensor:
        """log p(x|z) summed over the data dimensions, shape ``(batch,)``."""
        lp = self.generative(z, batch).log_prob(batch["x"])
        return lp.reshape(lp.shape[0], -1).sum(-1)

    def auxiliary_kl(self, batch: Batch) -> Tensor | None:
        """KL of extra latent variables (called after :meth:`inference` on the same batch); none by default."""
        return None

    def importance_constants(self, batch: Batch) -> Batch:
        """The batch with the parts of :meth:`importance_log_likelihood` that do not depend on z computed once,
        before the samples of :meth:`iwae` (a new dict; the batch itself by default)."""
        return batch

    def importance_log_likelihood(self, batch: Batch, z: Tensor) -> Tensor:
        """The part of the log importance weight that depends on the adapter, for :meth:`iwae`.

        ``log p(x|z)`` by default. An adapter with extra latent variables returns
        ``log p(x|z, l) + log p(l) - log q(l|x)`` for one sample of them.
        """
        return self.log_likelihood(batch, z)

    def reconstruction_accuracy(self, batch: Batch, posterior: GaussianPosterior) -> dict[str, Tensor] | None:
        """Adapter figures of how well items are rebuilt from their posterior mean, per item (higher is better).

        ``None`` (the default) when the domain has no natural accuracy. The molecule adapter returns the exact
        reconstruction of each molecule (greedy decoding) and its fraction of correct tokens. The training plan
        logs the batch means every validation epoch as ``<name>_validation``.
        """
        return None

    def loss(self, batch: Batch, kl_weight: float = 1.0, step: int = 0, n_samples: int = 1) -> LossOutput:
        """Minibatch objective.

        Parameters
        ----------
        batch
            A batch of tensors.
        kl_weight
            Annealing weight ``w(t)``.
        step
            Global optimiser step (capacity schedule).
        n_samples
            Monte-Carlo samples of z for the reconstruction term.
        """
        posterior = self.inference(batch)
        if n_samples == 1:  # the usual case, without the stack and mean (a small CPU step is op-bound)
            reconstruction = -self.log_likelihood(batch, posterior.rsample())
        else:
            log_lik = torch.stack([self.log_likelihood(batch, posterior.rsample()) for _ in range(n_samples)])
            reconstruction = -log_lik.mean(0)
        kl_per_dim = posterior.kl_per_dim()
        aux = self.auxiliary_kl(batch)
        regulariser = kl_term(kl_per_dim, self.kl_config, step)
        loss = reconstruction.mean() + kl_weight * regulariser
        if aux is None:
            aux = torch.zeros_like(reconstruction)
        else:
            loss = loss + aux.mean()
        return LossOutput(
            loss=loss,
            reconstruction=reconstruction,
            kl=kl_per_dim.sum(-1),
            kl_auxiliary=aux,
            kl_regulariser=regulariser,
            posterior=posterior.detach(),
        )

    @torch.no_grad()
    def elbo(self, batch: Batch, n_samples: int = 1) -> Tensor:
        """Per-observation ELBO (higher is better), shape ``(batch,)``."""
        return self.loss(batch, n_samples=n_samples).elbo

    @torch.no_grad()
    def iwae(self, batch: Batch, k: int = 100) -> Tensor:
        """Importance-sampled log-likelihood (the IWAE bound with ``k`` samples), shape ``(batch,)``.

        ``log (1/k) sum_i p(x, z_i) / q(z_i|x)`` with ``z_i ~ q(z|x)``. It is a lower bound on log p(x) that
        is at least the ELBO in expectation and does not decrease with ``k`` (Burda et al. 2016).
        """
        posterior = self.inference(batch)
        batch = self.importance_constants(batch)
        log_w = []
        for _ in range(k):
            z = posterior.rsample()
            log_w.append(self.importance_log_likelihood(batch, z) + standard_normal_log_prob(z) - posterior.log_prob(z))
        return torch.logsumexp(torch.stack(log_w), 0) - math.log(k)
