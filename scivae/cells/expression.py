"""What a trained :class:`~scivae.CellVAE` says about expression: denoised expression, posterior predictive counts,
differential expression, and the ``layer=`` of every method that reads counts.

The methods live in :class:`CellExpression`, a mixin of :class:`~scivae.CellVAE` (it relies on the model's
``_cell_data``, ``_conditioning``, ``module``, ``encoder``, ``genes`` and ``adata``). Cells are read from
``adata.layers[layer]`` when ``layer`` is given, else from where the model was told to read them.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

import anndata as ad
import numpy as np
import pandas as pd
import torch

from scivae.cells.streaming import BackedCellData
from scivae.core.data.device import iterate_device_batches
from scivae.core.options import positive_int
from scivae.core.seeding import seeded
from scivae.errors import ScivaeInputError

if TYPE_CHECKING:
    from scivae.cells.data import CellData

#: ``library_size`` that scales each cell by its own library (observed total, or the latent library).
LATENT_LIBRARY = "latent"


def gene_positions(genes: Sequence[str], gene_list: Sequence[str] | None) -> np.ndarray:
    """Column positions of ``gene_list`` among the model's ``genes`` (all of them for ``None``)."""
    if gene_list is None:
        return np.arange(len(genes))
    if isinstance(gene_list, str):
        gene_list = [gene_list]
    where = {g: i for i, g in enumerate(genes)}
    missing = [g for g in gene_list if g not in where]
    if missing:
        raise ScivaeInputError(
            f"{len(missing)} gene(s) of {{gene_list}} are not genes of the model ({', '.join(map(str, missing[:5]))}): "
            "pick names from model.genes",
            "gene_list",
        )
    return np.asarray([where[g] for g in gene_list], dtype=np.int64)


class CellExpression:
    """Methods of :class:`~scivae.CellVAE` that read counts and report expression (see the module docstring)."""

    # provided by CellVAE
    module: Any
    encoder: Any
    genes: list[str]
    adata: Any

    def _cell_data(self, adata: Any, layer: str | None = None) -> Any:  # pragma: no cover - CellVAE's
        raise NotImplementedError

    # -- the base methods, with layer= -------------------------------------------------------------------
    def get_latent(
        self,
        adata: ad.AnnData | str | None = None,
        give_mean: bool = True,
        batch_size: int = 1024,
        seed: int | None = 0,
        *,
        layer: str | None = None,
    ) -> np.ndarray:
        """Latent representation of the cells of ``adata`` (default: the training cells), in ``obs`` order.

        Parameters
        ----------
        adata
            Cells with the model's genes (an AnnData, or an ``.h5ad`` path / backed AnnData, streamed).
        give_mean
            Posterior means (default) or one posterior sample per cell.
        batch_size
            Cells per forward pass.
        seed
            Seed of the sample when ``give_mean=False``.
        layer
            Layer of ``adata`` holding the raw counts (default: the model's).

        Returns
        -------
        numpy.ndarray
            ``(n_cells, n_latent)`` float32.
        """
        return super().get_latent(self._cell_data(adata, layer), give_mean, batch_size, seed)  # type: ignore[misc]

    def get_posterior(
        self, adata: ad.AnnData | str | None = None, batch_size: int = 1024, *, layer: str | None = None
    ) -> tuple[np.ndarray, np.ndarray]:
        """Posterior means and log-variances of the cells of ``adata``, each ``(n_cells, n_latent)``;
        ``layer`` as in :meth:`get_latent`."""
        return super().get_posterior(self._cell_data(adata, layer), batch_size)  # type: ignore[misc]

    def get_elbo(
        self,
        adata: ad.AnnData | str | None = None,
        n_samples: int = 1,
        batch_size: int = 1024,
        seed: int | None = 0,
        *,
        layer: str | None = None,
    ) -> np.ndarray:
        """Per-cell evidence lower bound in nats (see :meth:`scivae.core.BaseModel.get_elbo`); ``layer`` as in
        :meth:`get_latent`."""
        return super().get_elbo(self._cell_data(adata, layer), n_samples, batch_size, seed)  # type: ignore[misc]

    def get_marginal_ll(
        self,
        adata: ad.AnnData | str | None = None,
        n_samples: int = 100,
        batch_size: int = 256,
        seed: int | None = 0,
        *,
        layer: str | None = None,
    ) -> np.ndarray:
        """Per-cell importance-sampled ``log p(x)`` in nats (see :meth:`scivae.core.BaseModel.get_marginal_ll`);
        ``layer`` as in :meth:`get_latent`."""
        return super().get_marginal_ll(  # type: ignore[misc]
            self._cell_data(adata, layer), n_samples, batch_size, seed
        )

    # -- expression ------------------------------------------------------------------------------------
    def _in_memory(self, adata: Any, layer: str | None, what: str) -> tuple[CellData, list[str]]:
        """The cells of ``adata`` in memory and their ``obs`` names."""
        self._require_trained()  # type: ignore[attr-defined]
        cells = self._cell_data(adata, layer)
        if isinstance(cells, BackedCellData):
            raise ScivaeInputError(f"{what} returns dense cells x genes values: pass an in-memory subset as adata=")
        source = adata if isinstance(adata, ad.AnnData) else self.adata
        names = [str(n) for n in source.obs_names] if source is not None else [str(i) for i in range(cells.n_obs)]
        return cells, names

    def _batch_override(self, batch: dict[str, torch.Tensor], transform_batch: str | None) -> dict[str, torch.Tensor]:
        """The batch's covariates with every cell's batch set to ``transform_batch`` (checked) when given."""
        if transform_batch is None:
            return batch
        code = int(self._conditioning(1, None, transform_batch)["batch"][0])  # type: ignore[attr-defined]
        return {**batch, "batch": torch.full_like(batch["batch"], code)}

    @torch.no_grad()
    def get_normalized_expression(
        self,
        adata: ad.AnnData | None = None,
        *,
        n_samples: int = 1,
        gene_list: Sequence[str] | None = None,
        library_size: float | str = 1.0,
        transform_batch: str | None = None,
        return_mean: bool = True,
        layer: str | None = None,
        batch_size: int = 1024,
        seed: int | None = 0,
    ) -> pd.DataFrame | np.ndarray:
        """Denoised expression: the decoder's expression fractions of each cell, times ``library_size``.

        Parameters
        ----------
        adata
            Cells (default: the training AnnData), in memory.
        n_samples
            1 decodes each cell's posterior mean (deterministic); more decode as many posterior samples of z and
            average them (or return them all, see ``return_mean``).
        gene_list
            Genes to return (default: all of the model's, in the order of :attr:`genes`).
        library_size
            A number each cell's fractions are scaled to (1: the fractions, scvi-tools' "scale"; 1e4: counts per
            10,000), or ``"latent"``: the cell's own library (its observed total count, or the posterior mean of
            the latent library for ``library="latent"`` models).
        transform_batch
            Decode every cell as if from this batch category (batch correction); default: its own batch.
        return_mean
            With ``n_samples > 1``: the mean over samples (a DataFrame), or every sample (an array).
        layer
            Layer of ``adata`` holding the raw counts (default: the model's).
        batch_size
            Cells per forward pass.
        seed
            Seed of the posterior samples (``n_samples > 1``).

        Returns
        -------
        pandas.DataFrame or numpy.ndarray
            ``obs_names`` x genes (float32 values), or ``(n_samples, n_cells, n_genes)`` when ``return_mean``
            is false and ``n_samples > 1``.
        """
        positive_int(n_samples, "n_samples")
        latent_library = isinstance(library_size, str)
        if latent_library and library_size != LATENT_LIBRARY:
            raise ScivaeInputError(f"{{library_size}}={library_size!r}: pass a number or 'latent'", "library_size")
        if not latent_library and not float(library_size) > 0:  # type: ignore[arg-type]
            raise ScivaeInputError(f"{{library_size}}={library_size} must be > 0", "library_size")
        cells, names = self._in_memory(adata, layer, "get_normalized_expression")
        columns = gene_positions(self.genes, gene_list)
        device = self._ready()  # type: ignore[attr-defined]
        n = int(n_samples)
        out = np.empty((n, cells.n_obs, len(columns)), dtype=np.float32)
        start = 0
        with seeded(seed):
            for batch in iterate_device_batches(cells.arrays, batch_size, device):
                post = self.module.inference(batch)
                cond = self._batch_override(batch, transform_batch)
                if latent_library:
                    lib = (
                        self.module.observed_log_library(batch)
                        if self.module.library == "observed"
                        else self.module._library_posterior(batch)[0]
                    ).exp()
                rows = slice(start, start + post.mu.shape[0])
                for s in range(n):
                    z = post.mu if n == 1 else post.rsample()
                    _, log_scale = self.module.decode(z, cond)
                    values = log_scale.exp() * (lib if latent_library else float(library_size))  # type: ignore[arg-type]
                    out[s, rows] = values[:, columns].cpu().numpy()
                start = rows.stop
        if n > 1 and not return_mean:
            return out
        chosen = [self.genes[i] for i in columns]
        return pd.DataFrame(out.mean(0) if n > 1 else out[0], index=pd.Index(names), columns=pd.Index(chosen))

    @torch.no_grad()
    def posterior_predictive_sample(
        self,
        adata: ad.AnnData | None = None,
        n_samples: int = 1,
        gene_list: Sequence[str] | None = None,
        *,
        layer: str | None = None,
        batch_size: int = 1024,
        seed: int | None = 0,
    ) -> np.ndarray:
        """Counts drawn from the model's posterior predictive: z from q(z|x), then counts from the likelihood.

        Each draw takes a fresh z from the cell's posterior (and a library from q(l|x) for ``library="latent"``
        models; otherwise the cell's observed total) and draws counts from the model's NB, ZINB or Poisson.
        Useful to check the model: the draws should look like the data (means, variances, zeros per gene).

        Parameters
        ----------
        adata
            Cells (default: the training AnnData), in memory.
        n_samples
            Draws per cell.
        gene_list
            Genes to return (default: all of the model's).
        layer
            Layer of ``adata`` holding the raw counts (default: the model's).
        batch_size
            Cells per forward pass.
        seed
            Seed of the draws: the same seed gives the same counts on one machine.

        Returns
        -------
        numpy.ndarray
            Counts as float32, ``(n_cells, n_genes)`` for one draw, ``(n_cells, n_genes, n_samples)`` for more
            (scvi-tools' layout).
        """
        positive_int(n_samples, "n_samples")
        cells, _ = self._in_memory(adata, layer, "posterior_predictive_sample")
        columns = gene_positions(self.genes, gene_list)
        device = self._ready()  # type: ignore[attr-defined]
        n = int(n_samples)
        out = np.empty((cells.n_obs, len(columns), n), dtype=np.float32)
        start = 0
        with seeded(seed):
            for batch in iterate_device_batches(cells.arrays, batch_size, device):
                post = self.module.inference(batch)
                rows = slice(start, start + post.mu.shape[0])
                for s in range(n):
                    counts = self.module.generative(post.rsample(), batch).sample()
                    out[rows, :, s] = counts[:, columns].cpu().numpy()
                start = rows.stop
        return out[:, :, 0] if n == 1 else out

    def differential_expression(
        self,
        adata: ad.AnnData | None = None,
        *,
        groupby: str,
        group1: str | Sequence[str],
        group2: str | Sequence[str] | None = None,
        mode: str = "change",
        delta: float = 0.25,
        batch_correction: bool = False,
        n_samples: int = 5000,
        fdr_target: float = 0.05,
        pseudocount: float | None = None,
        seed: int = 0,
        layer: str | None = None,
        batch_size: int = 1024,
    ) -> pd.DataFrame:
        """Bayesian differential expression of ``group1`` against ``group2`` (default: the other cells).

        See :func:`scivae.cells.differential.differential_expression` for the method and the columns.
        """
        from scivae.cells.differential import differential_expression

        return differential_expression(
            self,
            adata,
            groupby=groupby,
            group1=group1,
            group2=group2,
            mode=mode,
            delta=delta,
            batch_correction=batch_correction,
            n_samples=n_samples,
            fdr_target=fdr_target,
            pseudocount=pseudocount,
            seed=seed,
            layer=layer,
            batch_size=batch_size,
        )
