"""Where the shipped data files are: inside the installed package, or in a source checkout's ``datasets/``.

A wheel carries the files of ``datasets/`` as package data under ``scivae/datasets/files/`` (see
``pyproject.toml``); an editable install or a plain checkout reads them from ``datasets/`` at the repository root.
"""

from __future__ import annotations

from pathlib import Path

from scivae.errors import ScivaeInputError

_PACKAGE_FILES = Path(__file__).resolve().parent / "files"
_CHECKOUT_FILES = Path(__file__).resolve().parents[2] / "datasets"


def data_file(*parts: str) -> Path:
    """Path of a shipped data file, e.g. ``data_file("pbmc3k", "pbmc3k_raw.h5ad")``.

    Raises
    ------
    ScivaeInputError
        When the file is in neither place (a broken installation).
    """
    for root in (_PACKAGE_FILES, _CHECKOUT_FILES):
        path = root.joinpath(*parts)
        if path.is_file():
            return path
    raise ScivaeInputError(
        f"the shipped data file {'/'.join(parts)} is missing from this installation: reinstall scivae "
        "(pip install --force-reinstall scivae)"
    )
