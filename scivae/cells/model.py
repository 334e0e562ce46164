"""``CellVAE``: the user-facing count VAE for AnnData (scanpy conventions)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import anndata as ad
import numpy as np
import pandas as pd
import torch

from scivae.cells.data import CellData, CovariateEncoder, align, prepare
from scivae.cells.expression import CellExpression
from scivae.cells.labels import CLASSIFICATION_RATIO, LabelEncoder, attach_labels, restore_labels
from scivae.cells.mapping import QueryMapping, restore_mapping
from scivae.cells.module import CellVAEModule
from scivae.cells.streaming import BackedCellData, align_backed, prepare_backed, streaming_split
from scivae.core import BaseModel, FitResult, KLConfig, split_indices
from scivae.core.data.arrays import RowOutputs
from scivae.core.data.device import iterate_device_batches
from scivae.core.data.streaming import StreamingDataModule
from scivae.core.model.base import select_rows
from scivae.core.model.persistence import check_config_keys, check_saved_shapes
from scivae.core.options import TrainingOptions, positive_int
from scivae.core.seeding import seeded
from scivae.errors import ModelFormatError, ScivaeInputError

#: Upper bound of the default number of epochs (the rule follows scvi-tools, see :func:`default_max_epochs`).
MAX_DEFAULT_EPOCHS = 400
#: Longest default linear KL warm-up, in epochs (shorter than the early-stopping patience, see ``fit``).
MAX_DEFAULT_WARMUP_EPOCHS = 10


def default_max_epochs(n_cells: int) -> int:
    """Default epoch budget: ``min(round(20000 / n_cells * 400), 400)``, at least 10.

    This is scvi-tools' rule: about 8 million cell presentations, so small data sets get more epochs and
    large ones fewer. It is an upper bound: training stops earlier when the validation ELBO has not improved
    for ``patience`` epochs, and the best epoch's weights are kept.
    """
    return int(max(10, min(round(20000 / max(n_cells, 1) * 400), MAX_DEFAULT_EPOCHS)))


def _check_saved(config: dict[str, Any], state: dict[str, Any]) -> None:
    """Keys and gene count of a saved cell model, checked before anything is built."""
    import dataclasses
    import inspect

    check_config_keys(config, (set(inspect.signature(CellVAEModule.__init__).parameters) - {"self"}) | {"seed", "kl"})
    for key in ("kl", "kl_config"):  # "kl" like every model's; "kl_config" in folders of scivae <= 0.1.0
        if isinstance(config.get(key), dict):
            check_config_keys(config[key], {f.name for f in dataclasses.fields(KLConfig)}, key)
    saved_keys = {"genes", "layer", "covariates", "data_summary", "metrics", "labels", "reference_mapping"}
    check_config_keys(state, saved_keys, "adapter_state")
    covariates = state.get("covariates")
    check_config_keys(covariates or {}, {f.name for f in dataclasses.fields(CovariateEncoder)}, "covariates")
    genes = state.get("genes")
    if not isinstance(genes, list) or len(genes) != config.get("n_genes") or not isinstance(covariates, dict):
        raise ModelFormatError(
            f"the model's config.json lists {len(genes) if isinstance(genes, list) else 'no'} genes for a model of "
            f"{config.get('n_genes')!r} genes, or no covariates: the model directory is damaged; re-fit"
        )
    if not all(isinstance(g, str) for g in genes):
        bad = next(g for g in genes if not isinstance(g, str))
        raise ModelFormatError(
            f"the model's config.json lists a gene that is not a name ({bad!r}): the model directory is damaged; re-fit"
        )


class CellVAE(CellExpression, BaseModel):
    """Count VAE for single-cell RNA-seq in an AnnData (an scVI-like conditional VAE).

    Counts are read from ``adata.layers[layer]``, else ``adata.raw`` if it holds counts, else ``adata.X``;
    they are checked (non-negative finite integers), genes never detected are dropped and duplicated gene
    names made unique. Cells without any count are kept for :meth:`get_latent` (so that results align with
    ``obs``) but left out of training. ``adata`` itself is not modified.

    Parameters
    ----------
    adata
        Cells x genes with raw counts.
    layer
        Layer holding the counts.
    batch_key
        ``obs`` column of the batch; conditions the decoder (and the library prior).
    categorical_covariate_keys, continuous_covariate_keys
        Further ``obs`` columns conditioning the decoder (continuous ones are standardised).
    likelihood
        ``"nb"`` (default), ``"zinb"`` or ``"poisson"``.
    dispersion
        ``"gene"``, ``"gene-batch"`` or ``"gene-cell"``.
    library
        ``"observed"`` (the cell's total count) or ``"latent"`` (log-normal latent variable, per-batch
        prior, as scVI).
    n_latent, n_hidden, n_layers, dropout
        Architecture of encoder and decoder.
    norm
        Normalisation of the hidden layers: ``"layer"`` (LayerNorm; default) or ``"batch"`` (BatchNorm, as
        scvi-tools). Chosen on validation cells of PBMC 3k (benchmarks/cells/RESULTS.md, "Defaults chosen on
        validation cells").
    encode_covariates
        Also give the covariates to the encoder.
    n_top_genes
        Keep only this many highly variable genes (scanpy's ``seurat_v3`` on counts, batch-aware).
    beta, free_bits, free_bits_groups, capacity
        The core's collapse controls (see :class:`scivae.core.KLConfig`).
    backed
        Stream the counts from disk instead of loading them: ``adata`` is then the path of an ``.h5ad`` or
        ``anndata.read_h5ad(path, backed="r")``. Checks, gene selection and library statistics run in
        passes over chunks of rows, training reads shuffled chunks (:mod:`scivae.cells.streaming`), and
        :meth:`get_latent` streams too; memory stays flat as the number of cells grows.
    seed
        Seed of the initial weights and, unless ``fit(seed=)`` gives another, of the fit (split, shuffling).
    labels_key
        ``obs`` column of cell labels for semi-supervised training (scANVI-like, :mod:`scivae.cells.labels`): a
        classifier on the latent learns them from the labelled cells alongside the ELBO; see :meth:`predict`.
    unlabeled_category
        The label value of unlabelled cells (missing values are unlabelled too); they train the ELBO only.
    classification_ratio
        Weight of the classification loss (scvi-tools' default, 50).

    Examples
    --------
    >>> model = scivae.CellVAE(adata, n_latent=10).fit(max_epochs=50)
    >>> adata.obsm["X_scivae"] = model.get_latent()
    """

    model_type = "cell"
    #: Labels of a semi-supervised model (``labels_key``), else ``None``.
    labels: LabelEncoder | None = None
    #: Set on a query model of :meth:`load_query_data` (its reference batches frozen), else ``None``.
    mapping: QueryMapping | None = None

    def __init__(
        self,
        adata: ad.AnnData | str,
        *,
        layer: str | None = None,
        batch_key: str | None = None,
        categorical_covariate_keys: Sequence[str] | None = None,
        continuous_covariate_keys: Sequence[str] | None = None,
        likelihood: str = "nb",
        dispersion: str = "gene",
        library: str = "observed",
        n_latent: int = 10,
        n_hidden: int = 128,
        n_layers: int = 1,
        dropout: float = 0.1,
        norm: str = "layer",
        encode_covariates: bool = False,
        n_top_genes: int | None = None,
        beta: float = 1.0,
        free_bits: float = 0.0,
        free_bits_groups: int | None = None,
        capacity: float | None = None,
        backed: bool = False,
        seed: int = 0,
        labels_key: str | None = None,
        unlabeled_category: str = "Unknown",
        classification_ratio: float = CLASSIFICATION_RATIO,
    ) -> None:
        if not backed and not isinstance(adata, ad.AnnData):
            raise ScivaeInputError(
                f"CellVAE needs an AnnData, got {type(adata).__name__}: read the file with scanpy/anndata first "
                "(or pass backed=True to stream an .h5ad path)"
            )
        for name, value in (("n_latent", n_latent), ("n_hidden", n_hidden), ("n_layers", n_layers)):
            positive_int(value, name)
        data, genes, encoder, _ = (prepare_backed if backed else prepare)(
            adata,
            layer=layer,
            batch_key=batch_key,
            categorical_covariate_keys=list(categorical_covariate_keys or ()),
            continuous_covariate_keys=list(continuous_covariate_keys or ()),
            n_top_genes=n_top_genes,
        )
        self.adata = adata
        self.layer = layer
        self.genes = genes
        self.encoder = encoder
        self.data = data
        self.data_summary = data.summary
        self.labels = attach_labels(data, adata, labels_key, unlabeled_category, backed)
        self.fit_result: FitResult | None = None
        lib_mean, lib_var = self._library_prior(data) if library == "latent" else (None, None)
        self.seed = int(seed)
        with seeded(self.seed):  # the initial weights depend on the seed only, not on the global RNG
            self.module = self._new_module(
                n_genes=len(genes),
                n_latent=n_latent,
                n_hidden=n_hidden,
                n_layers=n_layers,
                dropout=dropout,
                likelihood=likelihood,
                dispersion=dispersion,
                library=library,
                n_batches=encoder.n_batches,
                n_cats_per_covariate=encoder.n_cats_per_covariate,
                n_continuous=len(encoder.continuous_keys),
                norm=norm,
                encode_covariates=encode_covariates,
                library_log_mean=lib_mean,
                library_log_var=lib_var,
                kl_config=KLConfig(
                    beta=beta, free_bits=free_bits, free_bits_groups=free_bits_groups, capacity=capacity
                ),
                n_labels=self.labels.n_labels if self.labels is not None else 0,
                classification_ratio=classification_ratio,
            )
        self.module.eval()

    @staticmethod
    def _new_module(**config: Any) -> CellVAEModule:
        config.pop("seed", None)
        # the KL settings are saved under "kl" like every model's ("kl_config" in folders of scivae <= 0.1.0)
        kl = config.pop("kl", None) if "kl" in config else config.get("kl_config")
        config["kl_config"] = KLConfig(**kl) if isinstance(kl, dict) else kl
        config.setdefault("norm", "layer")  # models saved before the option existed used LayerNorm
        return CellVAEModule(**config)

    def _library_prior(self, data: CellData | BackedCellData) -> tuple[list[float], list[float]]:
        """Per-batch mean and variance of log total counts over the non-empty training cells."""
        if isinstance(data, BackedCellData):
            log_lib, covs = data.log_library, data.covariates  # from the streamed pass over the counts
        else:
            log_lib, covs = np.log(np.asarray(data.arrays["x"][data.nonempty].sum(1)).ravel()), data.arrays
        codes = covs["batch"][data.nonempty] if "batch" in covs else np.zeros(len(log_lib), int)
        means, variances = [], []
        for b in range(self.encoder.n_batches):
            v = log_lib[codes == b]
            means.append(float(v.mean()) if v.size else float(log_lib.mean()))
            variances.append(max(float(v.var()) if v.size > 1 else float(log_lib.var()), 1e-2))
        return means, variances

    # ------------------------------------------------------------------------------------------------------
    def __repr__(self) -> str:
        m = self.module
        return (
            f"CellVAE(n_genes={m.n_genes}, n_latent={m.n_latent}, likelihood={m.likelihood!r}, "
            f"dispersion={m.dispersion!r}, library={m.library!r}, n_batches={m.n_batches}, "
            f"trained={self.is_trained})"
        )

    #: Training defaults of a cell model: Adam with weight decay 1e-6 and eps 0.01 (as scvi-tools; chosen on
    #: validation cells, benchmarks/cells/RESULTS.md); ``max_epochs=None``: :func:`default_max_epochs`.
    TRAINING_DEFAULTS = TrainingOptions(weight_decay=1e-6, adam_eps=0.01)

    def fit(self, options: TrainingOptions | None = None, /, **changes: Any) -> CellVAE:
        """Train on the non-empty cells of the AnnData given at construction.

        Parameters
        ----------
        options
            Training options (:class:`~scivae.core.options.TrainingOptions`; default: :meth:`training_defaults`).
        **changes
            Changes to them as keywords (``max_epochs=50, batch_size=1024, accelerator="gpu"``...), and the run's
            own arguments (``checkpoint_dir``, ``resume_from``, ``callbacks``, ``log_dir``; see
            :func:`scivae.core.fit_module`). ``max_epochs=None`` uses :func:`default_max_epochs` of the number of
            cells; ``kl_warmup=None`` (with the linear schedule) a quarter of the run, but at most 10 epochs, so
            that most of the run trains on the true objective (early stopping and the choice of the best epoch
            only count epochs at the full KL weight). ``seed`` seeds the split, the shuffling and the dropout
            masks (default: the model's seed; the initial weights come from ``CellVAE(seed=)``).

        Returns
        -------
        CellVAE
            ``self``, trained; see :attr:`history` and ``fit_result.metrics``.
        """
        if getattr(self, "data", None) is None:
            raise ScivaeInputError("this model was loaded without data: load it with adata= to train it further")
        opts, run = self._options_and_run(options, changes)
        if self.mapping is not None:  # a query model: no weight decay on its frozen reference weights
            opts = self.mapping.check_options(opts)
        n = self.data.nonempty.size
        if opts.max_epochs is None:
            opts = opts.replace(max_epochs=default_max_epochs(n))
        seed = int(opts.seed)
        train, val = split_indices(n, opts.validation_fraction, seed)
        if opts.kl_warmup is None and opts.kl_schedule == "linear" and "kl_schedule" not in run:
            steps_per_epoch = max(1, -(-len(train) // opts.batch_size))
            total = steps_per_epoch * opts.max_epochs
            opts = opts.replace(kl_warmup=max(1, min(total // 4, MAX_DEFAULT_WARMUP_EPOCHS * steps_per_epoch)))
        if isinstance(self.data, BackedCellData):
            train_rows, val_rows = streaming_split(self.data, opts.validation_fraction, seed)
            datamodule = StreamingDataModule(self.data, train_rows, val_rows, batch_size=opts.batch_size, seed=seed)
            self._fit_datamodule(datamodule, opts, **run)
        else:
            self._fit_arrays(
                self.data.arrays,
                opts,
                train_indices=self.data.nonempty[train],
                validation_indices=self.data.nonempty[val],
                device_data=True,
                **run,
            )
        self.module.eval()
        assert self.fit_result is not None
        self.fit_result.metrics["max_epochs"] = int(opts.max_epochs)
        if opts.kl_warmup is not None:
            self.fit_result.metrics["kl_warmup_steps"] = int(opts.kl_warmup)
        return self

    # ------------------------------------------------------------------------------------------------------
    def _cell_data(self, adata: Any, layer: str | None = None) -> CellData | BackedCellData:
        if isinstance(adata, (CellData, BackedCellData)):  # already read (the methods with layer= pass it on)
            return adata
        if adata is None and layer is not None and layer != self.layer and getattr(self, "adata", None) is not None:
            adata = self.adata  # the training cells, read again from the layer asked for
        layer = self.layer if layer is None else layer
        if adata is None:
            if getattr(self, "data", None) is None:
                raise ScivaeInputError("this model was loaded without data: pass adata= (cells with the model's genes)")
            return self.data
        if isinstance(adata, (str, Path)) or (isinstance(adata, ad.AnnData) and adata.isbacked):
            return align_backed(adata, self.genes, self.encoder, layer)
        if not isinstance(adata, ad.AnnData):
            raise ScivaeInputError(f"adata must be an AnnData or an .h5ad path, got {type(adata).__name__}")
        if self.mapping is not None:  # a query model: reference genes missing from new cells are zero-padded
            adata, layer = self.mapping.pad(adata, self.genes, layer), None
        return align(adata, self.genes, self.encoder, layer)

    @staticmethod
    def _rows_of(data: CellData | BackedCellData) -> Any:
        """What :func:`scivae.core.iterate_batches` reads: the arrays, or the streamed data itself."""
        return data if isinstance(data, BackedCellData) else data.arrays

    def _data_arrays(self, data: Any) -> Any:
        # an .h5ad path or a backed AnnData is streamed chunk by chunk (get_latent, get_elbo, get_marginal_ll)
        return self._rows_of(self._cell_data(data))

    def _labelled_arrays(self, data: ad.AnnData | None) -> tuple[list[str], dict[str, Any]]:
        cells = self._cell_data(data)
        if isinstance(cells, BackedCellData):
            raise ScivaeInputError("this needs the cells in memory: pass an AnnData (or adata[cells].to_memory())")
        source = data if data is not None else self.adata
        labels = [str(n) for n in source.obs_names] if source is not None else [str(i) for i in range(cells.n_obs)]
        return labels, cells.arrays

    def _item_arrays(self, items: Sequence[Any], data: ad.AnnData | None = None) -> tuple[list[str], dict[str, Any]]:
        """Items are cells of ``data`` (default: the training AnnData), by ``obs`` name or by position."""
        labels, arrays = self._labelled_arrays(data)
        where = {name: i for i, name in enumerate(labels)}
        rows = []
        for item in items:
            if isinstance(item, (int, np.integer)) and not isinstance(item, bool):
                if not -len(labels) <= int(item) < len(labels):
                    raise ScivaeInputError(f"cell position {item} is out of range for {len(labels)} cells")
                rows.append(int(item) % len(labels))
            elif str(item) in where:
                rows.append(where[str(item)])
            else:
                raise ScivaeInputError(f"{item!r} is not a cell of the data: pass an obs name or a position")
        return [labels[r] for r in rows], select_rows(arrays, rows)

    def _conditioning(self, n: int, like: Mapping[str, Any] | None, batch: str | None) -> dict[str, np.ndarray]:
        """Covariate arrays for ``n`` decoded points: those of ``like``, else the reference (first) categories
        and the training mean of continuous covariates; ``batch`` overrides the batch of every point."""
        enc = self.encoder
        if like is not None:
            cond = {k: np.asarray(v) for k, v in like.items() if k in ("batch", "cat", "cont")}
        else:
            cond = {}
            if enc.batch_key is not None:
                cond["batch"] = np.zeros(n, dtype=np.int64)
            if enc.categorical_keys:
                cond["cat"] = np.zeros((n, len(enc.categorical_keys)), dtype=np.int64)
            if enc.continuous_keys:
                cond["cont"] = np.zeros((n, len(enc.continuous_keys)), dtype=np.float32)
        if batch is not None:
            if enc.batch_key is None:
                raise ScivaeInputError("batch= (transform_batch=) needs a model trained with batch_key")
            if str(batch) not in enc.batch_categories:
                raise ScivaeInputError(
                    f"batch {batch!r} is not a training batch: use one of {', '.join(enc.batch_categories[:10])}"
                )
            cond["batch"] = np.full(n, enc.batch_categories.index(str(batch)), dtype=np.int64)
        return cond

    @torch.no_grad()
    def decode(
        self,
        z: np.ndarray,
        *,
        like: Mapping[str, Any] | None = None,
        batch: str | None = None,
        library_size: float = 1e4,
        batch_size: int = 1024,
        seed: int | None = None,
    ) -> ad.AnnData:
        """Denoised expression at latent points: the decoded expression fractions times ``library_size``.

        Parameters
        ----------
        z
            Latent points, ``(n, n_latent)``.
        like
            Arrays of ``n`` cells whose covariates (batch...) the decoder uses; default: the first batch
            category (and categorical covariate), continuous covariates at their training mean.
        batch
            Decode every point as if from this batch category (batch correction).
        library_size
            Total count each point is scaled to.
        batch_size
            Points per forward pass.
        seed
            Unused (decoding is deterministic); accepted like every model's ``decode``.

        Returns
        -------
        anndata.AnnData
            ``n`` observations x the model's genes, ``X`` float32.
        """
        z = np.asarray(z, dtype=np.float32)
        if z.ndim != 2 or z.shape[1] != self.module.n_latent:
            raise ScivaeInputError(f"z must have shape (n, {self.module.n_latent}), got {z.shape}")
        arrays = {"z": z, **self._conditioning(len(z), like, batch)}
        device = self._ready()
        out = RowOutputs(len(z))
        for part in iterate_device_batches(arrays, batch_size, device):
            _, log_scale = self.module.decode(part.pop("z"), part)
            out.add(log_scale.exp() * library_size)
        expr = out.result()[0]
        return ad.AnnData(
            X=expr, obs=pd.DataFrame(index=[str(i) for i in range(len(expr))]), var=pd.DataFrame(index=self.genes)
        )

    # ------------------------------------------------------------------------------------------------------
    def _module_config(self) -> dict[str, Any]:
        m = self.module
        cfg: dict[str, Any] = {
            "n_genes": m.n_genes,
            "n_latent": m.n_latent,
            "n_hidden": m.n_hidden,
            "n_layers": m.n_layers,
            "dropout": m.dropout,
            "likelihood": m.likelihood,
            "dispersion": m.dispersion,
            "library": m.library,
            "n_batches": m.n_batches,
            "n_cats_per_covariate": list(m.n_cats_per_covariate),
            "n_continuous": m.n_continuous,
            "encode_covariates": m.encode_covariates,
            "norm": m.norm,
            "library_log_mean": None,
            "library_log_var": None,
            "kl": m.kl_config.to_dict(),
            "seed": self.seed,
        }
        if m.n_labels:  # only then: folders of models without labels keep their keys
            cfg["n_labels"], cfg["classification_ratio"] = m.n_labels, m.classification_ratio
        if m.library == "latent":
            cfg["library_log_mean"] = m.library_log_mean.tolist()
            cfg["library_log_var"] = m.library_log_var.tolist()
        return cfg

    def _adapter_state(self) -> dict[str, Any]:
        state: dict[str, Any] = {
            "genes": list(self.genes),
            "layer": self.layer,
            "covariates": self.encoder.to_dict(),
            "data_summary": self.data_summary,
        }
        if self.labels is not None:
            state["labels"] = self.labels.to_dict()
        if self.mapping is not None:
            state["reference_mapping"] = self.mapping.to_dict()
        if self.fit_result is not None:
            state["metrics"] = {
                k: v for k, v in self.fit_result.metrics.items() if isinstance(v, (int, float, bool, str))
            }
        return state

    @classmethod
    def _from_saved(
        cls, state_dict: dict[str, torch.Tensor], meta: dict[str, Any], adata: ad.AnnData | None = None
    ) -> CellVAE:
        state, config = meta["adapter_state"], meta["config"]
        _check_saved(config, state)
        check_saved_shapes(lambda: cls._new_module(**dict(config)), state_dict)
        model = cls.__new__(cls)
        model.seed = int(config.get("seed", 0))
        model.module = cls._new_module(**dict(config))
        model.module.load_state_dict(state_dict)
        model.module.eval()
        model.genes = list(state["genes"])
        model.layer = state.get("layer")
        model.encoder = CovariateEncoder.from_dict(state["covariates"])
        model.data_summary = state.get("data_summary", {})
        model.fit_result = None
        model.saved_metrics = state.get("metrics", {})
        model.adata = adata
        model.data = None
        restore_mapping(model, state)  # first: a query model zero-pads the genes of the cells attached
        if adata is not None:
            model.data = model._cell_data(adata)
        restore_labels(model, state, adata)
        return model

    @classmethod
    def load(cls, path, adata: ad.AnnData | None = None) -> CellVAE:  # type: ignore[override]
        """Load a model directory written by :meth:`save` (or a ``scivae fit`` output folder).

        Parameters
        ----------
        path
            The model directory, or the ``scivae fit`` output folder holding it in ``model/``.
        adata
            Optional cells to attach (as the default data of :meth:`get_latent` and friends).
        """
        return super().load(path, adata=adata)  # type: ignore[return-value]

    # -- labels and reference mapping (scivae.cells.labels, scivae.cells.mapping) ---------------------------
    def predict(
        self, adata: ad.AnnData | str | None = None, soft: bool = False, batch_size: int = 1024
    ) -> np.ndarray | pd.DataFrame:
        """Cell labels from the classifier of a model made with ``labels_key``, on the cells' posterior means.

        Parameters
        ----------
        adata
            Cells with the model's genes (default: the training cells; a query model's own cells for a query
            model), in memory or an ``.h5ad`` path.
        soft
            Return the probability of every label instead of the most probable one.
        batch_size
            Cells per forward pass.

        Returns
        -------
        numpy.ndarray or pandas.DataFrame
            One label per cell, in ``obs`` order (object array); with ``soft=True`` a DataFrame of probabilities,
            one column per label (the training categories), indexed by the ``obs`` names.
        """
        from scivae.cells.labels import predict

        return predict(self, adata, soft=soft, batch_size=batch_size)

    @classmethod
    def load_query_data(
        cls,
        query_adata: ad.AnnData,
        reference: CellVAE | str | Path,
        *,
        batch_key: str | None = None,
        layer: str | None = None,
    ) -> CellVAE:
        """A query model for reference mapping (scArches surgery): the reference plus the query's new batches.

        The query's batch categories that the reference lacks get new batch weights; every other weight (the
        encoder, the decoder, the dispersion, the label classifier, normalisation layers) stays frozen, so that
        ``fit`` on the query trains only the new batches' weights and reference cells keep their latent and
        labels (:mod:`scivae.cells.mapping`). Reference genes missing from the query are zero-padded (a
        ``UserWarning`` says how many); extra genes are dropped.

        Parameters
        ----------
        query_adata
            Query cells with raw counts and a batch column (in memory).
        reference
            A trained CellVAE with a batch key, or its model folder.
        batch_key
            ``obs`` column of the query's batch (default: the reference's batch key).
        layer
            Layer of the query holding the counts (default: the reference's).

        Returns
        -------
        CellVAE
            The query model, not trained yet: call ``fit`` (without weight decay, the query default), then
            ``get_latent`` and ``predict`` on query and reference cells alike.
        """
        from scivae.cells.mapping import load_query_data

        return load_query_data(cls, query_adata, reference, batch_key=batch_key, layer=layer)
