"""Scanpy-style plotting: ``scivae.pl.f(adata_or_model, *, color=..., ax=None, show=None, save=None)``.

Every function returns the matplotlib figure, draws into ``ax`` when one is given, saves to ``save`` (format
from the suffix) and calls ``plt.show()`` only when ``show=True``, so it works the same in a notebook, a
script and on a machine without a display.

* the fit: :func:`training_curves`, :func:`kl_per_dim` (with the active-unit threshold and the mutual
  information), :func:`rate_distortion`;
* the latent space: :func:`latent_umap` (scanpy's UMAP of the latent, coloured by any ``obs`` column),
  :func:`anomaly_scores` (histogram);
* molecules: :func:`molecules` (an RDKit grid with SMILES legends, for samples, interpolation paths and
  neighbours).

The fit report of ``scivae fit`` and ``scivae plot`` draw their pictures with these functions.
"""

from scivae.pl.fit import kl_per_dim, rate_distortion, training_curves
from scivae.pl.latent import anomaly_scores, latent_umap
from scivae.pl.molecules import molecules

__all__ = ["anomaly_scores", "kl_per_dim", "latent_umap", "molecules", "rate_distortion", "training_curves"]


def __dir__() -> list[str]:
    # tab completion and dir() show the public API, not the modules this one imports
    return list(__all__)
