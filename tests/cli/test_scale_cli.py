"""Scale: `scivae fit/embed --backed` streams the file, and `--devices 2 --strategy ddp` (2 gloo processes on
the CPU) trains like one process: same samples per epoch, validation ELBO within 2%, latent in cell order."""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
import sys
from pathlib import Path

import anndata as ad
import numpy as np
import pandas as pd
import pytest
import torch
from typer.testing import CliRunner

import scivae
from scivae_cli.main import app
from tests.cells.conftest import pbmc_subset

runner = CliRunner()
FIT = ["--n-latent", "4", "--max-epochs", "3", "--batch-size", "64", "--kl-warmup", "5", "--accelerator", "cpu"]


@pytest.fixture(autouse=True)
def _one_thread():
    torch.set_num_threads(1)


def _sha(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def _h5ad(tmp_path: Path, n_obs: int, n_genes: int) -> Path:
    adata = pbmc_subset(n_obs, n_genes, seed=21)
    adata.obs["sample"] = pd.Categorical(np.where(np.arange(n_obs) % 2 == 0, "ctrl", "stim"))
    path = tmp_path / "cells.h5ad"
    adata.write_h5ad(path)
    return path


def test_fit_and_embed_backed(tmp_path):
    path = _h5ad(tmp_path, 400, 150)
    before = _sha(path)
    out = tmp_path / "fit"
    args = ["fit", str(path), "--backed", "--out", str(out), "--batch-key", "sample", "--no-early-stopping"]
    r = runner.invoke(app, [*args, "--patience", "1", *FIT])
    assert r.exit_code == 0, r.output
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["epochs_trained"] == 3 and metrics["params"]["backed"] is True  # no early stop at patience 1
    assert metrics["data"]["backed"] == str(path)
    embedded = ad.read_h5ad(out / "embedded.h5ad")
    original = ad.read_h5ad(path)
    assert embedded.obs_names.equals(original.obs_names) and (embedded.X != original.X).nnz == 0
    assert embedded.obsm["X_scivae"].shape == (400, 4)

    streamed, in_memory = tmp_path / "streamed.h5ad", tmp_path / "in_memory.h5ad"
    r = runner.invoke(app, ["embed", str(out / "model"), str(path), "-o", str(streamed), "--backed"])
    assert r.exit_code == 0, r.output
    assert runner.invoke(app, ["embed", str(out / "model"), str(path), "-o", str(in_memory)]).exit_code == 0
    z_streamed, z_memory = ad.read_h5ad(streamed).obsm["X_scivae"], ad.read_h5ad(in_memory).obsm["X_scivae"]
    np.testing.assert_allclose(z_streamed, z_memory, rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(z_streamed, embedded.obsm["X_scivae"], rtol=1e-5, atol=1e-5)
    assert _sha(path) == before

    csc = ad.read_h5ad(path)
    csc.X = csc.X.tocsc()
    csc.write_h5ad(tmp_path / "csc.h5ad")
    r = runner.invoke(app, ["fit", str(tmp_path / "csc.h5ad"), "--backed", *FIT])
    assert r.exit_code == 2 and "CSC" in r.output and "tocsr()" in r.output and "Traceback" not in r.output
    r = runner.invoke(app, ["fit", str(path), "--backed", "--num-nodes", "0"])
    assert r.exit_code == 2 and "--num-nodes" in r.output


def _ddp_fit(path: Path, out: Path, *extra: str) -> dict:
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONWARNINGS": "ignore"}
    cmd = [sys.executable, "-m", "scivae_cli.main", "fit", str(path), "--out", str(out), *DDP_FIT, *extra]
    done = subprocess.run(cmd, capture_output=True, text=True, timeout=600, env=env, cwd=path.parent)
    assert done.returncode == 0, done.stderr[-3000:]
    return json.loads((out / "metrics.json").read_text())


DDP_FIT = ["--max-epochs", "10", "--batch-size", "64", "--no-early-stopping", "--accelerator", "cpu"]
DDP_FIT += ["--n-latent", "6", "--seed", "2"]


def test_ddp_two_processes_train_like_one(tmp_path):
    path = _h5ad(tmp_path, 800, 300)
    one = tmp_path / "one"
    r = runner.invoke(app, ["fit", str(path), "--out", str(one), *DDP_FIT])
    assert r.exit_code == 0, r.output
    single = json.loads((one / "metrics.json").read_text())
    for name, extra in (("ddp", ()), ("ddp_backed", ("--backed",))):
        out = tmp_path / name
        ddp = _ddp_fit(path, out, "--devices", "2", "--strategy", "ddp", *extra)
        history = pd.read_csv(out / "history.csv")
        # every training cell once per epoch, summed over the two processes, as with one process
        assert (history["n_obs_train"] == 720).all() and single["n_obs_train"] == 720
        assert abs(ddp["elbo_validation"] / single["elbo_validation"] - 1) < 0.02, (ddp, single)
        assert ddp["optimizer_steps"] == single["optimizer_steps"]  # shares of the same global batches
        # collapse diagnostics over both processes' validation cells: their KL matches the synced mean
        np.testing.assert_allclose(history["kl_total_validation"], history["kl_validation"], rtol=1e-4)
        embedded = ad.read_h5ad(out / "embedded.h5ad")
        original = ad.read_h5ad(path)
        assert embedded.obs_names.equals(original.obs_names)
        z = scivae.load(out / "model").get_latent(original)
        np.testing.assert_allclose(embedded.obsm["X_scivae"], z, rtol=1e-5, atol=1e-5)  # original cell order
    assert sorted(p.name for p in tmp_path.iterdir()) == ["cells.h5ad", "ddp", "ddp_backed", "one"]  # rank 0 only
