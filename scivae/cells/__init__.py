"""Single-cell adapter: a count VAE (NB / ZINB / Poisson) for AnnData, on the shared core.

Public API: :class:`CellVAE` (also ``scivae.CellVAE``), :func:`read_anndata`, and ``scivae.tl.embed``.
"""

from scivae.cells.data import (
    CellData,
    CovariateEncoder,
    align,
    count_problem,
    counts_matrix,
    is_cell_data,
    prepare,
    read_anndata,
)
from scivae.cells.likelihoods import NegativeBinomial, Poisson, ZeroInflatedNegativeBinomial
from scivae.cells.model import CellVAE, default_max_epochs
from scivae.cells.module import CellVAEModule

__all__ = [
    "CellData",
    "CellVAE",
    "CellVAEModule",
    "CovariateEncoder",
    "NegativeBinomial",
    "Poisson",
    "ZeroInflatedNegativeBinomial",
    "align",
    "count_problem",
    "counts_matrix",
    "default_max_epochs",
    "is_cell_data",
    "prepare",
    "read_anndata",
]


def __dir__() -> list[str]:
    # tab completion and dir() show the public API, not the modules this one imports
    return list(__all__)
