"""MLP encoder and Gaussian decoder on dense features."""

from __future__ import annotations

import torch
from torch import Tensor, nn
from torch.distributions import Normal

from scivae.core import Batch, GaussianHead, GaussianPosterior, KLConfig, VAEModule


def mlp(n_in: int, n_hidden: int, n_layers: int) -> nn.Sequential:
    """``n_layers`` of Linear + LayerNorm + ReLU."""
    layers: list[nn.Module] = []
    for i in range(n_layers):
        layers += [nn.Linear(n_in if i == 0 else n_hidden, n_hidden), nn.LayerNorm(n_hidden), nn.ReLU()]
    return nn.Sequential(*layers)


class GaussianVAEModule(VAEModule):
    """x | z ~ N(f(z), diag(sigma^2)) with a learned per-feature scale.

    Parameters
    ----------
    n_input
        Number of features.
    n_latent
        Latent dimensions.
    n_hidden, n_layers
        Width and depth of the encoder and decoder MLPs.
    decoder_hidden, decoder_layers
        Decoder width and depth if different from the encoder (a stronger decoder collapses more easily).
    kl_config
        Collapse controls.
    """

    def __init__(
        self,
        n_input: int,
        n_latent: int = 10,
        n_hidden: int = 128,
        n_layers: int = 2,
        decoder_hidden: int | None = None,
        decoder_layers: int | None = None,
        kl_config: KLConfig | None = None,
    ) -> None:
        super().__init__(n_latent, kl_config)
        dec_hidden = decoder_hidden or n_hidden
        self.encoder = mlp(n_input, n_hidden, n_layers)
        self.head = GaussianHead(n_hidden, n_latent)
        self.decoder = nn.Sequential(
            mlp(n_latent, dec_hidden, decoder_layers or n_layers), nn.Linear(dec_hidden, n_input)
        )
        # Start from a small noise scale: at sigma = 1 the reconstruction signal of [0, 1]-scaled data is too weak
        # against the KL and even a plain VAE collapses in its first epochs.
        self.log_scale = nn.Parameter(torch.full((n_input,), -2.0))

    def inference(self, batch: Batch) -> GaussianPosterior:
        return self.head(self.encoder(batch["x"]))

    def generative(self, z: Tensor, batch: Batch) -> Normal:
        return Normal(self.decoder(z), self.log_scale.clamp(-7.0, 5.0).exp())
