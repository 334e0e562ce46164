"""`scivae fit CELLS.h5ad` and `scivae embed`: files written, input untouched, one-line errors."""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path

import anndata as ad
import numpy as np
import pandas as pd
import pytest
import scanpy as sc
import torch
from typer.testing import CliRunner

from scivae_cli.cells import default_out
from scivae_cli.fit import fit as fit_command
from scivae_cli.main import app
from tests.cells.conftest import pbmc_subset

runner = CliRunner()
FIT = ["--n-latent", "4", "--max-epochs", "3", "--batch-size", "64", "--kl-warmup", "5"]


@pytest.fixture(autouse=True)
def _one_thread():
    torch.set_num_threads(1)  # small models: see tests/cells/conftest.py


def _sha(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


@pytest.fixture()
def h5ad(tmp_path: Path) -> Path:
    adata = pbmc_subset(400, 150, seed=21)
    adata.obs["sample"] = pd.Categorical(np.where(np.arange(400) % 2 == 0, "ctrl", "stim"))
    path = tmp_path / "cells.h5ad"
    adata.write_h5ad(path)
    return path


def test_fit_writes_model_embedding_and_report(h5ad: Path, tmp_path: Path) -> None:
    sha = _sha(h5ad)
    r = runner.invoke(app, ["fit", str(h5ad), *FIT, "--batch-key", "sample", "--seed", "3"])
    assert r.exit_code == 0, r.output
    out = tmp_path / "cells.scivae"
    assert default_out(h5ad) == out
    assert _sha(h5ad) == sha  # the input is byte-identical
    assert 1 <= torch.get_num_threads() <= len(os.sched_getaffinity(0))  # --threads 0 (default): the idle cores
    for name in ("model/model.safetensors", "model/config.json", "embedded.h5ad", "metrics.json", "history.csv"):
        assert (out / name).is_file(), name
    for name in ("training_curves.png", "kl_per_dim.png", "rate_distortion.png", "latent_umap.png"):
        assert (out / name).read_bytes()[:4] == b"\x89PNG", name
    metrics = json.loads((out / "metrics.json").read_text())
    for key in (
        "elbo_train",
        "elbo_validation",
        "reconstruction_validation",
        "kl_validation",
        "active_units",
        "time_s",
    ):
        assert np.isfinite(metrics[key]), key
    assert metrics["epochs_trained"] == 3 and metrics["data"]["n_cells_trained"] == 400
    assert metrics["params"]["batch_key"] == "sample" and metrics["params"]["seed"] == 3
    history = pd.read_csv(out / "history.csv")
    assert len(history) == 3 and {"elbo_train", "elbo_validation", "kl_validation"} <= set(history.columns)
    emb = ad.read_h5ad(out / "embedded.h5ad")
    original = ad.read_h5ad(h5ad)
    assert emb.obsm["X_scivae"].shape == (400, 4)
    assert (emb.X != original.X).nnz == 0 and list(emb.obs_names) == list(original.obs_names)
    assert emb.uns["scivae"]["params"]["likelihood"] == "nb"
    assert "error" not in r.output and "wrote" in r.output

    # embed the same cells with the saved model: identical embedding; the input again untouched
    new = tmp_path / "new.h5ad"
    original.write_h5ad(new)
    sha_new = _sha(new)
    r = runner.invoke(app, ["embed", str(out / "model"), str(new), "-o", str(tmp_path / "e.h5ad")])
    assert r.exit_code == 0, r.output
    np.testing.assert_array_equal(ad.read_h5ad(tmp_path / "e.h5ad").obsm["X_scivae"], emb.obsm["X_scivae"])
    assert _sha(new) == sha_new
    # the fit output folder is accepted too, with the default output name
    r = runner.invoke(app, ["embed", str(out), str(new)])
    assert r.exit_code == 0, r.output
    np.testing.assert_array_equal(ad.read_h5ad(tmp_path / "new.embedded.h5ad").obsm["X_scivae"], emb.obsm["X_scivae"])

    # counts in a layer (X log-normalised) and the batch under another name: --layer and --batch-key
    renamed = original.copy()
    renamed.layers["counts"] = renamed.X.copy()
    sc.pp.normalize_total(renamed)
    sc.pp.log1p(renamed)
    renamed.obs = renamed.obs.rename(columns={"sample": "condition"})
    moved = tmp_path / "moved.h5ad"
    renamed.write_h5ad(moved)
    args = ["embed", str(out), str(moved), "-o", str(tmp_path / "m.h5ad")]
    r = runner.invoke(app, [*args, "--layer", "counts", "--batch-key", "condition"])
    assert r.exit_code == 0, r.output
    np.testing.assert_array_equal(ad.read_h5ad(tmp_path / "m.h5ad").obsm["X_scivae"], emb.obsm["X_scivae"])
    assert "X looks log-normalised" in runner.invoke(app, args).output  # without --layer: refused
    assert "batch key 'sample'" in runner.invoke(app, [*args, "--layer", "counts"]).output

    # refitting into the same (scivae) folder replaces it, with --force only
    r = runner.invoke(app, ["fit", str(h5ad), *FIT, "--out", str(out), "--likelihood", "poisson"])
    assert r.exit_code == 2 and "holds a finished fit: add --force" in r.output
    r = runner.invoke(app, ["fit", str(h5ad), *FIT, "--out", str(out), "--likelihood", "poisson", "--force"])
    assert r.exit_code == 0, r.output
    assert json.loads((out / "metrics.json").read_text())["params"]["likelihood"] == "poisson"
    assert sorted(p.name for p in out.iterdir()) == [
        ".scivae-output.json",
        "embedded.h5ad", "history.csv", "kl_per_dim.png", "latent_umap.png", "metrics.json", "model",
        "rate_distortion.png", "training_curves.png",
    ]  # fmt: skip


def test_fit_command_called_from_python(h5ad: Path, tmp_path: Path) -> None:
    out = tmp_path / "custom"
    fit_command(h5ad, out=out, n_latent=3, max_epochs=2, batch_size=64, kl_warmup=4, n_top_genes=100, seed=1)
    assert ad.read_h5ad(out / "embedded.h5ad").obsm["X_scivae"].shape == (400, 3)
    cfg = json.loads((out / "model" / "config.json").read_text())
    assert cfg["model_type"] == "cell" and len(cfg["adapter_state"]["genes"]) == 100
    # scivae plot: the fit's pictures and a UMAP coloured by an obs column and a gene, into another folder
    gene = cfg["adapter_state"]["genes"][0]
    pics = tmp_path / "pics"
    r = runner.invoke(app, ["plot", str(out), "--out", str(pics), "--color", "sample", "--color", gene])
    assert r.exit_code == 0, r.output
    for name in ("training_curves.png", "kl_per_dim.png", "rate_distortion.png", "latent_umap.png"):
        assert (pics / name).read_bytes()[:4] == b"\x89PNG", name
    _one_line_error(runner.invoke(app, ["plot", str(out), "--color", "nothing"]), "neither an obs column nor a gene")


def _one_line_error(r, expected: str) -> None:
    assert r.exit_code == 2, r.output
    text = r.output.strip()
    assert text.startswith("error: ") and expected in text and "Traceback" not in text
    assert len(text.splitlines()) == 1


def test_bad_inputs_exit_2_with_one_line(h5ad: Path, tmp_path: Path) -> None:
    adata = ad.read_h5ad(h5ad)
    lognorm = adata.copy()
    sc.pp.normalize_total(lognorm)
    sc.pp.log1p(lognorm)
    bad = tmp_path / "lognorm.h5ad"
    lognorm.write_h5ad(bad)
    sha = _sha(bad)
    _one_line_error(runner.invoke(app, ["fit", str(bad), *FIT]), "X looks log-normalised")
    assert _sha(bad) == sha and not (tmp_path / "lognorm.scivae").exists()
    _one_line_error(runner.invoke(app, ["fit", str(h5ad), *FIT, "--layer", "counts"]), "layer 'counts' is not in")
    _one_line_error(runner.invoke(app, ["fit", str(h5ad), *FIT, "--batch-key", "donor"]), "batch key 'donor'")
    _one_line_error(runner.invoke(app, ["fit", str(h5ad), *FIT, "--likelihood", "gauss"]), "unknown likelihood")
    broken = tmp_path / "broken.h5ad"
    broken.write_text("this is not HDF5")
    _one_line_error(runner.invoke(app, ["fit", str(broken), *FIT]), "cannot read")
    busy = tmp_path / "busy"
    busy.mkdir()
    (busy / "notes.txt").write_text("keep me")
    _one_line_error(runner.invoke(app, ["fit", str(h5ad), *FIT, "--out", str(busy)]), "not a scivae output folder")
    assert (busy / "notes.txt").read_text() == "keep me"
    _one_line_error(runner.invoke(app, ["fit", str(h5ad), *FIT, "--out", str(tmp_path)]), "would contain or replace")


def test_embed_errors(h5ad: Path, tmp_path: Path) -> None:
    out = tmp_path / "fit"
    fit_command(h5ad, out=out, n_latent=3, max_epochs=1, batch_size=64, kl_warmup=2)
    fewer = ad.read_h5ad(h5ad)[:, 20:].copy()
    path = tmp_path / "fewer.h5ad"
    fewer.write_h5ad(path)
    _one_line_error(
        runner.invoke(app, ["embed", str(out), str(path)]),
        "20 of the model's 150 genes are missing from the new data's X gene names (130 overlap",
    )
    _one_line_error(runner.invoke(app, ["embed", str(tmp_path / "nomodel"), str(h5ad)]), "not a model directory")
    _one_line_error(runner.invoke(app, ["embed", str(out), str(h5ad), "-o", str(h5ad)]), "is the input file")
    _one_line_error(
        runner.invoke(app, ["embed", str(out), str(h5ad), "--batch-key", "sample"]), "trained without a batch key"
    )
