"""The shipped interferon PBMC pair: checksum, shape, conditions and raw counts."""

from __future__ import annotations

import hashlib

import numpy as np
import pytest
import scipy.sparse as sp

from scivae.datasets import ifnb
from scivae.datasets._ifnb import ifnb_path
from scivae.errors import ScivaeInputError

SHA256 = "316e062fb41de7387c54590b9003fc7698de0ce9283d2160bc1937a4e569f7ec"


def test_file_checksum_matches_readme() -> None:
    assert hashlib.sha256(ifnb_path().read_bytes()).hexdigest() == SHA256
    assert SHA256 in (ifnb_path().parent / "README.md").read_text()


def test_ifnb_holds_raw_counts_of_both_conditions() -> None:
    adata = ifnb()
    assert adata.shape == (2000, 1504) and adata.var_names.is_unique and adata.obs_names.is_unique
    assert sp.issparse(adata.X) and np.all(adata.X.data == np.rint(adata.X.data)) and adata.X.data.min() > 0
    assert int(adata.X.sum()) == 1_014_602
    assert adata.obs["condition"].value_counts().to_dict() == {"ctrl": 1000, "stim": 1000}
    assert {"CD14", "LYZ", "MS4A1", "CD3E", "ISG15", "IFI6"} <= set(adata.var_names)
    # the interferon response is in the counts: ISG15 per UMI is far higher in the stimulated cells
    isg15 = np.asarray(adata[:, "ISG15"].X.sum(1)).ravel() / np.asarray(adata.X.sum(1)).ravel()
    stim = (adata.obs["condition"] == "stim").to_numpy()
    assert isg15[stim].mean() > 5 * isg15[~stim].mean()


def test_subset_is_seeded() -> None:
    a = ifnb(n_obs=50, seed=1)
    assert a.n_obs == 50 and list(a.obs_names) == list(ifnb(n_obs=50, seed=1).obs_names)
    with pytest.raises(ScivaeInputError, match="n_obs must be between"):
        ifnb(n_obs=3000)
