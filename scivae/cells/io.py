"""Reading single-cell files into AnnData, with one clear error per unreadable input."""

from __future__ import annotations

import warnings
from pathlib import Path

import anndata as ad

from scivae.errors import ScivaeInputError

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
                return ad.read_h5ad(path)
            if suffix == ".zarr":
                return ad.read_zarr(path)
            if suffix == ".h5":
                import scanpy as sc

                return sc.read_10x_h5(path)
            if _is_10x_dir(path):
                import scanpy as sc

                return sc.read_10x_mtx(path, make_unique=False)
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
