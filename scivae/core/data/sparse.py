"""Checks of a compressed sparse matrix's structure before scipy (or anything else) indexes with it.

scipy trusts ``indptr`` and ``indices``: a damaged file whose ``indptr`` points past the stored values or goes
backwards, or whose ``indices`` are negative or past the last column, makes its compiled kernels read or write
out of bounds (a segmentation fault) or raise deep inside. These functions say what is wrong in plain words, or
``None`` when the structure is sound; the callers raise the error that names the file.
"""

from __future__ import annotations

from typing import Any

import numpy as np

#: Values per chunk when scanning ``indices``: bounds the temporary memory of the check.
_CHUNK = 1 << 22


def indptr_problem(indptr: np.ndarray, n_major: int, n_stored: int, n_indices: int | None = None) -> str | None:
    """What is wrong with ``indptr`` of a matrix with ``n_major`` rows (CSR) or columns (CSC), or ``None``.

    Parameters
    ----------
    indptr
        The index pointer (any integer dtype).
    n_major
        Rows of a CSR matrix, columns of a CSC one.
    n_stored
        Length of ``data``.
    n_indices
        Length of ``indices`` (default: ``n_stored``).
    """
    n_indices = n_stored if n_indices is None else n_indices
    indptr = np.asarray(indptr)
    if indptr.ndim != 1 or not np.issubdtype(indptr.dtype, np.integer):
        return f"indptr is not a 1-d integer array ({indptr.dtype}, {indptr.ndim}-d)"
    if indptr.size != n_major + 1:
        return f"indptr has {indptr.size} entries for {n_major} rows (expected {n_major + 1})"
    if n_indices != n_stored:
        return f"indices has {n_indices} entries but data has {n_stored}"
    if indptr[0] != 0:
        return f"indptr starts at {int(indptr[0])}, not 0"
    if indptr.size > 1 and (np.diff(indptr) < 0).any():
        return "indptr decreases"
    if int(indptr[-1]) != n_stored:
        return f"indptr ends at {int(indptr[-1])} but {n_stored} values are stored"
    return None


def indices_problem(indices: Any, n_minor: int) -> str | None:
    """What is wrong with ``indices`` (column numbers of CSR, row numbers of CSC), or ``None``; scanned in chunks."""
    indices = np.asarray(indices) if not hasattr(indices, "dtype") else indices
    if indices.size and not np.issubdtype(indices.dtype, np.integer):
        return f"indices are not integers ({indices.dtype})"
    for start in range(0, indices.size, _CHUNK):
        chunk = np.asarray(indices[start : start + _CHUNK])
        if chunk.size and (int(chunk.min()) < 0 or int(chunk.max()) >= n_minor):
            bad = int(chunk.min()) if int(chunk.min()) < 0 else int(chunk.max())
            return f"an index {bad} lies outside 0..{n_minor - 1}"
    return None


def sparse_problem(matrix: Any) -> str | None:
    """What is wrong with the structure of a scipy sparse matrix (CSR, CSC or COO), or ``None``.

    Dense arrays and other sparse formats (whose constructors check themselves) give ``None``.
    """
    fmt = getattr(matrix, "format", None)
    if fmt not in ("csr", "csc", "coo"):
        return None
    n_rows, n_cols = (int(s) for s in matrix.shape)
    if fmt == "coo":
        if len(matrix.row) != len(matrix.data) or len(matrix.col) != len(matrix.data):
            return "row, col and data have different lengths"
        return indices_problem(matrix.row, n_rows) or indices_problem(matrix.col, n_cols)
    n_major, n_minor = (n_rows, n_cols) if fmt == "csr" else (n_cols, n_rows)
    return indptr_problem(matrix.indptr, n_major, len(matrix.data), len(matrix.indices)) or indices_problem(
        matrix.indices, n_minor
    )
