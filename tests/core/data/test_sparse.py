"""Checks of a sparse matrix's structure before scipy indexes with it."""

from __future__ import annotations

import numpy as np
import pytest
import scipy.sparse as sp

from scivae.core.data.sparse import indices_problem, indptr_problem, sparse_problem


def _csr() -> sp.csr_matrix:
    return sp.random(20, 8, density=0.4, format="csr", random_state=0)


def test_a_sound_matrix_has_no_problem_in_any_format() -> None:
    x = _csr()
    for m in (x, x.tocsc(), x.tocoo(), x.toarray()):
        assert sparse_problem(m) is None


@pytest.mark.parametrize(
    ("change", "words"),
    [
        (lambda ip: ip[:-1], "entries for 20 rows"),
        (lambda ip: np.r_[3, ip[1:]], "starts at 3"),
        (lambda ip: np.r_[ip[:5], ip[5:6] + 1000, ip[6:]], "decreases"),
        (lambda ip: np.r_[ip[:-1], ip[-1] + 1], "ends at"),
        (lambda ip: ip.astype(np.float64), "not a 1-d integer array"),
    ],
)
def test_indptr_problems_are_named(change, words) -> None:
    x = _csr()
    assert words in indptr_problem(change(x.indptr.copy()), 20, x.nnz)


def test_indices_outside_the_columns_are_named_and_scanned_in_chunks(monkeypatch) -> None:
    import scivae.core.data.sparse as sparse

    monkeypatch.setattr(sparse, "_CHUNK", 3)  # the bad value sits in a later chunk
    x = _csr()
    for bad, shown in ((-1, "-1"), (8, "8"), (2**31 - 1, str(2**31 - 1))):
        x.indices[-1] = bad
        assert indices_problem(x.indices, 8) == f"an index {shown} lies outside 0..7"
        assert sparse_problem(x) is not None
    assert indices_problem(np.zeros(0, np.int32), 8) is None


def test_mismatched_lengths_are_named() -> None:
    x = _csr()
    assert "indices has" in indptr_problem(x.indptr, 20, x.nnz, x.nnz - 1)
    coo = x.tocoo()
    coo.row = coo.row.copy()
    coo.row[0] = 99
    assert sparse_problem(coo) == "an index 99 lies outside 0..19"


def test_a_streamed_source_handing_over_a_damaged_block_is_refused() -> None:
    from scivae.core.data.streaming import StreamingDataModule, checked_block
    from scivae.errors import ScivaeInputError

    class Source:
        n_obs, chunk_rows = 20, 10

        def block(self, start, stop, rows=None):
            x = _csr()[start:stop]
            if start == 10:
                x.indices[0] = 8  # the second chunk is damaged
            return {"x": x, "batch": np.zeros(stop - start, np.int64)}

    good = Source().block(0, 10)
    assert checked_block(good, 0, 10) is good
    data = StreamingDataModule(Source(), np.arange(20), np.arange(0), batch_size=4)
    with pytest.raises(ScivaeInputError, match=r"^rows 10-19 of the streamed data .*index 8 lies outside 0\.\.7"):
        list(data.train_dataloader())
