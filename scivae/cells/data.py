"""From AnnData to the row-aligned arrays the core trains on: counts, batch codes, covariates.

Everything here works on the sparse structure: the integrality and sign checks read ``.data`` in chunks,
gene and cell filters use ``indices`` / ``indptr``; the full matrix is never densified.
"""

from __future__ import annotations

import logging
import warnings
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import anndata as ad
import numpy as np
import pandas as pd
import scipy.sparse as sp

from scivae.core.data.sparse import sparse_problem
from scivae.core.options import positive_int
from scivae.errors import ScivaeInputError

logger = logging.getLogger("scivae.cells")

_CHUNK = 1 << 22  # values per chunk when scanning .data: bounds the temporary memory of the checks
_INT_TOL = 1e-4  # float counts written by other tools may carry tiny rounding noise
_LOG_MAX = 30.0  # non-integer data whose maximum is below this is almost surely log-normalised
#: Fewest genes and cells with counts a model is trained on (embedding new cells has no minimum).
MIN_GENES = 2
MIN_CELLS = 10


def _layer_hint(source: str) -> str:
    if source == "X":
        return "pass {layer}=counts naming a layer of raw counts, or use adata.raw"
    return "pass a layer or data holding raw integer counts"


# ----------------------------------------------------------------------------------------------------------
# Counts: where they come from and whether they are counts
# ----------------------------------------------------------------------------------------------------------


def _materialise(matrix: Any) -> Any:
    """A backed (on-disk) matrix read into memory; in-memory matrices are returned as they are."""
    if hasattr(matrix, "to_memory"):
        return matrix.to_memory()
    if not (sp.issparse(matrix) or isinstance(matrix, np.ndarray)):
        # h5py datasets and array-likes (dask arrays are computed here)
        if hasattr(matrix, "compute"):
            matrix = matrix.compute()
        return np.asarray(matrix)
    return matrix


def _values(matrix: Any) -> np.ndarray:
    """The stored values of a matrix: ``.data`` of a sparse matrix, the flattened array otherwise."""
    if sp.issparse(matrix):
        return matrix.data
    return np.asarray(matrix).reshape(-1)


def count_problem(matrix: Any) -> str | None:
    """Why ``matrix`` does not hold raw counts, or ``None`` if it does.

    Checks the stored values in chunks (finite, non-negative, integer), without densifying.
    """
    values = _values(matrix)
    if values.dtype == bool:
        return None
    if not np.issubdtype(values.dtype, np.number):
        return f"has non-numeric values ({values.dtype})"
    integer_dtype = np.issubdtype(values.dtype, np.integer)
    vmax, non_integer = -np.inf, False
    for start in range(0, values.size, _CHUNK):
        chunk = values[start : start + _CHUNK]
        if not integer_dtype and not np.isfinite(chunk).all():
            return "contains NaN or infinite values"
        if chunk.size and chunk.min() < 0:
            return "has negative values (scaled or centred data?)"
        if chunk.size:
            vmax = max(vmax, float(chunk.max()))
        if not integer_dtype and not non_integer:
            non_integer = bool((np.abs(chunk - np.rint(chunk)) > _INT_TOL).any())
    if non_integer:
        if vmax < _LOG_MAX:
            return f"looks log-normalised (non-integer values, max {vmax:.3g})"
        return f"holds non-integer values (normalised data?, max {vmax:.3g})"
    return None


def counts_matrix(adata: ad.AnnData, layer: str | None = None) -> tuple[Any, pd.Index, str]:
    """Pick the raw counts of ``adata`` and check them.

    Counts come from ``adata.layers[layer]`` if ``layer`` is given, else from ``adata.raw`` if it holds
    counts, else from ``adata.X``.

    Returns
    -------
    matrix, gene_names, source
        The matrix as stored (any sparse format or dense, not copied), its gene names, and where it came
        from (``"X"``, ``"raw"`` or ``"layers['name']"``).

    Raises
    ------
    ScivaeInputError
        Missing layer; data that are not raw counts (log-normalised, scaled, negative, NaN...).
    """
    if layer is not None:
        if layer not in adata.layers:
            available = ", ".join(map(repr, adata.layers.keys())) or "none"
            raise ScivaeInputError(
                f"layer {layer!r} is not in adata.layers (available: {available}): "
                "pass an existing layer with "
                "{layer}, or leave it out to use adata.raw or X"
            )
        matrix, source = _materialise(adata.layers[layer]), f"layers[{layer!r}]"
        genes = adata.var_names
    else:
        matrix, genes, source = None, adata.var_names, "X"
        if adata.raw is not None:
            raw_x = _materialise(adata.raw.X)
            if count_problem(raw_x) is None:
                matrix, genes, source = raw_x, adata.raw.var_names, "raw"
        if matrix is None:
            if adata.X is None:
                raise ScivaeInputError(
                    "adata.X is empty: pass data with raw counts in X, adata.raw or a layer ({layer})"
                )
            matrix = _materialise(adata.X)
    check_structure(matrix, source)
    problem = count_problem(matrix)
    if problem is not None:
        raise ScivaeInputError(f"{source} {problem}: scivae models raw counts; {_layer_hint(source)}")
    return matrix, pd.Index(genes.astype(str)), source


def check_structure(matrix: Any, source: str) -> None:
    """Refuse a sparse matrix whose ``indptr``/``indices`` are damaged, before scipy indexes with them (it would
    read out of bounds); ``source`` names it (``X``, ``raw``, a layer, or a file and its matrix)."""
    problem = sparse_problem(matrix)
    if problem is not None:
        raise ScivaeInputError(
            f"{source} has a damaged sparse structure ({problem}): the file is corrupt; write it again from the "
            "original data"
        )


def unique_gene_names(genes: pd.Index, warn: bool = True) -> pd.Index:
    """Gene names made unique as ``anndata`` does (``name``, ``name-1``...), with a warning when needed."""
    n_dup = int(genes.duplicated().sum())
    if n_dup == 0:
        return genes
    if warn:
        warnings.warn(
            f"{n_dup} duplicated gene names made unique by appending -1, -2... (as var_names_make_unique does)",
            UserWarning,
            stacklevel=3,
        )
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return ad.utils.make_index_unique(genes.copy())


def _as_float_csr(matrix: Any, columns: np.ndarray | None = None) -> sp.csr_matrix:
    """A new float32 CSR matrix, optionally restricted to ``columns``; the input is never modified."""
    if not sp.issparse(matrix):
        dense = np.asarray(matrix)
        if columns is not None:
            dense = dense[:, columns]
        return sp.csr_matrix(dense, dtype=np.float32)
    if columns is not None:
        # Column selection is cheap on CSC; for CSR scipy does it without densifying.
        matrix = matrix.tocsc()[:, columns] if matrix.format == "csc" else matrix.tocsr()[:, columns]
    out = sp.csr_matrix(matrix, dtype=np.float32, copy=True)
    out.eliminate_zeros()
    out.sort_indices()
    return out


def detected_per_gene(matrix: Any) -> np.ndarray:
    """Number of cells in which each gene has a non-zero count (explicit zeros are not counted)."""
    if not sp.issparse(matrix):
        return (np.asarray(matrix) != 0).sum(0)
    m = matrix if matrix.format in ("csr", "csc") else matrix.tocsr()
    if m.format == "csr":
        return np.bincount(m.indices[m.data != 0], minlength=m.shape[1])
    per_col = np.diff(m.indptr).astype(np.int64)
    zeros = np.flatnonzero(m.data == 0)
    if zeros.size:
        per_col -= np.bincount(np.searchsorted(m.indptr, zeros, side="right") - 1, minlength=m.shape[1])
    return per_col


# ----------------------------------------------------------------------------------------------------------
# Covariates
# ----------------------------------------------------------------------------------------------------------


@dataclass
class CovariateEncoder:
    """Encodes a batch key and further covariates of ``obs`` the same way for training and new data.

    Attributes
    ----------
    batch_key
        Column of the batch; ``None`` for one batch.
    batch_categories
        Batch categories, in code order.
    categorical_keys, categorical_categories
        Further categorical columns and their categories.
    continuous_keys, continuous_mean, continuous_std
        Continuous columns and the standardisation fitted on the training cells.
    """

    batch_key: str | None = None
    batch_categories: list[str] = field(default_factory=list)
    categorical_keys: list[str] = field(default_factory=list)
    categorical_categories: list[list[str]] = field(default_factory=list)
    continuous_keys: list[str] = field(default_factory=list)
    continuous_mean: list[float] = field(default_factory=list)
    continuous_std: list[float] = field(default_factory=list)

    @property
    def n_batches(self) -> int:
        return max(len(self.batch_categories), 1)

    @property
    def n_cats_per_covariate(self) -> list[int]:
        return [len(c) for c in self.categorical_categories]

    @staticmethod
    def check_keys(
        obs: pd.DataFrame,
        batch_key: str | None,
        categorical_keys: Sequence[str],
        continuous_keys: Sequence[str],
    ) -> None:
        """Raise a one-line error for a key missing from ``obs``."""
        wanted = [("batch key", "{batch_key}", batch_key)] if batch_key is not None else []
        wanted += [("categorical covariate", "{categorical_covariate_keys}", k) for k in categorical_keys]
        wanted += [("continuous covariate", "{continuous_covariate_keys}", k) for k in continuous_keys]
        cols = ", ".join(map(repr, obs.columns[:12])) + (", ..." if obs.shape[1] > 12 else "") or "none"
        for what, option, key in wanted:
            if key not in obs.columns:
                raise ScivaeInputError(
                    f"{what} {key!r} is not a column of adata.obs (columns: {cols}): "
                    f"pass an existing column to {option}"
                )

    @classmethod
    def fit(
        cls,
        obs: pd.DataFrame,
        batch_key: str | None = None,
        categorical_keys: Sequence[str] = (),
        continuous_keys: Sequence[str] = (),
    ) -> CovariateEncoder:
        """Learn categories and standardisation from the training cells' ``obs``."""
        cls.check_keys(obs, batch_key, categorical_keys, continuous_keys)
        enc = cls(
            batch_key=batch_key,
            categorical_keys=list(categorical_keys),
            continuous_keys=list(continuous_keys),
        )
        if batch_key is not None:
            enc.batch_categories = _categories(obs, batch_key, "batch key")
        enc.categorical_categories = [_categories(obs, k, "categorical covariate") for k in categorical_keys]
        for k in continuous_keys:
            values = _continuous(obs, k)
            enc.continuous_mean.append(float(values.mean()))
            std = float(values.std())
            enc.continuous_std.append(std if std > 0 else 1.0)
        return enc

    def transform(self, obs: pd.DataFrame) -> dict[str, np.ndarray]:
        """Arrays ``batch`` (int64), ``cat`` (int64, cells x keys), ``cont`` (float32) for these cells."""
        self.check_keys(obs, self.batch_key, self.categorical_keys, self.continuous_keys)
        out: dict[str, np.ndarray] = {}
        if self.batch_key is not None:
            out["batch"] = _codes(obs, self.batch_key, self.batch_categories, "batch key")
        if self.categorical_keys:
            out["cat"] = np.stack(
                [
                    _codes(obs, k, cats, "categorical covariate")
                    for k, cats in zip(self.categorical_keys, self.categorical_categories, strict=True)
                ],
                axis=1,
            )
        if self.continuous_keys:
            cols = [
                (_continuous(obs, k) - m) / s
                for k, m, s in zip(self.continuous_keys, self.continuous_mean, self.continuous_std, strict=True)
            ]
            out["cont"] = np.stack(cols, axis=1).astype(np.float32)
        return out

    def to_dict(self) -> dict[str, Any]:
        return {
            "batch_key": self.batch_key,
            "batch_categories": self.batch_categories,
            "categorical_keys": self.categorical_keys,
            "categorical_categories": self.categorical_categories,
            "continuous_keys": self.continuous_keys,
            "continuous_mean": self.continuous_mean,
            "continuous_std": self.continuous_std,
        }

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> CovariateEncoder:
        return cls(**d)


def _categories(obs: pd.DataFrame, key: str, what: str) -> list[str]:
    col = obs[key]
    if col.isna().any():
        raise ScivaeInputError(f"{what} {key!r} has {int(col.isna().sum())} missing values: fill or drop those cells")
    if isinstance(col.dtype, pd.CategoricalDtype):
        used = set(col.astype(str))
        return [str(c) for c in col.cat.categories if str(c) in used]
    return sorted(set(col.astype(str)))


def _codes(obs: pd.DataFrame, key: str, categories: list[str], what: str) -> np.ndarray:
    col = obs[key]
    if col.isna().any():
        raise ScivaeInputError(f"{what} {key!r} has {int(col.isna().sum())} missing values: fill or drop those cells")
    codes = pd.Categorical(col.astype(str), categories=categories).codes.astype(np.int64)
    if (codes < 0).any():
        unseen = sorted(set(col.astype(str)) - set(categories))
        raise ScivaeInputError(
            f"{what} {key!r} has categories not seen in training ({', '.join(unseen[:5])}): "
            f"use cells from the training categories ({', '.join(categories[:5])}"
            f"{', ...' if len(categories) > 5 else ''})"
        )
    return codes


def _continuous(obs: pd.DataFrame, key: str) -> np.ndarray:
    try:
        values = pd.to_numeric(obs[key]).to_numpy(dtype=np.float64)
    except (TypeError, ValueError):
        raise ScivaeInputError(
            f"continuous covariate {key!r} is not numeric: pass it as a categorical covariate instead"
        ) from None
    if not np.isfinite(values).all():
        raise ScivaeInputError(f"continuous covariate {key!r} has NaN or infinite values: fill or drop those cells")
    return values


# ----------------------------------------------------------------------------------------------------------
# Highly variable genes
# ----------------------------------------------------------------------------------------------------------


def highly_variable(counts: sp.csr_matrix, n_top_genes: int, batch: np.ndarray | None = None) -> np.ndarray:
    """Sorted indices of the ``n_top_genes`` most variable genes (scanpy's ``seurat_v3`` flavour, on counts).

    ``seurat_v3`` ranks genes by the variance of counts standardised with a loess fit of log variance on log
    mean (Stuart et al. 2019); with ``batch`` the ranking is combined across batches as scanpy does.
    """
    import scanpy as sc

    try:
        import skmisc.loess  # noqa: F401  (seurat_v3 needs it; say so before scanpy's ImportError)
    except ImportError:
        raise ScivaeInputError(
            "highly-variable-gene selection (n_top_genes) needs scikit-misc: pip install scikit-misc"
        ) from None
    obs = pd.DataFrame(index=pd.RangeIndex(counts.shape[0]).astype(str))
    if batch is not None:
        obs["batch"] = pd.Categorical(batch)
    tmp = ad.AnnData(X=counts, obs=obs)
    # scanpy's numba kernels reset the OpenMP thread count that torch uses (OMP_NUM_THREADS=1 became 2
    # in our runs); restore it so that the user's setting still governs training.
    import torch

    n_threads = torch.get_num_threads()
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            table = sc.pp.highly_variable_genes(
                tmp,
                flavor="seurat_v3",
                n_top_genes=n_top_genes,
                batch_key="batch" if batch is not None else None,
                inplace=False,
            )
    finally:
        torch.set_num_threads(n_threads)
    return np.flatnonzero(table["highly_variable"].to_numpy())


# ----------------------------------------------------------------------------------------------------------
# The prepared data set
# ----------------------------------------------------------------------------------------------------------


@dataclass
class CellData:
    """Model-ready arrays for the cells of one AnnData, in ``obs`` order.

    Attributes
    ----------
    arrays
        ``x`` (float32 CSR counts over the model genes) and optionally ``batch``, ``cat``, ``cont``.
    nonempty
        Indices of the cells with at least one count over the model genes (the ones trained on).
    summary
        What was read and filtered (JSON-serialisable).
    """

    arrays: dict[str, Any]
    nonempty: np.ndarray
    summary: dict[str, Any]

    @property
    def n_obs(self) -> int:
        return self.arrays["x"].shape[0]


def prepare(
    adata: ad.AnnData,
    *,
    layer: str | None = None,
    batch_key: str | None = None,
    categorical_covariate_keys: Sequence[str] = (),
    continuous_covariate_keys: Sequence[str] = (),
    n_top_genes: int | None = None,
) -> tuple[CellData, list[str], CovariateEncoder, str]:
    """Validate ``adata`` and build training arrays (``adata`` is not modified).

    Steps: keys checked; counts picked (layer, raw, X) and checked; duplicated gene names made unique
    (warning); never-detected genes dropped; optional seurat_v3 selection of ``n_top_genes``; cells with no
    count left are marked as empty (kept in the arrays so that embeddings stay aligned with ``obs``,
    excluded from training).

    Returns
    -------
    data, genes, encoder, source
        The arrays, the model's gene names, the covariate encoder, and where the counts came from.
    """
    CovariateEncoder.check_keys(adata.obs, batch_key, categorical_covariate_keys, continuous_covariate_keys)
    if n_top_genes is not None:
        positive_int(n_top_genes, "n_top_genes")
    matrix, genes, source = counts_matrix(adata, layer)
    n_cells, n_genes_in = matrix.shape
    if n_cells == 0 or n_genes_in == 0:
        raise ScivaeInputError(
            f"{source} is empty ({n_cells} cells x {n_genes_in} genes): pass data with cells and genes"
        )
    n_dup = int(genes.duplicated().sum())
    genes = unique_gene_names(genes)
    encoder = CovariateEncoder.fit(adata.obs, batch_key, categorical_covariate_keys, continuous_covariate_keys)
    covs = encoder.transform(adata.obs)

    detected = detected_per_gene(matrix)
    keep = np.flatnonzero(detected > 0)
    if keep.size == 0:
        raise ScivaeInputError(f"{source} has no non-zero count: pass data with raw counts")
    counts = _as_float_csr(matrix, keep if keep.size < n_genes_in else None)
    n_hvg = None
    if n_top_genes is not None:
        if n_top_genes < keep.size:
            empty = np.asarray(counts.sum(1)).ravel() == 0
            rows = np.flatnonzero(~empty)
            sel = highly_variable(counts[rows], n_top_genes, covs["batch"][rows] if "batch" in covs else None)
            keep, counts, n_hvg = keep[sel], counts[:, sel], int(sel.size)
        else:
            warnings.warn(
                f"n_top_genes={n_top_genes} >= the {keep.size} detected genes: all detected genes are kept",
                UserWarning,
                stacklevel=2,
            )
    totals = np.asarray(counts.sum(1)).ravel()
    nonempty, summary = trained_cells(source, totals, (n_cells, n_genes_in), n_dup, detected, keep.size, n_hvg)
    logger.info(
        "counts from %s: %d cells x %d genes; dropped %d never-detected genes; %d empty cells left out of training",
        source,
        n_cells,
        n_genes_in,
        summary["n_genes_undetected_dropped"],
        summary["n_cells_empty"],
    )
    arrays: dict[str, Any] = {"x": counts, **covs}
    return CellData(arrays, nonempty, summary), [str(g) for g in genes[keep]], encoder, source


def trained_cells(
    source: str,
    totals: np.ndarray,
    shape: tuple[int, int],
    n_dup: int,
    detected: np.ndarray,
    n_genes: int,
    n_hvg: int | None,
) -> tuple[np.ndarray, dict[str, Any]]:
    """The cells with counts over the model genes (``totals`` > 0) and the summary of what was filtered."""
    nonempty = np.flatnonzero(totals > 0)
    if nonempty.size == 0:
        raise ScivaeInputError(f"every cell of {source} has zero counts over the selected genes: pass data with counts")
    if n_genes < MIN_GENES:
        raise ScivaeInputError(
            f"{source} has {n_genes} gene with counts: a VAE needs at least {MIN_GENES} genes; pass the whole "
            "count matrix (all genes), not a subset"
        )
    if nonempty.size < MIN_CELLS:
        raise ScivaeInputError(
            f"{source} has {nonempty.size} cell(s) with counts: training needs at least {MIN_CELLS} (to learn and "
            "to validate on); pass the whole data set"
        )
    summary = {
        "counts_source": source,
        "n_cells_input": int(shape[0]),
        "n_genes_input": int(shape[1]),
        "n_duplicated_gene_names": n_dup,
        "n_genes_undetected_dropped": int(shape[1] - int((detected > 0).sum())),
        "n_highly_variable_genes": n_hvg,
        "n_genes": int(n_genes),
        "n_cells_empty": int(shape[0] - nonempty.size),
        "n_cells_trained": int(nonempty.size),
    }
    return nonempty, summary


def align(adata: ad.AnnData, genes: Sequence[str], encoder: CovariateEncoder, layer: str | None = None) -> CellData:
    """Arrays for new cells over the model's ``genes`` (matched by name), covariates encoded as in training.

    Raises
    ------
    ScivaeInputError
        Non-count data, missing layer or covariate, unseen category, or model genes missing from ``adata``.
    """
    matrix, names, source = counts_matrix(adata, layer)
    names = unique_gene_names(names, warn=False)
    position = pd.Index(names).get_indexer(pd.Index(genes))
    missing = [g for g, p in zip(genes, position, strict=True) if p < 0]
    if missing:
        raise ScivaeInputError(
            f"{len(missing)} of the model's {len(genes)} genes are missing from the new data's {source} "
            f"gene names ({len(genes) - len(missing)} overlap; e.g. {', '.join(missing[:5])} are missing): pass "
            "data with the training genes as var_names"
        )
    covs = encoder.transform(adata.obs)
    counts = _as_float_csr(matrix, position)
    totals = np.asarray(counts.sum(1)).ravel()
    nonempty = np.flatnonzero(totals > 0)
    summary = {
        "counts_source": source,
        "n_cells_input": int(matrix.shape[0]),
        "n_genes": len(genes),
        "n_cells_empty": int(matrix.shape[0] - nonempty.size),
    }
    return CellData({"x": counts, **covs}, nonempty, summary)


# -- reading files -------------------------------------------------------------------------------------
#: File types :func:`read_anndata` understands (a 10x matrix folder is recognised by its content).
SUFFIXES = (".h5ad", ".zarr", ".h5")


def _is_10x_dir(path: Path) -> bool:
    return path.is_dir() and any((path / f).exists() for f in ("matrix.mtx", "matrix.mtx.gz"))


def is_cell_data(path: str | Path) -> bool:
    """Whether ``path`` names a single-cell file type (by suffix, or a 10x matrix folder)."""
    path = Path(path)
    return path.suffix.lower() in SUFFIXES or _is_10x_dir(path)


def _caused_by(exc: BaseException, kind: type[BaseException]) -> bool:
    """Whether ``exc`` or an exception it was raised from (or while handling) is a ``kind``."""
    seen: set[int] = set()
    while exc is not None and id(exc) not in seen:
        if isinstance(exc, kind):
            return True
        seen.add(id(exc))
        exc = exc.__cause__ or exc.__context__  # type: ignore[assignment]
    return False


def _checked(adata: ad.AnnData, path: Path) -> ad.AnnData:
    """``adata`` after a check of the sparse structure of each of its matrices (a damaged file is refused here,
    naming the file, before any step indexes with its ``indptr``/``indices``)."""
    matrices = [("X", adata.X), *((f"layers[{k!r}]", v) for k, v in adata.layers.items())]
    if adata.raw is not None:
        matrices.append(("raw.X", adata.raw.X))
    for name, matrix in matrices:
        check_structure(matrix, f"{path}: {name}")
    return adata


def read_anndata(path: str | Path) -> ad.AnnData:
    """Read ``.h5ad``, ``.zarr``, 10x ``.h5`` or a 10x ``matrix.mtx`` folder into memory.

    Parameters
    ----------
    path
        The file or folder. It is only read, never modified.

    Returns
    -------
    AnnData
        The data as stored (no filtering, no renaming: see :func:`scivae.cells.data.prepare`).

    Raises
    ------
    ScivaeInputError
        Missing path, unsupported type, or a file the reader cannot parse.
    MemoryError
        Not enough memory to read the file (passed on as it is: the file is not the problem).
    """
    path = Path(path)
    if not path.exists():
        raise ScivaeInputError(
            f"{path} does not exist: pass an existing .h5ad, .zarr, 10x .h5 file or 10x matrix folder"
        )
    suffix = path.suffix.lower()
    if path.is_dir() and suffix in (".h5ad", ".h5"):
        raise ScivaeInputError(f"{path} is a directory, not a {suffix} file: pass the file itself")
    if path.is_file() and path.stat().st_size == 0:
        raise ScivaeInputError(f"{path} is empty (0 bytes): pass a complete {suffix or 'data'} file")
    try:
        with warnings.catch_warnings():
            # Duplicated names are handled (with our own warning) when the counts are prepared.
            warnings.filterwarnings("ignore", message=".*names are not unique.*")
            if suffix == ".h5ad":
                return _checked(ad.read_h5ad(path), path)
            if suffix == ".zarr":
                return _checked(ad.read_zarr(path), path)
            if suffix == ".h5":
                import scanpy as sc

                return _checked(sc.read_10x_h5(path), path)
            if _is_10x_dir(path):
                import scanpy as sc

                return _checked(sc.read_10x_mtx(path, make_unique=False), path)
    except ScivaeInputError:
        raise
    except PermissionError:
        raise ScivaeInputError(f"cannot read {path}: permission denied; make the file readable") from None
    except Exception as e:  # the readers raise many types (OSError, KeyError, ValueError...) for a bad file
        if _caused_by(e, MemoryError):  # not a damaged file: the machine ran out of memory
            raise
        first = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        raise ScivaeInputError(
            f"cannot read {path} as {suffix or '10x folder'} ({type(e).__name__}: {first[:160]}): "
            "check that the file is complete and of the type its name says"
        ) from None
    raise ScivaeInputError(
        f"{path} is not a single-cell file scivae reads: pass a .h5ad, .zarr, 10x .h5 file or a 10x matrix.mtx folder"
    )
