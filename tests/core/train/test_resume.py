"""Resumable fits: an interrupted and resumed run ends exactly where an uninterrupted one does."""

from __future__ import annotations

import lightning as L
import numpy as np
import pytest
import torch

from scivae.core import ArrayDataModule, KLSchedule, fit_module
from scivae.core.data.arrays import ResumableBatchSampler
from scivae.core.data.device import DeviceDataModule
from scivae.core.train.resume import CHECKPOINT_FILE, checkpoint_position
from scivae.dense import GaussianVAEModule
from scivae.errors import CheckpointError


class _Interrupted(Exception):
    pass


class _Interrupt(L.Callback):
    """Raises (like a killed process, nothing after it runs) before optimiser step ``step``, or at train end."""

    def __init__(self, step: int | None) -> None:
        self.step = step

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx) -> None:
        if trainer.global_step == self.step:
            raise _Interrupted

    def on_train_end(self, trainer, pl_module) -> None:
        if self.step is None:
            raise _Interrupted


def _fit(digits, ckpt, *, interrupt=False, step=None, resume=False, max_epochs=12, datamodule=ArrayDataModule):
    torch.manual_seed(0)
    module = GaussianVAEModule(64, n_latent=4, n_hidden=32, n_layers=1)
    # 9 batches per epoch; early stopping with patience 1 ends the run before max_epochs
    dm = datamodule({"x": digits[:640]}, batch_size=64, validation_fraction=0.1, seed=3)
    result = fit_module(
        module,
        dm,
        max_epochs=max_epochs,
        kl_schedule=KLSchedule("linear", warmup_steps=18),
        lr=1e-2,
        lr_schedule="cosine",
        patience=1,
        seed=5,
        progress_bar=False,
        checkpoint_dir=ckpt,
        checkpoint_every_steps=2,
        resume_from=ckpt / CHECKPOINT_FILE if resume else None,
        callbacks=[_Interrupt(step)] if interrupt else None,
    )
    return result, module


# max_epochs such that early stopping ends each run (the cosine schedule, hence the run, depends on it)
@pytest.mark.parametrize(("datamodule", "max_epochs"), [(ArrayDataModule, 12), (DeviceDataModule, 25)])
def test_interrupted_fits_resume_to_the_uninterrupted_result(digits, tmp_path, datamodule, max_epochs):
    run = {"datamodule": datamodule, "max_epochs": max_epochs}
    reference, ref_module = _fit(digits, tmp_path / "a", **run)
    m = reference.metrics
    assert m["epochs_trained"] < max_epochs and m["best_epoch"] < m["epochs_trained"] - 1  # early stopping worked

    ckpt = tmp_path / "b"
    positions = []
    # inside epoch 1 (after batch 4), at the start of epoch 3 (last save: the end of epoch 2), inside epoch 4, and
    # after the last epoch (the run is complete but its outputs were never returned)
    for n, step in enumerate((13, 27, 40, None)):
        with pytest.raises(_Interrupted):
            _fit(digits, ckpt, interrupt=True, step=step, resume=n > 0, **run)
        positions.append(checkpoint_position(ckpt / CHECKPOINT_FILE))
    assert [p["batches_done"] for p in positions[:3]] == [4, None, 4]
    assert positions[3]["should_stop"] and positions[3]["batches_done"] is None

    resumed, module = _fit(digits, ckpt, resume=True, **run)
    r = resumed.metrics
    for key in ("optimizer_steps", "epochs_trained", "best_epoch", "weights_epoch", "elbo_validation", "skipped_steps"):
        assert r[key] == m[key], key
    assert r["resumes"] == 4 and r["time_s"] > 0 and r["train_obs_per_s"] > 0
    for (name, a), b in zip(ref_module.state_dict().items(), module.state_dict().values(), strict=True):
        assert torch.equal(a, b), name
    # the history covers every epoch, with the training means of the epochs cut in the middle intact
    assert list(resumed.history["epoch"]) == list(range(m["epochs_trained"]))
    assert resumed.history.equals(reference.history)
    assert resumed.kl_per_dim_history == reference.kl_per_dim_history


def test_resume_keeps_the_schedules_of_the_run_it_continues(digits, tmp_path):
    """A resume with a longer max_epochs continues the original KL warm-up and learning-rate plan."""
    torch.manual_seed(0)
    module = GaussianVAEModule(64, n_latent=2, n_hidden=16, n_layers=1)
    dm = ArrayDataModule({"x": digits[:256]}, batch_size=64)  # 4 training batches per epoch
    first = fit_module(module, dm, max_epochs=2, progress_bar=False, checkpoint_dir=tmp_path, early_stopping=False)
    assert first.history["kl_weight"].iloc[-1] == 1.0  # warm-up of 2 steps (a quarter of 8)
    result = fit_module(
        module, dm, max_epochs=3, progress_bar=False, resume_from=tmp_path / CHECKPOINT_FILE, early_stopping=False,
    )  # fmt: skip
    assert result.metrics["epochs_trained"] == 3 and result.metrics["optimizer_steps"] == 12
    assert list(result.history["epoch"]) == [0, 1, 2]  # the epochs before the resume are kept
    np.testing.assert_allclose(result.history["kl_weight"], first.history["kl_weight"].tolist() + [1.0])


def test_missing_or_damaged_checkpoint_is_a_one_line_error(digits, tmp_path):
    module = GaussianVAEModule(64, n_latent=2, n_hidden=16, n_layers=1)
    dm = ArrayDataModule({"x": digits[:128]}, batch_size=64)
    with pytest.raises(CheckpointError, match="no checkpoint at"):
        fit_module(module, dm, max_epochs=1, progress_bar=False, resume_from=tmp_path / "none.ckpt")
    bad = tmp_path / "last.ckpt"
    bad.write_bytes(b"not a checkpoint")
    with pytest.raises(CheckpointError, match="cannot read the checkpoint"):
        checkpoint_position(bad)


def test_sampler_restarts_an_epoch_at_any_batch():
    dm = ArrayDataModule({"row": np.arange(100)}, batch_size=8, validation_fraction=0.0, seed=2)
    loader = dm.train_dataloader()
    sampler = loader.sampler
    assert isinstance(sampler, ResumableBatchSampler)
    first = [b["row"].tolist() for b in loader]
    epoch_end = dm.train_sampler_state()
    it = iter(loader)
    second = [next(it)["row"].tolist() for _ in range(5)]
    mid = dm.train_sampler_state(batches_done=5)
    second += [b["row"].tolist() for b in it]
    third = [b["row"].tolist() for b in loader]
    assert first != second != third

    fresh = ArrayDataModule({"row": np.arange(100)}, batch_size=8, validation_fraction=0.0, seed=2)
    fresh.resume_train_sampler(mid)
    loader = fresh.train_dataloader()
    assert [b["row"].tolist() for b in loader] == second[5:]
    assert [b["row"].tolist() for b in loader] == third
    fresh.resume_train_sampler(epoch_end)
    assert [b["row"].tolist() for b in fresh.train_dataloader()] == second
