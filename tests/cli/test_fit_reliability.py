"""``scivae fit`` survives kill -9, refuses a second fit on the same output, replaces outputs only with --force
and atomically, and stops a diverging fit with its last good weights."""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import anndata as ad
import numpy as np
import pytest
import torch
from filelock import FileLock
from typer.testing import CliRunner

import scivae_cli.molecules as molcli
from scivae.core.train.resume import checkpoint_position
from scivae.datasets._moses import moses
from scivae_cli.fit_output import CHECKPOINT_DIR, CHECKPOINT_FILE, LOCK_FILE
from scivae_cli.main import app
from tests.cells.conftest import pbmc_subset
from tests.cli.bad_input_corpus import fingerprint, leftovers

runner = CliRunner()
REPO = Path(__file__).resolve().parents[2]
#: A tiny molecule architecture (the command's defaults are the MOSES sizes).
TINY_MOLECULES = dict(embedding_dim=16, encoder_hidden=32, decoder_hidden=48, decoder_layers=1)

# Runs `scivae fit` in a child process that stops (sleeps) just before optimiser step STEP, after writing where
# it is to MARK: the parent then kills it with SIGKILL, in the middle of an epoch.
CHILD = f"""
import sys, time
from pathlib import Path
import lightning as L
import scivae.core.model.base as core_model
import scivae_cli.molecules as molcli
from scivae_cli.main import app

MARK, STEP = Path(sys.argv[1]), int(sys.argv[2])
molcli.MODEL_OVERRIDES.update({TINY_MOLECULES})
molcli.CHECK_SAMPLES = 20

class Freeze(L.Callback):
    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx):
        if trainer.global_step == STEP:
            MARK.write_text(f"{{trainer.current_epoch}} {{batch_idx}}")
            time.sleep(600)

original = core_model.fit_module
def fit_module(*args, **kwargs):
    kwargs["callbacks"] = [*(kwargs.get("callbacks") or []), Freeze()]
    return original(*args, **kwargs)
core_model.fit_module = fit_module
sys.argv = ["scivae", *sys.argv[3:]]
app()
"""


@pytest.fixture()
def tiny_molecules(monkeypatch):
    monkeypatch.setattr(molcli, "MODEL_OVERRIDES", dict(TINY_MOLECULES))
    monkeypatch.setattr(molcli, "CHECK_SAMPLES", 20)
    torch.set_num_threads(1)


def _data(kind: str, folder: Path) -> tuple[Path, list[str]]:
    if kind == "cells":
        path = folder / "cells.h5ad"
        pbmc_subset(400, 150, seed=21).write_h5ad(path)  # 360 training cells: 6 batches of 64
        return path, ["--max-epochs", "4", "--batch-size", "64", "--n-latent", "4", "--kl-warmup", "6"]
    path = folder / "mols.smi"
    path.write_text("\n".join(moses("train", n=300, seed=11)) + "\n")  # 270 training molecules: 9 batches
    return path, ["--max-epochs", "3", "--batch-size", "32", "--n-latent", "4", "--lr", "0.003"]


def _latents(kind: str, out: Path) -> np.ndarray:
    if kind == "cells":
        return ad.read_h5ad(out / "embedded.h5ad").obsm["X_scivae"]
    from scivae import MolVAE

    return MolVAE.load(out / "model").encode(moses("test", n=100, seed=3))


def _min_correlation(a: np.ndarray, b: np.ndarray) -> float:
    corr = []
    for j in range(a.shape[1]):
        if np.array_equal(a[:, j], b[:, j]):
            corr.append(1.0)
        else:
            corr.append(float(np.corrcoef(a[:, j], b[:, j])[0, 1]))
    return min(corr)


@pytest.mark.parametrize(("kind", "kill_step"), [("cells", 9), ("molecules", 13)])
def test_kill_9_mid_epoch_then_resume_ends_as_an_uninterrupted_fit(kind, kill_step, tmp_path, tiny_molecules):
    data, options = _data(kind, tmp_path)
    sha = fingerprint(data)
    args = ["fit", str(data), *options, "--accelerator", "cpu", "--seed", "2", "--checkpoint-every", "0.0001"]

    reference = tmp_path / "reference"
    r = runner.invoke(app, [*args, "--out", str(reference)])
    assert r.exit_code == 0, r.output

    out = tmp_path / "interrupted"
    child = tmp_path / "child.py"
    child.write_text(CHILD)
    mark = tmp_path / "mark"
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    proc = subprocess.Popen(
        [sys.executable, str(child), str(mark), str(kill_step), *args, "--out", str(out)],
        env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
    )  # fmt: skip
    try:
        deadline = time.monotonic() + 300
        while not mark.exists() and proc.poll() is None and time.monotonic() < deadline:
            time.sleep(0.2)
        assert mark.exists(), proc.stderr.read().decode()[-2000:] if proc.poll() is not None else "timed out"
        os.kill(proc.pid, signal.SIGKILL)
        assert proc.wait(timeout=60) == -signal.SIGKILL
    finally:
        if proc.poll() is None:
            proc.kill()
        proc.stderr.close()
    epoch, batch = map(int, mark.read_text().split())
    assert epoch == 1 and batch > 0  # killed in the middle of the second epoch
    position = checkpoint_position(out / CHECKPOINT_DIR / CHECKPOINT_FILE)
    assert position["epoch"] == 1 and 0 < position["batches_done"] <= batch  # the last checkpoint: mid-epoch
    assert not (out / "metrics.json").exists() and not (out / "model").exists()

    # without --resume the interrupted fit is not overwritten by accident
    r = runner.invoke(app, [*args, "--out", str(out)])
    assert r.exit_code == 2 and "add --resume to continue it" in r.output
    # a resume must repeat the settings
    r = runner.invoke(app, [*args, "--out", str(out), "--resume", "--seed", "3"])
    assert r.exit_code == 2 and "other settings (seed 2 -> 3)" in r.output

    r = runner.invoke(app, [*args, "--out", str(out), "--resume"])
    assert r.exit_code == 0, r.output
    assert fingerprint(data) == sha and not leftovers(out)
    assert not (out / CHECKPOINT_DIR).exists() and not (out / LOCK_FILE).exists()

    ref, res = (json.loads((p / "metrics.json").read_text()) for p in (reference, out))
    assert res["optimizer_steps"] == ref["optimizer_steps"] and res["epochs_trained"] == ref["epochs_trained"]
    assert abs(res["elbo_validation"] - ref["elbo_validation"]) <= 1e-3 * abs(ref["elbo_validation"])
    assert res["resumes"] == 1 and res["time_s"] > 0
    assert len((out / "history.csv").read_text().splitlines()) == ref["epochs_trained"] + 1
    z_ref, z = _latents(kind, reference), _latents(kind, out)
    assert _min_correlation(z_ref, z) > 0.99
    np.testing.assert_array_equal(z, z_ref)  # on the same machine the continuation is exact


@pytest.fixture()
def cells(tmp_path) -> Path:
    path = tmp_path / "cells.h5ad"
    pbmc_subset(200, 80, seed=4).write_h5ad(path)
    return path


FAST = ["--max-epochs", "2", "--batch-size", "64", "--n-latent", "3", "--accelerator", "cpu"]


def test_a_second_fit_on_the_same_out_is_refused_while_one_runs(cells, tmp_path):
    out = tmp_path / "run"
    out.mkdir()
    with FileLock(str(out / LOCK_FILE), timeout=0):  # what a running fit holds
        r = runner.invoke(app, ["fit", str(cells), *FAST, "--out", str(out)])
    assert r.exit_code == 2 and "another scivae fit is writing to" in r.output
    assert [p.name for p in out.iterdir()] == [LOCK_FILE]
    r = runner.invoke(app, ["fit", str(cells), *FAST, "--out", str(out)])  # the lock is free again
    assert r.exit_code == 0, r.output


def test_replacing_a_finished_output_needs_force_and_a_failed_replacement_keeps_it(cells, tmp_path, monkeypatch):
    out = tmp_path / "run"
    assert runner.invoke(app, ["fit", str(cells), *FAST, "--out", str(out)]).exit_code == 0
    before, model_before = fingerprint(out), fingerprint(out / "model")
    r = runner.invoke(app, ["fit", str(cells), *FAST, "--out", str(out), "--seed", "5"])
    assert r.exit_code == 2 and "holds a finished fit: add --force" in r.output and fingerprint(out) == before

    import scivae.pl.report

    def broken_report(*args, **kwargs):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(scivae.pl.report, "write_fit_report", broken_report)
    r = runner.invoke(app, ["fit", str(cells), *FAST, "--out", str(out), "--seed", "5", "--force"])
    assert r.exit_code == 1 and "No space left on device" in r.output
    # the failure came after the checkpoints: they are kept for --resume, the previous results are untouched
    assert "continue the fit with the same command and --resume" in r.output
    kept = {p.name for p in out.iterdir()}
    assert kept == {"model", "embedded.h5ad", "metrics.json", "history.csv", "training_curves.png",
                    "kl_per_dim.png", "rate_distortion.png", "latent_umap.png", CHECKPOINT_DIR, LOCK_FILE,
                    ".scivae-output.json"}  # fmt: skip
    assert not leftovers(out)
    assert fingerprint(out / "model") == model_before
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["params"]["seed"] == 0
    monkeypatch.undo()
    r = runner.invoke(app, ["fit", str(cells), *FAST, "--out", str(out), "--seed", "5", "--force", "--resume"])
    assert r.exit_code == 0, r.output
    assert json.loads((out / "metrics.json").read_text())["params"]["seed"] == 5
    assert not (out / CHECKPOINT_DIR).exists()


def test_a_diverging_fit_exits_3_with_its_last_good_weights(cells, tmp_path, monkeypatch):
    from scivae.cells.module import CellVAEModule

    original = CellVAEModule.loss

    def nan_from_step_4(self, batch, kl_weight=1.0, step=0, n_samples=1):
        out = original(self, batch, kl_weight=kl_weight, step=step, n_samples=n_samples)
        if self.training and step >= 4:  # 3 training batches per epoch: epoch 0 and one step of epoch 1 are good
            out.loss = out.loss * torch.nan
        return out

    monkeypatch.setattr(CellVAEModule, "loss", nan_from_step_4)
    out = tmp_path / "run"
    r = runner.invoke(app, ["fit", str(cells), *FAST, "--max-epochs", "30", "--out", str(out)])
    assert r.exit_code == 3, r.output
    line = r.output.strip().splitlines()[-1]
    assert line.startswith("error: training diverged") and "--lr" in line and "--free-bits" in line
    assert "holds the weights of epoch" in line and "Traceback" not in r.output
    flags = set(re.findall(r"--[a-z][a-z-]*", line))
    help_text = runner.invoke(app, ["fit", "--help"], terminal_width=200).output
    assert flags and all(f in help_text for f in flags), flags  # the hint names only flags that exist
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["diverged"] is True and metrics["skipped_steps"] > 0
    # the report describes the finite weights returned (a collapse verdict exists: None means non-finite latents)
    assert metrics["collapsed"] in (True, False)
    from safetensors.torch import load_file

    weights = load_file(str(out / "model" / "model.safetensors"))
    assert all(torch.isfinite(v).all() for v in weights.values())
    assert checkpoint_position(out / CHECKPOINT_DIR / CHECKPOINT_FILE)["global_step"] <= 6
