"""Out-of-core cells: stream the counts of an on-disk ``.h5ad`` or AnnData ``.zarr`` store in contiguous chunks,
with flat memory.

Only ``indptr`` (8 bytes per cell), the covariate codes and a few per-cell statistics stay in memory; counts
are read a chunk of rows at a time straight from the HDF5 file or the Zarr store (v2 or v3, sharded or not),
which is opened read-only and never written. Both hold AnnData's on-disk format (the same groups, arrays and
encoding attributes), so one reader serves both: h5py datasets and zarr arrays slice alike, and ``obs``/``var``
columns are decoded by anndata's own :func:`anndata.io.read_elem`.

- :class:`BackedCounts`: one count matrix on disk (``X``, ``raw/X`` or a layer), CSR or dense, by row range.
- :func:`prepare_backed` / :func:`align_backed`: what :func:`scivae.cells.data.prepare` / ``align`` do
  (count checks, undetected genes, seurat_v3 genes, empty cells, covariates) in passes over the chunks.
- :class:`BackedCellData`: the chunked source that :class:`scivae.core.data.streaming.StreamingDataModule`
  streams training batches from.
- :func:`write_with_latent`: a copy of the input file (or store) plus ``obsm[key]`` and ``uns``, without loading X.
"""

from __future__ import annotations

import contextlib
import errno
import json
import os
import shutil
import warnings
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import anndata as ad
import h5py
import numpy as np
import pandas as pd
import scipy.sparse as sp
from torch import Tensor

from scivae._atomic import atomic_dir, atomic_path
from scivae.cells.data import CovariateEncoder, _layer_hint, count_problem, trained_cells, unique_gene_names
from scivae.core.data.arrays import split_indices
from scivae.core.data.sparse import indices_problem, indptr_problem
from scivae.core.data.streaming import stack_blocks, take_block, to_tensors
from scivae.core.options import positive_int
from scivae.errors import ScivaeInputError

#: Rows per contiguous read (one HDF5 or Zarr slice of ``data``/``indices``).
CHUNK_ROWS = 2048


_NO_SPACE = (errno.ENOSPC, errno.EDQUOT, errno.EFBIG)
_NO_SPACE_TEXT = ("errno = 28", "errno = 122", "No space left", "Disk quota")


# ----------------------------------------------------------------------------------------------------------
# The two stores: an .h5ad (HDF5) file and an AnnData .zarr store
# ----------------------------------------------------------------------------------------------------------


def is_zarr_store(path: str | Path) -> bool:
    """Whether ``path`` is a Zarr store on disk: a folder with a v3 ``zarr.json`` or a v2 ``.zgroup``."""
    path = Path(path)
    return path.is_dir() and any((path / name).is_file() for name in ("zarr.json", ".zgroup"))


def _open(path: Path) -> Any:
    """The file or store read-only: an ``h5py.File``, or a ``zarr.Group`` for a ``.zarr`` folder.

    A Zarr store is opened like ``anndata.read_zarr`` does (through its consolidated metadata when it has some).
    """
    if path.is_dir():
        import zarr  # only Zarr input pays for the import

        return zarr.open_group(path, mode="r")
    return h5py.File(path, "r")


def _close(store: Any) -> None:
    if isinstance(store, h5py.File):
        store.close()  # a zarr group holds no open handle


def _is_array(node: Any) -> bool:
    """Whether a node of the store is an array (a dense matrix) rather than a group (an encoded element)."""
    if isinstance(node, h5py.Dataset):
        return True
    if isinstance(node, h5py.Group):
        return False
    import zarr

    return isinstance(node, zarr.Array)


def _kind(path: Path) -> str:
    return "store" if path.is_dir() else "file"


def _is_zarr_error(e: BaseException) -> bool:
    # zarr's "no group/array here" errors are FileNotFoundErrors too, but they mean a damaged store, not a missing one
    return type(e).__module__.startswith("zarr")


@contextlib.contextmanager
def _readable(path: Path, what: str = "") -> Iterator[None]:
    """Errors of h5py, zarr and anndata on a damaged file or store (an ``OSError`` or ``RuntimeError`` of HDF5, a
    missing key or node, a wrong type) as one line naming it; a missing file, no permission and no memory pass on
    as they are."""
    try:
        yield
    except (ScivaeInputError, MemoryError, PermissionError):
        raise
    except FileNotFoundError as e:
        if _is_zarr_error(e):
            raise _damaged(path, what, e) from None
        raise
    except OSError as e:
        if getattr(e, "errno", None) in _NO_SPACE or any(t in str(e) for t in _NO_SPACE_TEXT):
            raise  # a full disk while a copy is written: the output's failure, not the input's
        raise _damaged(path, what, e) from None
    except (KeyError, ValueError, TypeError, IndexError, AttributeError, RuntimeError) as e:
        raise _damaged(path, what, e) from None


def _damaged(path: Path, what: str, e: BaseException) -> ScivaeInputError:
    first = str(e).strip().splitlines()[0][:160] if str(e).strip() else ""
    kind = (
        "the store is damaged or not an AnnData .zarr store" if path.is_dir() else "the file is damaged or not an .h5ad"
    )
    return ScivaeInputError(
        f"cannot read {path}{what} ({type(e).__name__}: {first}): {kind}; check that it is complete, or write it "
        "again from the original data"
    )


def _rewrite_hint(path: Path, key: str) -> str:
    fmt = "zarr" if path.is_dir() else "h5ad"
    return (
        f"rewrite it as CSR, e.g. in Python: a = anndata.read_{fmt}('{path}'); a.{_attr(key)} = "
        f"a.{_attr(key)}.tocsr(); a.write_{fmt}('{path.stem}.csr.{fmt}'), or fit in memory (without {{backed}})"
    )


def _attr(key: str) -> str:
    if key.startswith("layers/"):
        return f"layers['{key.split('/', 1)[1]}']"
    return "raw.X" if key == "raw/X" else "X"


class BackedCounts:
    """One count matrix of an ``.h5ad`` file or AnnData ``.zarr`` store read by row ranges (CSR or dense; CSC is
    refused).

    Parameters
    ----------
    path
        The ``.h5ad`` file or ``.zarr`` store (Zarr v2 or v3, sharded or not); opened read-only.
    key
        ``"X"``, ``"raw/X"`` or ``"layers/NAME"``.
    """

    def __init__(self, path: str | Path, key: str = "X") -> None:
        self.path, self.key = Path(path), key
        with _readable(self.path):
            self._file = _open(self.path)
            if key not in self._file:
                raise ScivaeInputError(f"{path} has no {key}: {_layer_hint('X')}")
            node = self._file[key]
        kind = _kind(self.path)
        if _is_array(node):
            if node.ndim != 2:
                raise ScivaeInputError(f"{path}: {key} is not a 2-d matrix: pass a cells x genes AnnData")
            self.dense, self._x, self.shape = True, node, tuple(int(s) for s in node.shape)
            return
        encoding = node.attrs.get("encoding-type", "")
        if encoding == "csc_matrix":
            raise ScivaeInputError(
                f"{path}: {_attr(key)} is stored by columns (CSC), which cannot be streamed by cells: "
                + _rewrite_hint(self.path, key)
            )
        if encoding != "csr_matrix":
            raise ScivaeInputError(
                f"{path}: {key} has an unknown encoding {encoding!r}: " + _rewrite_hint(self.path, key)
            )
        self.dense = False
        try:
            with _readable(self.path, f" ({key})"):  # a chunk that does not decompress: one line, as a damaged file
                self.shape = tuple(int(s) for s in node.attrs["shape"])
                self.indptr = node["indptr"][:].astype(np.int64)
                self._data, self._indices = node["data"], node["indices"]
        except ScivaeInputError:
            raise
        except (KeyError, TypeError, ValueError) as e:  # zarr's missing-node errors are KeyErrors or ValueErrors
            raise ScivaeInputError(
                f"{path}: {key} is not a complete sparse matrix ({type(e).__name__}): the {kind} is corrupt; write "
                "it again from the original data"
            ) from None
        # indptr once here (scipy trusts it: a pointer past the data reads out of bounds); indices chunk by chunk
        problem = (f"shape {self.shape} is not 2-d" if len(self.shape) != 2 else None) or indptr_problem(
            self.indptr, self.shape[0], int(self._data.shape[0]), int(self._indices.shape[0])
        )
        if problem is not None:
            raise ScivaeInputError(
                f"{path}: {key} has a damaged sparse structure ({problem}): the {kind} is corrupt; write it again "
                "from the original data"
            )

    @property
    def n_obs(self) -> int:
        return self.shape[0]

    @property
    def dtype(self) -> np.dtype:
        return (self._x if self.dense else self._data).dtype

    def read(self, start: int, stop: int, columns: np.ndarray | None = None) -> sp.csr_matrix:
        """Rows ``start:stop`` as CSR (stored dtype), restricted to ``columns`` if given."""
        with _readable(self.path, f" (rows {start}-{stop - 1} of {self.key})"):
            return self._read(start, stop, columns)

    def _read(self, start: int, stop: int, columns: np.ndarray | None) -> sp.csr_matrix:
        if self.dense:
            block = sp.csr_matrix(self._x[start:stop])
        else:
            lo, hi = self.indptr[start], self.indptr[stop]
            indices = self._indices[lo:hi]
            problem = indices_problem(indices, self.shape[1])  # a min and a max per chunk: cheap
            if problem is not None:
                raise ScivaeInputError(
                    f"{self.path}: {self.key} has a damaged sparse structure ({problem}, rows {start}-{stop - 1}): "
                    f"the {_kind(self.path)} is corrupt; write it again from the original data"
                )
            block = sp.csr_matrix(
                (self._data[lo:hi], indices, self.indptr[start : stop + 1] - lo), shape=(stop - start, self.shape[1])
            )
        return block if columns is None else block[:, columns]

    def chunks(self, chunk_rows: int = CHUNK_ROWS) -> Iterator[tuple[int, int]]:
        """Contiguous row ranges covering the matrix."""
        for start in range(0, self.n_obs, chunk_rows):
            yield start, min(start + chunk_rows, self.n_obs)

    def close(self) -> None:
        _close(self._file)


# ----------------------------------------------------------------------------------------------------------
# Passes over the chunks: checks, detection, totals, seurat_v3 moments
# ----------------------------------------------------------------------------------------------------------


def _per_code(codes: np.ndarray, n_codes: int, block: sp.csr_matrix) -> np.ndarray:
    """Column sums of ``block`` per code of its rows, ``(n_codes, n_cols)`` float64."""
    onehot = sp.csr_matrix((np.ones(len(codes)), (codes, np.arange(len(codes)))), shape=(n_codes, len(codes)))
    return np.asarray((onehot @ block).todense(), dtype=np.float64)


@dataclass
class _Scan:
    problem: str | None
    detected: np.ndarray
    totals: np.ndarray
    sums: np.ndarray | None = None
    sumsq: np.ndarray | None = None


def _scan(
    counts: BackedCounts,
    codes: np.ndarray | None = None,
    n_codes: int = 1,
    chunk_rows: int = CHUNK_ROWS,
    check: bool = True,
) -> _Scan:
    """One pass: count check (stops at the first bad chunk), cells per gene, counts per cell and (with
    ``codes``) per-code sums and sums of squares."""
    n_obs, n_vars = counts.shape
    detected = np.zeros(n_vars, dtype=np.int64)
    totals = np.zeros(n_obs, dtype=np.float64)
    sums = np.zeros((n_codes, n_vars)) if codes is not None else None
    sumsq = np.zeros((n_codes, n_vars)) if codes is not None else None
    for start, stop in counts.chunks(chunk_rows):
        block = counts.read(start, stop)
        problem = count_problem(block) if check else None
        if problem is not None:
            return _Scan(problem, detected, totals)
        block.eliminate_zeros()
        detected += np.bincount(block.indices, minlength=n_vars)
        totals[start:stop] = np.asarray(block.sum(1), dtype=np.float64).ravel()
        if codes is not None:
            block = block.astype(np.float64)
            sums += _per_code(codes[start:stop], n_codes, block)
            sumsq += _per_code(codes[start:stop], n_codes, block.multiply(block).tocsr())
    return _Scan(None, detected, totals, sums, sumsq)


def _row_totals(counts: BackedCounts, columns: np.ndarray, chunk_rows: int = CHUNK_ROWS) -> np.ndarray:
    totals = np.zeros(counts.n_obs)
    for start, stop in counts.chunks(chunk_rows):
        totals[start:stop] = np.asarray(counts.read(start, stop, columns).sum(1), dtype=np.float64).ravel()
    return totals


def highly_variable_streamed(
    counts: BackedCounts,
    columns: np.ndarray,
    rows: np.ndarray,
    n_top_genes: int,
    codes: np.ndarray | None = None,
    chunk_rows: int = CHUNK_ROWS,
    span: float = 0.3,
) -> np.ndarray:
    """Sorted positions in ``columns`` of the ``n_top_genes`` seurat_v3 genes over cells ``rows``, streamed.

    The same ranking as ``scanpy.pp.highly_variable_genes(flavor="seurat_v3", batch_key=...)`` (which
    :func:`scivae.cells.data.highly_variable` calls in memory), computed from two passes of per-batch
    moments: mean and variance for the loess fit, then the sums of the clipped counts.
    """
    try:
        from skmisc.loess import loess
    except ImportError:
        raise ScivaeInputError(
            "highly-variable-gene selection (n_top_genes) needs scikit-misc: pip install scikit-misc"
        ) from None
    in_rows = np.zeros(counts.n_obs, dtype=bool)
    in_rows[rows] = True
    code_all = np.zeros(counts.n_obs, dtype=np.int64) if codes is None else np.asarray(codes, dtype=np.int64)
    used = np.unique(code_all[rows])
    n_codes = int(code_all.max()) + 2
    code_all = np.where(in_rows, code_all, n_codes - 1)  # cells outside ``rows`` go to a discarded code
    first = _scan(counts, code_all, n_codes, chunk_rows, check=False)
    n = np.bincount(code_all, minlength=n_codes).astype(np.float64)
    mean = first.sums[:, columns] / np.maximum(n, 1)[:, None]
    var = (first.sumsq[:, columns] - n[:, None] * mean**2) / np.maximum(n - 1, 1)[:, None]
    clip = np.full((n_codes, len(columns)), np.inf)
    reg_std = np.ones((n_codes, len(columns)))
    for b in used:
        not_const = var[b] > 0
        estimate = np.zeros(len(columns))
        model = loess(np.log10(mean[b, not_const]), np.log10(var[b, not_const]), span=span, degree=2)
        model.fit()
        estimate[not_const] = model.outputs.fitted_values
        reg_std[b] = np.sqrt(10**estimate)
        clip[b] = reg_std[b] * np.sqrt(n[b]) + mean[b]
    csum = np.zeros((n_codes, len(columns)))
    csumsq = np.zeros((n_codes, len(columns)))
    for start, stop in counts.chunks(chunk_rows):
        block = counts.read(start, stop, columns).astype(np.float64)
        c = code_all[start:stop]
        row_code = np.repeat(c, np.diff(block.indptr))
        block.data = np.minimum(block.data, clip[row_code, block.indices])
        csum += _per_code(c, n_codes, block)
        csumsq += _per_code(c, n_codes, block.multiply(block).tocsr())
    norm_var = np.stack(
        [(n[b] * mean[b] ** 2 + csumsq[b] - 2 * csum[b] * mean[b]) / ((n[b] - 1) * reg_std[b] ** 2) for b in used]
    )
    ranks = np.argsort(np.argsort(-norm_var, axis=1), axis=1).astype(np.float32)
    n_batches_high = (ranks < n_top_genes).sum(0)
    ranks[ranks >= n_top_genes] = np.nan
    median_rank = np.ma.median(np.ma.masked_invalid(ranks), axis=0).filled(np.nan)
    table = pd.DataFrame({"rank": median_rank, "nbatches": n_batches_high})
    order = table.sort_values(["rank", "nbatches"], ascending=[True, False], na_position="last").index
    return np.sort(order.to_numpy()[:n_top_genes])


# ----------------------------------------------------------------------------------------------------------
# The prepared backed data set
# ----------------------------------------------------------------------------------------------------------


def _read_obs(
    file: Any, batch_key: str | None, categorical_keys: Sequence[str], continuous_keys: Sequence[str]
) -> pd.DataFrame:
    """Only the ``obs`` columns the covariates need (a large file's cell names would cost more than ``indptr``)."""
    obs = file["obs"]
    index_key = obs.attrs.get("_index", "_index")
    columns = [str(c) for c in obs.attrs.get("column-order", [k for k in obs.keys() if k != index_key])]
    CovariateEncoder.check_keys(pd.DataFrame(columns=columns), batch_key, categorical_keys, continuous_keys)
    frame = pd.DataFrame(index=pd.RangeIndex(obs[index_key].shape[0]))
    for k in dict.fromkeys([k for k in (batch_key, *categorical_keys, *continuous_keys) if k is not None]):
        frame[k] = ad.io.read_elem(obs[k])
    return frame


def _gene_names(file: Any, key: str) -> pd.Index:
    var = file["raw/var" if key == "raw/X" else "var"]
    return pd.Index(ad.io.read_elem(var[var.attrs.get("_index", "_index")])).astype(str)


@dataclass
class BackedCellData:
    """Model-ready cells streamed from disk: a batch source for :func:`scivae.core.iterate_batches`.

    Attributes
    ----------
    counts
        The matrix on disk.
    columns
        Its columns that are the model genes (in model order).
    covariates
        ``batch``, ``cat``, ``cont`` arrays for every cell (in memory: a few bytes per cell).
    nonempty
        Cells with at least one count over the model genes (the ones trained on).
    summary
        What was read and filtered, as :class:`scivae.cells.data.CellData`'s.
    log_library
        log total count over the model genes of each non-empty cell (library-size statistics).
    chunk_rows
        Rows per contiguous read.
    """

    counts: BackedCounts
    columns: np.ndarray
    covariates: dict[str, np.ndarray]
    nonempty: np.ndarray
    summary: dict[str, Any]
    log_library: np.ndarray
    chunk_rows: int = CHUNK_ROWS

    @property
    def n_obs(self) -> int:
        return self.counts.n_obs

    def block(self, start: int, stop: int, rows: np.ndarray | None = None) -> dict[str, Any]:
        """File rows ``start:stop`` (or the sorted ``rows`` among them) as CSR counts plus covariates."""
        x = self.counts.read(start, stop, self.columns)
        if rows is not None:
            x = x[rows - start]
        idx = np.arange(start, stop) if rows is None else rows
        return {"x": x, **{k: v[idx] for k, v in self.covariates.items()}}

    def batches(self, batch_size: int = 1024, rows: np.ndarray | None = None) -> Iterator[dict[str, Tensor]]:
        """All cells (or the sorted ``rows``) in file order, ``batch_size`` at a time, read chunk by chunk."""
        pending: list[dict[str, Any]] = []
        n_pending = 0
        for start, stop in self.counts.chunks(self.chunk_rows):
            sel = None
            if rows is not None:
                sel = rows[np.searchsorted(rows, start) : np.searchsorted(rows, stop)]
                if sel.size == 0:
                    continue
            pending.append(self.block(start, stop, sel))
            n_pending += pending[-1]["x"].shape[0]
            while n_pending >= batch_size:
                merged = stack_blocks(pending)
                yield to_tensors(merged, np.arange(batch_size))
                rest = take_block(merged, np.arange(batch_size, n_pending))
                pending, n_pending = [rest], n_pending - batch_size
        if n_pending:
            merged = stack_blocks(pending)
            yield to_tensors(merged, np.arange(n_pending))

    def subset(self, rows: np.ndarray) -> _RowsSource:
        """A batch source over the sorted file ``rows`` only."""
        return _RowsSource(self, np.sort(np.asarray(rows)))


@dataclass
class _RowsSource:
    data: BackedCellData
    rows: np.ndarray

    @property
    def n_obs(self) -> int:
        return len(self.rows)

    def batches(self, batch_size: int = 1024) -> Iterator[dict[str, Tensor]]:
        return self.data.batches(batch_size, self.rows)


def _source(file: Any, path: Path, layer: str | None) -> tuple[BackedCounts, _Scan | None, str]:
    """The counts to use (layer, else raw if it holds counts, else X), with the first pass if it was done."""
    if layer is not None:
        if f"layers/{layer}" not in file:
            available = ", ".join(map(repr, file["layers"].keys())) if "layers" in file else "none"
            raise ScivaeInputError(
                f"layer {layer!r} is not in adata.layers (available: {available}): pass an existing layer with "
                "{layer}, or leave it out to use adata.raw or X"
            )
        return BackedCounts(path, f"layers/{layer}"), None, f"layers[{layer!r}]"
    if "raw/X" in file:
        raw = BackedCounts(path, "raw/X")
        scan = _scan(raw)
        if scan.problem is None:
            return raw, scan, "raw"
        raw.close()
    if "X" not in file:
        raise ScivaeInputError("adata.X is empty: pass data with raw counts in X, adata.raw or a layer ({layer})")
    return BackedCounts(path, "X"), None, "X"


def backed_path(adata: Any) -> Path:
    """The ``.h5ad`` file or ``.zarr`` store behind ``adata``: a path, or an AnnData opened with ``backed='r'``."""
    if isinstance(adata, (str, Path)):
        path = Path(adata)
        if not path.exists():
            raise ScivaeInputError(f"{path} does not exist: pass an existing .h5ad file or .zarr store")
    elif isinstance(adata, ad.AnnData) and adata.isbacked:
        path = Path(adata.filename)
    else:
        raise ScivaeInputError(
            "backed=True streams a file: pass its path (an .h5ad file or a .zarr store) or "
            "anndata.read_h5ad(path, backed='r'), or leave backed out for an AnnData in memory"
        )
    if path.is_dir():
        if path.suffix.lower() != ".zarr" or not is_zarr_store(path):
            raise ScivaeInputError(
                f"{path} is a folder but not a Zarr store (no zarr.json or .zgroup): {{backed}} streams .h5ad files "
                "and AnnData .zarr stores (anndata's write_zarr); read other folders in memory"
            )
        return path
    if path.suffix.lower() != ".h5ad" or not h5py.is_hdf5(path):
        raise ScivaeInputError(
            f"{path} is not an .h5ad (HDF5) file or a .zarr store: {{backed}} streams .h5ad files and .zarr stores only"
        )
    return path


def prepare_backed(
    adata: Any,
    *,
    layer: str | None = None,
    batch_key: str | None = None,
    categorical_covariate_keys: Sequence[str] = (),
    continuous_covariate_keys: Sequence[str] = (),
    n_top_genes: int | None = None,
    chunk_rows: int = CHUNK_ROWS,
) -> tuple[BackedCellData, list[str], CovariateEncoder, str]:
    """:func:`scivae.cells.data.prepare` for an ``.h5ad`` file or ``.zarr`` store on disk, in passes over its
    chunks (X is never loaded).

    Same checks, filters, gene selection and summary as the in-memory path; only the training arrays differ
    (a :class:`BackedCellData` that reads the counts when asked).
    """
    path = backed_path(adata)
    if n_top_genes is not None:
        positive_int(n_top_genes, "n_top_genes")
    with _readable(path):
        file = _open(path)
    try:
        with _readable(path):
            obs = (
                adata.obs
                if isinstance(adata, ad.AnnData)
                else _read_obs(file, batch_key, categorical_covariate_keys, continuous_covariate_keys)
            )
            CovariateEncoder.check_keys(obs, batch_key, categorical_covariate_keys, continuous_covariate_keys)
            counts, scan, source = _source(file, path, layer)
            genes = _gene_names(file, counts.key)
    finally:
        _close(file)
    n_cells, n_genes_in = counts.shape
    if n_cells == 0 or n_genes_in == 0:
        raise ScivaeInputError(
            f"{source} is empty ({n_cells} cells x {n_genes_in} genes): pass data with cells and genes"
        )
    scan = scan or _scan(counts, chunk_rows=chunk_rows)
    if scan.problem is not None:
        raise ScivaeInputError(f"{source} {scan.problem}: scivae models raw counts; {_layer_hint(source)}")
    n_dup = int(genes.duplicated().sum())
    genes = unique_gene_names(genes)
    encoder = CovariateEncoder.fit(obs, batch_key, categorical_covariate_keys, continuous_covariate_keys)
    covs = encoder.transform(obs)
    keep = np.flatnonzero(scan.detected > 0)
    if keep.size == 0:
        raise ScivaeInputError(f"{source} has no non-zero count: pass data with raw counts")
    totals, n_hvg = scan.totals, None
    if n_top_genes is not None:
        if n_top_genes < keep.size:
            rows = np.flatnonzero(totals > 0)
            sel = highly_variable_streamed(counts, keep, rows, n_top_genes, covs.get("batch"), chunk_rows)
            keep, n_hvg = keep[sel], int(sel.size)
            totals = _row_totals(counts, keep, chunk_rows)
        else:
            warnings.warn(
                f"n_top_genes={n_top_genes} >= the {keep.size} detected genes: all detected genes are kept",
                UserWarning,
                stacklevel=2,
            )
    nonempty, summary = trained_cells(source, totals, (n_cells, n_genes_in), n_dup, scan.detected, keep.size, n_hvg)
    summary["backed"] = str(path)
    data = BackedCellData(counts, keep, covs, nonempty, summary, np.log(totals[nonempty]), chunk_rows)
    return data, [str(g) for g in genes[keep]], encoder, source


def align_backed(
    adata: Any, genes: Sequence[str], encoder: CovariateEncoder, layer: str | None = None, chunk_rows: int = CHUNK_ROWS
) -> BackedCellData:
    """:func:`scivae.cells.data.align` for an ``.h5ad`` file or ``.zarr`` store: new cells over the model's genes,
    streamed."""
    path = backed_path(adata)
    with _readable(path):
        file = _open(path)
    try:
        with _readable(path):
            obs = (
                adata.obs
                if isinstance(adata, ad.AnnData)
                else _read_obs(file, encoder.batch_key, encoder.categorical_keys, encoder.continuous_keys)
            )
            counts, _, source = _source(file, path, layer)
            names = unique_gene_names(_gene_names(file, counts.key), warn=False)
    finally:
        _close(file)
    position = names.get_indexer(pd.Index(genes))
    missing = [g for g, p in zip(genes, position, strict=True) if p < 0]
    if missing:
        raise ScivaeInputError(
            f"{len(missing)} of the model's {len(genes)} genes are missing from the new data's {source} gene names "
            f"(e.g. {', '.join(missing[:5])}): pass data with the training genes as var_names"
        )
    summary = {"counts_source": source, "n_cells_input": counts.n_obs, "n_genes": len(genes), "backed": str(path)}
    return BackedCellData(
        counts, position, encoder.transform(obs), np.arange(counts.n_obs), summary, np.zeros(0), chunk_rows
    )


def streaming_split(data: BackedCellData, validation_fraction: float, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """The same seeded split of the non-empty cells as the in-memory path, as file rows."""
    train, val = split_indices(data.nonempty.size, validation_fraction, seed)
    return data.nonempty[train], data.nonempty[val]


# ----------------------------------------------------------------------------------------------------------
# Output
# ----------------------------------------------------------------------------------------------------------


def embedded_suffix(src: str | Path) -> str:
    """The suffix of :func:`write_with_latent`'s output for the input ``src``: ``.zarr`` for a Zarr store (the
    copy keeps its format, chunks and shards), ``.h5ad`` otherwise."""
    return ".zarr" if Path(src).is_dir() else ".h5ad"


def _consolidated(store: Path) -> bool:
    """Whether a Zarr store has consolidated metadata (anndata's ``write_zarr`` writes it; ``read_zarr`` uses it)."""
    if (store / ".zmetadata").is_file():  # Zarr v2
        return True
    meta = store / "zarr.json"
    return meta.is_file() and json.loads(meta.read_text()).get("consolidated_metadata") is not None


def _copy_tree(src: Path, dst: Path) -> None:
    """The files of ``src`` copied into the existing folder ``dst`` (contents only: a read-only input must still
    give a writable copy, so permissions are not copied)."""
    for root, dirs, files in os.walk(src):
        target = dst / Path(root).relative_to(src)
        for d in dirs:
            (target / d).mkdir(exist_ok=True)
        for f in files:
            shutil.copyfile(Path(root) / f, target / f)


def _add_elems(root: Any, key: str, latent: np.ndarray, uns: dict[str, Any]) -> None:
    """``obsm[key]`` and ``uns['scivae']`` written into the open group ``root`` with anndata's ``write_elem``."""
    for group_name, name, value in (("obsm", key, np.asarray(latent)), ("uns", "scivae", uns)):
        group = root.require_group(group_name)
        if "encoding-type" not in group.attrs:
            group.attrs.update({"encoding-type": "dict", "encoding-version": "0.1.0"})
        if name in group:
            del group[name]
        ad.io.write_elem(group, name, value)


def _write_zarr_with_latent(src: Path, dst: Path, key: str, latent: np.ndarray, uns: dict[str, Any]) -> None:
    import zarr

    with atomic_dir(dst) as tmp:
        _copy_tree(src, tmp)
        with _readable(src), warnings.catch_warnings():  # a damaged input gives a damaged copy
            # anndata's notes on Zarr defaults (v3, sharding) and zarr's on v3 consolidated metadata
            warnings.filterwarnings("ignore", category=UserWarning, module=r"(anndata|zarr|contextlib)")
            root = zarr.open_group(tmp, mode="r+", use_consolidated=False)  # the copy's own nodes, not the index
            _add_elems(root, key, latent, uns)
            if _consolidated(src):  # else read_zarr would read the old index and miss the latent
                zarr.consolidate_metadata(tmp)


def write_with_latent(src: str | Path, dst: str | Path, key: str, latent: np.ndarray, uns: dict[str, Any]) -> None:
    """Write ``dst``: a copy of ``src`` plus ``obsm[key]`` and ``uns['scivae']``; X is not loaded.

    ``src`` is an ``.h5ad`` file (``dst`` is then an ``.h5ad``) or a ``.zarr`` store (``dst`` is then a ``.zarr``
    store: the same format version, chunks and shards, and consolidated metadata when ``src`` has it). The copy
    is made beside ``dst`` and renamed onto it when complete; ``src`` is only read.
    """
    src, dst = Path(src), Path(dst)
    if src.is_dir():
        if dst.suffix.lower() != ".zarr":
            raise ScivaeInputError(
                f"{dst}: the copy of the .zarr store {src} is a .zarr store; pass a path ending in .zarr"
            )
        _write_zarr_with_latent(src, dst, key, latent, uns)
        return
    with atomic_path(dst) as tmp:
        shutil.copyfile(src, tmp)
        with _readable(src), h5py.File(tmp, "r+") as f:  # a damaged input gives a damaged copy
            _add_elems(f, key, latent, uns)
