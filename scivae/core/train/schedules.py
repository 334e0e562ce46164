"""KL-weight annealing schedules w(t), pure functions of the global optimiser step.

Being stateless in the step makes them exact after a resume: the weight is recomputed, never stored.
"""

from __future__ import annotations

import math
import warnings
from dataclasses import asdict, dataclass, field
from typing import Any

from scivae.errors import ScivaeInputError

SCHEDULES = ("constant", "linear", "cyclical", "sigmoid")


@dataclass
class KLSchedule:
    """KL weight as a function of the global step.

    Parameters
    ----------
    kind
        ``"constant"``; ``"linear"`` warm-up from 0 to ``max_weight`` over ``warmup_steps``; ``"cyclical"``
        (Fu et al. 2019): ``n_cycles`` cycles over the run, each rising linearly during its first ``ratio``
        of steps, then flat at ``max_weight``; ``"sigmoid"`` (ChemVAE): ``max_weight / (1 + exp(-slope (t -
        center)))``.
    max_weight
        Final (or cycle-top) weight.
    warmup_steps
        Length of the linear warm-up. ``None`` means a quarter of the run, resolved by :meth:`bind`.
    n_cycles, ratio
        Cyclical parameters.
    center, slope
        Sigmoid parameters; ``center=None`` means a quarter of the run, ``slope=None`` a rise from ~0 at
        step 0.
    total_steps
        Total number of optimiser steps of the run, set by :meth:`bind`; the cyclical schedule needs it.
    """

    kind: str = "linear"
    max_weight: float = 1.0
    warmup_steps: int | None = None
    n_cycles: int = 4
    ratio: float = 0.5
    center: float | None = None
    slope: float | None = None
    total_steps: int | None = field(default=None)

    def __post_init__(self) -> None:
        if self.kind not in SCHEDULES:
            raise ScivaeInputError(f"unknown KL schedule {self.kind!r}: use one of {', '.join(SCHEDULES)}")
        if not 0.0 < self.ratio <= 1.0:
            raise ScivaeInputError(f"cyclical ratio must be in (0, 1], got {self.ratio}")
        if self.n_cycles < 1:
            raise ScivaeInputError(f"n_cycles must be >= 1, got {self.n_cycles}")

    def bind(self, total_steps: int) -> KLSchedule:
        """Fill in the run-length-dependent defaults and warn if the weight cannot reach its maximum.

        scvi-tools warms up over a fixed number of epochs, so with few epochs the KL weight never reaches 1
        and the reported ELBO is not the objective that was optimised; we say so instead.
        """
        self.total_steps = max(int(total_steps), 1)
        if self.kind == "linear" and self.warmup_steps is None:
            self.warmup_steps = max(self.total_steps // 4, 1)
        if self.kind == "sigmoid":
            if self.center is None:
                self.center = self.total_steps / 4
            if self.slope is None:
                # w(0) = 1 / (1 + e^8): starts at ~0 whatever the run length.
                self.slope = 8.0 / max(self.center, 1.0)
        final = self(self.total_steps)
        if self.kind in ("linear", "sigmoid") and final < 0.99 * self.max_weight:
            length = self.warmup_steps if self.kind == "linear" else self.center
            warnings.warn(
                f"KL {self.kind} warm-up ({length} steps) is longer than the run ({self.total_steps} steps): "
                f"the KL weight only reaches {final:.3g} of {self.max_weight}; shorten the warm-up or train longer",
                UserWarning,
                stacklevel=2,
            )
        return self

    def __call__(self, step: int) -> float:
        m = self.max_weight
        if self.kind == "constant":
            return m
        if self.kind == "linear":
            n = self.warmup_steps if self.warmup_steps is not None else 0
            return m if n <= 0 else m * min(step / n, 1.0)
        if self.kind == "sigmoid":
            if self.center is None or self.slope is None:
                raise RuntimeError("the sigmoid schedule needs center and slope, or bind(total_steps)")
            x = -self.slope * (step - self.center)
            return m / (1.0 + math.exp(min(x, 700.0)))
        # cyclical
        total = self.total_steps
        if total is None:
            raise RuntimeError("the cyclical schedule needs bind(total_steps) before use")
        period = total / self.n_cycles
        tau = (step % period) / period if step < total else 1.0
        return m * min(tau / self.ratio, 1.0)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> KLSchedule:
        return cls(**d)


def make_schedule(kind: str | None = "linear", warmup: int | None = None, **kwargs: Any) -> KLSchedule:
    """Build a :class:`KLSchedule` from CLI-style arguments (``warmup`` is the linear warm-up in steps)."""
    return KLSchedule(kind=kind or "linear", warmup_steps=warmup, **kwargs)
