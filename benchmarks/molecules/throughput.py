"""Molecule training and sampling speed: scivae's MolVAE vs a plain PyTorch MOSES VAE, same batches, one script.

From the repository root::

    .venv/bin/python -m benchmarks.molecules.throughput                 # MOSES subset shipped in datasets/
    .venv/bin/python -m benchmarks.molecules.throughput --smoke         # seconds
    .venv/bin/python -m benchmarks.molecules.throughput --mol-kwargs '{"decoder_layers": 1, "decoder_hidden": 256}'

**Training tokens/s, same batches.** ``--n`` MOSES training molecules (seeded subset of
``datasets/moses/train.csv.gz``, or ``--smiles FILE``) are tokenised once by scivae; a seeded sequence of
random batches of ``--batch-size`` molecules is drawn once. Both models are trained on exactly those
batches, alternating in rounds of ``--steps`` batches (scivae, plain, scivae, ...; the order flips every
round), one optimiser step per batch (Adam, gradient clipping), one thread by default. Tokens are the real
tokens of each molecule plus its end token; tokens/s = tokens in the timed steps / their wall time (the first
round of each model is a warm-up and not timed).

- **scivae**: ``scivae.MolVAE(smiles, **mol_kwargs)``; its module's ``loss`` (the ELBO with the KL weight
  1) and the Adam settings of ``scivae.core.VAETrainingPlan`` (fused Adam, clipping at norm 10), outside
  Lightning so that both sides run the same loop. ``--mol-kwargs`` (JSON) takes any MolVAE option, so the
  script follows changes of the model's defaults.
- **plain MOSES VAE**: :class:`MosesVAE` below, written from the MOSES paper and the description of its
  reference code (Polykovskiy et al. 2020, ``moses/vae``): one-hot-initialised embedding of width
  ``vocab``; encoder GRU 256 (one layer) over packed sequences, last hidden state -> mu, logvar (128);
  decoder: ``z`` -> linear -> initial state of a 3-layer GRU 512 whose input at every step is the previous
  token's embedding concatenated with ``z``, over packed sequences; linear to the vocabulary; loss = token
  cross-entropy (mean over tokens) + KL weight x KL (mean over molecules); Adam, clipping at norm 50.

**End-to-end fit.** ``MolVAE.fit`` for ``--fit-epochs`` epochs with its defaults (length-grouped batches,
Lightning): tokens/s over the whole fit, validation included.

**Sampling.** ``MolVAE.sample`` of ``--n-samples`` molecules from the prior (temperature 1, the SMILES
syntax mask on: the default) after that fit: molecules/s, the valid fraction and valid molecules/s; also
without the mask (``syntax=False``). With ``--model DIR`` a saved MolVAE is sampled instead (a trained one:
the valid fraction of a model fitted for a few minutes here is low).

Prints a table; writes the raw figures as JSON (``--json``, default ``benchmarks/out/molecules/throughput.json``).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn
from torch.nn.utils.rnn import pack_padded_sequence, pad_packed_sequence

from benchmarks.molecules.data import ROOT
from scivae._atomic import write_text_atomic
from scivae.molecules import MolVAE
from scivae.molecules.tokenizer import BOS_ID, PAD_ID


class MosesVAE(nn.Module):
    """The MOSES VAE architecture in plain PyTorch (see the module docstring)."""

    def __init__(
        self,
        vocab_size: int,
        q_hidden: int = 256,
        d_hidden: int = 512,
        d_layers: int = 3,
        n_latent: int = 128,
        q_dropout: float = 0.5,
    ) -> None:
        super().__init__()
        self.embedding = nn.Embedding(vocab_size, vocab_size, padding_idx=PAD_ID)
        with torch.no_grad():
            self.embedding.weight.copy_(torch.eye(vocab_size))  # MOSES: one-hot vectors, trainable
        self.encoder = nn.GRU(vocab_size, q_hidden, num_layers=1, batch_first=True)
        self.q_dropout = q_dropout  # MOSES passes it to the GRU, where a 1-layer GRU ignores it
        self.q_mu = nn.Linear(q_hidden, n_latent)
        self.q_logvar = nn.Linear(q_hidden, n_latent)
        self.decoder_lat = nn.Linear(n_latent, d_hidden)
        self.decoder = nn.GRU(vocab_size + n_latent, d_hidden, num_layers=d_layers, batch_first=True)
        self.decoder_fc = nn.Linear(d_hidden, vocab_size)
        self.d_layers = d_layers

    def forward(self, x: torch.Tensor, lengths: torch.Tensor, kl_weight: float = 1.0) -> torch.Tensor:
        """``x``: ``(B, L)`` ids ``<bos> tokens <eos>`` padded; ``lengths`` include bos and eos."""
        emb = self.embedding(x)
        packed = pack_padded_sequence(emb, lengths.cpu(), batch_first=True, enforce_sorted=False)
        _, h = self.encoder(packed)
        h = h[-1]
        mu, logvar = self.q_mu(h), self.q_logvar(h)
        z = mu + torch.randn_like(mu) * torch.exp(0.5 * logvar)
        kl = 0.5 * (logvar.exp() + mu**2 - 1 - logvar).sum(1).mean()
        z_steps = z.unsqueeze(1).expand(-1, x.shape[1], -1)
        dec_in = pack_padded_sequence(
            torch.cat([emb, z_steps], -1), lengths.cpu(), batch_first=True, enforce_sorted=False
        )
        h0 = self.decoder_lat(z).unsqueeze(0).repeat(self.d_layers, 1, 1)
        out, _ = self.decoder(dec_in, h0)
        out, _ = pad_packed_sequence(out, batch_first=True, total_length=x.shape[1])
        y = self.decoder_fc(out)
        recon = F.cross_entropy(y[:, :-1].reshape(-1, y.shape[-1]), x[:, 1:].reshape(-1), ignore_index=PAD_ID)
        return recon + kl_weight * kl


def _batches(arrays: dict, batch_size: int, n_batches: int, seed: int) -> list[dict]:
    rng = np.random.default_rng(seed)
    n = len(arrays["length"])
    out = []
    for _ in range(n_batches):
        idx = np.sort(rng.choice(n, size=min(batch_size, n), replace=False))
        lengths = arrays["length"][idx]
        x = arrays["x"][idx, : int(lengths.max())]
        out.append({"x": torch.from_numpy(x), "length": torch.from_numpy(lengths)})
    return out


def _with_bos(batch: dict) -> tuple[torch.Tensor, torch.Tensor]:
    x = batch["x"]
    bos = torch.full((x.shape[0], 1), BOS_ID, dtype=x.dtype)
    return torch.cat([bos, x], 1), batch["length"] + 1


def train_rounds(module: nn.Module, plain: MosesVAE, batches: list[dict], steps: int) -> dict:
    """Alternate rounds of ``steps`` batches; returns tokens/s of each side over the timed rounds."""
    opt_s = torch.optim.Adam(module.parameters(), lr=1e-3, fused=True)
    opt_p = torch.optim.Adam(plain.parameters(), lr=3e-4)
    plain_inputs = [_with_bos(b) for b in batches]
    module.train()
    plain.train()

    def run_scivae(lo: int, hi: int) -> None:
        for b in batches[lo:hi]:
            loss = module.loss(b, kl_weight=1.0).loss
            opt_s.zero_grad(set_to_none=True)
            loss.backward()
            torch.nn.utils.clip_grad_norm_(module.parameters(), 10.0)
            opt_s.step()

    def run_plain(lo: int, hi: int) -> None:
        for x, lengths in plain_inputs[lo:hi]:
            loss = plain(x, lengths)
            opt_p.zero_grad(set_to_none=True)
            loss.backward()
            torch.nn.utils.clip_grad_norm_(plain.parameters(), 50.0)
            opt_p.step()

    timed = {"scivae": [0.0, 0], "plain": [0.0, 0]}
    rounds = len(batches) // steps
    for r in range(rounds):
        lo, hi = r * steps, (r + 1) * steps
        tokens = int(sum(int(b["length"].sum()) for b in batches[lo:hi]))
        order = [("scivae", run_scivae), ("plain", run_plain)]
        for name, fn in order if r % 2 == 0 else order[::-1]:
            t0 = time.perf_counter()
            fn(lo, hi)
            dt = time.perf_counter() - t0
            if r > 0:  # round 0 warms both up
                timed[name][0] += dt
                timed[name][1] += tokens
    return {
        k: {"tokens_per_s": v[1] / v[0] if v[0] else float("nan"), "tokens": v[1], "seconds": v[0]}
        for k, v in timed.items()
    }


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--n", type=int, default=20000, help="training molecules (MOSES subset)")
    ap.add_argument("--smiles", type=Path, default=None, help="a SMILES file instead of the shipped MOSES subset")
    ap.add_argument("--mol-kwargs", default="{}", help="JSON options of scivae.MolVAE (architecture, alphabet...)")
    ap.add_argument("--batch-size", type=int, default=512, help="MOSES trains with 512")
    ap.add_argument("--steps", type=int, default=5, help="batches per round")
    ap.add_argument("--rounds", type=int, default=5, help="rounds (the first is a warm-up)")
    ap.add_argument("--fit-epochs", type=int, default=1)
    ap.add_argument("--n-samples", type=int, default=4096)
    ap.add_argument("--sample-batch-size", type=int, default=1024)
    ap.add_argument("--model", type=Path, default=None, help="sample this saved MolVAE instead of the one fitted here")
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--json", type=Path, default=ROOT / "benchmarks/out/molecules/throughput.json")
    ap.add_argument("--smoke", action="store_true", help="tiny run (seconds)")
    args = ap.parse_args(argv)
    mol_kwargs = json.loads(args.mol_kwargs)
    if args.smoke:
        args.n, args.batch_size, args.steps, args.rounds, args.n_samples = 300, 32, 1, 2, 64
        mol_kwargs = {"decoder_layers": 1, "decoder_hidden": 32, "encoder_hidden": 32, "n_latent": 8, **mol_kwargs}
    torch.set_num_threads(args.threads)
    torch.manual_seed(args.seed)
    load0 = os.getloadavg()

    if args.smiles is not None:
        smiles = [ln.split()[0] for ln in args.smiles.read_text().splitlines() if ln.strip()][: args.n]
    else:
        import scivae

        smiles = scivae.datasets.moses("train", n=args.n, seed=args.seed)
    vae = MolVAE(smiles, seed=args.seed, **mol_kwargs)
    arrays = vae._arrays
    vocab = len(vae.vocab)
    batches = _batches(arrays, args.batch_size, args.steps * args.rounds, args.seed)
    plain = MosesVAE(vocab) if not args.smoke else MosesVAE(vocab, 32, 32, 1, 8)
    module = vae.module
    n_params = {
        "scivae": sum(p.numel() for p in module.parameters()),
        "plain": sum(p.numel() for p in plain.parameters()),
    }
    same = train_rounds(module, plain, batches, args.steps)
    # a fresh model for the end-to-end fit and the sampling (the rounds above trained this one a little)
    vae = MolVAE(smiles, seed=args.seed, **mol_kwargs)
    t0 = time.perf_counter()
    vae.fit(
        max_epochs=args.fit_epochs,
        batch_size=args.batch_size,
        accelerator="cpu",
        progress_bar=False,
        early_stopping=False,
        seed=args.seed,
    )
    fit_s = time.perf_counter() - t0
    n_train = len(arrays["length"]) - int(round(len(arrays["length"]) * 0.1))  # validation_fraction 0.1
    fit_tokens = float(arrays["length"].mean()) * n_train * args.fit_epochs
    sampler = MolVAE.load(args.model) if args.model is not None else vae
    sampling = {}
    for syntax in (True, False):
        t0 = time.perf_counter()
        df = sampler.sample(
            args.n_samples, seed=args.seed, batch_size=args.sample_batch_size, device="cpu", syntax=syntax
        )
        dt = time.perf_counter() - t0
        valid = float(df["valid"].mean())
        sampling["syntax" if syntax else "raw"] = {
            "molecules_per_s": args.n_samples / dt,
            "valid_fraction": valid,
            "valid_per_s": args.n_samples * valid / dt,
            "seconds": dt,
        }
    result = {
        "cpu": next(
            (
                ln.split(":", 1)[1].strip()
                for ln in Path("/proc/cpuinfo").read_text().splitlines()
                if ln.startswith("model name")
            ),
            "unknown",
        ),
        "threads": torch.get_num_threads(),
        "torch": torch.__version__,
        "argv": sys.argv[1:],
        "mol_kwargs": mol_kwargs,
        "vocab": vocab,
        "n_molecules": len(arrays["length"]),
        "mean_tokens": float(arrays["length"].mean()),
        "parameters": n_params,
        "same_batches": same,
        "ratio_scivae_over_plain": same["scivae"]["tokens_per_s"] / same["plain"]["tokens_per_s"],
        "fit": {"epochs": args.fit_epochs, "seconds": fit_s, "tokens_per_s": fit_tokens / fit_s},
        "sampling_model": str(args.model) if args.model else f"fitted here for {args.fit_epochs} epoch(s)",
        "sampling": sampling,
        "loadavg_start": load0,
        "loadavg_end": os.getloadavg(),
    }
    print(
        f"cpu: {result['cpu']}, threads: {result['threads']}, load average: {load0[0]:.2f} -> {os.getloadavg()[0]:.2f}"
    )
    print(
        f"{result['n_molecules']} molecules, vocabulary {vocab}, mean {result['mean_tokens']:.1f} tokens; "
        f"MolVAE options {mol_kwargs or 'defaults'}"
    )
    print("| model | parameters | training tokens/s (same batches) |")
    print("|---|---:|---:|")
    for k, label in (("scivae", "scivae MolVAE"), ("plain", "plain MOSES VAE")):
        print(f"| {label} | {n_params[k]:,} | {same[k]['tokens_per_s']:.0f} |")
    print(f"ratio scivae / plain: {result['ratio_scivae_over_plain']:.2f}")
    print(f"MolVAE.fit, {args.fit_epochs} epoch(s), its own batching: {result['fit']['tokens_per_s']:.0f} tokens/s")
    for k, s in sampling.items():
        print(
            f"sampling ({k}): {s['molecules_per_s']:.0f} molecules/s, valid {s['valid_fraction']:.3f}, "
            f"{s['valid_per_s']:.0f} valid/s ({result['sampling_model']})"
        )
    write_text_atomic(args.json, json.dumps(result, indent=1) + "\n")
    print(f"raw figures: {args.json}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
