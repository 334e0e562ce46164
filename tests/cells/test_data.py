"""Reading and validating real, messy count data; every bad input gives one clear error."""

from __future__ import annotations

import warnings

import anndata as ad
import numpy as np
import pandas as pd
import pytest
import scanpy as sc
import scipy.io
import scipy.sparse as sp

from scivae.cells.data import CovariateEncoder, align, count_problem, prepare, read_anndata
from scivae.errors import ScivaeInputError
from scivae_cli.common import flag
from tests.cells.conftest import pbmc_subset


def _messy(adata: ad.AnnData) -> ad.AnnData:
    """PBMC cells made to look like the real interferon files: float CSC, duplicated names, empty genes/cells."""
    n_obs, n_vars = adata.shape
    x = sp.hstack([adata.X, sp.csr_matrix((n_obs, 50), dtype=np.float32)]).tocsr()  # 50 never-detected genes
    x = x.tolil()
    x[:3, :] = 0  # 3 empty cells
    x = sp.csc_matrix(x, dtype=np.float32)
    names = list(adata.var_names) + [f"EMPTY{i}" for i in range(50)]
    names[1] = names[0]  # a duplicated gene name
    names[2] = names[0]
    # the interferon files store var_names as a CategoricalIndex (anndata's own var_names_make_unique fails on it)
    return ad.AnnData(X=x, obs=adata.obs.copy(), var=pd.DataFrame(index=pd.CategoricalIndex(names)))


def test_messy_csc_input_is_cleaned_without_touching_the_input(pbmc_small) -> None:
    messy = _messy(pbmc_small)
    before = messy.X.copy()
    names_before = list(messy.var_names)
    with pytest.warns(UserWarning, match="2 duplicated gene names made unique"):
        data, genes, _, source = prepare(messy)
    s = data.summary
    assert source == "X"
    # the 300 most detected PBMC genes stay detected without the 3 emptied cells; the 50 added ones go
    assert s["n_genes_undetected_dropped"] == 50
    assert s["n_genes"] == len(genes) == data.arrays["x"].shape[1] == 300
    assert s["n_cells_empty"] == 3 and s["n_cells_trained"] == 597
    assert set(data.nonempty) == set(range(3, 600))
    assert s["n_duplicated_gene_names"] == 2
    assert genes[:3] == [names_before[0], names_before[0] + "-1", names_before[0] + "-2"]
    assert not any(g.startswith("EMPTY") for g in genes)
    x = data.arrays["x"]
    assert x.format == "csr" and x.dtype == np.float32
    # same counts, gene for gene
    assert (x != before.tocsr()[:, :300]).nnz == 0
    # the input AnnData is unchanged
    assert messy.X.format == "csc" and (messy.X != before).nnz == 0
    assert list(messy.var_names) == names_before


def test_real_interferon_like_duplicates_roundtrip_through_align(pbmc_small) -> None:
    messy = _messy(pbmc_small)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        data, genes, enc, _ = prepare(messy)
    again = align(messy, genes, enc)
    assert (again.arrays["x"] != data.arrays["x"]).nnz == 0


def test_counts_come_from_layer_then_raw_then_x(pbmc_small) -> None:
    counts = pbmc_small.X.copy()
    lognorm = pbmc_small.copy()
    sc.pp.normalize_total(lognorm, target_sum=1e4)
    sc.pp.log1p(lognorm)
    # raw holds counts, X is log-normalised: raw is used
    a = lognorm.copy()
    a.raw = pbmc_small.copy()
    data, _, _, source = prepare(a)
    assert source == "raw" and (data.arrays["x"] != counts).nnz == 0
    # an explicit layer wins
    b = lognorm.copy()
    b.layers["counts"] = counts
    data, _, _, source = prepare(b, layer="counts")
    assert source == "layers['counts']" and (data.arrays["x"] != counts).nnz == 0
    # log-normalised X without counts anywhere: one clear line naming the fix
    with pytest.raises(ScivaeInputError, match=r"^X looks log-normalised .*layer=counts.*adata\.raw") as e:
        prepare(lognorm)
    assert "\n" not in str(e.value)


@pytest.mark.parametrize(
    ("corrupt", "message"),
    [
        (lambda x: x * -1.0, "X has negative values"),
        (lambda x: _shift(x * 1.5, 0.25), "X holds non-integer values"),
        (lambda x: _set_first(x, np.nan), "X contains NaN or infinite values"),
        (lambda x: _set_first(x, np.inf), "X contains NaN or infinite values"),
    ],
)
def test_non_count_data_is_rejected(pbmc_small, corrupt, message) -> None:
    a = pbmc_small.copy()
    a.X = corrupt(a.X.copy())
    with pytest.raises(ScivaeInputError, match=message) as e:
        prepare(a)
    assert "\n" not in str(e.value) and "layer=counts" in str(e.value) and "--layer=counts" in e.value.render(flag)


def _shift(x: sp.csr_matrix, value: float) -> sp.csr_matrix:
    x.data += value
    return x


def _set_first(x: sp.csr_matrix, value: float) -> sp.csr_matrix:
    x.data[0] = value
    return x


def test_scaled_dense_x_is_rejected(pbmc_small) -> None:
    a = pbmc_small.copy()
    sc.pp.normalize_total(a)
    sc.pp.log1p(a)
    sc.pp.scale(a)
    assert isinstance(a.X, np.ndarray)
    with pytest.raises(ScivaeInputError, match="X has negative values"):
        prepare(a)


def test_integer_dtype_and_dense_counts_are_accepted(pbmc_small) -> None:
    a = pbmc_small.copy()
    a.X = a.X.toarray().astype(np.int32)
    data, _, _, _ = prepare(a)
    assert data.arrays["x"].format == "csr"
    assert (data.arrays["x"] != pbmc_small.X).nnz == 0


def test_checks_never_densify(pbmc_small, monkeypatch) -> None:
    def boom(*args, **kwargs):
        raise AssertionError("densified")

    a = _messy(pbmc_small)
    for cls in (sp.csr_matrix, sp.csc_matrix):
        monkeypatch.setattr(cls, "toarray", boom)
        monkeypatch.setattr(cls, "todense", boom)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        data, genes, enc, _ = prepare(a, n_top_genes=100)
        align(a, genes, enc)
    assert count_problem(a.X) is None and data.arrays["x"].shape[1] == 100


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"layer": "counts"}, r"layer 'counts' is not in adata.layers \(available: none\)"),
        ({"batch_key": "sample"}, "batch key 'sample' is not a column of adata.obs"),
        ({"categorical_covariate_keys": ["donor"]}, "categorical covariate 'donor' is not a column"),
        ({"continuous_covariate_keys": ["pct_mito"]}, "continuous covariate 'pct_mito' is not a column"),
    ],
)
def test_missing_keys(pbmc_small, kwargs, message) -> None:
    with pytest.raises(ScivaeInputError, match=message) as e:
        prepare(pbmc_small, **kwargs)
    assert "\n" not in str(e.value)


def test_bad_covariate_values(pbmc_small) -> None:
    a = pbmc_small.copy()
    a.obs["batch"] = ["a"] * 300 + [None] * 300
    with pytest.raises(ScivaeInputError, match="batch key 'batch' has 300 missing values"):
        prepare(a, batch_key="batch")
    a.obs["label"] = "x"
    with pytest.raises(ScivaeInputError, match="continuous covariate 'label' is not numeric"):
        prepare(a, continuous_covariate_keys=["label"])


def test_covariate_encoding_and_unseen_category(pbmc_small) -> None:
    a = pbmc_small.copy()
    a.obs["batch"] = pd.Categorical(np.where(np.arange(600) % 3 == 0, "b", "a"))
    a.obs["depth"] = np.asarray(a.X.sum(1)).ravel()
    data, genes, enc, _ = prepare(a, batch_key="batch", continuous_covariate_keys=["depth"])
    assert enc.batch_categories == ["a", "b"]
    assert np.array_equal(data.arrays["batch"], (np.arange(600) % 3 == 0).astype(np.int64))
    assert abs(data.arrays["cont"][:, 0].mean()) < 1e-4 and abs(data.arrays["cont"][:, 0].std() - 1) < 1e-3
    assert CovariateEncoder.from_dict(enc.to_dict()) == enc
    new = a[:10].copy()
    new.obs["batch"] = "c"
    with pytest.raises(ScivaeInputError, match="batch key 'batch' has categories not seen in training"):
        align(new, genes, enc)


def test_new_data_aligned_by_gene_name(pbmc_small) -> None:
    data, genes, enc, _ = prepare(pbmc_small)
    shuffled = pbmc_small[:, np.random.default_rng(0).permutation(pbmc_small.n_vars)].copy()
    assert (align(shuffled, genes, enc).arrays["x"] != data.arrays["x"]).nnz == 0
    with pytest.raises(ScivaeInputError, match="5 of the model's 300 genes are missing from the new data") as e:
        align(pbmc_small[:, 5:].copy(), genes, enc)
    assert "\n" not in str(e.value)


def test_hvg_selection_matches_scanpy_seurat_v3(pbmc_full) -> None:
    a = pbmc_full[:800].copy()
    data, genes, _, _ = prepare(a, n_top_genes=500)
    assert len(genes) == 500 == data.summary["n_highly_variable_genes"]
    ref = sc.pp.highly_variable_genes(a, flavor="seurat_v3", n_top_genes=500, inplace=False)
    assert set(genes) == set(a.var_names[ref["highly_variable"].to_numpy()])
    with pytest.warns(UserWarning, match="all detected genes are kept"):
        prepare(a[:, :300].copy(), n_top_genes=400)


def test_read_formats(tmp_path, pbmc_small) -> None:
    pbmc_small.write_h5ad(tmp_path / "a.h5ad")
    pbmc_small.write_zarr(tmp_path / "a.zarr")
    mtx = tmp_path / "tenx"
    mtx.mkdir()
    scipy.io.mmwrite(mtx / "matrix.mtx", sp.csr_matrix(pbmc_small.X.T, dtype=np.int64))
    pd.DataFrame({"id": pbmc_small.var["gene_ids"], "name": pbmc_small.var_names, "t": "Gene Expression"}).to_csv(
        mtx / "genes.tsv", sep="\t", header=False, index=False
    )
    pd.Series(pbmc_small.obs_names).to_csv(mtx / "barcodes.tsv", sep="\t", header=False, index=False)
    for path in (tmp_path / "a.h5ad", tmp_path / "a.zarr", mtx):
        b = read_anndata(path)
        assert b.shape == pbmc_small.shape
        assert (sp.csr_matrix(b.X) != pbmc_small.X).nnz == 0
        assert list(b.var_names) == list(pbmc_small.var_names)


def test_unreadable_inputs(tmp_path) -> None:
    (tmp_path / "cells.csv").write_text("a,b\n1,2\n")
    (tmp_path / "broken.h5ad").write_bytes(b"not an hdf5 file")
    with pytest.raises(ScivaeInputError, match="is not a single-cell file scivae reads"):
        read_anndata(tmp_path / "cells.csv")
    with pytest.raises(ScivaeInputError, match="does not exist"):
        read_anndata(tmp_path / "missing.h5ad")
    with pytest.raises(ScivaeInputError, match=r"cannot read .*broken.h5ad as .h5ad") as e:
        read_anndata(tmp_path / "broken.h5ad")
    assert "\n" not in str(e.value)


def test_running_out_of_memory_is_not_reported_as_a_damaged_file(tmp_path, monkeypatch, pbmc_small) -> None:
    path = tmp_path / "a.h5ad"
    pbmc_small.write_h5ad(path)

    def out_of_memory(*args, **kwargs):
        try:
            raise MemoryError("Unable to allocate 8.00 TiB")
        except MemoryError as e:  # readers often wrap it, as h5py and anndata do
            raise OSError("Can't read data") from e

    monkeypatch.setattr(ad, "read_h5ad", out_of_memory)
    with pytest.raises(OSError) as e:
        read_anndata(path)
    assert isinstance(e.value.__cause__, MemoryError) and not isinstance(e.value, ScivaeInputError)


def test_all_empty_or_zero_data(pbmc_small) -> None:
    a = pbmc_small.copy()
    a.X = sp.csr_matrix(a.shape, dtype=np.float32)
    with pytest.raises(ScivaeInputError, match="has no non-zero count"):
        prepare(a)


def test_subset_helper_is_real_data() -> None:
    a = pbmc_subset(50, 20)
    assert a.shape == (50, 20) and a.X.sum() > 0


def test_hvg_selection_keeps_the_torch_thread_setting(tmp_path) -> None:
    """scanpy's numba kernels reset OpenMP's thread count; with OMP_NUM_THREADS=1 training then ran on 2
    threads, 7x slower on a loaded 2-core machine. Fresh process: the env setting must survive prepare()."""
    import os
    import subprocess
    import sys

    code = (
        "import torch; from tests.cells.conftest import pbmc_subset; from scivae.cells.data import prepare; "
        "prepare(pbmc_subset(200, 150), n_top_genes=50); print(torch.get_num_threads())"
    )
    from pathlib import Path

    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(Path(__file__).resolve().parents[2])}
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, check=True)
    assert out.stdout.strip().splitlines()[-1] == "1"
