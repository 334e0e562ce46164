"""User-facing Gaussian VAE on a dense matrix."""

from __future__ import annotations

import dataclasses
import inspect
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import pandas as pd
import torch

from scivae.core import BaseModel, KLConfig
from scivae.core.model.base import select_rows
from scivae.core.model.persistence import check_config_keys, check_saved_shapes
from scivae.core.options import TrainingOptions
from scivae.core.seeding import seeded
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
        Seeds the weight initialisation and, unless ``fit(seed=)`` says otherwise, the fit.
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
        self._build(
            KLConfig(beta=beta, free_bits=free_bits, free_bits_groups=free_bits_groups, capacity=capacity), seed
        )

    def _build(self, kl: KLConfig, seed: int) -> None:
        self.seed = int(seed)
        self._x: np.ndarray | None = None
        with seeded(self.seed):
            self.module = GaussianVAEModule(**self._config, kl_config=kl)

    def _check(self, x: Any) -> dict[str, np.ndarray]:
        x = np.asarray(x, dtype=np.float32)
        if x.ndim != 2 or x.shape[1] != self._config["n_input"]:
            raise ScivaeInputError(f"expected a 2-D array with {self._config['n_input']} features, got shape {x.shape}")
        if not np.isfinite(x).all():
            raise ScivaeInputError("the data contain NaN or inf: impute or drop those rows first")
        return {"x": x}

    def fit(self, x: np.ndarray, options: TrainingOptions | None = None, /, **changes: Any) -> GaussianVAE:
        """Train on ``x``.

        ``options`` and ``changes``: training options (:class:`~scivae.core.options.TrainingOptions`, e.g.
        ``max_epochs=25, kl_schedule="constant"``) on top of :meth:`training_defaults`, and the run's own arguments
        (``checkpoint_dir``, ``callbacks``...; see :func:`~scivae.core.fit_module`).

        Returns
        -------
        GaussianVAE
            ``self``, trained; the history and diagnostics are in :attr:`fit_result`.
        """
        opts, run = self._options_and_run(options, changes)
        arrays = self._check(x)
        self._x = arrays["x"]
        self._fit_arrays(arrays, opts, **run)
        return self

    # -- latent-toolkit hooks --------------------------------------------------------------------------
    def _labelled_arrays(self, data: Any) -> tuple[list[str], dict[str, np.ndarray]]:
        if data is None:
            if self._x is None:
                raise ScivaeInputError("this model holds no training data (loaded): pass the rows as data")
            data = self._x
        arrays = self._check(data)
        return [str(i) for i in range(len(arrays["x"]))], arrays

    def _item_arrays(self, items: Sequence[Any], data: Any = None) -> tuple[list[str], dict[str, np.ndarray]]:
        """Items are row numbers of ``data`` (``None``: the training data)."""
        labels, arrays = self._labelled_arrays(data)
        try:
            rows = [int(i) for i in items]
        except (TypeError, ValueError):
            raise ScivaeInputError("items of a GaussianVAE are row numbers of the data: pass integers") from None
        if any(not 0 <= r < len(labels) for r in rows):
            raise ScivaeInputError(f"row numbers must be between 0 and {len(labels) - 1}, got {rows}")
        return [labels[r] for r in rows], select_rows(arrays, rows)

    @torch.no_grad()
    def decode(
        self, z: np.ndarray, *, like: Mapping[str, Any] | None = None, seed: int | None = None, **options: Any
    ) -> pd.DataFrame:
        """Decoder means at latent points ``z`` ``(n, n_latent)``: one row per point, one column per feature."""
        if options:
            raise ScivaeInputError(f"unknown decoding option(s) {', '.join(options)} for a GaussianVAE")
        device = self._ready()
        zt = torch.as_tensor(np.asarray(z, dtype=np.float32), device=device)
        mean = self.module.generative(zt, {}).mean.float().cpu().numpy()
        return pd.DataFrame(mean, columns=[f"x{i}" for i in range(mean.shape[1])])

    # -- persistence -----------------------------------------------------------------------------------
    def _module_config(self) -> dict[str, Any]:
        return {**self._config, "kl": self.module.kl_config.to_dict(), "seed": self.seed}

    def _adapter_state(self) -> dict[str, Any]:
        return {}

    @classmethod
    def _from_saved(cls, state_dict: dict[str, torch.Tensor], meta: dict[str, Any], **kwargs: Any) -> GaussianVAE:
        cfg = dict(meta["config"])
        arguments = set(inspect.signature(GaussianVAEModule.__init__).parameters) - {"self", "kl_config"}
        check_config_keys(cfg, {"kl", "seed", *arguments})
        check_config_keys(cfg.get("kl", {}), {f.name for f in dataclasses.fields(KLConfig)}, "kl")
        module_args = {k: v for k, v in cfg.items() if k not in ("kl", "seed")}
        check_saved_shapes(lambda: GaussianVAEModule(**module_args, kl_config=KLConfig(**cfg["kl"])), state_dict)
        kl = KLConfig(**cfg.pop("kl"))
        seed = int(cfg.pop("seed", 0))  # folders saved before the seed was recorded
        model = cls.__new__(cls)
        model._config = cfg
        model._build(kl, seed)
        model.module.load_state_dict(state_dict)
        return model
