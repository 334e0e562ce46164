"""Gaussian-likelihood VAE for dense real-valued tables: the smallest adapter of the core."""

from scivae.dense.model import GaussianVAE
from scivae.dense.module import GaussianVAEModule

__all__ = ["GaussianVAE", "GaussianVAEModule"]


def __dir__() -> list[str]:
    # tab completion and dir() show the public API, not the modules this one imports
    return list(__all__)
