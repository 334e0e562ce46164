"""scivae: variational autoencoders for single-cell counts and molecules, on one shared core."""

from __future__ import annotations

from typing import Any

__version__ = "0.1.0"

# Adapters import heavy stacks (scanpy, RDKit); load them on first use so `import scivae` stays fast.
_LAZY = {
    "CellVAE": ("scivae.cells", "CellVAE"),
    "MolVAE": ("scivae.molecules", "MolVAE"),
    "GaussianVAE": ("scivae.dense", "GaussianVAE"),
    "load": ("scivae.core.model", "load"),
    "tl": ("scivae.tl", None),
    "datasets": ("scivae.datasets", None),
    "core": ("scivae.core", None),
}

__all__ = ["__version__", *_LAZY]


def __getattr__(name: str) -> Any:
    if name not in _LAZY:
        raise AttributeError(f"module 'scivae' has no attribute {name!r}")
    import importlib

    module_name, attr = _LAZY[name]
    module = importlib.import_module(module_name)
    return module if attr is None else getattr(module, attr)
