"""The one-dimensional worked example of the VAE primer, computed exactly.

Each input x is "encoded" as ``z_mean = (x - mean) / SD`` (population SD) with a fixed ``z_var = 0.5`` and
decoded at the posterior mean as ``x_hat = z_mean * SD + mean``. Per row we report the squared-error
reconstruction loss and ``KL = 0.5 * (z_var + z_mean^2 - 1 - log z_var)``; the ELBO is
``-(mean reconstruction + mean KL)``.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

DEFAULT_INPUTS = (1.0, 2.5, 3.8, 1.2, 4.1, 2.0, 3.5, 0.8, 4.5, 1.5)
Z_VAR = 0.5


@dataclass(frozen=True)
class PrimerRow:
    """One encoded and decoded input."""

    x: float
    z_mean: float
    z_var: float
    x_hat: float
    reconstruction: float
    kl: float


@dataclass(frozen=True)
class PrimerResult:
    """Rows plus the data statistics and totals."""

    rows: list[PrimerRow]
    mean: float
    sd: float

    @property
    def mean_reconstruction(self) -> float:
        return sum(r.reconstruction for r in self.rows) / len(self.rows)

    @property
    def mean_kl(self) -> float:
        return sum(r.kl for r in self.rows) / len(self.rows)

    @property
    def elbo(self) -> float:
        return -(self.mean_reconstruction + self.mean_kl)


def gaussian_kl(z_mean: float, z_var: float) -> float:
    """KL(N(z_mean, z_var) || N(0, 1))."""
    return 0.5 * (z_var + z_mean**2 - 1.0 - math.log(z_var))


def run_primer(values: Sequence[float], z_var: float = Z_VAR) -> PrimerResult:
    """Encode and decode every value with the data's mean and population SD.

    Raises
    ------
    ValueError
        Fewer than two values, or all values equal (the SD is 0 and z is undefined).
    """
    xs = [float(v) for v in values]
    if len(xs) < 2:
        raise ValueError("need at least two input values to compute a mean and SD")
    mean = sum(xs) / len(xs)
    sd = math.sqrt(sum((x - mean) ** 2 for x in xs) / len(xs))
    if sd == 0.0:
        raise ValueError("all input values are equal: the SD is 0, so z = (x - mean) / SD is undefined")
    rows = []
    for x in xs:
        z = (x - mean) / sd
        x_hat = z * sd + mean
        rows.append(PrimerRow(x, z, z_var, x_hat, (x - x_hat) ** 2, gaussian_kl(z, z_var)))
    return PrimerResult(rows, mean, sd)
