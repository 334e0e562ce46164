"""Model directories: weights as safetensors, everything else as JSON. Loading never unpickles."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch
from safetensors.torch import load_file, save_file
from torch import nn

from scivae._atomic import atomic_dir
from scivae.errors import DivergenceError, ModelFormatError

FORMAT_VERSION = 1
WEIGHTS_FILE = "model.safetensors"
CONFIG_FILE = "config.json"
#: A fitted latent prior (see :mod:`scivae.core.module.prior`), when the model has one: tensors and their description.
PRIOR_WEIGHTS_FILE = "prior.safetensors"
PRIOR_CONFIG_FILE = "prior.json"
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
    prior: tuple[dict[str, torch.Tensor], dict[str, Any]] | None = None,
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
    prior
        A fitted latent prior's tensors and JSON description (:meth:`~scivae.core.module.prior.LatentPrior.state`),
        written as ``prior.safetensors`` and ``prior.json``; ``None`` for the standard normal.
    """
    from scivae import __version__

    tensors = {k: v.detach().cpu().contiguous().clone() for k, v in module.state_dict().items()}
    bad = [k for k, v in tensors.items() if v.is_floating_point() and not bool(torch.isfinite(v).all())]
    if bad:
        raise DivergenceError(
            f"refusing to save a model whose weights are not finite ({len(bad)} tensors, e.g. {bad[0]}): the fit "
            "diverged; re-fit with a lower learning rate"
        )
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
        if prior is not None:
            prior_tensors, prior_meta = prior
            save_file(prior_tensors, str(tmp / PRIOR_WEIGHTS_FILE), metadata={"format_version": str(FORMAT_VERSION)})
            (tmp / PRIOR_CONFIG_FILE).write_text(json.dumps(prior_meta, indent=2, sort_keys=True))
    return path


#: Largest config.json read (a gene list of 100k names is a few MB).
MAX_CONFIG_BYTES = 64 * 2**20
#: Top-level keys of config.json.
META_KEYS = frozenset({"format_version", "scivae_version", "model_type", "config", "adapter_state"})
#: File names that hold pickles (never loaded; refused so that a tampered folder is noticed).
PICKLE_SUFFIXES = (".pkl", ".pickle", ".pt", ".pth", ".ckpt", ".bin", ".joblib", ".npy", ".npz")


def _is_pickle(path: Path) -> bool:
    """A pickle by name, by its first bytes (protocols 2-5), or a zip archive holding one (``torch.save``)."""
    if path.suffix.lower() in PICKLE_SUFFIXES:
        return True
    try:
        with path.open("rb") as fh:
            head = fh.read(4)
    except OSError:
        return False
    if len(head) >= 2 and head[0] == 0x80 and 2 <= head[1] <= 5:
        return True
    if head == b"PK\x03\x04":
        import zipfile

        try:
            with zipfile.ZipFile(path) as zf:
                return any(name.endswith(".pkl") for name in zf.namelist())
        except (zipfile.BadZipFile, OSError):
            return False
    return False


def _check_folder(path: Path) -> None:
    """Refuse files that point outside the folder and pickles dropped into it."""
    root = path.resolve()
    for entry in sorted(path.iterdir()):
        if entry.is_symlink() and root not in entry.resolve().parents:
            raise ModelFormatError(
                f"{entry} points outside the model folder ({entry.resolve()}): a model folder holds its own files; "
                "replace the link with the file"
            )
        # the weights file starts with its header length, which may look like a pickle opcode
        if entry.name not in (WEIGHTS_FILE, PRIOR_WEIGHTS_FILE, CONFIG_FILE) and entry.is_file() and _is_pickle(entry):
            raise ModelFormatError(
                f"{path} holds {entry.name}, a pickle: scivae model folders hold only safetensors and JSON and "
                f"scivae never loads pickles; delete {entry.name} (and check where the folder came from)"
            )


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
        if not p.is_file():
            raise ModelFormatError(f"{p} is not a file: the model directory is damaged; re-run the fit")
    _check_folder(path)
    if config_path.stat().st_size > MAX_CONFIG_BYTES:
        raise ModelFormatError(f"{config_path} is over {MAX_CONFIG_BYTES >> 20} MB: it is not a scivae config; re-fit")
    try:
        meta = json.loads(config_path.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise ModelFormatError(f"{config_path} is not valid JSON ({getattr(e, 'msg', e)}); re-run the fit") from None
    except RecursionError:  # nested deeper than Python's stack: no scivae config is
        raise ModelFormatError(f"{config_path} is nested too deeply to be a scivae config; re-run the fit") from None
    if not isinstance(meta, dict):
        raise ModelFormatError(f"{config_path} does not hold a JSON object: the model directory is damaged; re-fit")
    unknown = sorted(set(meta) - META_KEYS)
    if unknown:
        raise ModelFormatError(
            f"{config_path} has unknown keys ({', '.join(map(repr, unknown[:5]))}): it was edited or written by "
            "another program; re-save the model with scivae"
        )
    version = meta.get("format_version")
    if not isinstance(version, int) or isinstance(version, bool):
        raise ModelFormatError(
            f"{config_path}: format_version is {version!r} ({type(version).__name__}), not an integer: the file was "
            f"edited; write it as the number {FORMAT_VERSION} (without quotes) if that is the version, or re-fit"
        )
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
    for key in ("config", "adapter_state"):
        if not isinstance(meta.get(key), dict):
            raise ModelFormatError(f"{config_path} has no {key!r} object: the model directory is damaged; re-fit")
    try:
        weights = load_file(str(weights_path))
    except Exception as e:  # safetensors raises its own error type for a damaged header
        raise ModelFormatError(
            f"{weights_path} is not a readable safetensors file ({type(e).__name__}): the model directory is "
            "damaged; re-run the fit"
        ) from None
    check_finite(weights, weights_path)
    return weights, meta


def check_finite(tensors: dict[str, torch.Tensor], path: Path) -> None:
    """Refuse saved weights holding NaN or infinite values: such a model loads, but every output is garbage."""
    bad = [k for k, v in tensors.items() if v.is_floating_point() and not bool(torch.isfinite(v).all())]
    if bad:
        raise ModelFormatError(
            f"{path} holds weights that are not finite (NaN or infinite in {len(bad)} tensors, e.g. {bad[0]}): the "
            "model directory is damaged or came from a diverged fit; re-fit"
        )


def check_config_keys(config: dict[str, Any], allowed: set[str] | frozenset[str], what: str = "config") -> None:
    """Refuse keys of a saved configuration that this scivae does not know (before anything is built)."""
    unknown = sorted(set(config) - set(allowed))
    if unknown:
        raise ModelFormatError(
            f"the model's config.json has unknown {what} keys ({', '.join(map(repr, unknown[:5]))}): it was edited "
            "or written by a newer scivae; re-save the model with this version"
        )


def check_saved_shapes(factory: Callable[[], nn.Module], state_dict: dict[str, torch.Tensor]) -> None:
    """Refuse a saved configuration that does not describe the saved weights, before anything is allocated.

    ``factory`` builds the module from the configuration; it runs on the ``meta`` device, which allocates
    nothing, and the shapes it gives are compared with the saved tensors. So a tampered ``config.json`` with
    absurd sizes is refused before any memory is taken, and a mismatch is reported as such, not as a shape error.
    """
    try:
        with torch.device("meta"):
            probe = factory()
    except (TypeError, ValueError, KeyError, RuntimeError, OverflowError) as e:
        raise ModelFormatError(
            f"the model's config.json does not describe a model ({type(e).__name__}: {str(e)[:120]}): the model "
            "directory is damaged; re-save or re-fit"
        ) from None
    expected = {k: tuple(v.shape) for k, v in probe.state_dict().items()}
    saved = {k: tuple(v.shape) for k, v in state_dict.items()}
    if expected != saved:
        missing, unexpected = sorted(set(expected) - set(saved)), sorted(set(saved) - set(expected))
        differ = [k for k in sorted(set(expected) & set(saved)) if expected[k] != saved[k]]
        example = (
            f"e.g. {differ[0]}: config {expected[differ[0]]} vs weights {saved[differ[0]]}"
            if differ
            else f"e.g. {(missing or unexpected)[0]}"
        )
        raise ModelFormatError(
            f"the weights do not match config.json ({len(missing)} missing, {len(unexpected)} unexpected, "
            f"{len(differ)} of another shape; {example}): the model directory was edited or damaged; re-fit"
        )


def load_prior_files(path: str | Path) -> tuple[dict[str, torch.Tensor], dict[str, Any]] | None:
    """The prior's tensors and description in a model directory, or ``None`` when it has no fitted prior.

    Raises
    ------
    ModelFormatError
        Only one of the two files, an unreadable file or a description that is not a JSON object.
    """
    path = resolve_model_dir(path)
    weights, config = path / PRIOR_WEIGHTS_FILE, path / PRIOR_CONFIG_FILE
    if not weights.exists() and not config.exists():
        return None
    if not (weights.is_file() and config.is_file()):
        raise ModelFormatError(
            f"{path} has only one of {PRIOR_WEIGHTS_FILE} and {PRIOR_CONFIG_FILE}: the prior is incomplete; "
            "re-fit it (model.fit_prior()) or delete both files to sample from N(0, I)"
        )
    if config.stat().st_size > MAX_CONFIG_BYTES:
        raise ModelFormatError(f"{config} is over {MAX_CONFIG_BYTES >> 20} MB: it is not a scivae prior; re-fit it")
    try:
        meta = json.loads(config.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError, RecursionError) as e:
        raise ModelFormatError(f"{config} is not valid JSON ({type(e).__name__}); re-fit the prior") from None
    if not isinstance(meta, dict):
        raise ModelFormatError(f"{config} does not hold a JSON object: re-fit the prior")
    try:
        tensors = load_file(str(weights))
    except Exception as e:  # safetensors raises its own error type for a damaged header
        raise ModelFormatError(
            f"{weights} is not a readable safetensors file ({type(e).__name__}): re-fit the prior"
        ) from None
    check_finite(tensors, weights)
    return tensors, meta
