"""Options: how a model is trained (:class:`TrainingOptions`, one object from the CLI or the Python call down to
the trainer) and the checks of option values shared by the Python API and the CLI.

Every message names an option by its Python argument as a ``{name}`` placeholder (see :mod:`scivae.errors`): a
Python user reads ``batch_size=0``, and the CLI prints its flag, ``--batch-size=0``.
"""

from __future__ import annotations

import dataclasses
import numbers
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from scivae.errors import OptionError

if TYPE_CHECKING:
    import torch

#: Accelerators ``fit`` accepts (passed to Lightning).
ACCELERATORS = ("auto", "cpu", "gpu", "cuda", "mps")
#: Learning-rate schedules.
LR_SCHEDULES = ("constant", "cosine")
#: KL annealing schedules (see :mod:`scivae.core.train.schedules`).
KL_SCHEDULES = ("constant", "linear", "cyclical", "sigmoid")


def positive_int(value: Any, name: str, *, minimum: int = 1) -> int:
    """``value`` as an ``int``, or :class:`OptionError` when it is not an integer >= ``minimum``."""
    ok = isinstance(value, numbers.Integral) and not isinstance(value, bool)
    if not ok and isinstance(value, float) and value.is_integer():
        value, ok = int(value), True
    if not ok or value < minimum:
        raise OptionError(f"{{{name}}}={value!r} is not an integer >= {minimum}: pass a larger value", name)
    return int(value)


#: Largest batch (items per step or per forward pass): a larger one asks for more memory than a machine has
#: before any step runs (and no data set gains from it).
MAX_BATCH_SIZE = 2**20


def check_batch_size(value: Any, name: str = "batch_size") -> int:
    """``value`` as an ``int`` in [1, :data:`MAX_BATCH_SIZE`], or :class:`OptionError`."""
    value = positive_int(value, name)
    if value > MAX_BATCH_SIZE:
        raise OptionError(f"{{{name}}}={value} is over the limit of {MAX_BATCH_SIZE}: pass a smaller value", name)
    return value


def positive_float(value: Any, name: str, *, allow_zero: bool = False) -> float:
    """``value`` as a finite ``float`` > 0 (>= 0 with ``allow_zero``), or :class:`OptionError`."""
    try:
        x = float(value)
    except (TypeError, ValueError):
        x = float("nan")
    if not (x >= 0 if allow_zero else x > 0) or x == float("inf"):
        bound = ">= 0" if allow_zero else "> 0"
        raise OptionError(f"{{{name}}}={value!r} is not a finite number {bound}", name)
    return x


def one_of(value: Any, name: str, choices: tuple[str, ...]) -> str:
    """``value`` if it is one of ``choices``, else :class:`OptionError` listing them."""
    if value not in choices:
        raise OptionError(f"{{{name}}}={value!r} is unknown: use one of {', '.join(choices)}", name)
    return str(value)


def _gpu_count() -> int:
    import torch

    return torch.cuda.device_count() if torch.cuda.is_available() else 0


def check_accelerator(accelerator: str, devices: Any = "auto") -> None:
    """Refuse an unknown accelerator, a GPU request on a machine without one, and a malformed ``devices``.

    ``devices`` may be ``"auto"``, a count (``2``, ``"2"``, ``-1`` for all) or GPU indices (``"0,1"``, ``[0, 1]``).
    """
    import torch

    one_of(accelerator, "accelerator", ACCELERATORS)
    if accelerator in ("gpu", "cuda") and not torch.cuda.is_available():
        raise OptionError(
            f"{{accelerator}}={accelerator}: no CUDA GPU is available on this machine "
            "(torch.cuda.is_available() is False): use {accelerator}=cpu or auto",
            "accelerator",
        )
    if accelerator == "mps" and not (hasattr(torch.backends, "mps") and torch.backends.mps.is_available()):
        raise OptionError(
            "{accelerator}=mps: Apple's MPS backend is not available here: use {accelerator}=cpu or auto", "accelerator"
        )
    indices = _device_indices(devices)
    uses_gpu = accelerator in ("gpu", "cuda") or (accelerator == "auto" and torch.cuda.is_available())
    if uses_gpu and indices is not None:
        n = _gpu_count()
        if indices and max(indices) >= n:
            raise OptionError(
                f"{{devices}}={devices}: this machine has {n} GPU(s) (indices 0 to {n - 1}): pass fewer", "devices"
            )


def _device_indices(devices: Any) -> list[int] | None:
    """GPU indices named by ``devices`` (a count ``k`` names 0..k-1); ``None`` for ``"auto"`` / ``-1``."""
    bad = OptionError(
        f"{{devices}}={devices!r}: use auto, a count such as 2, -1 for all, or indices such as 0,1", "devices"
    )
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


def check_device(device: str, option: str = "device") -> torch.device:
    """A torch device string checked for existence (``cuda`` without a GPU is refused with the fix); ``auto`` is
    the GPU when there is one, else the CPU. ``option`` names the argument in messages."""
    import torch

    name = "{" + option + "}"
    if device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if device == "gpu":
        device = "cuda"
    try:
        dev = torch.device(device)
    except (RuntimeError, TypeError):
        raise OptionError(f"{name}={device!r} is not a device: use auto, cpu or cuda", option) from None
    if dev.type == "cuda":
        n = _gpu_count()
        if n == 0:
            raise OptionError(f"{name}={device}: no CUDA GPU is available on this machine: use {name}=cpu", option)
        if dev.index is not None and dev.index >= n:
            raise OptionError(f"{name}={device}: this machine has {n} GPU(s): use cuda:0 to cuda:{n - 1}", option)
    elif dev.type not in ("cpu", "mps"):
        raise OptionError(f"{name}={device!r}: use auto, cpu or cuda", option)
    return dev


@dataclass(frozen=True)
class TrainingOptions:
    """How a model is trained: one object, built once (from the CLI's flags or a Python ``fit(...)`` call) and passed
    down unchanged to :func:`scivae.core.fit_module`.

    Every model's ``fit`` takes these fields as keywords on top of the model's own defaults
    (``model.fit(max_epochs=50, lr=3e-3)``), or one complete object (``model.fit(model.training_defaults().replace(
    lr=3e-3))``). A new
    training option is a field here, its use in :mod:`scivae.core.train`, and its CLI flag. Values are checked when
    the object is made; ``None`` means "the model decides" where a field allows it.

    Attributes
    ----------
    max_epochs
        Upper bound on epochs; early stopping may stop sooner (``None``: the model's rule).
    max_time
        Training budget in minutes; a cosine learning rate then reaches 0 when it is spent.
    batch_size
        Global minibatch size (under DDP each process takes its share of every batch).
    validation_fraction
        Share of the items held out (seeded) for early stopping and the diagnostics.
    lr, weight_decay, adam_eps, gradient_clip_val
        Adam settings and gradient-norm clipping (``None``: no clipping).
    lr_schedule
        ``"constant"`` or ``"cosine"`` (decay to 0 at ``max_epochs`` or when ``max_time`` is spent).
    n_samples
        Monte-Carlo samples of z per item in the training objective.
    kl_schedule, kl_warmup
        KL annealing (``"linear"``, ``"cyclical"``, ``"sigmoid"``, ``"constant"``) and its warm-up length in
        optimiser steps (``None``: the model's rule).
    accelerator, devices, strategy, num_nodes, precision
        Passed to Lightning (``precision=None``: the model's choice for the device).
    early_stopping, patience, restore_best_weights
        Stop when the validation objective has not improved for ``patience`` epochs at the full KL weight, and
        return the weights of the best epoch.
    seed
        Seed of the split, the data order and the sampling in training (``None``: the model's seed).
    progress_bar
        Show Lightning's progress bar.
    max_skipped_steps
        Steps with a non-finite loss or gradient that may be skipped before the fit stops as diverged.
    checkpoint_every_minutes
        With a checkpoint folder: also save inside an epoch after this many minutes (``None``: at epoch ends only).
    """

    max_epochs: int | None = None
    max_time: float | None = None
    batch_size: int = 128
    validation_fraction: float = 0.1
    lr: float = 1e-3
    lr_schedule: str = "constant"
    weight_decay: float = 0.0
    adam_eps: float = 1e-8
    gradient_clip_val: float | None = 10.0
    n_samples: int = 1
    kl_schedule: str = "linear"
    kl_warmup: int | None = None
    accelerator: str = "auto"
    devices: int | str = "auto"
    strategy: str = "auto"
    num_nodes: int = 1
    precision: str | None = None
    early_stopping: bool = True
    patience: int = 20
    restore_best_weights: bool = True
    seed: int | None = None
    progress_bar: bool = True
    max_skipped_steps: int = 25
    checkpoint_every_minutes: float | None = 10.0

    def __post_init__(self) -> None:
        set_ = object.__setattr__  # normalise on the frozen object (ints given as floats, devices as text)
        if self.max_epochs is not None:
            set_(self, "max_epochs", positive_int(self.max_epochs, "max_epochs"))
        if self.max_time is not None:
            set_(self, "max_time", positive_float(self.max_time, "max_time"))
        set_(self, "batch_size", check_batch_size(self.batch_size))
        vf = self.validation_fraction
        if not isinstance(vf, (int, float)) or isinstance(vf, bool) or not 0.0 <= float(vf) < 1.0:
            raise OptionError(f"{{validation_fraction}}={vf!r} is not in [0, 1)", "validation_fraction")
        set_(self, "lr", positive_float(self.lr, "lr"))
        one_of(self.lr_schedule, "lr_schedule", LR_SCHEDULES)
        set_(self, "weight_decay", positive_float(self.weight_decay, "weight_decay", allow_zero=True))
        set_(self, "adam_eps", positive_float(self.adam_eps, "adam_eps"))
        if self.gradient_clip_val is not None:
            set_(self, "gradient_clip_val", positive_float(self.gradient_clip_val, "gradient_clip_val"))
        set_(self, "n_samples", positive_int(self.n_samples, "n_samples"))
        one_of(self.kl_schedule, "kl_schedule", KL_SCHEDULES)
        if self.kl_warmup is not None:
            set_(self, "kl_warmup", positive_int(self.kl_warmup, "kl_warmup", minimum=0))
        set_(self, "num_nodes", positive_int(self.num_nodes, "num_nodes"))
        set_(self, "patience", positive_int(self.patience, "patience"))
        set_(self, "max_skipped_steps", positive_int(self.max_skipped_steps, "max_skipped_steps", minimum=0))
        if self.checkpoint_every_minutes is not None:
            minutes = positive_float(self.checkpoint_every_minutes, "checkpoint_every_minutes", allow_zero=True)
            set_(self, "checkpoint_every_minutes", minutes or None)
        if self.seed is not None:
            set_(self, "seed", check_seed(self.seed))
        devices = self.devices
        if isinstance(devices, str) and devices.strip().lstrip("-").isdigit():
            set_(self, "devices", int(devices))
        one_of(self.accelerator, "accelerator", ACCELERATORS)
        _device_indices(self.devices)

    def replace(self, **changes: Any) -> TrainingOptions:
        """A copy with ``changes`` (checked); unknown names raise :class:`OptionError`."""
        unknown = sorted(set(changes) - FIELDS)
        if unknown:
            raise OptionError(
                f"unknown training option(s) {', '.join(unknown)}: use fields of TrainingOptions "
                f"({', '.join(sorted(FIELDS))})"
            )
        return dataclasses.replace(self, **changes)

    def to_dict(self) -> dict[str, Any]:
        """The options as a JSON-ready dict."""
        return dataclasses.asdict(self)


#: Names of the training options.
FIELDS = frozenset(f.name for f in dataclasses.fields(TrainingOptions))
#: Largest seed numpy and torch accept.
MAX_SEED = 2**32 - 1


def check_seed(seed: Any, name: str = "seed") -> int:
    """``seed`` as an int in [0, 2^32), or :class:`OptionError`."""
    if not isinstance(seed, numbers.Integral) or isinstance(seed, bool) or not 0 <= int(seed) <= MAX_SEED:
        raise OptionError(f"{{{name}}}={seed!r} is not an integer between 0 and {MAX_SEED}", name)
    return int(seed)

