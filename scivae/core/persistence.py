"""Model directories: weights as safetensors, everything else as JSON. Loading never unpickles."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import torch
from safetensors.torch import load_file, save_file
from torch import nn

from scivae._atomic import atomic_dir
from scivae.errors import ModelFormatError

FORMAT_VERSION = 1
WEIGHTS_FILE = "model.safetensors"
CONFIG_FILE = "config.json"
#: Where ``scivae fit`` puts the model inside its output folder.
FIT_MODEL_SUBDIR = "model"


def resolve_model_dir(path: str | Path) -> Path:
    """The model folder itself, or the ``model/`` inside a ``scivae fit`` output folder given instead."""
    path = Path(path)
    inner = path / FIT_MODEL_SUBDIR
    if not (path / CONFIG_FILE).exists() and (inner / CONFIG_FILE).is_file():
        return inner
    return path


def save_model_dir(
    path: str | Path,
    module: nn.Module,
    *,
    model_type: str,
    config: dict[str, Any],
    adapter_state: dict[str, Any] | None = None,
    extra_files: dict[str, str] | None = None,
) -> Path:
    """Write a model directory atomically: ``model.safetensors`` and ``config.json``.

    Parameters
    ----------
    path
        Target directory; replaced as a whole once the new one is complete.
    module
        The trained module; its ``state_dict`` is saved.
    model_type
        Which model class reads the directory back (``"cell"``, ``"molecule"``, ``"gaussian"``).
    config
        JSON-serialisable constructor arguments of the module.
    adapter_state
        JSON-serialisable domain state (gene names, vocabulary, covariate categories...).
    extra_files
        Further text files to write into the directory (name -> content).
    """
    from scivae import __version__

    tensors = {k: v.detach().cpu().contiguous().clone() for k, v in module.state_dict().items()}
    meta = {
        "format_version": FORMAT_VERSION,
        "scivae_version": __version__,
        "model_type": model_type,
        "config": config,
        "adapter_state": adapter_state or {},
    }
    text = json.dumps(meta, indent=2, sort_keys=True)
    path = Path(path)
    with atomic_dir(path) as tmp:
        save_file(tensors, str(tmp / WEIGHTS_FILE), metadata={"format_version": str(FORMAT_VERSION)})
        (tmp / CONFIG_FILE).write_text(text)
        for name, content in (extra_files or {}).items():
            (tmp / name).write_text(content)
    return path


def load_model_dir(path: str | Path, model_type: str | None = None) -> tuple[dict[str, torch.Tensor], dict[str, Any]]:
    """Read a model directory written by :func:`save_model_dir` (or the fit output folder holding it).

    Returns
    -------
    state_dict, meta
        The weights, and the JSON metadata (``model_type``, ``config``, ``adapter_state``...).

    Raises
    ------
    ModelFormatError
        Missing directory or file, unreadable JSON, unknown format version or wrong model type.
    """
    path = resolve_model_dir(path)
    if not path.is_dir():
        raise ModelFormatError(f"{path} is not a model directory: pass the folder written by `scivae fit` (its model/)")
    config_path, weights_path = path / CONFIG_FILE, path / WEIGHTS_FILE
    for p in (config_path, weights_path):
        if not p.exists():
            raise ModelFormatError(
                f"{path} has no {p.name}: it is not a complete scivae model directory; re-run the fit"
            )
    try:
        meta = json.loads(config_path.read_text())
    except json.JSONDecodeError as e:
        raise ModelFormatError(f"{config_path} is not valid JSON ({e.msg}); re-run the fit") from None
    version = meta.get("format_version")
    if version != FORMAT_VERSION:
        raise ModelFormatError(
            f"{path} has model format version {version!r}, this scivae reads version {FORMAT_VERSION}: "
            "use the scivae release that wrote it, or re-fit"
        )
    if model_type is not None and meta.get("model_type") != model_type:
        raise ModelFormatError(
            f"{path} holds a {meta.get('model_type')!r} model, not a {model_type!r} one: "
            "pass a matching model directory"
        )
    return load_file(str(weights_path)), meta
