"""Real data sets shipped in the repository's ``datasets/`` folder (provenance and licence beside each)."""

from scivae.datasets._moses import moses
from scivae.datasets._pbmc import pbmc3k

__all__ = ["moses", "pbmc3k"]
