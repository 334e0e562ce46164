"""AnnData Zarr stores (v2, v3, v3 sharded): read in memory, streamed with ``backed=True`` like a backed ``.h5ad``
(the same batches, the same fit), ``scivae fit/embed --backed`` on a store, the input never written, and a damaged
store refused in one line (exit code 2)."""

from __future__ import annotations

import hashlib
import json
import warnings
from pathlib import Path

import anndata as ad
import numpy as np
import pandas as pd
import pytest
import zarr
from typer.testing import CliRunner

from scivae.cells import CellVAE, prepare, read_anndata
from scivae.cells.streaming import prepare_backed, write_with_latent
from scivae.errors import ScivaeInputError
from scivae_cli.main import app

from .conftest import pbmc_subset

runner = CliRunner()
FORMATS = ("v2", "v3", "v3-sharded")
FIT = ["--n-latent", "4", "--max-epochs", "2", "--batch-size", "64", "--kl-warmup", "5", "--accelerator", "cpu"]


def _cells(n_obs: int = 300, n_genes: int = 150) -> ad.AnnData:
    adata = pbmc_subset(n_obs, n_genes, seed=3)
    adata.obs["sample"] = pd.Categorical(np.where(np.arange(n_obs) % 3 == 0, "s1", "s2"))
    return adata


def _write_zarr(adata: ad.AnnData, path: Path, fmt: str) -> Path:
    """``adata`` written by anndata's own writer as a Zarr v2, v3 or sharded v3 store."""
    version = 2 if fmt == "v2" else 3
    with warnings.catch_warnings(), ad.settings.override(zarr_write_format=version):
        warnings.simplefilter("ignore")  # anndata's and zarr's notes on their coming defaults
        if fmt == "v3-sharded":
            with ad.settings.override(auto_shard_zarr_v3=True):
                adata.write_zarr(path)
        else:
            adata.write_zarr(path)
    return path


def _array_meta(store: Path, node: str) -> dict:
    return json.loads((store / node / "zarr.json").read_text())


def _tree_sha(path: Path) -> str:
    """One hash of every file of a store (names and contents)."""
    h = hashlib.sha256()
    for f in sorted(p for p in path.rglob("*") if p.is_file()):
        h.update(str(f.relative_to(path)).encode())
        h.update(f.read_bytes())
    return h.hexdigest()


@pytest.fixture(params=FORMATS)
def store(request, tmp_path) -> tuple[Path, ad.AnnData]:
    adata = _cells()
    return _write_zarr(adata, tmp_path / "cells.zarr", request.param), adata


def test_store_formats_are_what_they_say(tmp_path):
    adata = _cells(100, 50)
    assert (_write_zarr(adata, tmp_path / "a.zarr", "v2") / ".zgroup").is_file()
    plain = _array_meta(_write_zarr(adata, tmp_path / "b.zarr", "v3"), "X/data")
    sharded = _array_meta(_write_zarr(adata, tmp_path / "c.zarr", "v3-sharded"), "X/data")
    assert plain["zarr_format"] == sharded["zarr_format"] == 3
    assert "sharding_indexed" not in {c["name"] for c in plain["codecs"]}
    assert "sharding_indexed" in {c["name"] for c in sharded["codecs"]}


def test_read_and_stream_match_in_memory(store):
    path, adata = store
    before = _tree_sha(path)
    read = read_anndata(path)
    assert read.obs_names.equals(adata.obs_names) and (read.X != adata.X).nnz == 0
    mem, genes, enc, source = prepare(adata, batch_key="sample")
    disk, genes_d, enc_d, source_d = prepare_backed(path, batch_key="sample", chunk_rows=64)
    assert genes_d == genes and source_d == source == "X" and enc_d.to_dict() == enc.to_dict()
    assert {k: v for k, v in disk.summary.items() if k != "backed"} == mem.summary
    assert np.array_equal(disk.covariates["batch"], mem.arrays["batch"])
    x_streamed = np.concatenate([b["x"].numpy() for b in disk.batches(100)])
    np.testing.assert_array_equal(x_streamed, mem.arrays["x"].toarray())
    assert _tree_sha(path) == before


def test_layers_raw_dense_and_csc_in_a_store(tmp_path):
    adata = _cells(200, 80)
    counts = adata.X.copy()
    mem, genes, _, _ = prepare(adata)
    layered = adata.copy()
    layered.layers["counts"] = counts
    layered.raw = adata.copy()
    layered.X = np.log1p(counts.toarray())  # dense, log-normalised: not counts
    path = _write_zarr(layered, tmp_path / "layered.zarr", "v3-sharded")
    for layer, source in ((None, "raw"), ("counts", "layers['counts']")):
        data, genes_d, _, source_d = prepare_backed(path, layer=layer, chunk_rows=64)
        assert source_d == source and genes_d == genes
        np.testing.assert_array_equal(
            np.concatenate([b["x"].numpy() for b in data.batches(50)]), mem.arrays["x"].toarray()
        )
    dense = adata.copy()
    dense.X = counts.toarray()
    data, genes_d, _, _ = prepare_backed(_write_zarr(dense, tmp_path / "dense.zarr", "v3"), chunk_rows=64)
    assert data.counts.dense and genes_d == genes
    csc = adata.copy()
    csc.X = counts.tocsc()
    with pytest.raises(ScivaeInputError, match=r"stored by columns \(CSC\).*read_zarr.*write_zarr") as e:
        prepare_backed(_write_zarr(csc, tmp_path / "csc.zarr", "v2"))
    assert "\n" not in str(e.value)


def test_backed_fit_matches_h5ad_and_in_memory(store, tmp_path):
    path, adata = store
    h5ad = tmp_path / "cells.h5ad"
    adata.write_h5ad(h5ad)
    before = _tree_sha(path)
    kwargs = {"backed": True, "batch_key": "sample", "n_latent": 4, "n_hidden": 32, "seed": 5}
    fit = {"max_epochs": 2, "batch_size": 64, "progress_bar": False, "accelerator": "cpu"}
    from_zarr = CellVAE(path, **kwargs).fit(**fit)
    from_h5ad = CellVAE(h5ad, **kwargs).fit(**fit)
    z = from_zarr.get_latent()
    # the same chunks, the same seeded order: the Zarr fit is the .h5ad fit
    np.testing.assert_allclose(z, from_h5ad.get_latent(), rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(z, from_zarr.get_latent(adata), rtol=1e-5, atol=1e-5)  # streamed == in memory
    np.testing.assert_allclose(z, from_zarr.get_latent(str(path)), rtol=1e-5, atol=1e-5)
    in_memory = CellVAE(read_anndata(path), **{**kwargs, "backed": False}).fit(**fit)
    assert in_memory.fit_result.metrics["n_obs_train"] == from_zarr.fit_result.metrics["n_obs_train"]
    out = tmp_path / "embedded.zarr"
    write_with_latent(path, out, "X_scivae", z, {"note": "test"})
    written = ad.read_zarr(out)
    assert (written.X != adata.X).nnz == 0 and written.obs_names.equals(adata.obs_names)
    np.testing.assert_array_equal(written.obsm["X_scivae"], z)
    assert written.uns["scivae"]["note"] == "test"
    assert "X_scivae" not in zarr.open_group(path, mode="r")["obsm"]
    with pytest.raises(ScivaeInputError, match="pass a path ending in .zarr"):
        write_with_latent(path, tmp_path / "embedded.h5ad", "X_scivae", z, {})
    assert _tree_sha(path) == before  # nothing written into the input


def test_cli_fit_and_embed_backed_store(tmp_path):
    path = _write_zarr(_cells(), tmp_path / "cells.zarr", "v3-sharded")
    before = _tree_sha(path)
    out = tmp_path / "fit"
    r = runner.invoke(app, ["fit", str(path), "--backed", "--out", str(out), "--batch-key", "sample", *FIT])
    assert r.exit_code == 0, r.output
    assert "embedded.zarr" in r.output
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["params"]["backed"] is True and metrics["data"]["backed"] == str(path)
    embedded = ad.read_zarr(out / "embedded.zarr")
    original = ad.read_zarr(path)
    assert embedded.obs_names.equals(original.obs_names) and (embedded.X != original.X).nnz == 0
    assert embedded.obsm["X_scivae"].shape == (300, 4) and embedded.uns["scivae"]["key_added"] == "X_scivae"
    assert "sharding_indexed" in {c["name"] for c in _array_meta(out / "embedded.zarr", "X/data")["codecs"]}
    (out / "latent_umap.png").unlink()
    r = runner.invoke(app, ["plot", str(out), "--color", "sample"])  # redrawn from embedded.zarr
    assert r.exit_code == 0, r.output
    assert (out / "latent_umap.png").read_bytes()[:4] == b"\x89PNG"

    streamed, in_memory, as_zarr = tmp_path / "streamed.zarr", tmp_path / "in_memory.h5ad", tmp_path / "mem.zarr"
    r = runner.invoke(app, ["embed", str(out / "model"), str(path), "-o", str(streamed), "--backed"])
    assert r.exit_code == 0, r.output
    assert runner.invoke(app, ["embed", str(out / "model"), str(path), "-o", str(in_memory)]).exit_code == 0
    assert runner.invoke(app, ["embed", str(out / "model"), str(path), "-o", str(as_zarr)]).exit_code == 0
    z = ad.read_zarr(streamed).obsm["X_scivae"]
    np.testing.assert_allclose(z, ad.read_h5ad(in_memory).obsm["X_scivae"], rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(z, ad.read_zarr(as_zarr).obsm["X_scivae"], rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(z, embedded.obsm["X_scivae"], rtol=1e-5, atol=1e-5)
    # an existing store is replaced only when scivae wrote it: someone's data under that name is refused, intact
    foreign = _write_zarr(_cells(), tmp_path / "foreign.zarr", "v2")
    foreign_sha = _tree_sha(foreign)
    r = runner.invoke(app, ["embed", str(out / "model"), str(path), "-o", str(foreign), "--backed"])
    _one_line_error(r, "not written by scivae")
    assert _tree_sha(foreign) == foreign_sha
    r = runner.invoke(app, ["embed", str(out / "model"), str(path), "-o", str(streamed), "--backed"])
    assert r.exit_code == 0, r.output  # our own earlier output
    r = runner.invoke(app, ["embed", str(out / "model"), str(path), "--backed"])  # default: DATA.embedded.zarr
    assert r.exit_code == 0, r.output
    assert (tmp_path / "cells.embedded.zarr").is_dir()
    for o, expected in ((tmp_path / "x.h5ad", "written as .zarr"), (path / "inner.zarr", "is the input file")):
        r = runner.invoke(app, ["embed", str(out / "model"), str(path), "-o", str(o), "--backed"])
        _one_line_error(r, expected)
    assert _tree_sha(path) == before  # the input store was only read


def _one_line_error(r, expected: str) -> None:
    assert r.exit_code == 2, r.output
    text = r.output.strip()
    assert text.startswith("error: ") and expected in text and "Traceback" not in text, text
    assert len(text.splitlines()) == 1, text


def _damage(store: Path, how: str) -> None:
    """Damage X of a store as a bad copy or a buggy writer would, keeping its metadata consistent."""
    x = zarr.open_group(store, mode="r+", use_consolidated=False)["X"]
    if how == "truncated indptr":
        indptr = x["indptr"][:]
        del x["indptr"]
        x.create_array("indptr", data=indptr[:-7])
    else:  # an out-of-range column index
        x["indices"][3] = 10**6
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        zarr.consolidate_metadata(store)


@pytest.fixture(scope="module")
def small_model(tmp_path_factory) -> tuple[ad.AnnData, Path]:
    """Tiny cells and a model trained on them (one epoch: only its genes matter here)."""
    adata = _cells(120, 40)
    folder = tmp_path_factory.mktemp("model") / "model"
    CellVAE(adata, n_latent=2, n_hidden=16).fit(max_epochs=1, progress_bar=False, accelerator="cpu").save(folder)
    return adata, folder


@pytest.mark.parametrize("fmt", FORMATS)
@pytest.mark.parametrize("how", ["truncated indptr", "index out of range"])
def test_damaged_store_is_refused_in_one_line(fmt, how, small_model, tmp_path):
    adata, model = small_model
    bad = _write_zarr(adata, tmp_path / "bad.zarr", fmt)
    _damage(bad, how)
    expected = "indptr has" if how == "truncated indptr" else "lies outside"
    for backed in ([], ["--backed"]):
        _one_line_error(runner.invoke(app, ["fit", str(bad), *backed, *FIT]), expected)
        _one_line_error(runner.invoke(app, ["embed", str(model), str(bad), *backed]), expected)
    with pytest.raises(ScivaeInputError, match="damaged sparse structure"):
        prepare_backed(bad)
    with pytest.raises(ScivaeInputError, match="damaged sparse structure"):
        read_anndata(bad)
    assert not (tmp_path / "bad.scivae").exists() and not (tmp_path / "bad.embedded.h5ad").exists()


def test_not_a_store_is_refused(tmp_path):
    folder = tmp_path / "empty.zarr"
    folder.mkdir()
    with pytest.raises(ScivaeInputError, match="not a Zarr store") as e:
        prepare_backed(folder)
    assert "{" not in str(e.value) and "--backed" not in str(e.value)  # the library names backed, not the flag
    _one_line_error(runner.invoke(app, ["fit", str(folder), "--backed", *FIT]), "--backed streams")
    store = _write_zarr(_cells(100, 50), tmp_path / "cells.zarr", "v2")
    (store / "X" / "indptr" / "0").write_bytes(b"not blosc")  # a chunk that does not decompress
    _one_line_error(runner.invoke(app, ["fit", str(store), "--backed", *FIT]), "cannot read")
