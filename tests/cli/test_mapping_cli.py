"""`scivae map REFERENCE QUERY`: the query with its latent and transferred labels, the query model, one-line errors."""

from __future__ import annotations

import hashlib
from pathlib import Path

import anndata as ad
import numpy as np
import pytest
import torch
from typer.testing import CliRunner

import scivae
from scivae_cli.main import app
from scivae_cli.mapping import PREDICTION, PROBABILITY, default_model_out, default_out
from tests.cells.lineages import ifnb_with_lineages

runner = CliRunner()


@pytest.fixture(autouse=True)
def _one_thread():
    torch.set_num_threads(1)  # small models: see tests/cells/conftest.py


def _sha(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


@pytest.fixture(scope="module")
def files(tmp_path_factory) -> tuple[Path, Path]:
    """A labelled reference folder (300 control cells) and a query .h5ad (200 stimulated cells, 20 genes fewer)."""
    root = tmp_path_factory.mktemp("mapping")
    adata = ifnb_with_lineages()
    ref = adata[adata.obs["condition"] == "ctrl"][:300].copy()
    torch.set_num_threads(1)
    model = scivae.CellVAE(ref, batch_key="condition", labels_key="lineage", n_hidden=32, seed=0)
    model.fit(max_epochs=5, progress_bar=False).save(root / "ref" / "model")
    query = adata[adata.obs["condition"] == "stim"][:200, 20:].copy()
    del query.obs["lineage"]
    query.write_h5ad(root / "stim.h5ad")
    return root / "ref", root / "stim.h5ad"


def test_map_writes_the_query_with_latent_labels_and_model(files, tmp_path) -> None:
    reference, query = files
    sha = _sha(query)
    out = tmp_path / "mapped.h5ad"
    r = runner.invoke(app, ["map", str(reference), str(query), "-o", str(out), "--max-epochs", "3", "--seed", "1"])
    assert r.exit_code == 0, r.output
    assert "zero-padded" in r.output and "stim" in r.output
    assert _sha(query) == sha  # the input is byte-identical
    mapped = ad.read_h5ad(out)
    original = ad.read_h5ad(query)
    assert list(mapped.obs_names) == list(original.obs_names) and mapped.n_vars == original.n_vars
    assert mapped.obsm["X_scivae"].shape == (200, 10)
    assert set(mapped.obs[PREDICTION]) <= {"B", "NK", "T", "myeloid"}
    p = mapped.obs[PROBABILITY].to_numpy()
    assert ((p >= 0.25) & (p <= 1.0)).all()  # the winner of 4 labels
    assert mapped.uns["scivae"]["query_batches"] == ["stim"]
    folder = default_model_out(out)
    assert sorted(x.name for x in folder.iterdir()) == ["config.json", "history.csv", "model.safetensors"]
    with pytest.warns(UserWarning, match="genes are missing"):
        model = scivae.CellVAE.load(folder, adata=original)
    assert model.mapping is not None and model.encoder.batch_categories == ["ctrl", "stim"]
    np.testing.assert_allclose(model.get_latent(), mapped.obsm["X_scivae"], rtol=1e-5, atol=1e-6)
    np.testing.assert_array_equal(model.predict(), mapped.obs[PREDICTION].to_numpy())


def test_map_defaults_beside_the_query(files, tmp_path) -> None:
    reference, query = files
    local = tmp_path / "q.h5ad"
    local.write_bytes(query.read_bytes())
    r = runner.invoke(app, ["map", str(reference), str(local), "--max-epochs", "1"])
    assert r.exit_code == 0, r.output
    assert default_out(local) == tmp_path / "q.mapped.h5ad" and (tmp_path / "q.mapped.h5ad").is_file()
    assert (tmp_path / "q.mapped.model" / "config.json").is_file()


@pytest.mark.parametrize(
    ("extra", "expect"),
    [
        (["--batch-key", "donor"], "batch key 'donor' is not a column of adata.obs"),
        (["-o", "{tmp}/mapped.csv"], "pass a path ending in .h5ad"),
        (["--max-epochs", "0"], "--max-epochs=0 is not an integer >= 1"),
        (["--weight-decay-not-a-flag"], "No such option"),
    ],
    ids=["missing-batch-column", "output-not-h5ad", "zero-epochs", "unknown-flag"],
)
def test_map_bad_input_exits_2_with_one_line(files, tmp_path, extra, expect) -> None:
    reference, query = files
    args = [a.replace("{tmp}", str(tmp_path)) for a in extra]
    r = runner.invoke(app, ["map", str(reference), str(query), "-o", str(tmp_path / "m.h5ad"), *args])
    assert r.exit_code == 2, r.output
    assert "Traceback" not in r.output and expect in r.output
    if expect != "No such option":
        assert r.output.strip().startswith("error: ") and len(r.output.strip().splitlines()) == 1
    assert not (tmp_path / "m.h5ad").exists() and not (tmp_path / "m.model").exists()


def test_map_refuses_a_query_of_reference_batches_and_missing_inputs(files, tmp_path) -> None:
    reference, query = files
    same = ad.read_h5ad(query)
    same.obs["condition"] = "ctrl"
    same_path = tmp_path / "ctrl.h5ad"
    same.write_h5ad(same_path)
    r = runner.invoke(app, ["map", str(reference), str(same_path), "--max-epochs", "1"])
    assert r.exit_code == 2 and "is a reference batch" in r.output and "--batch-key" in r.output, r.output
    r = runner.invoke(app, ["map", str(tmp_path / "nope"), str(query)])
    assert r.exit_code == 2 and r.output.startswith("error: ") and "no such model folder" in r.output
    (tmp_path / "busy").mkdir()
    (tmp_path / "busy" / "notes.txt").write_text("mine")
    r = runner.invoke(app, ["map", str(reference), str(query), "--model-out", str(tmp_path / "busy")])
    assert r.exit_code == 2 and "not a scivae model folder" in r.output
    assert (tmp_path / "busy" / "notes.txt").read_text() == "mine"


def test_fit_with_labels_then_map_from_the_shell(tmp_path) -> None:
    """`scivae fit --labels-key` makes the labelled reference; a reference without labels maps without predictions."""
    adata = ifnb_with_lineages()
    ctrl = adata[adata.obs["condition"] == "ctrl"][:200].copy()
    ctrl.obs.loc[ctrl.obs_names[:50], "lineage"] = "?"
    ctrl.write_h5ad(tmp_path / "ctrl.h5ad")
    stim = adata[adata.obs["condition"] == "stim"][:150].copy()
    stim.write_h5ad(tmp_path / "stim.h5ad")
    fit = ["--n-latent", "4", "--max-epochs", "2", "--batch-key", "condition"]
    r = runner.invoke(
        app, ["fit", str(tmp_path / "ctrl.h5ad"), *fit, "--labels-key", "lineage", "--unlabeled-category", "?"]
    )
    assert r.exit_code == 0, r.output
    labelled = scivae.CellVAE.load(tmp_path / "ctrl.scivae")
    assert labelled.labels.unlabeled_category == "?" and "?" not in labelled.labels.categories
    embedded = ad.read_h5ad(tmp_path / "ctrl.scivae" / "embedded.h5ad")
    np.testing.assert_array_equal(embedded.obs[PREDICTION].to_numpy(), labelled.predict(ctrl))
    r = runner.invoke(app, ["map", str(tmp_path / "ctrl.scivae"), str(tmp_path / "stim.h5ad"), "--max-epochs", "1"])
    assert r.exit_code == 0, r.output
    assert PREDICTION in ad.read_h5ad(tmp_path / "stim.mapped.h5ad").obs
    r = runner.invoke(app, ["fit", str(tmp_path / "ctrl.h5ad"), *fit, "-o", str(tmp_path / "plain")])
    assert r.exit_code == 0, r.output
    out = tmp_path / "plain-mapped.h5ad"
    r = runner.invoke(
        app, ["map", str(tmp_path / "plain"), str(tmp_path / "stim.h5ad"), "-o", str(out), "--max-epochs", "1"]
    )
    assert r.exit_code == 0, r.output
    mapped = ad.read_h5ad(out)
    assert PREDICTION not in mapped.obs and mapped.obsm["X_scivae"].shape == (150, 4)
    assert PREDICTION not in ad.read_h5ad(tmp_path / "plain" / "embedded.h5ad").obs
    r = runner.invoke(
        app, ["fit", str(tmp_path / "ctrl.h5ad"), *fit, "--labels-key", "nope", "-o", str(tmp_path / "x")]
    )
    assert r.exit_code == 2 and "pass an existing column to --labels-key" in r.output, r.output
