"""``scivae.MolVAE``: train a molecule VAE on SMILES, sample from the prior, move through latent space."""

from __future__ import annotations

import dataclasses
import math
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import torch

from scivae.core import BaseModel, FitResult, KLConfig
from scivae.core.persistence import check_config_keys, check_saved_shapes
from scivae.errors import ScivaeInputError
from scivae.molecules.constraints import decoding_constraint
from scivae.molecules.io import (
    MAX_TOKENS_DEFAULT,
    MoleculeSet,
    canonicalize_many,
    clean_smiles,
    read_smiles_file,
)
from scivae.molecules.model import MolVAEModule
from scivae.molecules.tokenizer import Vocabulary, check_alphabet, detokenize, tokenize, tokenize_many

#: Architecture defaults: the MOSES VAE (encoder GRU 256, decoder 3 x GRU 512, 128 latent dimensions).
ARCHITECTURE_DEFAULTS: dict[str, Any] = {
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
}


def _resolve_device(device: str | torch.device | None) -> torch.device:
    if device is None or str(device) == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(device)


def _as_list(smiles: str | Sequence[str]) -> list[str]:
    if isinstance(smiles, str):
        return [smiles]
    return list(smiles)


class MolVAE(BaseModel):
    """Variational autoencoder for molecules written as SMILES (or SELFIES) token sequences.

    Parameters
    ----------
    smiles
        Training molecules (SMILES strings, or a :class:`~scivae.molecules.io.MoleculeSet`). Each is
        canonicalised by RDKit; invalid and empty entries are dropped and counted (``self.data_summary``).
    alphabet
        ``"smiles"`` (regex tokens of RDKit's canonical SMILES), ``"kekule"`` (the same in Kekulé form:
        explicit double bonds, no aromatic lower case, so no sample fails RDKit's kekulisation; valences can
        still be wrong) or ``"selfies"`` (every decoded sequence is a valid molecule). Generated molecules are
        always returned as canonical SMILES.
    max_length
        Drop training molecules of more than this many SMILES tokens.
    n_latent, embedding_dim, encoder_hidden, encoder_layers, bidirectional, encoder_dropout
        Encoder and latent space, see :class:`~scivae.molecules.model.MolVAEModule`.
    decoder_hidden, decoder_layers, decoder_dropout, word_dropout
        Decoder.
    beta, free_bits, free_bits_groups, capacity
        Collapse controls, see :class:`~scivae.core.KLConfig`.
    seed
        Seeds the weight initialisation.

    Examples
    --------
    >>> vae = MolVAE(scivae.datasets.moses("train", n=5000), decoder_layers=1)  # doctest: +SKIP
    >>> vae.fit(max_epochs=10)  # doctest: +SKIP
    >>> vae.sample(100, seed=0)  # doctest: +SKIP
    """

    model_type = "molecule"

    def __init__(
        self,
        smiles: Sequence[str] | MoleculeSet,
        *,
        alphabet: str = "smiles",
        max_length: int | None = None,
        n_latent: int = 128,
        embedding_dim: int = 64,
        encoder_hidden: int = 256,
        encoder_layers: int = 1,
        bidirectional: bool = False,
        encoder_dropout: float = 0.0,
        decoder_hidden: int = 512,
        decoder_layers: int = 3,
        decoder_dropout: float = 0.0,
        word_dropout: float = 0.0,
        beta: float = 1.0,
        free_bits: float = 0.0,
        free_bits_groups: int | None = None,
        capacity: float | None = None,
        seed: int = 0,
    ) -> None:
        alphabet = check_alphabet(alphabet)
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
        config = {
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
            if int(config[key]) < 1:
                raise ScivaeInputError(f"{key} must be >= 1, got {config[key]}")
        if not 0.0 <= float(config["word_dropout"]) < 1.0:
            raise ScivaeInputError(f"word_dropout must be in [0, 1), got {config['word_dropout']}")
        self._config = dict(config)
        self._kl = kl
        self.seed = seed
        torch.manual_seed(seed)
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
    def n_latent(self) -> int:
        return int(self._config["n_latent"])

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
    def fit(
        self,
        max_epochs: int = 50,
        batch_size: int = 256,
        validation_fraction: float = 0.1,
        **kwargs: Any,
    ) -> FitResult:
        """Train on the molecules given at construction.

        Parameters
        ----------
        max_epochs
            Upper bound on epochs (early stopping on the validation ELBO may stop sooner).
        batch_size
            Minibatch size.
        validation_fraction
            Held-out fraction for early stopping and diagnostics.
        **kwargs
            Passed to :func:`~scivae.core.fit_module`: ``kl_schedule`` (name or
            :class:`~scivae.core.KLSchedule`), ``kl_warmup``, ``lr``, ``accelerator``, ``devices``, ``seed``,
            ``max_time``, ``patience``, ``progress_bar``, ``precision`` (default ``"32-true"``)...
        """
        if getattr(self, "_arrays", None) is None:
            raise ScivaeInputError("a loaded MolVAE has no training data: build a new MolVAE(smiles) to train")
        kwargs.setdefault("seed", self.seed)
        # GRUs under bf16 autocast lose precision in the recurrent state; full precision (TF32 on GPUs) is safe
        kwargs.setdefault("precision", "32-true")
        result = self._fit_arrays(
            self._arrays,
            max_epochs=max_epochs,
            batch_size=batch_size,
            validation_fraction=validation_fraction,
            group_by="length",  # batches of similar length: about 1.5x faster than random batches on CPU
            **kwargs,
        )
        self.module.eval()
        return result

    # -- encoding --------------------------------------------------------------------------------------
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

    def encode(self, smiles: str | Sequence[str], give_mean: bool = True) -> np.ndarray:
        """Latent posterior means (or samples) of molecules, shape ``(n, n_latent)``.

        Raises
        ------
        ScivaeInputError
            Invalid SMILES, or a token the model has never seen (the message names it).
        """
        _, arrays = self._arrays_for(smiles)
        self.module.to(_resolve_device(None))
        return self._latent_from_arrays(arrays, give_mean=give_mean)

    def elbo(self, smiles: str | Sequence[str]) -> np.ndarray:
        """Per-molecule ELBO (nats, higher is more likely under the model)."""
        _, arrays = self._arrays_for(smiles)
        return self._per_obs(arrays, "elbo")

    def marginal_log_likelihood(self, smiles: str | Sequence[str], n_samples: int = 100) -> np.ndarray:
        """Per-molecule importance-sampled log p(x) (IWAE bound with ``n_samples`` samples)."""
        _, arrays = self._arrays_for(smiles)
        return self._per_obs(arrays, "iwae", batch_size=256, k=n_samples)

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
        molecule either way.

        Returns
        -------
        pandas.DataFrame
            ``smiles`` (canonical SMILES when valid, else the decoded string) and ``valid`` (RDKit parses it).
        """
        self._require_trained()
        if temperature <= 0:
            raise ScivaeInputError(f"temperature must be > 0, got {temperature}: use greedy=True for argmax")
        if batch_size < 1:
            raise ScivaeInputError(f"batch_size must be >= 1, got {batch_size}")
        z = torch.as_tensor(np.asarray(z, dtype=np.float32) if not isinstance(z, torch.Tensor) else z).float()
        if z.ndim != 2 or z.shape[1] != self.n_latent:
            raise ScivaeInputError(f"z must have shape (n, {self.n_latent}), got {tuple(z.shape)}")
        dev = _resolve_device(device)
        self.module.to(dev).eval()
        limit = int(max_tokens) if max_tokens is not None else self.vocab.max_tokens
        generator = torch.Generator(device=dev)
        generator.manual_seed(int(seed) if seed is not None else int(torch.randint(0, 2**62, (1,)).item()))
        constraint = decoding_constraint(self.vocab, syntax=syntax)
        raw: list[str] = []
        for start in range(0, z.shape[0], batch_size):
            zb = z[start : start + batch_size].to(dev)
            ids = self.module.decode(
                zb, limit, temperature=temperature, greedy=greedy, generator=generator, constraint=constraint
            )
            raw.extend(self._tokens_to_smiles(ids.cpu().numpy()))
        return self._finish(raw)

    def _prior(self, n: int, seed: int | None) -> tuple[torch.Tensor, int]:
        # z is drawn on the CPU so that a seed gives the same latent points on every device
        s = int(seed) if seed is not None else int(torch.randint(0, 2**62, (1,)).item())
        g = torch.Generator(device="cpu").manual_seed(s)
        return torch.randn(n, self.n_latent, generator=g), s

    def sample(
        self,
        n: int,
        temperature: float = 1.0,
        greedy: bool = False,
        batch_size: int = 1024,
        seed: int | None = None,
        device: str | torch.device | None = None,
        syntax: bool = True,
    ) -> pd.DataFrame:
        """Sample ``n`` molecules: ``z ~ N(0, I)``, then decode token by token.

        Parameters
        ----------
        n
            Number of molecules.
        temperature
            Softmax temperature of the token sampling (< 1: more conservative).
        greedy
            Take the most likely token at each step instead of sampling (only ``z`` is random).
        batch_size
            Molecules decoded at once.
        seed
            Seed of ``z`` and of the token sampling: the same seed gives the same molecules on one device.
        device
            ``"auto"`` (default: the GPU when there is one), ``"cpu"`` or ``"cuda"``.
        syntax
            SMILES models: never emit a token that breaks SMILES syntax (unbalanced branches, unpaired ring
            bonds), see :meth:`decode`. ``False`` gives the model's raw samples (as MOSES samples its models).

        Returns
        -------
        pandas.DataFrame
            One row per sample: ``smiles`` (canonical when valid, else the decoded string) and ``valid``.
        """
        self._require_trained()
        if int(n) < 1:
            raise ScivaeInputError(f"n must be >= 1, got {n}")
        z, s = self._prior(int(n), seed)
        return self.decode(
            z, temperature=temperature, greedy=greedy, seed=s + 1, batch_size=batch_size, device=device, syntax=syntax
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
        """Decode molecules along a path between the latent means of ``a`` and ``b``.

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
            ``t`` (0 to 1), ``smiles``, ``valid``.
        """
        self._require_trained()
        if int(steps) < 2:
            raise ScivaeInputError(f"steps must be >= 2 (the two end points included), got {steps}")
        if method not in ("slerp", "linear"):
            raise ScivaeInputError(f"unknown interpolation method {method!r}: use 'slerp' or 'linear'")
        za, zb = self.encode([a, b])
        t = np.linspace(0.0, 1.0, int(steps))
        if method == "linear":
            path = (1 - t)[:, None] * za + t[:, None] * zb
        else:
            cos = float(np.dot(za, zb) / (np.linalg.norm(za) * np.linalg.norm(zb) + 1e-12))
            omega = math.acos(max(-1.0, min(1.0, cos)))
            if omega < 1e-6:
                path = (1 - t)[:, None] * za + t[:, None] * zb
            else:
                path = (np.sin((1 - t) * omega)[:, None] * za + np.sin(t * omega)[:, None] * zb) / math.sin(omega)
        out = self.decode(path.astype(np.float32), greedy=greedy, temperature=temperature, seed=seed)
        out.insert(0, "t", t)
        return out

    def neighbors(
        self,
        smiles: str,
        n: int = 10,
        scale: float = 0.5,
        greedy: bool = True,
        temperature: float = 1.0,
        seed: int | None = None,
    ) -> pd.DataFrame:
        """Molecules decoded from ``n`` points ``z = mu(smiles) + scale * eps`` around one molecule.

        Returns
        -------
        pandas.DataFrame
            ``smiles``, ``valid``, ``distance`` (latent distance of the point from ``mu``), and ``same`` (the
            decoded molecule is the query itself).
        """
        self._require_trained()
        if int(n) < 1 or scale < 0:
            raise ScivaeInputError(f"need n >= 1 and scale >= 0, got n={n}, scale={scale}")
        (query,), _ = self._arrays_for(smiles)
        mu = self.encode(query)[0]
        eps, s = self._prior(int(n), seed)
        z = mu[None, :] + scale * eps.numpy()
        out = self.decode(z.astype(np.float32), greedy=greedy, temperature=temperature, seed=s + 1)
        out["distance"] = np.linalg.norm(z - mu[None, :], axis=1)
        out["same"] = out["smiles"] == query
        return out

    # -- persistence -----------------------------------------------------------------------------------
    def _module_config(self) -> dict[str, Any]:
        return {**self._config, "kl": self._kl.to_dict(), "seed": self.seed}

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
        check_config_keys(cfg, {*ARCHITECTURE_DEFAULTS, "kl", "seed"})
        check_config_keys(cfg.get("kl", {}), {f.name for f in dataclasses.fields(KLConfig)}, "kl")
        check_config_keys(meta["adapter_state"], {"vocabulary", "training_data"}, "adapter_state")
        kl = KLConfig(**cfg.pop("kl"))
        seed = int(cfg.pop("seed", 0))
        model = cls.__new__(cls)
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
