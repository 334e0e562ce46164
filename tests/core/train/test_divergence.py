"""Divergence guard: non-finite steps are skipped up to a bound, then the fit stops with the last good weights."""

from __future__ import annotations

import warnings

import lightning as L
import pytest
import torch

from scivae.core import ArrayDataModule, fit_module, save_model_dir
from scivae.core.train.resume import CHECKPOINT_FILE
from scivae.dense import GaussianVAEModule
from scivae.errors import CollapseWarning, DivergenceError
from scivae_cli.common import flag


class NaNLossAfter(GaussianVAEModule):
    """A NaN likelihood from training step ``start`` on (``start=0``: every step)."""

    def __init__(self, *args, start: int = 0, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self.start = start

    def loss(self, batch, kl_weight=1.0, step=0, n_samples=1):
        out = super().loss(batch, kl_weight=kl_weight, step=step, n_samples=n_samples)
        if self.training and step >= self.start:
            out.loss = out.loss * torch.nan
        return out


class NaNGradient(GaussianVAEModule):
    """A finite loss whose gradient is NaN: 0 * sqrt(0) adds nothing forwards, 0 * inf backwards."""

    def log_likelihood(self, batch, z):
        ll = super().log_likelihood(batch, z)
        return ll + 0.0 * torch.sqrt(self.log_scale.sum() * 0.0)


class NaNLatentsAfterTraining(GaussianVAEModule):
    """Trains and validates normally, but its encoder gives NaN latents once the fit is over."""

    poisoned = False

    def inference(self, batch):
        post = super().inference(batch)
        if self.poisoned:
            post.mu = post.mu * torch.nan
        return post


class _PoisonAtTrainEnd(L.Callback):
    def on_train_end(self, trainer, pl_module) -> None:
        pl_module.module.poisoned = True


def _data(digits, n=256):
    return ArrayDataModule({"x": digits[:n]}, batch_size=64, validation_fraction=0.25)  # 3 training batches


def test_nan_loss_is_skipped_then_the_fit_stops_with_the_last_good_weights(digits, tmp_path):
    torch.manual_seed(0)
    module = NaNLossAfter(64, n_latent=2, n_hidden=16, n_layers=1, start=7)  # steps 0-6 are good
    with pytest.raises(DivergenceError, match=r"training diverged: 4 steps skipped .*over the limit of 3") as err:
        fit_module(
            module, _data(digits), max_epochs=20, progress_bar=False, early_stopping=False, max_skipped_steps=3,
            checkpoint_dir=tmp_path,
        )  # fmt: skip
    assert "lower the learning rate (lr)" in str(err.value) and "free_bits=0.1" in str(err.value)
    assert "(--lr)" in err.value.render(flag) and "--free-bits=0.1" in err.value.render(flag)  # as the CLI says it
    result = err.value.fit_result
    assert result.metrics["skipped_steps"] == 4 and result.metrics["diverged"] is True
    assert list(result.history["epoch"]) == [0, 1, 2]  # epochs 0, 1 good; epoch 2 had one good step
    # the weights left in the module and the kept checkpoint are finite, from the last good epoch end
    assert all(torch.isfinite(v).all() for v in module.state_dict().values())
    ckpt = torch.load(tmp_path / CHECKPOINT_FILE, weights_only=True)
    assert ckpt["global_step"] == 9 and all(torch.isfinite(v).all() for v in ckpt["state_dict"].values())
    assert result.metrics["weights_epoch"] == 2


def test_a_fit_whose_every_step_fails_stops_and_keeps_its_initial_weights(digits):
    torch.manual_seed(0)
    module = NaNLossAfter(64, n_latent=2, n_hidden=16, n_layers=1)
    before = {k: v.clone() for k, v in module.state_dict().items()}
    with pytest.raises(DivergenceError, match="every step of epoch 0") as err:
        fit_module(module, _data(digits), max_epochs=5, progress_bar=False, early_stopping=False)
    assert err.value.fit_result.metrics["skipped_steps"] == 3
    for k, v in module.state_dict().items():
        assert torch.equal(v, before[k])


def test_nan_gradient_with_a_finite_loss_is_skipped(digits):
    torch.manual_seed(0)
    module = NaNGradient(64, n_latent=2, n_hidden=16, n_layers=1)
    before = {k: v.clone() for k, v in module.state_dict().items()}
    with pytest.raises(DivergenceError) as err:
        fit_module(module, _data(digits), max_epochs=1, progress_bar=False, early_stopping=False)
    assert err.value.fit_result.metrics["skipped_steps"] == 3
    for k, v in module.state_dict().items():
        assert torch.equal(v, before[k]), k  # no Adam step was taken with the NaN gradients


def test_nan_latents_are_reported_as_divergence_not_collapse(digits):
    torch.manual_seed(0)
    module = NaNLatentsAfterTraining(64, n_latent=2, n_hidden=16, n_layers=1)
    with warnings.catch_warnings():
        warnings.simplefilter("error", CollapseWarning)
        with pytest.raises(DivergenceError, match="non-finite latents") as err:
            fit_module(
                module, _data(digits), max_epochs=2, progress_bar=False, early_stopping=False,
                callbacks=[_PoisonAtTrainEnd()],
            )  # fmt: skip
    metrics = err.value.fit_result.metrics
    assert metrics["collapsed"] is None and metrics["active_units"] is None
    assert err.value.fit_result.collapse is None


def test_a_model_folder_is_never_written_with_nan_weights(tmp_path):
    module = GaussianVAEModule(4, n_latent=2, n_hidden=8, n_layers=1)
    with torch.no_grad():
        module.log_scale[0] = torch.nan
    with pytest.raises(DivergenceError, match="not finite"):
        save_model_dir(tmp_path / "m", module, model_type="gaussian", config={})
    assert not (tmp_path / "m").exists() and list(tmp_path.iterdir()) == []
