"""Precision choice: bf16 mixed precision only where it keeps the ELBO.

bf16 autocast rounds the inputs of every matrix product to 8 significant bits. For a count likelihood
over thousands of genes that rounding enters the log-likelihood of every count, and the ELBO can move by
more than the differences one wants to measure. So ``fit_module`` does not take bf16 on trust: before a
fit that would use it by default, :func:`bf16_elbo_gap` evaluates the ELBO of a sample of validation rows
twice, in float32 and under bf16 autocast, with the same z samples, and training stays in float32 when the
mean absolute per-observation difference exceeds :data:`BF16_ELBO_TOLERANCE`.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np
import torch

from scivae.core.data.arrays import ArrayLike, take_rows
from scivae.core.module.base import VAEModule

#: Largest mean absolute per-observation ELBO change (nats) that bf16 autocast may cause: a tenth of the
#: smallest paired differences between models reported in the benchmarks (about 1 nat per cell).
BF16_ELBO_TOLERANCE = 0.1


@torch.no_grad()
def bf16_elbo_gap(module: VAEModule, batch: Mapping[str, torch.Tensor], seed: int = 0) -> tuple[float, float]:
    """Mean ELBO in float32 and the mean absolute per-observation change under bf16 autocast, same z samples.

    Runs on the device of ``module`` and ``batch``; the module is left in its previous train/eval mode.

    Returns
    -------
    elbo, gap
        Mean float32 ELBO per observation, and ``mean |ELBO(bf16) - ELBO(float32)|`` per observation (nats).
    """
    device = next(module.parameters()).device
    was_training = module.training
    module.eval()
    try:
        with torch.random.fork_rng(devices=[device] if device.type == "cuda" else []):
            torch.manual_seed(seed)
            full = module.elbo(dict(batch)).double()
            torch.manual_seed(seed)
            with torch.autocast(device_type=device.type, dtype=torch.bfloat16):
                low = module.elbo(dict(batch)).double()
    finally:
        module.train(was_training)
    return float(full.mean()), float((low - full).abs().mean())


def bf16_keeps_elbo(gap: float, tolerance: float = BF16_ELBO_TOLERANCE) -> bool:
    """Whether a bf16 ELBO change ``gap`` (nats per observation) is finite and within ``tolerance``."""
    return bool(np.isfinite(gap)) and gap <= tolerance


def check_bf16(
    module: VAEModule,
    arrays: Mapping[str, ArrayLike],
    device: torch.device | str,
    n_rows: int = 512,
    seed: int = 0,
) -> dict[str, Any]:
    """Run :func:`bf16_elbo_gap` on the first ``n_rows`` rows of ``arrays`` on ``device``.

    The module is moved to ``device`` for the check and back to where it was.

    Returns
    -------
    dict
        ``bf16_elbo_gap`` (nats), ``bf16_elbo_reference`` (float32 mean ELBO) and ``bf16_keeps_elbo``.
    """
    n = next(iter(arrays.values())).shape[0]
    batch = take_rows(arrays, np.arange(min(n, n_rows)))
    home = next(module.parameters()).device
    module.to(device)
    try:
        elbo, gap = bf16_elbo_gap(module, {k: v.to(device) for k, v in batch.items()}, seed=seed)
    finally:
        module.to(home)
    return {"bf16_elbo_gap": gap, "bf16_elbo_reference": elbo, "bf16_keeps_elbo": bf16_keeps_elbo(gap)}


def cpu_native_bf16() -> bool:
    """Whether this CPU multiplies bf16 matrices natively (AVX512-BF16 or AMX-BF16 instructions, read from
    ``/proc/cpuinfo``).

    Without those instructions oneDNN emulates bf16 products and autocast is no faster than float32; the answer
    depends on the machine only, so the precision a fit picks from it is the same on every run of that machine.
    """
    try:
        with open("/proc/cpuinfo") as fh:
            for line in fh:
                if line.startswith("flags"):
                    flags = set(line.split(":", 1)[1].split())
                    return bool(flags & {"avx512_bf16", "amx_bf16"})
    except OSError:
        pass
    return False
