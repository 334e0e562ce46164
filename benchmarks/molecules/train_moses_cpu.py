"""Training-quality benchmark: a molecule VAE trained on a 100k MOSES subset within a CPU time budget.

Trains ``scivae.MolVAE`` on a seeded random subset of the MOSES training set (read from the shared data
folder: the MOSES files are ordered, so never take their first N lines), samples from the prior and computes
the MOSES metrics with ``scivae.molecules.metrics`` against a seeded random subset of the MOSES test set.
Prints the figures beside the published MOSES rows and writes them as JSON.

Usage (the figures in RESULTS.md; run alone on the machine, it uses both cores)::

    nohup .venv/bin/python benchmarks/molecules/train_moses_cpu.py --alphabet kekule --minutes 30 \\
        --lr 3e-3 --lr-schedule cosine --max-epochs 15 --full-novelty > train_kekule.log 2>&1 &

Every epoch it prints the validity of 1,000 prior samples (raw and syntax-constrained), so a run shows
whether more training would help. At the end it scores 10,000 prior samples both ways.

Not run in CI. The default architecture is smaller than the MOSES VAE (decoder 1 x 256 GRU instead of
3 x 512), which is what a 2-core CPU can train in 30 minutes.
"""

from __future__ import annotations

import argparse
import gzip
import json
import os
import platform
import sys
import time
from pathlib import Path

import lightning as L
import numpy as np
import torch

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))

from scivae.core import make_schedule  # noqa: E402
from scivae.molecules import MolVAE  # noqa: E402
from scivae.molecules.constraints import decoding_constraint  # noqa: E402
from scivae.molecules.io import canonicalize_many, clean_smiles  # noqa: E402

T0 = time.perf_counter()
SHARED = Path(os.environ.get("SCIVAE_MOSES_DIR", ROOT.parent / "shared" / "data" / "moses"))

#: Published MOSES rows (Polykovskiy et al. 2020, Table 2; 30,000 samples, full 1.58M training set).
PUBLISHED = {
    "MOSES VAE (paper)": {
        "valid": 0.977,
        "unique@10000": 0.998,
        "FCD/Test": 0.099,
        "SNN/Test": 0.626,
        "Frag/Test": 0.999,
        "Scaf/Test": 0.939,
        "IntDiv": 0.856,
        "Filters": 0.997,
        "Novelty": 0.695,
    },
    "MOSES CharRNN (paper)": {"valid": 0.975, "FCD/Test": 0.073, "Novelty": 0.842},
}
COLUMNS = [
    "valid",
    "unique@1000",
    "unique@10000",
    "Novelty",
    "Novelty_full_moses",
    "FCD/Test",
    "SNN/Test",
    "Frag/Test",
    "Scaf/Test",
    "IntDiv",
    "Filters",
]


def read_moses(split: str) -> list[str]:
    path = SHARED / f"{split}.csv.gz"
    if not path.exists():
        sys.exit(f"{path} not found: set SCIVAE_MOSES_DIR to the folder with MOSES train.csv.gz/test.csv.gz")
    with gzip.open(path, "rt") as fh:
        lines = fh.read().splitlines()
    return [s for s in lines[1:] if s]


def subset(items: list[str], n: int, seed: int) -> list[str]:
    idx = np.sort(np.random.default_rng(seed).choice(len(items), size=min(n, len(items)), replace=False))
    return [items[i] for i in idx]


class PriorValidity(L.Callback):
    """Validity of ``n`` prior samples after every validation epoch: shows whether more training would help."""

    def __init__(self, vae: MolVAE, n: int) -> None:
        self.vae, self.n, self.history = vae, n, []

    def on_validation_epoch_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        if trainer.sanity_checking or self.n <= 0:
            return
        module = self.vae.module
        was_training = module.training
        module.eval()
        g = torch.Generator().manual_seed(12345)
        z = torch.randn(self.n, self.vae.n_latent, generator=g).to(pl_module.device)
        figures = []
        for syntax in (False, True) if self.vae.alphabet != "selfies" else (False,):
            token_rng = torch.Generator(device=pl_module.device).manual_seed(1)
            constraint = decoding_constraint(self.vae.vocab, syntax=syntax)
            ids = module.decode(z, self.vae.vocab.max_tokens, generator=token_rng, constraint=constraint)
            smiles = self.vae._tokens_to_smiles(ids.cpu().numpy())
            figures.append(float(np.mean([c is not None for c in canonicalize_many(smiles)])))
        module.train(was_training)
        self.history.append(figures)
        shown = " / ".join(f"{v:.3f}" for v in figures)
        modes = "raw / syntax" if len(figures) == 2 else "raw"
        print(
            f"epoch {trainer.current_epoch}: prior-sample validity {shown} ({modes}; n={self.n}), "
            f"{time.perf_counter() - T0:.0f} s since start, load {os.getloadavg()[0]:.1f}",
            flush=True,
        )


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--alphabet", default="smiles", choices=["smiles", "kekule", "selfies"])
    p.add_argument("--n-train", type=int, default=100_000)
    p.add_argument("--minutes", type=float, default=30.0, help="training wall-clock budget")
    p.add_argument("--max-epochs", type=int, default=100)
    p.add_argument("--n-samples", type=int, default=10_000, help="prior samples for the metrics")
    p.add_argument("--n-test", type=int, default=10_000, help="test molecules for FCD/SNN/Frag/Scaf")
    p.add_argument("--temperature", type=float, default=1.0)
    p.add_argument("--batch-size", type=int, default=128)
    p.add_argument("--lr", type=float, default=2e-3)
    p.add_argument(
        "--lr-schedule",
        default="constant",
        choices=["constant", "cosine"],
        help="cosine: decay to 0 at --max-epochs (set it to what fits in --minutes)",
    )
    p.add_argument("--kl-warmup", type=int, default=1000, help="linear KL warm-up in steps")
    p.add_argument("--n-latent", type=int, default=64)
    p.add_argument("--embedding-dim", type=int, default=32)
    p.add_argument("--encoder-hidden", type=int, default=128)
    p.add_argument("--decoder-hidden", type=int, default=256)
    p.add_argument("--decoder-layers", type=int, default=1)
    p.add_argument("--word-dropout", type=float, default=0.0)
    p.add_argument("--free-bits", type=float, default=0.0, help="free bits per latent dimension (nats)")
    p.add_argument("--validity-every-epoch", type=int, default=1000, help="prior samples checked per epoch (0: off)")
    p.add_argument("--threads", type=int, default=2, help="use 1 on a shared CPU: there 2 threads ran ~10x slower")
    p.add_argument("--accelerator", default="cpu")
    p.add_argument("--full-novelty", action="store_true", help="also novelty against all 1.58M MOSES train")
    p.add_argument("--from-model", type=Path, help="skip training: evaluate a model saved by an earlier run")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--tag", default="", help="suffix of the output names (keeps earlier runs)")
    p.add_argument("--out", type=Path, default=ROOT / "benchmarks" / "out" / "molecules")
    args = p.parse_args()
    torch.set_num_threads(args.threads)
    args.out.mkdir(parents=True, exist_ok=True)
    machine = (
        f"{platform.processor() or platform.machine()}, {os.cpu_count()} cores visible, torch threads "
        f"{args.threads}, torch {torch.__version__}"
        + (f", GPU {torch.cuda.get_device_name(0)}" if torch.cuda.is_available() else "")
    )
    print(f"machine: {machine}; load average at start: {os.getloadavg()}", flush=True)

    t0 = time.perf_counter()
    full_train = read_moses("train")
    train_raw = subset(full_train, args.n_train, args.seed)
    test = subset(read_moses("test"), args.n_test, args.seed + 1)
    data = clean_smiles(train_raw, source=f"MOSES train subset n={args.n_train}")
    print(data.summary(), f"({time.perf_counter() - t0:.0f} s)", flush=True)

    if args.from_model is not None:
        evaluate(args, MolVAE.load(args.from_model), data, full_train, test, machine, None)
        return
    vae = MolVAE(
        data,
        alphabet=args.alphabet,
        n_latent=args.n_latent,
        embedding_dim=args.embedding_dim,
        encoder_hidden=args.encoder_hidden,
        decoder_hidden=args.decoder_hidden,
        decoder_layers=args.decoder_layers,
        word_dropout=args.word_dropout,
        free_bits=args.free_bits,
        seed=args.seed,
    )
    validity = PriorValidity(vae, args.validity_every_epoch)
    n_params = sum(p.numel() for p in vae.module.parameters())
    print(f"{vae!r}, {n_params:,} parameters, vocabulary {len(vae.vocab)}", flush=True)
    budget = int(args.minutes * 60)
    max_time = f"00:{budget // 3600:02d}:{budget % 3600 // 60:02d}:{budget % 60:02d}"
    cpu0 = time.process_time()
    fit = vae.fit(
        max_epochs=args.max_epochs,
        batch_size=args.batch_size,
        validation_fraction=0.05,
        kl_schedule=make_schedule("linear", warmup=args.kl_warmup),
        lr=args.lr,
        lr_schedule=args.lr_schedule,
        accelerator=args.accelerator,
        max_time=max_time,
        progress_bar=False,
        seed=args.seed,
        callbacks=[validity],
    ).fit_result
    print(f"load average at the end of training: {os.getloadavg()}", flush=True)
    evaluate(args, vae, data, full_train, test, machine, fit, time.process_time() - cpu0)


def evaluate(args, vae, data, full_train, test, machine, fit, cpu_s=None) -> None:
    from scivae.molecules import metrics as M

    tag = f"{args.alphabet}_{args.accelerator}_{int(args.minutes)}min{args.tag}"
    n_params = sum(p.numel() for p in vae.module.parameters())
    record: dict = {
        "alphabet": args.alphabet,
        "machine": machine,
        "args": {k: str(v) for k, v in vars(args).items()},
        "n_parameters": n_params,
        "model": repr(vae),
    }
    if fit is None:  # a saved model, evaluated again; its training figures are in the earlier run's JSON
        tag += "_reevaluated"
    else:
        m, hist = fit.metrics, fit.history
        cols = [
            c
            for c in (
                "epoch",
                "elbo_train",
                "elbo_validation",
                "reconstruction_validation",
                "kl_validation",
                "kl_weight",
                "active_units",
            )
            if c in hist
        ]
        print(hist[cols].to_string(index=False), flush=True)
        print(
            f"trained {m['epochs_trained']} epochs in {m['time_s']:.0f} s wall, {cpu_s:.0f} s CPU of this "
            f"process, best epoch {m.get('best_epoch')}",
            flush=True,
        )
        vae.save(args.out / f"model_{tag}")
        record.update(
            {
                "epochs_trained": m["epochs_trained"],
                "train_time_s": m["time_s"],
                "train_cpu_s": cpu_s,
                "elbo_validation": m.get("elbo_validation"),
                "kl_validation": m.get("kl_validation"),
                "active_units": m.get("active_units"),
                "history": hist[cols].to_dict(orient="list"),
            }
        )
    train_smiles = vae.training_smiles or data.smiles

    # Raw samples (as MOSES samples its models) and, for SMILES, syntax-constrained ones (MolVAE's default).
    modes = {"raw": False, "syntax": True} if vae.alphabet != "selfies" else {"raw": False}
    record.update(
        {
            "n_train_molecules": len(train_smiles),
            "n_samples": args.n_samples,
            "n_test": len(test),
            "temperature": args.temperature,
            "metrics": {},
            "sample_time_s": {},
        }
    )
    rows = {}
    for mode, syntax in modes.items():
        t1 = time.perf_counter()
        gen = vae.sample(args.n_samples, temperature=args.temperature, seed=args.seed, batch_size=1000, syntax=syntax)
        t_sample = time.perf_counter() - t1
        raw = gen["smiles"].where(gen["valid"], "").tolist()
        print(f"sampled {args.n_samples} ({mode}) in {t_sample:.0f} s; computing MOSES metrics...", flush=True)
        t2 = time.perf_counter()
        res = M.compute_metrics(raw, train=frozenset(train_smiles), test=test, n_jobs=1, device="cpu")
        if args.full_novelty:
            full = frozenset(full_train)  # MOSES strings are RDKit canonical (as MOSES itself assumes)
            distinct = set(gen.loc[gen["valid"], "smiles"])
            res["Novelty_full_moses"] = len(distinct - full) / max(len(distinct), 1)
        print(f"metrics in {time.perf_counter() - t2:.0f} s", flush=True)
        record["metrics"][mode] = res
        record["sample_time_s"][mode] = round(t_sample, 1)
        rows[f"scivae {args.alphabet} {mode} ({tag})"] = res
    (args.out / f"result_{tag}.json").write_text(json.dumps(record, indent=2, default=float))

    print(f"\n| model | {' | '.join(COLUMNS)} |")
    print("|---" * (len(COLUMNS) + 1) + "|")
    for name, row in {**rows, **PUBLISHED}.items():
        print(f"| {name} | " + " | ".join(f"{row[c]:.3f}" if c in row else "-" for c in COLUMNS) + " |")


if __name__ == "__main__":
    main()
