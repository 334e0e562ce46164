"""User-facing Gaussian VAE on a dense matrix."""

from __future__ import annotations

import dataclasses
import inspect
from typing import Any

import numpy as np
import torch

from scivae.core import BaseModel, FitResult, KLConfig
from scivae.core.persistence import check_config_keys, check_saved_shapes
from scivae.dense.module import GaussianVAEModule
from scivae.errors import ScivaeInputError


class GaussianVAE(BaseModel):
    """VAE with a Gaussian likelihood for a dense real-valued matrix (observations x features).

    Parameters
    ----------
    n_input
        Number of features.
    n_latent, n_hidden, n_layers, decoder_hidden, decoder_layers
        Architecture, see :class:`GaussianVAEModule`.
    beta, free_bits, free_bits_groups, capacity
        Collapse controls, see :class:`~scivae.core.KLConfig`.
    seed
        Seeds the weight initialisation.
    """

    model_type = "gaussian"

    def __init__(
        self,
        n_input: int,
        *,
        n_latent: int = 10,
        n_hidden: int = 128,
        n_layers: int = 2,
        decoder_hidden: int | None = None,
        decoder_layers: int | None = None,
        beta: float = 1.0,
        free_bits: float = 0.0,
        free_bits_groups: int | None = None,
        capacity: float | None = None,
        seed: int = 0,
    ) -> None:
        self._config = {
            "n_input": n_input,
            "n_latent": n_latent,
            "n_hidden": n_hidden,
            "n_layers": n_layers,
            "decoder_hidden": decoder_hidden,
            "decoder_layers": decoder_layers,
        }
        self._kl = KLConfig(beta=beta, free_bits=free_bits, free_bits_groups=free_bits_groups, capacity=capacity)
        torch.manual_seed(seed)
        self.module = GaussianVAEModule(**self._config, kl_config=self._kl)

    def _check(self, x: np.ndarray) -> dict[str, np.ndarray]:
        x = np.asarray(x, dtype=np.float32)
        if x.ndim != 2 or x.shape[1] != self._config["n_input"]:
            raise ScivaeInputError(f"expected a 2-D array with {self._config['n_input']} features, got shape {x.shape}")
        if not np.isfinite(x).all():
            raise ScivaeInputError("the data contain NaN or inf: impute or drop those rows first")
        return {"x": x}

    def fit(self, x: np.ndarray, max_epochs: int = 100, batch_size: int = 128, **kwargs: Any) -> FitResult:
        """Train on ``x``; keyword arguments go to :func:`~scivae.core.fit_module` (``kl_schedule``, ``seed``...)."""
        return self._fit_arrays(self._check(x), max_epochs=max_epochs, batch_size=batch_size, **kwargs)

    def get_latent(self, x: np.ndarray, give_mean: bool = True) -> np.ndarray:
        """Posterior means (or samples) for each row of ``x``."""
        return self._latent_from_arrays(self._check(x), give_mean=give_mean)

    def get_elbo(self, x: np.ndarray) -> np.ndarray:
        """Per-row ELBO (higher is better)."""
        return self._per_obs(self._check(x), "elbo")

    def get_marginal_ll(self, x: np.ndarray, n_samples: int = 100) -> np.ndarray:
        """Per-row importance-sampled log-likelihood with ``n_samples`` samples."""
        return self._per_obs(self._check(x), "iwae", k=n_samples)

    def _module_config(self) -> dict[str, Any]:
        return {**self._config, "kl": self._kl.to_dict()}

    def _adapter_state(self) -> dict[str, Any]:
        return {}

    @classmethod
    def _from_saved(cls, state_dict: dict[str, torch.Tensor], meta: dict[str, Any], **kwargs: Any) -> GaussianVAE:
        cfg = dict(meta["config"])
        arguments = set(inspect.signature(GaussianVAEModule.__init__).parameters) - {"self", "kl_config"}
        check_config_keys(cfg, {"kl", *arguments})
        check_config_keys(cfg.get("kl", {}), {f.name for f in dataclasses.fields(KLConfig)}, "kl")
        check_saved_shapes(
            lambda: GaussianVAEModule(**{k: v for k, v in cfg.items() if k != "kl"}, kl_config=KLConfig(**cfg["kl"])),
            state_dict,
        )
        kl = cfg.pop("kl")
        model = cls(
            cfg.pop("n_input"),
            **cfg,
            beta=kl["beta"],
            free_bits=kl["free_bits"],
            free_bits_groups=kl["free_bits_groups"],
            capacity=kl["capacity"],
        )
        model._kl = KLConfig(**kl)
        model.module.kl_config = model._kl
        model.module.load_state_dict(state_dict)
        return model
