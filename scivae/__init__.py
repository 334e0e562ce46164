"""scivae: variational autoencoders for single-cell counts and molecules, on one shared core."""

from __future__ import annotations

from typing import Any

__version__ = "0.1.0"

# Adapters import heavy stacks (scanpy, RDKit); load them on first use so `import scivae` stays fast and the
# core works without them.
_LAZY = {
    "CellVAE": ("scivae.cells", "CellVAE"),
    "MolVAE": ("scivae.molecules", "MolVAE"),
    "GaussianVAE": ("scivae.dense", "GaussianVAE"),
    "load": ("scivae.core.model.base", "load"),
    "tl": ("scivae.tl", None),
    "pl": ("scivae.pl", None),
    "latent": ("scivae.latent", None),
    "datasets": ("scivae.datasets", None),
    "core": ("scivae.core", None),
}
#: The extra that provides each adapter's stack, for the message when it is missing.
_EXTRAS = {"scivae.cells": "cells", "scivae.tl": "cells", "scivae.molecules": "molecules"}

__all__ = ["__version__", *_LAZY]


def __getattr__(name: str) -> Any:
    if name not in _LAZY:
        raise AttributeError(f"module 'scivae' has no attribute {name!r}")
    import importlib

    module_name, attr = _LAZY[name]
    try:
        module = importlib.import_module(module_name)
    except ModuleNotFoundError as e:
        extra = _EXTRAS.get(module_name)
        if extra is None or (e.name or "").startswith("scivae"):
            raise
        raise ModuleNotFoundError(
            f"scivae.{name} needs {e.name}, which is not installed: pip install 'scivae[{extra}]'", name=e.name
        ) from None
    return module if attr is None else getattr(module, attr)


def __dir__() -> list[str]:
    # tab completion and dir() show the public API, not the modules this one imports
    return list(__all__)
