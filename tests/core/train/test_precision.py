"""bf16 mixed precision is chosen only where it keeps the ELBO (checked here with CPU autocast)."""

import numpy as np
import pytest
import torch

from scivae.core import ArrayDataModule, fit_module
from scivae.core.train.precision import bf16_elbo_gap, bf16_keeps_elbo, check_bf16
from scivae.dense import GaussianVAEModule


def test_tolerance_rejects_large_changes_and_nan():
    assert bf16_keeps_elbo(0.09) and not bf16_keeps_elbo(0.2) and not bf16_keeps_elbo(float("nan"))


def test_gap_is_zero_in_float32_paths_and_positive_under_bf16(digits):
    torch.manual_seed(0)
    module = GaussianVAEModule(64, n_latent=4, n_hidden=32, n_layers=1)
    batch = {"x": torch.from_numpy(digits[:256])}
    elbo, gap = bf16_elbo_gap(module, batch)
    assert np.isfinite(elbo) and 0.0 < gap < 1.0
    again = bf16_elbo_gap(module, batch)
    assert again == (elbo, gap)  # same z samples: deterministic
    assert module.training  # mode restored


@pytest.mark.parametrize("n_input, scale, keeps", [(2, 1.0, True), (64, 10.0, False)])
def test_check_decides_on_the_measured_gap(digits, n_input, scale, keeps):
    """Measured with CPU autocast: a 2-feature model changes by ~0.06 nats per row under bf16, a 64-feature
    one on inputs up to 10 by several nats (8-bit rounding of every matrix-product input)."""
    torch.manual_seed(0)
    module = GaussianVAEModule(n_input, n_latent=2, n_hidden=8, n_layers=1)
    x = (digits[:, 20:22] if n_input == 2 else digits) * scale
    report = check_bf16(module, {"x": x}, "cpu", n_rows=256)
    assert report["bf16_keeps_elbo"] is keeps
    assert next(module.parameters()).device.type == "cpu"


def test_fit_on_the_cpu_stays_in_float32(digits):
    module = GaussianVAEModule(64, n_latent=2, n_hidden=8, n_layers=1)
    dm = ArrayDataModule({"x": digits[:128]}, batch_size=64, validation_fraction=0.25)
    result = fit_module(module, dm, max_epochs=1, progress_bar=False, early_stopping=False, accelerator="cpu")
    assert result.metrics["precision"] == "32-true" and "bf16_elbo_gap" not in result.metrics
