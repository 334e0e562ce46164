"""Real data sets shipped with scivae (``datasets/`` in a checkout, package data in a wheel; provenance and
licence beside each file).

* :func:`pbmc3k`: 10x PBMC 3k raw counts (needs ``scivae[cells]``);
* :func:`ifnb`: control and interferon-beta stimulated PBMCs, a two-condition pair (needs ``scivae[cells]``);
* :func:`moses`: random subsets of the MOSES train and test molecules (SMILES strings; no extra needed).
"""

from scivae.datasets._ifnb import ifnb
from scivae.datasets._moses import moses
from scivae.datasets._pbmc import pbmc3k

__all__ = ["ifnb", "moses", "pbmc3k"]


def __dir__() -> list[str]:
    # tab completion and dir() show the public API, not the modules this one imports
    return list(__all__)
