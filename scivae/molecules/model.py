"""``scivae.MolVAE``: train a molecule VAE on SMILES, sample from the prior, move through latent space."""

from __future__ import annotations

import dataclasses
import os
import warnings
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import torch

from scivae import latent
from scivae.core import BaseModel, KLConfig, iterate_batches
from scivae.core.model.base import PRIOR_KINDS
from scivae.core.model.persistence import check_config_keys, check_saved_shapes
from scivae.core.options import TrainingOptions, positive_float, positive_int
from scivae.core.seeding import resolve_seed, seeded
from scivae.core.train.precision import cpu_native_bf16
from scivae.errors import OptionError, ScivaeInputError
from scivae.molecules.constraints import decoding_constraint
from scivae.molecules.data import (
    MAX_TOKENS_DEFAULT,
    MoleculeSet,
    canonicalize_many,
    check_enough_molecules,
    clean_smiles,
    read_smiles_file,
)
from scivae.molecules.module import MolVAEModule
from scivae.molecules.tokenizer import Vocabulary, check_alphabet, detokenize, tokenize, tokenize_many

#: Architecture presets. ``"cpu"`` is what a 2-core CPU trains to a useful latent space in 30 minutes (about
#: 365k parameters; a 32-dimensional latent beat 64 dimensions on validation molecules, see
#: benchmarks/molecules/RESULTS.md); ``"gpu"`` is the MOSES VAE's size (encoder GRU 256,
#: decoder 3 x GRU 512, 128 latent dimensions). ``"auto"`` picks ``"gpu"`` when CUDA is available.
ARCHITECTURES: dict[str, dict[str, Any]] = {
    "cpu": {
        "n_latent": 32,
        "embedding_dim": 32,
        "encoder_hidden": 128,
        "encoder_layers": 1,
        "bidirectional": False,
        "encoder_dropout": 0.0,
        "decoder_hidden": 256,
        "decoder_layers": 1,
        "decoder_dropout": 0.0,
        "word_dropout": 0.0,
    },
    "gpu": {
        "n_latent": 128,
        "embedding_dim": 64,
        "encoder_hidden": 256,
        "encoder_layers": 1,
        "bidirectional": False,
        "encoder_dropout": 0.0,
        "decoder_hidden": 512,
        "decoder_layers": 3,
        "decoder_dropout": 0.0,
        "word_dropout": 0.0,
    },
}
#: Saved models written before the presets existed hold the MOSES sizes.
ARCHITECTURE_DEFAULTS: dict[str, Any] = ARCHITECTURES["gpu"]
#: KL weight of the objective. A weight of 1 lets the autoregressive decoder ignore z (posterior collapse);
#: this value was chosen on validation molecules (benchmarks/molecules/latent_grid.py): lower weights rebuild
#: more held-out molecules but give fewer valid prior samples and a worse FCD, higher ones the reverse.
DEFAULT_BETA = 0.2
#: Training defaults (chosen with the same grid): Adam at 3e-3 with a cosine decay, linear KL warm-up.
DEFAULT_LR = 3e-3
DEFAULT_KL_WARMUP_STEPS = 1000
#: The latent prior ``MolVAE.fit`` fits after training (chosen on validation molecules by the FCD of its samples
#: among the settings whose samples are at least 90% novel: benchmarks/molecules/RESULTS.md).
DEFAULT_PRIOR = "midpoints"
#: Neighbour counts the midpoint prior tries, nearest first: fewer neighbours give samples closer to the training
#: molecules (a lower FCD), more give more novel ones. ``MolVAE.fit`` keeps the first whose samples are at least
#: ``PRIOR_MIN_NOVELTY`` novel.
PRIOR_K_CANDIDATES = (5, 10, 20, 40)
PRIOR_MIN_NOVELTY = 0.9
#: ``MolVAE.neighbors``: how far from a molecule's code to look, in units of its posterior standard deviation.
DEFAULT_NEIGHBOR_SCALE = 1.0


def default_precision(accelerator: str = "auto") -> str:
    """``"bf16-mixed"`` for training on a CPU with native bf16 matrix products, else ``"32-true"``.

    Under CPU autocast the GRUs' matrix products run in bf16 while their state and the loss stay in float32; on
    CPUs with AVX512-BF16 or AMX training steps are much faster and learn as much per step
    (benchmarks/molecules/RESULTS.md). On a GPU, and on CPUs without those instructions, training stays in
    float32 (TF32 matrix products on GPUs).
    """
    on_cpu = str(accelerator).lower() == "cpu" or (str(accelerator).lower() == "auto" and not torch.cuda.is_available())
    return "bf16-mixed" if on_cpu and cpu_native_bf16() else "32-true"


def prior_metrics(prior: Any) -> dict[str, Any]:
    """The figures of a fitted prior, as flat ``prior_*`` metrics of a fit report."""
    if prior is None:
        return {"prior": "standard"}
    out: dict[str, Any] = {"prior": prior.kind}
    for key, value in prior.summary.items():
        if isinstance(value, (int, float, str, bool)):
            out[f"prior_{key}"] = value
    return out


def resolve_architecture(architecture: str) -> str:
    """``"auto"`` -> ``"gpu"`` with CUDA, else ``"cpu"``; other names are checked."""
    name = str(architecture).lower()
    if name == "auto":
        return "gpu" if torch.cuda.is_available() else "cpu"
    if name not in ARCHITECTURES:
        raise ScivaeInputError(f"unknown architecture {architecture!r}: use 'auto', 'cpu' or 'gpu'")
    return name


def _resolve_device(device: str | torch.device | None) -> torch.device:
    if device is None or str(device) == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(device)


#: Most molecules one :meth:`MolVAE.sample` call draws: the latent points and the decoded strings are held in
#: memory together (a billion would ask for hundreds of GB before the first is decoded). ``scivae generate``
#: streams its output in chunks instead, so it has a higher limit.
MAX_SAMPLES = 1_000_000


def check_sample_count(n: Any) -> int:
    """``n`` as an int in [1, :data:`MAX_SAMPLES`], or :class:`~scivae.errors.OptionError`."""
    n = positive_int(n, "n")
    if n > MAX_SAMPLES:
        raise OptionError(
            f"{{n}}={n} is over the limit of {MAX_SAMPLES} molecules held in memory at once: call sample several "
            "times with other seeds and join the results, or let `scivae generate` stream them to a file",
            "n",
        )
    return n


def _as_list(smiles: str | Sequence[str]) -> list[str]:
    if isinstance(smiles, str):
        return [smiles]
    return list(smiles)


class MolVAE(BaseModel):
    """Variational autoencoder for molecules written as SMILES (or SELFIES) token sequences.

    Parameters
    ----------
    smiles
        Training molecules (SMILES strings, or a :class:`~scivae.molecules.data.MoleculeSet`). Each is
        canonicalised by RDKit; invalid and empty entries are dropped and counted (``self.data_summary``).
    alphabet
        ``"kekule"`` (the default: RDKit's canonical SMILES in Kekulé form, with explicit double bonds and no
        aromatic lower case, so no sample fails RDKit's kekulisation; valences can still be wrong),
        ``"smiles"`` (regex tokens of RDKit's canonical aromatic SMILES) or ``"selfies"`` (every decoded
        sequence is a valid molecule). Generated molecules are always returned as canonical SMILES.
    max_length
        Drop training molecules of more than this many SMILES tokens.
    architecture
        Size preset: ``"cpu"`` (latent 32, encoder GRU 128, decoder 1 x GRU 256: trains in minutes on a
        laptop), ``"gpu"`` (the MOSES VAE: latent 128, encoder GRU 256, decoder 3 x GRU 512) or ``"auto"``
        (``"gpu"`` when CUDA is available). Any size given below overrides the preset.
    n_latent, embedding_dim, encoder_hidden, encoder_layers, bidirectional, encoder_dropout
        Encoder and latent space, see :class:`~scivae.molecules.module.MolVAEModule` (``None``: the preset's).
    decoder_hidden, decoder_layers, decoder_dropout, word_dropout
        Decoder (``None``: the preset's).
    beta, free_bits, free_bits_groups, capacity
        Collapse controls, see :class:`~scivae.core.KLConfig`. The default ``beta`` is below 1 so that the
        latent carries the molecule (see :data:`DEFAULT_BETA`); the reported ELBO is always the true bound.
    seed
        Seeds the weight initialisation and, unless ``fit(seed=)`` gives another, the fit.

    Examples
    --------
    >>> vae = MolVAE(scivae.datasets.moses("train", n=5000), architecture="cpu").fit(max_epochs=10)  # doctest: +SKIP
    >>> vae.sample(100, seed=0)  # doctest: +SKIP
    """

    model_type = "molecule"
    #: Alphabet when none is given (see ``alphabet``).
    DEFAULT_ALPHABET = "kekule"

    def __init__(
        self,
        smiles: Sequence[str] | MoleculeSet,
        *,
        alphabet: str | None = None,
        max_length: int | None = None,
        architecture: str = "auto",
        n_latent: int | None = None,
        embedding_dim: int | None = None,
        encoder_hidden: int | None = None,
        encoder_layers: int | None = None,
        bidirectional: bool | None = None,
        encoder_dropout: float | None = None,
        decoder_hidden: int | None = None,
        decoder_layers: int | None = None,
        decoder_dropout: float | None = None,
        word_dropout: float | None = None,
        beta: float = DEFAULT_BETA,
        free_bits: float = 0.0,
        free_bits_groups: int | None = None,
        capacity: float | None = None,
        seed: int = 0,
    ) -> None:
        alphabet = check_alphabet(alphabet or self.DEFAULT_ALPHABET)
        if isinstance(smiles, (str, os.PathLike)):
            raise ScivaeInputError("MolVAE(...) takes a list of SMILES: use MolVAE.from_file(path) for a file")
        if isinstance(smiles, MoleculeSet):
            data = dataclasses.replace(smiles, smiles=list(smiles.smiles))
        else:
            data = clean_smiles(smiles, max_length=max_length)
        tokens, failed = tokenize_many(data.smiles, alphabet)
        if failed:
            keep = sorted(set(range(len(data.smiles))) - set(failed))
            data.smiles = [data.smiles[i] for i in keep]
            data.n_invalid += len(failed)
        if not tokens:
            raise ScivaeInputError(f"no molecule can be written in {alphabet}: use alphabet='smiles'")
        self.data = data
        self.data_summary = data.summary() + (f"; {len(failed)} not encodable as SELFIES" if failed else "")
        self.vocab = Vocabulary.build(tokens, alphabet)
        x, lengths = self.vocab.encode(tokens)
        self._arrays = {"x": x, "length": lengths}
        given = {
            "n_latent": n_latent,
            "embedding_dim": embedding_dim,
            "encoder_hidden": encoder_hidden,
            "encoder_layers": encoder_layers,
            "bidirectional": bidirectional,
            "encoder_dropout": encoder_dropout,
            "decoder_hidden": decoder_hidden,
            "decoder_layers": decoder_layers,
            "decoder_dropout": decoder_dropout,
            "word_dropout": word_dropout,
        }
        self.architecture = resolve_architecture(architecture)
        config = {k: (v if v is not None else ARCHITECTURES[self.architecture][k]) for k, v in given.items()}
        kl = KLConfig(beta=beta, free_bits=free_bits, free_bits_groups=free_bits_groups, capacity=capacity)
        self._build(config, kl, seed)

    def _build(self, config: dict[str, Any], kl: KLConfig, seed: int) -> None:
        for key in (
            "n_latent",
            "embedding_dim",
            "encoder_hidden",
            "decoder_hidden",
            "decoder_layers",
            "encoder_layers",
        ):
            positive_int(config[key], key)
        if not 0.0 <= float(config["word_dropout"]) < 1.0:
            raise OptionError(f"{{word_dropout}}={config['word_dropout']!r} is not in [0, 1)", "word_dropout")
        self._config = dict(config)
        self.seed = int(seed)
        with seeded(self.seed):
            self.module = MolVAEModule(len(self.vocab), **self._config, kl_config=kl)
        self.module.eval()

    @classmethod
    def from_file(
        cls,
        path: str | os.PathLike[str],
        *,
        column: str | None = None,
        max_length: int | None = None,
        **kwargs: Any,
    ) -> MolVAE:
        """Build a model from a ``.smi``/``.txt``/``.csv``/``.csv.gz`` file (see :func:`read_smiles_file`)."""
        return cls(read_smiles_file(path, column=column, max_length=max_length), **kwargs)

    # -- properties ------------------------------------------------------------------------------------
    @property
    def alphabet(self) -> str:
        return self.vocab.alphabet

    @property
    def training_smiles(self) -> list[str]:
        """Canonical SMILES of the training molecules (empty for a loaded model)."""
        data = getattr(self, "data", None)
        return list(data.smiles) if data is not None else []

    def __repr__(self) -> str:
        c = self._config
        n = len(self.training_smiles)
        return (
            f"MolVAE(alphabet={self.alphabet!r}, vocab={len(self.vocab)}, n_latent={c['n_latent']}, "
            f"encoder={c['encoder_hidden']}x{c['encoder_layers']}{' bi' if c['bidirectional'] else ''}, "
            f"decoder={c['decoder_hidden']}x{c['decoder_layers']}, trained={self.is_trained}"
            + (f", n_train={n}" if n else "")
            + ")"
        )

    # -- training --------------------------------------------------------------------------------------
    #: Training defaults of a molecule model (chosen on validation molecules, benchmarks/molecules/RESULTS.md):
    #: Adam at 3e-3 with a cosine decay, 5% of the molecules held out; the precision follows the device
    #: (:func:`default_precision`) and the linear KL warm-up lasts 1,000 steps or a quarter of the planned run.
    TRAINING_DEFAULTS = TrainingOptions(max_epochs=50, validation_fraction=0.05, lr=DEFAULT_LR, lr_schedule="cosine")

    def fit(
        self, options: TrainingOptions | None = None, /, *, prior: str | None = DEFAULT_PRIOR, **changes: Any
    ) -> MolVAE:
        """Train on the molecules given at construction; returns the model (history in :attr:`fit_result`).

        Parameters
        ----------
        options
            Training options (:class:`~scivae.core.options.TrainingOptions`; default: :meth:`training_defaults`).
            ``max_time`` (minutes) stops the fit in time, and the cosine learning rate then reaches 0 when it is
            spent: the number of epochs then depends on the machine's speed; for a run that repeats exactly,
            leave it out and set ``max_epochs``.
        prior
            The latent prior fitted to the training codes after training, which :meth:`sample` then draws from
            (see :meth:`~scivae.core.BaseModel.fit_prior`): ``"midpoints"`` (default), ``"flow"``, ``"gmm"``, or
            ``None`` to keep ``N(0, I)``. Its figures go into ``fit_result.metrics`` (``prior_*``).
        **changes
            Changes to the training options as keywords (``max_time=10, batch_size=256``...), and the run's own
            arguments (``checkpoint_dir``, ``resume_from``, ``callbacks``...; see :func:`~scivae.core.fit_module`).
        """
        if getattr(self, "_arrays", None) is None:
            raise ScivaeInputError("a loaded MolVAE has no training data: build a new MolVAE(smiles) to train")
        check_enough_molecules(len(self._arrays["x"]), self.data.source)
        if prior is not None and prior not in PRIOR_KINDS:
            raise OptionError(
                f"{{prior}}={prior!r} is unknown: use one of {', '.join(PRIOR_KINDS)}, or standard for N(0, I)", "prior"
            )
        opts, run = self._options_and_run(options, changes)
        if opts.precision is None:
            opts = opts.replace(precision=default_precision(opts.accelerator))
        if opts.kl_warmup is None and opts.kl_schedule == "linear" and "kl_schedule" not in run:
            n_train = round(len(self._arrays["x"]) * (1 - opts.validation_fraction))
            planned = -(-n_train // opts.batch_size) * int(opts.max_epochs)
            opts = opts.replace(kl_warmup=max(1, min(DEFAULT_KL_WARMUP_STEPS, planned // 4)))
        # batches of similar length: much less padding, so faster steps on the CPU
        self._fit_arrays(self._arrays, opts, group_by="length", **run)
        self.module.eval()
        self.learned_prior = None
        if prior is not None and self.fit_result is not None and self.fit_result.is_global_zero:
            self.fit_prior(prior)
            self.fit_result.metrics.update(prior_metrics(self.learned_prior))
        return self

    def _inference_device(self, device: str | torch.device | None) -> torch.device:
        """``device`` if given; else the training device of a model fitted here, else a GPU when there is one."""
        if (device is None or str(device) == "auto") and self.fit_result is not None:
            return self.device  # fit_module leaves the module on the device it trained on
        return _resolve_device(device)

    def _tune_prior(self, prior: Any, *, seed: int, given: frozenset[str], n_check: int = 2000) -> None:
        """Midpoint prior without a given ``k``: the first of :data:`PRIOR_K_CANDIDATES` whose ``n_check``
        samples (greedy, syntax mask) are at least :data:`PRIOR_MIN_NOVELTY` novel, i.e. distinct valid molecules
        that are not training molecules; the largest when none is. ``prior.summary["novelty_by_k"]`` keeps them."""
        if prior.kind != "midpoints" or "k" in given:
            return
        train = set(self.training_smiles)
        tried: dict[str, float] = {}
        for k in PRIOR_K_CANDIDATES:
            prior.set_k(k)
            z = prior.sample(n_check, torch.Generator().manual_seed(int(seed))).numpy()
            decoded = self.decode(z, greedy=True, seed=seed)
            distinct = set(decoded.loc[decoded["valid"], "smiles"])
            tried[str(k)] = round(len(distinct - train) / max(len(distinct), 1), 4)
            if tried[str(k)] >= PRIOR_MIN_NOVELTY:
                break
        prior.summary["novelty_by_k"] = tried
        prior.summary["k"] = prior.k

    # -- encoding ----------------------------------------------------------------------------------------
    def _arrays_for(self, smiles: str | Sequence[str]) -> tuple[list[str], dict[str, np.ndarray]]:
        raw = _as_list(smiles)
        if not raw:
            raise ScivaeInputError("no molecules given: pass at least one SMILES string")
        canon = canonicalize_many(raw)
        for s, c in zip(raw, canon, strict=True):
            if c is None:
                raise ScivaeInputError(f"{s!r} is not a valid SMILES: fix or remove it")
        canon_s = [c for c in canon if c is not None]
        tokens = [tokenize(c, self.alphabet) for c in canon_s]
        for s, t in zip(canon_s, tokens, strict=True):
            if len(t) > MAX_TOKENS_DEFAULT:
                raise ScivaeInputError(
                    f"a molecule of {len(t)} tokens ({s[:40]}...) is over the {MAX_TOKENS_DEFAULT}-token limit: "
                    "pass drug-sized molecules"
                )
        x, lengths = self.vocab.encode(tokens, smiles=canon_s)
        return canon_s, {"x": x, "length": lengths}

    def _labelled_arrays(self, data: str | Sequence[str] | None) -> tuple[list[str], dict[str, np.ndarray]]:
        if data is None:
            if getattr(self, "_arrays", None) is None:
                raise ScivaeInputError("a loaded MolVAE has no training molecules: pass SMILES")
            return self.training_smiles, self._arrays
        return self._arrays_for(data)

    def _ready(self, device: str | torch.device | None = None) -> torch.device:
        """Inference runs on ``device``; by default where the model was trained, else the GPU when there is one."""
        return super()._ready(self._inference_device(device))

    def encode(self, smiles: str | Sequence[str], give_mean: bool = True, seed: int | None = 0) -> np.ndarray:
        """Latent posterior means (or samples) of molecules, shape ``(n, n_latent)`` (see :meth:`get_latent`).

        Raises
        ------
        ScivaeInputError
            Invalid SMILES, or a token the model has never seen (the message names it).
        """
        return self.get_latent(smiles, give_mean=give_mean, seed=seed)

    def elbo(self, smiles: str | Sequence[str], n_samples: int = 1, seed: int | None = 0) -> np.ndarray:
        """Per-molecule ELBO (nats, higher is more likely under the model); see :meth:`get_elbo`."""
        return self.get_elbo(smiles, n_samples=n_samples, seed=seed)

    def marginal_log_likelihood(
        self, smiles: str | Sequence[str], n_samples: int = 100, seed: int | None = 0
    ) -> np.ndarray:
        """Per-molecule importance-sampled log p(x) (IWAE bound with ``n_samples`` samples)."""
        return self.get_marginal_ll(smiles, n_samples=n_samples, seed=seed)

    # -- decoding --------------------------------------------------------------------------------------
    def _tokens_to_smiles(self, ids: np.ndarray) -> list[str]:
        return [detokenize(self.vocab.decode(row), self.alphabet) for row in ids]

    def _finish(self, raw: list[str], extra: dict[str, Any] | None = None) -> pd.DataFrame:
        canon = canonicalize_many(raw)
        frame = {
            "smiles": [c if c is not None else r for r, c in zip(raw, canon, strict=True)],
            "valid": [c is not None for c in canon],
        }
        frame.update(extra or {})
        return pd.DataFrame(frame)

    @torch.no_grad()
    def decode(
        self,
        z: np.ndarray | torch.Tensor,
        *,
        like: Mapping[str, Any] | None = None,
        temperature: float = 1.0,
        greedy: bool = True,
        seed: int | None = None,
        batch_size: int = 1024,
        max_tokens: int | None = None,
        device: str | torch.device | None = None,
        syntax: bool = True,
    ) -> pd.DataFrame:
        """Decode latent vectors ``(n, n_latent)`` into molecules.

        ``syntax`` (SMILES models) masks the tokens that would break SMILES syntax (a ``)`` with no open
        branch, ``<eos>`` with an open ring bond...; see :class:`~scivae.molecules.constraints.SmilesSyntax`);
        ``syntax=False`` samples the model's raw token distribution. SELFIES models never emit an empty
        molecule either way. ``like`` is accepted like every model's ``decode`` and unused (molecules have no
        covariates).

        Returns
        -------
        pandas.DataFrame
            ``smiles`` (canonical SMILES when valid, else the decoded string) and ``valid`` (RDKit parses it).
        """
        self._require_trained()
        positive_float(temperature, "temperature")
        positive_int(batch_size, "batch_size")
        z = torch.as_tensor(np.asarray(z, dtype=np.float32) if not isinstance(z, torch.Tensor) else z).float()
        if z.ndim != 2 or z.shape[1] != self.n_latent:
            raise ScivaeInputError(f"z must have shape (n, {self.n_latent}), got {tuple(z.shape)}")
        dev = self._ready(device)
        limit = int(max_tokens) if max_tokens is not None else self.vocab.max_tokens
        generator = torch.Generator(device=dev).manual_seed(resolve_seed(seed))
        constraint = decoding_constraint(self.vocab, syntax=syntax)
        raw: list[str] = []
        for start in range(0, z.shape[0], batch_size):
            zb = z[start : start + batch_size].to(dev)
            ids = self.module.decode(
                zb, limit, temperature=temperature, greedy=greedy, generator=generator, constraint=constraint
            )
            raw.extend(self._tokens_to_smiles(ids.cpu().numpy()))
        return self._finish(raw)

    def _annotate_decoded(
        self, decoded: pd.DataFrame, query_labels: list[str], query_arrays: Mapping[str, Any]
    ) -> dict[str, np.ndarray]:
        """``similarity`` (Tanimoto to the query, Morgan radius 2; NaN when invalid) and ``same`` (the decoded
        molecule is the query itself)."""
        from scivae.molecules.metrics import tanimoto_to

        smiles = decoded["smiles"].where(decoded["valid"], "").tolist()
        queries = np.asarray(query_labels, dtype=object)
        similarity = np.full(len(smiles), np.nan)
        for query in dict.fromkeys(query_labels):
            rows = np.flatnonzero(queries == query)
            similarity[rows] = tanimoto_to(query, [smiles[i] for i in rows])
        return {"similarity": similarity, "same": decoded["smiles"].to_numpy() == queries}

    def sample(
        self,
        n: int,
        temperature: float = 1.0,
        greedy: bool = True,
        batch_size: int = 1024,
        seed: int | None = None,
        device: str | torch.device | None = None,
        syntax: bool = True,
        prior: str | None = None,
    ) -> pd.DataFrame:
        """Sample ``n`` molecules: draw ``z`` from the prior, then decode token by token (:func:`scivae.latent.sample`).

        The latent carries the molecule, so by default each ``z`` is decoded greedily (the most likely token at
        each step) and the diversity comes from ``z``: on validation molecules this gave more valid samples and a
        lower FCD than sampling the tokens, with the same uniqueness (benchmarks/molecules/RESULTS.md).

        Parameters
        ----------
        n
            Number of molecules, at most :data:`MAX_SAMPLES` (all are held in memory; ``scivae generate`` streams
            more to a file, and equals this call for up to one of its chunks, see its help).
        temperature
            Softmax temperature of the token sampling when ``greedy=False`` (< 1: more conservative).
        greedy
            Decode each ``z`` greedily (default); ``False`` samples every token at ``temperature`` (as MOSES
            samples its models).
        batch_size
            Molecules decoded at once.
        seed
            Seed of ``z`` and of the token sampling: the same seed gives the same molecules on one device.
        device
            ``"auto"`` (default: the GPU when there is one), ``"cpu"`` or ``"cuda"``.
        syntax
            SMILES models: never emit a token that breaks SMILES syntax (unbalanced branches, unpaired ring
            bonds), see :meth:`decode`. ``False`` gives the model's raw samples (as MOSES samples its models).
        prior
            ``None`` (default): the prior fitted after training (:attr:`learned_prior`) when the model has one,
            else ``N(0, I)``; ``"learned"`` or ``"standard"`` (``N(0, I)``) choose.

        Returns
        -------
        pandas.DataFrame
            One row per sample, invalid strings included: ``smiles`` (canonical when valid, else the decoded
            string) and ``valid``.
        """
        check_sample_count(n)
        return latent.sample(
            self,
            n,
            seed=seed,
            prior=prior,
            temperature=temperature,
            greedy=greedy,
            batch_size=batch_size,
            device=device,
            syntax=syntax,
        )

    def interpolate(
        self,
        a: str,
        b: str,
        steps: int = 10,
        method: str = "slerp",
        greedy: bool = True,
        temperature: float = 1.0,
        seed: int | None = 0,
    ) -> pd.DataFrame:
        """Decode molecules along a path between the latent means of ``a`` and ``b`` (see
        :func:`scivae.latent.interpolate`).

        Parameters
        ----------
        a, b
            End-point molecules (SMILES).
        steps
            Number of points on the path, end points included (>= 2).
        method
            ``"slerp"`` (spherical, keeps the norm typical of the prior) or ``"linear"``.
        greedy
            Greedy decoding (deterministic); otherwise sample with ``temperature`` and ``seed``.

        Returns
        -------
        pandas.DataFrame
            ``t`` (0 to 1), ``smiles``, ``valid``, ``similarity_a`` and ``similarity_b`` (Tanimoto to each end
            molecule, Morgan radius 2; NaN when invalid), ``same_as_a`` and ``same_as_b``. A
            :class:`UserWarning` says when an end point does not decode to its own molecule: the path then starts
            or ends elsewhere (small or unusual molecules are often far from the training data).
        """
        from scivae.molecules.metrics import tanimoto_to

        path = latent.interpolate(
            self, a, b, steps=steps, method=method, greedy=greedy, temperature=temperature, seed=seed
        )
        ends = self._arrays_for([a, b])[0]  # canonical SMILES of the two end molecules
        decoded = path["smiles"].where(path["valid"], "").tolist()
        for name, end in zip(("a", "b"), ends, strict=True):
            path[f"similarity_{name}"] = tanimoto_to(end, decoded)
            path[f"same_as_{name}"] = path["smiles"].to_numpy() == end
        for name, end, row in (("a", ends[0], 0), ("b", ends[-1], len(path) - 1)):
            if not path[f"same_as_{name}"].iloc[row]:
                warnings.warn(
                    f"end point {name} ({end}) does not reconstruct: its code decodes to {path['smiles'].iloc[row]} "
                    f"(Tanimoto {path[f'similarity_{name}'].iloc[row]:.2f}), so the path does not start from it; "
                    "check model.reconstruct([...]) first",
                    UserWarning,
                    stacklevel=2,
                )
        return path

    def neighbors(
        self,
        smiles: str,
        n: int = 10,
        scale: float = DEFAULT_NEIGHBOR_SCALE,
        greedy: bool = True,
        temperature: float = 1.0,
        seed: int | None = None,
    ) -> pd.DataFrame:
        """Molecules decoded from ``n`` latent points around one molecule: ``z = mu + scale * sigma * eps``
        (:func:`scivae.latent.sample_around`).

        ``mu`` and ``sigma`` are the molecule's posterior mean and standard deviation, so ``scale`` is in units
        of the encoder's own uncertainty: at 1 the points are codes the encoder could have given this very
        molecule; larger values reach further out.

        Returns
        -------
        pandas.DataFrame
            ``smiles``, ``valid``, ``distance`` (latent distance of the point from ``mu``), ``log_likelihood``
            (log p(query | z), nats), ``similarity`` (Tanimoto similarity to the query, Morgan radius 2, NaN
            when invalid) and ``same`` (the decoded molecule is the query itself).
        """
        out = latent.sample_around(self, smiles, n, scale=scale, seed=seed, greedy=greedy, temperature=temperature)
        n_same = int(out["same"].sum())
        if n_same:
            warnings.warn(
                f"{n_same} of {len(out)} points decode to the query itself (column 'same'): leave them out when "
                "measuring the neighbourhood, or raise scale to look further",
                UserWarning,
                stacklevel=2,
            )
        return out

    def reconstruct(self, smiles: str | Sequence[str], *, syntax: bool = True, batch_size: int = 1024) -> pd.DataFrame:
        """Encode molecules to their posterior means and decode them greedily (:func:`scivae.latent.reconstruct`).

        Returns
        -------
        pandas.DataFrame
            ``input`` (canonical SMILES of the query), ``smiles`` (decoded, canonical when valid), ``valid``,
            ``log_likelihood`` (log p(input | mu), nats), ``similarity`` (Tanimoto to the input) and ``same``
            (the decoded molecule is the input: the reconstruction accuracy is ``same.mean()``).
        """
        return latent.reconstruct(self, _as_list(smiles), greedy=True, syntax=syntax, batch_size=batch_size)

    @torch.no_grad()
    def token_accuracy(self, smiles: str | Sequence[str]) -> float:
        """Fraction of tokens predicted right from the posterior mean, given the right prefix (teacher forcing)."""
        self._require_trained()
        _, arrays = self._arrays_for(smiles)
        self._ready()
        right, total = 0.0, 0
        for batch in iterate_batches(arrays, 1024, self.device):
            acc = self.module.reconstruction_accuracy(batch, self.module.inference(batch))["token_accuracy"]
            right += float((acc * batch["length"]).sum())
            total += int(batch["length"].sum())
        return right / max(total, 1)

    # -- persistence -----------------------------------------------------------------------------------
    def _module_config(self) -> dict[str, Any]:
        return {
            **self._config,
            "architecture": self.architecture,
            "kl": self.module.kl_config.to_dict(),
            "seed": self.seed,
        }

    def _adapter_state(self) -> dict[str, Any]:
        state: dict[str, Any] = {"vocabulary": self.vocab.to_dict()}
        if getattr(self, "data", None) is not None:
            d = self.data
            state["training_data"] = {
                "n_molecules": len(d.smiles),
                "n_input": d.n_input,
                "n_invalid": d.n_invalid,
                "n_empty": d.n_empty,
                "n_too_long": d.n_too_long,
                "source": d.source,
            }
        return state

    @classmethod
    def _from_saved(cls, state_dict: dict[str, torch.Tensor], meta: dict[str, Any], **kwargs: Any) -> MolVAE:
        cfg = dict(meta["config"])
        check_config_keys(cfg, {*ARCHITECTURE_DEFAULTS, "architecture", "kl", "seed"})
        check_config_keys(cfg.get("kl", {}), {f.name for f in dataclasses.fields(KLConfig)}, "kl")
        check_config_keys(meta["adapter_state"], {"vocabulary", "training_data"}, "adapter_state")
        kl = KLConfig(**cfg.pop("kl"))
        seed = int(cfg.pop("seed", 0))
        model = cls.__new__(cls)
        model.architecture = str(cfg.pop("architecture", "gpu"))
        model.vocab = Vocabulary.from_dict(meta["adapter_state"]["vocabulary"])
        model.data = None
        model._arrays = None
        model.data_summary = ""
        config = {k: cfg.get(k, v) for k, v in ARCHITECTURE_DEFAULTS.items()}
        check_saved_shapes(lambda: MolVAEModule(len(model.vocab), **config, kl_config=kl), state_dict)
        model._build(config, kl, seed)
        try:
            model.module.load_state_dict(state_dict)
        except RuntimeError as exc:
            raise ScivaeInputError(
                f"the weights do not match the saved configuration ({str(exc).splitlines()[0]}): re-save the model"
            ) from None
        return model

    def save(self, path: str | Path) -> Path:
        """Save to a model directory (``model.safetensors`` + ``config.json`` with the vocabulary)."""
        return super().save(path)

    @classmethod
    def load(cls, path: str | Path, **kwargs: Any) -> MolVAE:
        """Load a model directory written by :meth:`save`."""
        model = super().load(path, **kwargs)
        if not isinstance(model, MolVAE):
            raise ScivaeInputError(
                f"{path} holds a {type(model).__name__}, not a molecule model: pass a MolVAE directory"
            )
        return model
