"""Out-of-core cells: stream the counts of an on-disk ``.h5ad`` in contiguous chunks, with flat memory.

Only ``indptr`` (8 bytes per cell), the covariate codes and a few per-cell statistics stay in memory; counts
are read a chunk of rows at a time straight from the HDF5 file, which is opened read-only and never written.

- :class:`BackedCounts`: one count matrix on disk (``X``, ``raw/X`` or a layer), CSR or dense, by row range.
- :func:`prepare_backed` / :func:`align_backed`: what :func:`scivae.cells.data.prepare` / ``align`` do
  (count checks, undetected genes, seurat_v3 genes, empty cells, covariates) in passes over the chunks.
- :class:`BackedCellData`: the chunked source that :class:`scivae.core.data.streaming.StreamingDataModule`
  streams training batches from.
- :func:`write_with_latent`: a copy of the input file plus ``obsm[key]`` and ``uns``, without loading X.
"""

from __future__ import annotations

import contextlib
import errno
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

from scivae._atomic import atomic_path
from scivae.cells.data import CovariateEncoder, _layer_hint, count_problem, trained_cells, unique_gene_names
from scivae.core.data.arrays import split_indices
from scivae.core.data.sparse import indices_problem, indptr_problem
from scivae.core.data.streaming import stack_blocks, take_block, to_tensors
from scivae.core.options import positive_int
from scivae.errors import ScivaeInputError

#: Rows per contiguous read (one HDF5 slice of ``data``/``indices``).
CHUNK_ROWS = 2048


_NO_SPACE = (errno.ENOSPC, errno.EDQUOT, errno.EFBIG)
_NO_SPACE_TEXT = ("errno = 28", "errno = 122", "No space left", "Disk quota")


@contextlib.contextmanager
def _readable(path: Path, what: str = "") -> Iterator[None]:
    """Errors of h5py and anndata on a damaged file (an ``OSError`` or ``RuntimeError`` of HDF5, a missing key, a
    wrong type) as one line naming the file; a missing file, no permission and no memory pass on as they are."""
    try:
        yield
    except (ScivaeInputError, MemoryError, FileNotFoundError, PermissionError):
        raise
    except OSError as e:
        if getattr(e, "errno", None) in _NO_SPACE or any(t in str(e) for t in _NO_SPACE_TEXT):
            raise  # a full disk while a copy is written: the output's failure, not the input's
        raise _damaged(path, what, e) from None
    except (KeyError, ValueError, TypeError, IndexError, AttributeError, RuntimeError) as e:
        raise _damaged(path, what, e) from None


def _damaged(path: Path, what: str, e: BaseException) -> ScivaeInputError:
    first = str(e).strip().splitlines()[0][:160] if str(e).strip() else ""
    return ScivaeInputError(
        f"cannot read {path}{what} ({type(e).__name__}: {first}): the file is damaged or not an .h5ad; check "
        "that it is complete, or write it again from the original data"
    )


def _rewrite_hint(path: Path, key: str) -> str:
    return (
        f"rewrite it as CSR, e.g. in Python: a = anndata.read_h5ad('{path}'); a.{_attr(key)} = "
        f"a.{_attr(key)}.tocsr(); a.write_h5ad('{path.stem}.csr.h5ad'), or fit in memory (without {{backed}})"
    )


def _attr(key: str) -> str:
    if key.startswith("layers/"):
        return f"layers['{key.split('/', 1)[1]}']"
    return "raw.X" if key == "raw/X" else "X"


class BackedCounts:
    """One count matrix of an ``.h5ad`` file read by row ranges (CSR or dense; CSC is refused).

    Parameters
    ----------
    path
        The ``.h5ad`` file; opened read-only.
    key
        ``"X"``, ``"raw/X"`` or ``"layers/NAME"``.
    """

    def __init__(self, path: str | Path, key: str = "X") -> None:
        self.path, self.key = Path(path), key
        self._file = h5py.File(self.path, "r")
        if key not in self._file:
            raise ScivaeInputError(f"{path} has no {key}: {_layer_hint('X')}")
        node = self._file[key]
        if isinstance(node, h5py.Dataset):
            if node.ndim != 2:
                raise ScivaeInputError(f"{path}: {key} is not a 2-d matrix: pass a cells x genes .h5ad")
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
            self.shape = tuple(int(s) for s in node.attrs["shape"])
            self.indptr = node["indptr"][:].astype(np.int64)
            self._data, self._indices = node["data"], node["indices"]
        except (KeyError, TypeError, ValueError) as e:
            raise ScivaeInputError(
                f"{path}: {key} is not a complete sparse matrix ({type(e).__name__}): the file is corrupt; write it "
                "again from the original data"
            ) from None
        # indptr once here (scipy trusts it: a pointer past the data reads out of bounds); indices chunk by chunk
        problem = (f"shape {self.shape} is not 2-d" if len(self.shape) != 2 else None) or indptr_problem(
            self.indptr, self.shape[0], int(self._data.shape[0]), int(self._indices.shape[0])
        )
        if problem is not None:
            raise ScivaeInputError(
                f"{path}: {key} has a damaged sparse structure ({problem}): the file is corrupt; write it again from "
                "the original data"
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
                    "the file is corrupt; write it again from the original data"
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
        self._file.close()


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
    file: h5py.File, batch_key: str | None, categorical_keys: Sequence[str], continuous_keys: Sequence[str]
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


def _gene_names(file: h5py.File, key: str) -> pd.Index:
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


def _source(file: h5py.File, path: Path, layer: str | None) -> tuple[BackedCounts, _Scan | None, str]:
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
    """The ``.h5ad`` file behind ``adata``: a path, or an AnnData opened with ``backed='r'``."""
    if isinstance(adata, (str, Path)):
        path = Path(adata)
        if not path.exists():
            raise ScivaeInputError(f"{path} does not exist: pass an existing .h5ad file")
    elif isinstance(adata, ad.AnnData) and adata.isbacked:
        path = Path(adata.filename)
    else:
        raise ScivaeInputError(
            "backed=True streams a file: pass its path or anndata.read_h5ad(path, backed='r'), "
            "or leave backed out for an AnnData in memory"
        )
    if path.suffix.lower() != ".h5ad" or not h5py.is_hdf5(path):
        raise ScivaeInputError(f"{path} is not an .h5ad (HDF5) file: {{backed}} streams .h5ad files only")
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
    """:func:`scivae.cells.data.prepare` for a file on disk, in passes over its chunks (X is never loaded).

    Same checks, filters, gene selection and summary as the in-memory path; only the training arrays differ
    (a :class:`BackedCellData` that reads the counts when asked).
    """
    path = backed_path(adata)
    if n_top_genes is not None:
        positive_int(n_top_genes, "n_top_genes")
    with _readable(path):
        file = h5py.File(path, "r")
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
        file.close()
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
    """:func:`scivae.cells.data.align` for a file on disk: new cells over the model's genes, streamed."""
    path = backed_path(adata)
    with _readable(path):
        file = h5py.File(path, "r")
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
        file.close()
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


def write_with_latent(src: str | Path, dst: str | Path, key: str, latent: np.ndarray, uns: dict[str, Any]) -> None:
    """Write ``dst``: a copy of the ``.h5ad`` ``src`` plus ``obsm[key]`` and ``uns['scivae']``; X is not loaded.

    The copy is made beside ``dst`` and renamed onto it when complete; ``src`` is only read.
    """
    with atomic_path(dst) as tmp:
        shutil.copyfile(src, tmp)
        with _readable(Path(src)), h5py.File(tmp, "r+") as f:  # a damaged input gives a damaged copy
            obsm = f.require_group("obsm")
            if "encoding-type" not in obsm.attrs:
                obsm.attrs.update({"encoding-type": "dict", "encoding-version": "0.1.0"})
            if key in obsm:
                del obsm[key]
            ad.io.write_elem(obsm, key, np.asarray(latent))
            uns_group = f.require_group("uns")
            if "encoding-type" not in uns_group.attrs:
                uns_group.attrs.update({"encoding-type": "dict", "encoding-version": "0.1.0"})
            if "scivae" in uns_group:
                del uns_group["scivae"]
            ad.io.write_elem(uns_group, "scivae", uns)
