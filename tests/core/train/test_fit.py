"""Training plan, callbacks and report on the Gaussian adapter."""

import json

import lightning as L
import numpy as np
import pytest
import torch

from scivae.core import ArrayDataModule, KLSchedule, fit_module
from scivae.dense import GaussianVAEModule
from scivae.pl.report import write_fit_report


def test_annealing_is_applied_and_logged(digits, tmp_path):
    torch.manual_seed(0)
    module = GaussianVAEModule(64, n_latent=4, n_hidden=32, n_layers=1)
    dm = ArrayDataModule({"x": digits[:640]}, batch_size=64, validation_fraction=0.1)  # 9 steps per epoch
    result = fit_module(
        module,
        dm,
        max_epochs=4,
        kl_schedule=KLSchedule("linear", warmup_steps=18),
        progress_bar=False,
        early_stopping=False,
        checkpoint_dir=tmp_path / "ckpt",
    )
    w = result.history["kl_weight"].to_numpy()
    # epoch-mean of w over steps 0-8 = 4/18, steps 9-17 = 13/18, then 1
    np.testing.assert_allclose(w, [4 / 18, 13 / 18, 1.0, 1.0], rtol=1e-5)
    assert (tmp_path / "ckpt" / "last.ckpt").exists()
    assert len(result.kl_per_dim_history) == 4 and len(result.kl_per_dim_history[0]) == 4

    paths = write_fit_report(tmp_path / "report", result, extra={"data": "digits"})
    metrics = json.loads(paths["metrics"].read_text())
    for key in (
        "elbo_train",
        "elbo_validation",
        "reconstruction_validation",
        "kl_validation",
        "active_units",
        "time_s",
    ):
        assert key in metrics
    assert metrics["data"] == "digits" and len(metrics["collapse"]["kl_per_dim"]) == 4
    assert paths["curves"].read_bytes()[:4] == b"\x89PNG" and paths["kl"].read_bytes()[:4] == b"\x89PNG"
    assert len(paths["history"].read_text().splitlines()) == 5


def test_early_stopping_waits_for_the_full_kl_weight(digits):
    torch.manual_seed(0)
    module = GaussianVAEModule(64, n_latent=4, n_hidden=32, n_layers=1)
    dm = ArrayDataModule({"x": digits[:640]}, batch_size=64, validation_fraction=0.1)  # 9 steps per epoch
    schedule = KLSchedule("linear", warmup_steps=45)  # full weight from epoch 5 on
    result = fit_module(module, dm, max_epochs=30, kl_schedule=schedule, patience=1, progress_bar=False)
    h = result.history
    assert result.metrics["epochs_trained"] >= 6
    best = result.metrics["best_epoch"]
    assert result.metrics["weights_epoch"] == best
    assert h.loc[h["epoch"] == best, "kl_weight"].item() == 1.0
    at_full = h[h["kl_weight"] == 1.0]
    assert result.metrics["elbo_validation"] == at_full["elbo_validation"].max()


def test_without_restoring_the_last_epoch_is_reported_and_not_called_best(digits):
    torch.manual_seed(0)
    module = GaussianVAEModule(64, n_latent=4, n_hidden=32, n_layers=1)
    dm = ArrayDataModule({"x": digits[:640]}, batch_size=64, validation_fraction=0.1)
    schedule = KLSchedule("linear", warmup_steps=9)
    result = fit_module(
        module, dm, max_epochs=4, kl_schedule=schedule, restore_best_weights=False, early_stopping=False,
        progress_bar=False,
    )  # fmt: skip
    last = result.history.iloc[-1]
    assert "best_epoch" not in result.metrics
    assert result.metrics["weights_epoch"] == int(last["epoch"]) == 3
    assert result.metrics["elbo_validation"] == last["elbo_validation"]


class _LearningRates(L.Callback):
    def __init__(self) -> None:
        self.lrs: list[float] = []

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx) -> None:
        self.lrs.append(trainer.optimizers[0].param_groups[0]["lr"])


def test_cosine_learning_rate_decays_to_zero_over_the_planned_steps(digits):
    torch.manual_seed(0)
    module = GaussianVAEModule(64, n_latent=4, n_hidden=32, n_layers=1)
    dm = ArrayDataModule({"x": digits[:640]}, batch_size=64, validation_fraction=0.1)  # 9 steps per epoch
    rates = _LearningRates()
    fit_module(
        module, dm, max_epochs=4, lr=2e-3, lr_schedule="cosine", early_stopping=False, progress_bar=False,
        callbacks=[rates],
    )  # fmt: skip
    total = 4 * 9
    assert len(rates.lrs) == total
    expected = [1e-3 * (1 + np.cos(np.pi * s / total)) for s in range(total)]
    np.testing.assert_allclose(rates.lrs, expected, rtol=1e-6)
    assert rates.lrs[-1] < 0.01 * rates.lrs[0]
    with pytest.raises(ValueError, match="lr_schedule"):
        fit_module(module, dm, max_epochs=1, lr_schedule="step", progress_bar=False)


def test_clipping_reuses_the_finiteness_norm_and_matches_torch(digits):
    from scivae.core.train.plan import VAETrainingPlan

    torch.manual_seed(0)
    module = GaussianVAEModule(64, n_latent=4, n_hidden=32, n_layers=1)
    plan = VAETrainingPlan(module)
    optimizer = torch.optim.Adam(module.parameters())
    module.loss({"x": torch.as_tensor(digits[:64], dtype=torch.float32)}).loss.backward()
    copies = []
    for p in module.parameters():
        c = torch.nn.Parameter(p.detach().clone())
        c.grad = p.grad.clone()
        copies.append(c)
    norm = torch.nn.utils.clip_grad_norm_(copies, 0.5)
    assert float(norm) > 0.5  # the clipping bites
    plan.on_before_optimizer_step(optimizer)
    plan.configure_gradient_clipping(optimizer, gradient_clip_val=0.5, gradient_clip_algorithm="norm")
    for p, c in zip(module.parameters(), copies, strict=True):
        torch.testing.assert_close(p.grad, c.grad)
    assert plan._grad_norm is None  # used once


def test_collapse_diagnostics_run_on_a_capped_sample_and_their_time_is_reported(digits):
    """The per-epoch latent checks see about 2 % of the training items (64-512), whatever the validation
    batch size, and the fit reports how many items and what share of its time the diagnostics took."""
    from scivae.core.train.plan import diagnostic_items

    assert (diagnostic_items(100), diagnostic_items(10_000), diagnostic_items(1_000_000)) == (64, 200, 512)
    torch.manual_seed(0)
    module = GaussianVAEModule(64, n_latent=4, n_hidden=32, n_layers=1)
    dm = ArrayDataModule({"x": digits[:1000]}, batch_size=500, validation_fraction=0.3)  # 300 validation items
    checked = []

    class Count(L.Callback):
        def on_validation_epoch_end(self, trainer, plan):
            checked.append(len(plan.validation_check_values()["latent_gain"]))

    result = fit_module(module, dm, max_epochs=2, progress_bar=False, early_stopping=False, callbacks=[Count()])
    assert checked == [64, 64]
    m = result.metrics
    assert m["diagnostics_items"] == 64  # 700 training items: the floor, below one validation batch of 300
    assert 0 < m["diagnostics_s"] < m["time_s"] and 0 < m["diagnostics_share"] < 1
    assert "latent_gain_validation" in result.history.columns
