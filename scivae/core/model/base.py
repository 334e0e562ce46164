"""User-facing model base class: fitting, latent extraction, persistence and the hooks of :mod:`scivae.latent`.

Adapters register themselves: a subclass of :class:`BaseModel` with a ``model_type`` is registered when its
module is imported, and installed packages declare theirs as entry points of the group ``scivae.adapters``
(``model_type = "package.module:Class"``), so that :func:`load` imports only the adapter a model folder needs,
chosen from that fixed list: nothing named inside a model folder is ever imported.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any, ClassVar

import numpy as np
import pandas as pd
import scipy.sparse as sp
import torch

from scivae.core.data.arrays import ArrayDataModule, ArrayLike, RowOutputs, n_rows_of
from scivae.core.data.device import DeviceDataModule, iterate_device_batches
from scivae.core.distributed import is_global_zero
from scivae.core.model.persistence import (
    CONFIG_FILE,
    load_model_dir,
    load_prior_files,
    resolve_model_dir,
    save_model_dir,
)
from scivae.core.module.base import VAEModule
from scivae.core.module.prior import (
    PRIOR_CHOICES,
    FlowPrior,
    GaussianMixturePrior,
    LatentPrior,
    MidpointPrior,
    StandardNormalPrior,
    prior_from_state,
)
from scivae.core.options import TrainingOptions, check_seed, positive_int
from scivae.core.seeding import seeded
from scivae.core.train.fit import FitResult, fit_module, posterior_over
from scivae.errors import DivergenceError, ModelFormatError, ScivaeInputError

#: Arguments of a ``fit`` call that are not training options but belong to the run (see :func:`fit_module`).
RUN_ARGS = frozenset({"checkpoint_dir", "resume_from", "checkpoint_every_steps", "log_dir", "callbacks"})
#: Kinds of latent prior :meth:`BaseModel.fit_prior` fits.
PRIOR_KINDS = ("midpoints", "flow", "gmm")
#: Entry-point group through which installed packages declare their model classes.
ADAPTER_ENTRY_POINTS = "scivae.adapters"


def select_rows(arrays: Mapping[str, ArrayLike], index: Sequence[int] | np.ndarray) -> dict[str, ArrayLike]:
    """The same rows of every array, kept as arrays (numpy, scipy sparse or torch)."""
    idx = np.asarray(index, dtype=np.int64)
    return {k: (v.tocsr()[idx] if sp.issparse(v) else v[idx]) for k, v in arrays.items()}


def model_class(model_type: Any) -> type[BaseModel] | None:
    """The class registered for ``model_type``, importing it through its entry point if needed; else ``None``.

    Only the entry points that installed packages declare are consulted, so a tampered ``config.json`` cannot
    make scivae import a module of its choosing.
    """
    if not isinstance(model_type, str) or not model_type:
        return None
    if model_type not in BaseModel._registry:
        from importlib.metadata import entry_points

        for ep in entry_points(group=ADAPTER_ENTRY_POINTS):
            if ep.name == model_type:
                try:
                    ep.load()
                except ImportError as e:
                    raise ScivaeInputError(
                        f"{model_type!r} models need {e.name or 'a package'} which is not installed: "
                        "pip install 'scivae[all]'"
                    ) from None
                break
    return BaseModel._registry.get(model_type)


class BaseModel(ABC):
    """Base of every scivae model (count VAEs for cells, sequence VAEs for molecules, dense tables...).

    Subclasses own a :class:`VAEModule` in ``self.module`` (built under :func:`~scivae.core.seeding.seeded`
    with ``self.seed``), turn their domain data into row-aligned arrays and implement the persistence hooks.
    The latent toolkit (:mod:`scivae.latent`) needs only the hooks :meth:`_labelled_arrays`,
    :meth:`_item_arrays`, :meth:`decode` and, optionally, :meth:`_annotate_decoded`.

    Every model has the same API: ``fit(...)`` returns the model (the :class:`FitResult` stays in
    :attr:`fit_result`); :meth:`get_latent`, :meth:`get_elbo`, :meth:`get_marginal_ll` take the adapter's data
    (``None``: the training data) and a ``seed``; :meth:`save` and :meth:`load` read and write model folders.
    """

    model_type: ClassVar[str] = ""
    _registry: ClassVar[dict[str, type[BaseModel]]] = {}

    module: VAEModule
    fit_result: FitResult | None = None
    #: Seed of the initial weights, and of the fit unless ``fit(seed=...)`` says otherwise.
    seed: int = 0
    #: The latent prior fitted to the codes after training (:meth:`fit_prior`), or ``None``.
    learned_prior: LatentPrior | None = None
    #: Training rows and validation rows of the last fit (positions in the training data), for :meth:`fit_prior`.
    _fit_split: tuple[np.ndarray, np.ndarray] | None = None

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        if cls.model_type:
            BaseModel._registry[cls.model_type] = cls

    # -- persistence hooks -----------------------------------------------------------------------------
    @abstractmethod
    def _module_config(self) -> dict[str, Any]:
        """JSON-serialisable arguments that rebuild ``self.module``; the KL settings under ``"kl"``, the seed
        under ``"seed"``."""

    @abstractmethod
    def _adapter_state(self) -> dict[str, Any]:
        """JSON-serialisable domain state (vocabulary, gene names...)."""

    @classmethod
    @abstractmethod
    def _from_saved(cls, state_dict: dict[str, torch.Tensor], meta: dict[str, Any], **kwargs: Any) -> BaseModel:
        """Rebuild a model from :func:`load_model_dir`'s output."""

    # -- latent-toolkit hooks --------------------------------------------------------------------------
    @abstractmethod
    def _labelled_arrays(self, data: Any) -> tuple[list[str], dict[str, ArrayLike]]:
        """One label per item of ``data`` (``None``: the training data) and its row-aligned arrays.

        Raises :class:`ScivaeInputError` with the fix when ``data`` cannot be read by this model.
        """

    def _item_arrays(self, items: Sequence[Any], data: Any = None) -> tuple[list[str], dict[str, ArrayLike]]:
        """Labels and arrays of single items: by default the items are data themselves (SMILES, rows...)."""
        return self._labelled_arrays(list(items))

    def decode(self, z: np.ndarray, *, like: Mapping[str, ArrayLike] | None = None, **options: Any) -> Any:
        """Decode latent points ``(n, n_latent)`` into the domain: one row (or ``obs``) per point.

        ``like`` holds arrays of ``n`` items whose conditioning (batch, covariates) the decoder reuses; ``None``
        uses the adapter's reference conditioning.
        """
        raise NotImplementedError(f"{type(self).__name__} cannot decode latent points")

    def _annotate_decoded(
        self, decoded: Any, query_labels: list[str], query_arrays: Mapping[str, ArrayLike]
    ) -> dict[str, np.ndarray]:
        """Columns comparing each decoded row with the item it came from (rows aligned); none by default."""
        return {}

    def _ready(self, device: str | torch.device | None = None) -> torch.device:
        """Put the module in eval mode (on ``device`` if given) for inference and return its device."""
        if device is not None:
            self.module.to(device)
        self.module.eval()
        return self.device

    # -- properties ------------------------------------------------------------------------------------
    @property
    def device(self) -> torch.device:
        return next(self.module.parameters()).device

    @property
    def n_latent(self) -> int:
        return int(self.module.n_latent)

    @property
    def is_trained(self) -> bool:
        return self.fit_result is not None or getattr(self, "_loaded", False)

    @property
    def history(self) -> pd.DataFrame | None:
        """Per-epoch training history: of the last :meth:`fit`, else the one saved in the loaded model folder
        (``history.csv``), else ``None``."""
        return self.fit_result.history if self.fit_result is not None else getattr(self, "_saved_history", None)

    # -- training --------------------------------------------------------------------------------------
    #: This model class's training defaults (adapters override it); see :meth:`training_defaults`.
    TRAINING_DEFAULTS: ClassVar[TrainingOptions] = TrainingOptions(max_epochs=100)

    def training_defaults(self) -> TrainingOptions:
        """The options :meth:`fit` starts from: the class's defaults, seeded with the model's seed."""
        return self.TRAINING_DEFAULTS.replace(seed=self.seed)

    def training_options(self, options: TrainingOptions | None = None, **changes: Any) -> TrainingOptions:
        """The options a ``fit(options, **changes)`` call trains with: ``options`` (default:
        :meth:`training_defaults`) with ``changes``, and the model's seed where none is set."""
        if options is not None and not isinstance(options, TrainingOptions):
            raise ScivaeInputError(
                f"options must be a TrainingOptions, got {type(options).__name__}: pass training options as keywords"
            )
        opts = (options if options is not None else self.training_defaults()).replace(**changes)
        return opts if opts.seed is not None else opts.replace(seed=self.seed)

    def _options_and_run(
        self, options: TrainingOptions | None, changes: dict[str, Any]
    ) -> tuple[TrainingOptions, dict[str, Any]]:
        """Split a ``fit`` call's keywords into training options and the run's own arguments (:data:`RUN_ARGS`:
        checkpoints, callbacks, a ready-made :class:`~scivae.core.train.schedules.KLSchedule`)."""
        run = {k: changes.pop(k) for k in list(changes) if k in RUN_ARGS}
        schedule = changes.get("kl_schedule")
        if schedule is not None and not isinstance(schedule, str):
            run["kl_schedule"] = changes.pop("kl_schedule")
        return self.training_options(options, **changes), run

    def _fit_arrays(
        self,
        arrays: dict[str, ArrayLike],
        options: TrainingOptions,
        *,
        train_indices: np.ndarray | None = None,
        validation_indices: np.ndarray | None = None,
        group_by: str | None = None,
        device_data: bool = False,
        **run: Any,
    ) -> FitResult:
        """Train on row-aligned arrays; ``run`` goes to :func:`fit_module` (checkpoints, callbacks...)."""
        # device_data: batches gathered on the training device from arrays moved there once (DeviceDataModule)
        datamodule_cls = DeviceDataModule if device_data else ArrayDataModule
        datamodule = datamodule_cls(
            arrays,
            batch_size=options.batch_size,
            validation_fraction=options.validation_fraction,
            seed=int(options.seed if options.seed is not None else self.seed),
            train_indices=train_indices,
            validation_indices=validation_indices,
            group_by=group_by,
        )
        self._fit_split = (np.asarray(datamodule.train_indices), np.asarray(datamodule.validation_indices))
        return self._fit_datamodule(datamodule, options, **run)

    def _fit_datamodule(self, datamodule: Any, options: TrainingOptions, **run: Any) -> FitResult:
        """Train on any data module with ``train_indices``, ``validation_indices``, ``batch_size`` and
        ``validation_arrays()`` (:class:`ArrayDataModule`, or a streamed one)."""
        self.module.train()
        try:
            self.fit_result = fit_module(self.module, datamodule, options, **run)
        except DivergenceError as e:
            # the module holds the last good weights: keep the model usable (and savable) with what was learnt
            self.fit_result = e.fit_result
            raise
        finally:
            self.module.eval()
        return self.fit_result

    def _require_trained(self) -> None:
        if not self.is_trained:
            raise ScivaeInputError(f"this {type(self).__name__} is not trained yet: call .fit() first")

    # -- inference -------------------------------------------------------------------------------------
    def _data_arrays(self, data: Any) -> dict[str, ArrayLike]:
        return self._labelled_arrays(data)[1]

    @torch.no_grad()
    def _latent_from_arrays(
        self, arrays: Mapping[str, ArrayLike], give_mean: bool = True, batch_size: int = 1024
    ) -> np.ndarray:
        self._ready()
        out = RowOutputs(n_rows_of(arrays))
        for batch in iterate_device_batches(arrays, batch_size, self.device, log_factorial=False):
            post = self.module.inference(batch)
            out.add(post.mu if give_mean else post.rsample())
        return out.result()[0]

    @torch.no_grad()
    def _posterior_from_arrays(
        self, arrays: Mapping[str, ArrayLike], batch_size: int = 1024
    ) -> tuple[np.ndarray, np.ndarray]:
        self._ready()
        return posterior_over(self.module, arrays, batch_size)

    @torch.no_grad()
    def _per_obs(self, arrays: Mapping[str, ArrayLike], fn: str, batch_size: int = 1024, **kwargs: Any) -> np.ndarray:
        """Apply ``module.elbo`` or ``module.iwae`` batch-wise over all rows."""
        self._ready()
        method = getattr(self.module, fn)
        out = RowOutputs(n_rows_of(arrays))
        for batch in iterate_device_batches(arrays, batch_size, self.device):
            out.add(method(batch, **kwargs))
        return out.result()[0]

    def get_latent(
        self, data: Any = None, give_mean: bool = True, batch_size: int = 1024, seed: int | None = 0
    ) -> np.ndarray:
        """Latent representation of every item of ``data`` (``None``: the training data), in order.

        Parameters
        ----------
        data
            Items in the adapter's form: an AnnData (cells), SMILES strings (molecules), an array (dense).
        give_mean
            Posterior means (default) or one posterior sample per item.
        batch_size
            Items per forward pass.
        seed
            Seed of the sample when ``give_mean=False`` (``None``: the global random state).

        Returns
        -------
        numpy.ndarray
            ``(n_items, n_latent)`` float32.
        """
        self._require_trained()
        arrays = self._data_arrays(data)
        with seeded(seed):
            return self._latent_from_arrays(arrays, give_mean=give_mean, batch_size=batch_size)

    def get_posterior(self, data: Any = None, batch_size: int = 1024) -> tuple[np.ndarray, np.ndarray]:
        """Posterior means and log-variances of every item of ``data``, each ``(n_items, n_latent)``."""
        self._require_trained()
        return self._posterior_from_arrays(self._data_arrays(data), batch_size=batch_size)

    def _bound(self, data: Any, fn: str, n_samples: int, batch_size: int, seed: int | None) -> np.ndarray:
        self._require_trained()
        positive_int(n_samples, "n_samples")
        arrays = self._data_arrays(data)
        samples = {"n_samples": int(n_samples)} if fn == "elbo" else {"k": int(n_samples)}
        with seeded(seed):
            return self._per_obs(arrays, fn, batch_size=batch_size, **samples)

    def get_elbo(
        self, data: Any = None, n_samples: int = 1, batch_size: int = 1024, seed: int | None = 0
    ) -> np.ndarray:
        """Per-item evidence lower bound ``E_q[log p(x|z)] - KL`` in nats (higher: better explained).

        A low ELBO flags items the model explains badly (see :func:`scivae.latent.anomaly_scores`).
        ``n_samples`` Monte-Carlo samples of z per item; ``seed`` as in :meth:`get_latent`.
        """
        return self._bound(data, "elbo", n_samples, batch_size, seed)

    def get_marginal_ll(
        self, data: Any = None, n_samples: int = 100, batch_size: int = 256, seed: int | None = 0
    ) -> np.ndarray:
        """Per-item importance-sampled ``log p(x)`` (the IWAE bound with ``n_samples`` samples), in nats.

        At least the ELBO in expectation, and tighter as ``n_samples`` grows (Burda et al. 2016).
        """
        return self._bound(data, "iwae", n_samples, batch_size, seed)

    # -- the latent prior ------------------------------------------------------------------------------
    def get_prior(self, which: str | None = None) -> LatentPrior:
        """The density latent points are drawn from: ``"learned"`` (the one :meth:`fit_prior` fitted),
        ``"standard"`` (``N(0, I)``) or ``None`` (the learned prior when there is one, else the standard one)."""
        if which is not None and which not in PRIOR_CHOICES:
            raise ScivaeInputError(f"unknown prior {which!r}: use one of {', '.join(PRIOR_CHOICES)}")
        if which == "learned" and self.learned_prior is None:
            raise ScivaeInputError(
                f"this {type(self).__name__} has no learned prior: call .fit_prior() first, or use prior='standard'"
            )
        if which == "standard" or self.learned_prior is None:
            return StandardNormalPrior(self.n_latent)
        return self.learned_prior

    def _prior_codes(self, rows: np.ndarray | None) -> tuple[np.ndarray, np.ndarray]:
        arrays = self._data_arrays(None)
        if rows is not None:
            arrays = select_rows(arrays, rows)
        return self._posterior_from_arrays(arrays)

    def fit_prior(
        self,
        kind: str = "midpoints",
        *,
        codes: str = "mean",
        seed: int | None = None,
        n_kl_items: int = 1000,
        n_kl_samples: int = 4,
        **options: Any,
    ) -> BaseModel:
        """Fit a density to the latent codes of the training data (ex-post density estimation) and sample from it.

        A model trained with ``beta < 1`` keeps more of each item in its code, and its codes no longer fill
        ``N(0, I)``: points drawn from the standard normal fall between the items. The fitted density follows the
        aggregate posterior instead; :func:`scivae.latent.sample` and the model's ``sample`` use it by default.
        The decoder and encoder are unchanged.

        Parameters
        ----------
        kind
            ``"midpoints"`` (points between neighbouring training codes,
            :class:`~scivae.core.module.prior.MidpointPrior`; ``k``, ``t_low``, ``t_high``, ``noise`` in
            ``options``), ``"flow"`` (a RealNVP flow,
            :class:`~scivae.core.module.prior.FlowPrior`) or ``"gmm"`` (a Gaussian mixture,
            :class:`~scivae.core.module.prior.GaussianMixturePrior`; ``n_components`` in ``options``).
        codes
            For ``"flow"`` and ``"gmm"``: ``"mean"`` fits the posterior means, ``"sample"`` points drawn from each
            item's posterior (fresh every epoch for the flow), i.e. the aggregate posterior. The midpoint prior
            always keeps the means.
        seed
            Seed of the fit and of its draws (default: the model's).
        n_kl_items, n_kl_samples
            Validation items, and posterior samples of each, for the KL figures in :attr:`learned_prior`'s
            ``summary``.
        **options
            Passed to :meth:`FlowPrior.fit` or :meth:`GaussianMixturePrior.fit`.

        Returns
        -------
        The model, with :attr:`learned_prior` set. Its ``summary`` holds ``kl_validation_standard`` and
        ``kl_validation_learned``: the mean KL(q(z|x) || prior) over the fit's validation items (nats per item;
        the ELBO under the learned prior is higher by their difference), and the mean log-density of validation
        codes under each prior.
        """
        self._require_trained()
        if kind not in PRIOR_KINDS:
            raise ScivaeInputError(f"unknown prior kind {kind!r}: use one of {', '.join(PRIOR_KINDS)}")
        if codes not in ("sample", "mean"):
            raise ScivaeInputError(f"codes must be 'sample' or 'mean', got {codes!r}")
        if getattr(self, "_arrays", None) is None and self._fit_split is None:
            raise ScivaeInputError(f"a loaded {type(self).__name__} has no training data: fit the prior before saving")
        seed = self.seed if seed is None else check_seed(seed)
        train_rows, val_rows = self._fit_split if self._fit_split is not None else (None, None)
        mu, logvar = self._prior_codes(train_rows)
        sd = np.exp(0.5 * logvar)
        if val_rows is not None and len(val_rows) >= 2:
            vmu, vlogvar = self._prior_codes(val_rows)
        else:  # no validation rows: a tenth of the training codes is held out instead
            perm = np.random.default_rng(seed).permutation(len(mu))
            held = perm[: max(2, len(mu) // 10)]
            keep = perm[len(held) :]
            vmu, vlogvar, mu, sd = mu[held], logvar[held], mu[keep], sd[keep]
        vsd = np.exp(0.5 * vlogvar)
        use_sd = codes == "sample"
        if kind == "midpoints":
            prior: LatentPrior = MidpointPrior.fit(mu, sd, seed=seed, **options)
        elif kind == "flow":
            prior = FlowPrior.fit(
                mu, vmu, code_sd=sd if use_sd else None, validation_sd=vsd if use_sd else None, seed=seed, **options
            )
        else:
            rng = np.random.default_rng(seed)
            points = mu + sd * rng.standard_normal(mu.shape) if use_sd else mu
            prior = GaussianMixturePrior.fit(points, seed=seed, **options)
        prior.summary = {**prior.summary, "codes": codes, "n_codes": int(len(mu))}
        self._tune_prior(prior, seed=seed, given=frozenset(options))
        if len(vmu) > n_kl_items:
            some = np.sort(np.random.default_rng(seed).choice(len(vmu), n_kl_items, replace=False))
            vmu, vlogvar = vmu[some], vlogvar[some]
        prior.summary.update(_prior_kl_figures(prior, vmu, vlogvar, n_kl_samples, seed))
        self.learned_prior = prior
        return self

    def _tune_prior(self, prior: LatentPrior, *, seed: int, given: frozenset[str]) -> None:
        """Adapter hook: adjust a freshly fitted prior's sampling settings that ``given`` (the options the caller
        set) leaves open, e.g. by decoding samples; record what was chosen in ``prior.summary``. None here."""
        return None

    # -- persistence -----------------------------------------------------------------------------------
    def save(self, path: str | Path) -> Path:
        """Save the model directory (``model.safetensors`` + ``config.json``), replacing it atomically.

        In a distributed run only rank 0 writes; the other processes return the path without writing.
        """
        self._require_trained()
        if not is_global_zero():
            return Path(path)
        extra = {}
        if self.fit_result is not None and not self.fit_result.history.empty:
            extra["history.csv"] = self.fit_result.history.to_csv(index=False)
        return save_model_dir(
            path,
            self.module,
            model_type=self.model_type,
            config=self._module_config(),
            adapter_state=self._adapter_state(),
            extra_files=extra,
            prior=self.learned_prior.state() if self.learned_prior is not None else None,
        )

    @classmethod
    def load(cls, path: str | Path, **kwargs: Any) -> BaseModel:
        """Load a model directory (or the ``scivae fit`` folder holding it in ``model/``); on
        :class:`BaseModel` itself, dispatch on the saved model type."""
        state_dict, meta = load_model_dir(path, cls.model_type or None)
        target = model_class(meta.get("model_type"))
        if target is None:
            raise ModelFormatError(
                f"{path} holds an unknown model type {meta.get('model_type')!r}: no installed scivae adapter "
                "provides it; pass a scivae model folder"
            )
        try:
            model = target._from_saved(state_dict, meta, **kwargs)
            saved_prior = load_prior_files(path)
            prior = prior_from_state(*saved_prior) if saved_prior is not None else None
        except ScivaeInputError:
            raise
        except (TypeError, ValueError, KeyError, AttributeError, IndexError, RecursionError) as e:
            # a config.json of valid JSON whose values have the wrong type (null genes, a string for a size...)
            raise ModelFormatError(
                f"{resolve_model_dir(path) / CONFIG_FILE} holds values of the wrong type or shape ({type(e).__name__}: "
                f"{str(e).strip()[:100]}): the model directory was edited or damaged; re-fit"
            ) from None
        if prior is not None:
            if prior.n_latent != model.n_latent:
                raise ModelFormatError(
                    f"{path}: the saved prior has {prior.n_latent} latent dimensions, the model {model.n_latent}: "
                    "the folder mixes two models; re-fit the prior"
                )
            model.learned_prior = prior
        model._loaded = True
        history = resolve_model_dir(path) / "history.csv"  # written by save(): the curves stay drawable
        if history.is_file():
            try:
                model._saved_history = pd.read_csv(history)
            except ValueError as e:  # not UTF-8, unbalanced quotes, empty (found by fuzzing a model folder)
                raise ModelFormatError(
                    f"{history} cannot be read ({type(e).__name__}: {str(e).strip()[:100]}): the model directory "
                    "was edited or damaged; delete history.csv (only the training curves use it) or re-fit"
                ) from None
        model.module.eval()
        return model


@torch.no_grad()
def _prior_kl_figures(
    prior: LatentPrior, mu: np.ndarray, logvar: np.ndarray, n_samples: int, seed: int
) -> dict[str, float]:
    """Mean KL(q(z|x) || prior) of held-out posteriors under the standard normal (closed form) and under
    ``prior`` (Monte Carlo, ``n_samples`` draws per item), and the mean log-density of their means."""
    m, lv = torch.as_tensor(mu, dtype=torch.float32), torch.as_tensor(logvar, dtype=torch.float32)
    kl_standard = float((0.5 * (lv.exp() + m**2 - 1.0 - lv)).sum(-1).mean())
    g = torch.Generator().manual_seed(int(seed))
    total = 0.0
    for _ in range(max(1, int(n_samples))):
        eps = torch.randn(m.shape, generator=g)
        z = m + (0.5 * lv).exp() * eps
        log_q = (-0.5 * (np.log(2 * np.pi) + lv + eps**2)).sum(-1)
        total += float((log_q - prior.log_prob(z)).mean())
    standard = StandardNormalPrior(m.shape[1])
    return {
        "kl_validation_standard": round(kl_standard, 4),
        "kl_validation_learned": round(total / max(1, int(n_samples)), 4),
        "log_density_validation_means_standard": round(float(standard.log_prob(m).mean()), 4),
        "log_density_validation_means_learned": round(float(prior.log_prob(m).mean()), 4),
    }


def load(path: str | Path, **kwargs: Any) -> BaseModel:
    """Load any scivae model directory (cell, molecule or Gaussian model, or any installed adapter's)."""
    return BaseModel.load(path, **kwargs)
