"""Option checks shared by the Python API and the CLI: one message per bad value, raised before any work.

Each message names the command-line flag and the Python argument, so the CLI and the API say the same thing.
"""

from __future__ import annotations

import numbers
from typing import Any

import torch

from scivae.errors import OptionError

#: Accelerators ``fit`` accepts (passed to Lightning).
ACCELERATORS = ("auto", "cpu", "gpu", "cuda", "mps")


def _flag(name: str, flag: str | None) -> str:
    return flag or "--" + name.replace("_", "-")


def positive_int(value: Any, name: str, *, minimum: int = 1, flag: str | None = None) -> int:
    """``value`` as an ``int``, or :class:`OptionError` when it is not an integer >= ``minimum``."""
    ok = isinstance(value, numbers.Integral) and not isinstance(value, bool)
    if not ok and isinstance(value, float) and value.is_integer():
        value, ok = int(value), True
    if not ok or value < minimum:
        raise OptionError(
            f"{_flag(name, flag)} must be an integer >= {minimum}, got {value!r}: pass a larger value "
            f"({name}= in Python)"
        )
    return int(value)


def positive_float(value: Any, name: str, *, allow_zero: bool = False, flag: str | None = None) -> float:
    """``value`` as a finite ``float`` > 0 (>= 0 with ``allow_zero``), or :class:`OptionError`."""
    try:
        x = float(value)
    except (TypeError, ValueError):
        x = float("nan")
    if not (x >= 0 if allow_zero else x > 0) or x == float("inf"):
        bound = ">= 0" if allow_zero else "> 0"
        raise OptionError(f"{_flag(name, flag)} must be a finite number {bound}, got {value!r} ({name}= in Python)")
    return x


def _gpu_count() -> int:
    return torch.cuda.device_count() if torch.cuda.is_available() else 0


def check_accelerator(accelerator: str, devices: Any = "auto") -> None:
    """Refuse an unknown accelerator, a GPU request on a machine without one, and a malformed ``devices``.

    ``devices`` may be ``"auto"``, a count (``2``, ``"2"``, ``-1`` for all) or GPU indices (``"0,1"``, ``[0, 1]``).
    """
    if accelerator not in ACCELERATORS:
        raise OptionError(f"--accelerator {accelerator!r} is unknown: use one of {', '.join(ACCELERATORS)}")
    if accelerator in ("gpu", "cuda") and not torch.cuda.is_available():
        raise OptionError(
            f"--accelerator {accelerator}: no CUDA GPU is available on this machine "
            "(torch.cuda.is_available() is False): use --accelerator cpu or auto"
        )
    if accelerator == "mps" and not (hasattr(torch.backends, "mps") and torch.backends.mps.is_available()):
        raise OptionError("--accelerator mps: Apple's MPS backend is not available here: use --accelerator cpu or auto")
    indices = _device_indices(devices)
    uses_gpu = accelerator in ("gpu", "cuda") or (accelerator == "auto" and torch.cuda.is_available())
    if uses_gpu and indices is not None:
        n = _gpu_count()
        if indices and max(indices) >= n:
            raise OptionError(f"--devices {devices}: this machine has {n} GPU(s) (indices 0 to {n - 1}): pass fewer")


def _device_indices(devices: Any) -> list[int] | None:
    """GPU indices named by ``devices`` (a count ``k`` names 0..k-1); ``None`` for ``"auto"`` / ``-1``."""
    bad = OptionError(f"--devices {devices!r}: use 'auto', a count such as 2, -1 for all, or indices such as 0,1")
    if devices is None or devices == "auto":
        return None
    if isinstance(devices, (list, tuple)):
        items = list(devices)
    elif isinstance(devices, numbers.Integral) and not isinstance(devices, bool):
        if devices == -1:
            return None
        if devices < 1:
            raise bad
        return list(range(int(devices)))
    elif isinstance(devices, str):
        text = devices.strip()
        if text.lstrip("-").isdigit() and "," not in text:
            return _device_indices(int(text))
        items = [s.strip() for s in text.split(",") if s.strip()]
    else:
        raise bad
    try:
        indices = [int(i) for i in items]
    except (TypeError, ValueError):
        raise bad from None
    if not indices or min(indices) < 0:
        raise bad
    return indices


def check_device(device: str, option: str = "--device") -> torch.device:
    """A torch device string checked for existence (``cuda`` without a GPU is refused with the fix)."""
    try:
        dev = torch.device(device)
    except (RuntimeError, TypeError):
        raise OptionError(f"{option} {device!r} is not a device: use cpu or cuda") from None
    if dev.type == "cuda":
        n = _gpu_count()
        if n == 0:
            raise OptionError(f"{option} {device}: no CUDA GPU is available on this machine: use {option} cpu")
        if dev.index is not None and dev.index >= n:
            raise OptionError(f"{option} {device}: this machine has {n} GPU(s): use cuda:0 to cuda:{n - 1}")
    elif dev.type not in ("cpu", "mps"):
        raise OptionError(f"{option} {device!r}: use cpu or cuda")
    return dev
