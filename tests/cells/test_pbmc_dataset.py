"""The shipped PBMC 3k file: checksum, shape and raw counts."""

from __future__ import annotations

import hashlib

import numpy as np
import pytest
import scipy.sparse as sp

from scivae.datasets._pbmc import pbmc3k, pbmc3k_path
from scivae.errors import ScivaeInputError

SHA256 = "def0f122cb7c6edfd8f14f812df683106b7171d671838de4d4082a1c7acc2b31"


def test_file_checksum_matches_readme() -> None:
    assert hashlib.sha256(pbmc3k_path().read_bytes()).hexdigest() == SHA256
    assert SHA256 in (pbmc3k_path().parent / "README.md").read_text()


def test_pbmc3k_holds_raw_counts_of_detected_genes(pbmc_full) -> None:
    adata = pbmc_full
    assert adata.shape == (2700, 16634)
    assert sp.isspmatrix_csr(adata.X) or isinstance(adata.X, sp.csr_array)
    assert np.all(adata.X.data == np.rint(adata.X.data)) and adata.X.data.min() > 0
    assert int(adata.X.sum()) == 6_390_631
    assert (np.asarray((adata.X > 0).sum(0)).ravel() > 0).all()
    assert {"CD3E", "MS4A1", "LYZ", "PPBP"} <= set(adata.var_names)
    assert adata.var["gene_ids"].str.startswith("ENSG").all()


def test_subset_is_seeded() -> None:
    a, b = pbmc3k(n_obs=100, seed=1), pbmc3k(n_obs=100, seed=1)
    assert a.n_obs == 100 and list(a.obs_names) == list(b.obs_names)
    assert list(pbmc3k(n_obs=100, seed=2).obs_names) != list(a.obs_names)
    with pytest.raises(ScivaeInputError, match="n_obs must be between"):
        pbmc3k(n_obs=0)
