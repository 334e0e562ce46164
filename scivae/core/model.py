"""User-facing model base class: fitting, latent extraction and persistence shared by every adapter."""

from __future__ import annotations

from abc import ABC, abstractmethod
from pathlib import Path
from typing import Any, ClassVar

import numpy as np
import torch

from scivae.core.data import ArrayDataModule, ArrayLike
from scivae.core.device_data import DeviceDataModule, iterate_device_batches
from scivae.core.distributed import is_global_zero
from scivae.core.fit import FitResult, fit_module
from scivae.core.module import VAEModule
from scivae.core.persistence import load_model_dir, save_model_dir
from scivae.core.schedules import KLSchedule, make_schedule
from scivae.errors import DivergenceError, ModelFormatError, ScivaeInputError

# Where each saved model type is defined, so that a generic load imports only the adapter it needs.
_ADAPTER_MODULES = {"cell": "scivae.cells", "molecule": "scivae.molecules", "gaussian": "scivae.dense"}


class BaseModel(ABC):
    """Base of :class:`~scivae.CellVAE`, :class:`~scivae.MolVAE` and :class:`~scivae.dense.GaussianVAE`.

    Subclasses own a :class:`VAEModule` in ``self.module``, turn their domain data into row-aligned arrays
    and implement the three persistence hooks. Subclasses are registered by ``model_type`` so that
    :meth:`load` on the base class dispatches on the saved type.
    """

    model_type: ClassVar[str] = ""
    _registry: ClassVar[dict[str, type[BaseModel]]] = {}

    module: VAEModule
    fit_result: FitResult | None = None

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        if cls.model_type:
            BaseModel._registry[cls.model_type] = cls

    @abstractmethod
    def _module_config(self) -> dict[str, Any]:
        """JSON-serialisable arguments that rebuild ``self.module``."""

    @abstractmethod
    def _adapter_state(self) -> dict[str, Any]:
        """JSON-serialisable domain state (vocabulary, gene names...)."""

    @classmethod
    @abstractmethod
    def _from_saved(cls, state_dict: dict[str, torch.Tensor], meta: dict[str, Any], **kwargs: Any) -> BaseModel:
        """Rebuild a model from :func:`load_model_dir`'s output."""

    @property
    def device(self) -> torch.device:
        return next(self.module.parameters()).device

    @property
    def is_trained(self) -> bool:
        return self.fit_result is not None or getattr(self, "_loaded", False)

    def _fit_arrays(
        self,
        arrays: dict[str, ArrayLike],
        *,
        max_epochs: int,
        batch_size: int = 128,
        validation_fraction: float = 0.1,
        kl_schedule: str | KLSchedule | None = None,
        kl_warmup: int | None = None,
        seed: int = 0,
        train_indices: np.ndarray | None = None,
        validation_indices: np.ndarray | None = None,
        group_by: str | None = None,
        device_data: bool = False,
        **fit_kwargs: Any,
    ) -> FitResult:
        # device_data: batches gathered on the training device from arrays moved there once (DeviceDataModule)
        datamodule_cls = DeviceDataModule if device_data else ArrayDataModule
        datamodule = datamodule_cls(
            arrays,
            batch_size=batch_size,
            validation_fraction=validation_fraction,
            seed=seed,
            train_indices=train_indices,
            validation_indices=validation_indices,
            group_by=group_by,
        )
        return self._fit_datamodule(
            datamodule, max_epochs=max_epochs, kl_schedule=kl_schedule, kl_warmup=kl_warmup, seed=seed, **fit_kwargs
        )

    def _fit_datamodule(
        self,
        datamodule: Any,
        *,
        max_epochs: int,
        kl_schedule: str | KLSchedule | None = None,
        kl_warmup: int | None = None,
        seed: int = 0,
        **fit_kwargs: Any,
    ) -> FitResult:
        """Train on any data module with ``train_indices``, ``validation_indices``, ``batch_size`` and
        ``validation_arrays()`` (:class:`ArrayDataModule`, or a streamed one)."""
        schedule = kl_schedule if isinstance(kl_schedule, KLSchedule) else make_schedule(kl_schedule, warmup=kl_warmup)
        self.module.train()
        try:
            self.fit_result = fit_module(
                self.module, datamodule, max_epochs=max_epochs, kl_schedule=schedule, seed=seed, **fit_kwargs
            )
        except DivergenceError as e:
            # the module holds the last good weights: keep the model usable (and savable) with what was learnt
            self.fit_result = e.fit_result
            raise
        finally:
            self.module.eval()
        return self.fit_result

    def _require_trained(self) -> None:
        if not self.is_trained:
            raise ScivaeInputError(f"this {type(self).__name__} is not trained yet: call .fit() first")

    @torch.no_grad()
    def _latent_from_arrays(
        self, arrays: dict[str, ArrayLike], give_mean: bool = True, batch_size: int = 1024
    ) -> np.ndarray:
        self.module.eval()
        out = []
        for batch in iterate_device_batches(arrays, batch_size, self.device):
            post = self.module.inference(batch)
            out.append((post.mu if give_mean else post.rsample()).float().cpu())
        return torch.cat(out).numpy()

    @torch.no_grad()
    def _per_obs(self, arrays: dict[str, ArrayLike], fn: str, batch_size: int = 1024, **kwargs: Any) -> np.ndarray:
        """Apply ``module.elbo`` or ``module.iwae`` batch-wise over all rows."""
        self.module.eval()
        method = getattr(self.module, fn)
        batches = iterate_device_batches(arrays, batch_size, self.device)
        out = [method(batch, **kwargs).float().cpu() for batch in batches]
        return torch.cat(out).numpy()

    def save(self, path: str | Path) -> Path:
        """Save the model directory (``model.safetensors`` + ``config.json``), replacing it atomically.

        In a distributed run only rank 0 writes; the other processes return the path without writing.
        """
        self._require_trained()
        if not is_global_zero():
            return Path(path)
        extra = {}
        if self.fit_result is not None and not self.fit_result.history.empty:
            extra["history.csv"] = self.fit_result.history.to_csv(index=False)
        return save_model_dir(
            path,
            self.module,
            model_type=self.model_type,
            config=self._module_config(),
            adapter_state=self._adapter_state(),
            extra_files=extra,
        )

    @classmethod
    def load(cls, path: str | Path, **kwargs: Any) -> BaseModel:
        """Load a model directory; on :class:`BaseModel` itself, dispatch on the saved model type."""
        state_dict, meta = load_model_dir(path, cls.model_type or None)
        model_type = meta.get("model_type", "")
        if model_type not in BaseModel._registry and model_type in _ADAPTER_MODULES:
            import importlib

            importlib.import_module(_ADAPTER_MODULES[model_type])
        target = BaseModel._registry.get(model_type)
        if target is None:
            raise ModelFormatError(f"{path} holds an unknown model type {meta.get('model_type')!r}")
        model = target._from_saved(state_dict, meta, **kwargs)
        model._loaded = True
        model.module.eval()
        return model


def load(path: str | Path, **kwargs: Any) -> BaseModel:
    """Load any scivae model directory (cell, molecule or Gaussian model)."""
    return BaseModel.load(path, **kwargs)
