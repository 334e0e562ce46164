"""Fixed-budget grid over the molecule VAE's collapse controls and sizes, scored on validation molecules.

Each run trains ``scivae.MolVAE`` on the same 100k random MOSES training molecules for the same wall-clock
budget (one torch thread, so two runs can share a 2-core machine) and records rate (KL), distortion
(reconstruction NLL), mutual information, active units, latent gain, reconstruction accuracy, prior-sample
validity/uniqueness/novelty, FCD and neighbour similarity, all on validation molecules drawn from the rest of
MOSES train: the defaults are chosen here, never on the test molecules that latent_cpu.py reports.

Usage (one run; the options after the name override MolVAE's defaults)::

    .venv/bin/python benchmarks/molecules/latent_grid.py NAME --minutes 10 [--beta 0.1] [--free-bits 0.5] ...

Each run writes ``benchmarks/molecules/results/grid/NAME.json``; ``--table`` prints all of them side by side.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import time
import warnings
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from _latent_eval import evaluate_latent, fit_summary, moses_splits  # noqa: E402

RESULTS = Path(__file__).resolve().parent / "results" / "grid"
MODELS = Path(__file__).resolve().parents[2] / "benchmarks" / "out" / "grid_models"


def table() -> None:
    rows = []
    for path in sorted(RESULTS.glob("*.json")):
        r = json.loads(path.read_text())
        f, e = r["fit"], r["eval"]
        nb = e["neighbors"][str(e["neighbors"]["default_scale"])]
        prior = e["prior"]
        fcd = prior.get("moses_syntax", prior.get("moses_raw", {})).get("FCD/Test", float("nan"))
        fcd_greedy = prior.get("moses_greedy", {}).get("FCD/Test")
        rows.append(
            (
                path.stem,
                r["options"],
                f.get("epochs_trained"),
                f.get("kl_validation"),
                f.get("reconstruction_validation"),
                f.get("mutual_information"),
                f.get("active_units"),
                f.get("latent_gain_validation"),
                e["reconstruction"]["accuracy"],
                e["reconstruction"]["token_accuracy"],
                prior.get("valid_syntax", prior.get("valid_raw")),
                prior.get("valid_raw"),
                prior.get("unique@1000_syntax", prior.get("unique@1000_raw")),
                prior.get("novelty_syntax", prior.get("novelty_raw")),
                fcd,
                prior.get("valid_greedy"),
                prior.get("unique@1000_greedy"),
                fcd_greedy,
                nb["tanimoto_mean"],
                nb["valid"],
                e["interpolation"]["valid"],
            )
        )
    head = (
        "run | options | epochs | KL | recon NLL | MI | AU | latent gain | recon acc | token acc | valid (mask) | "
        "valid (raw) | unique@1k | novelty | FCD | valid (greedy) | unique@1k (greedy) | FCD (greedy) | nbr Tanimoto | "
        "nbr valid | interp valid"
    )
    print("| " + head + " |")
    print("|---" * len(head.split("|")) + "|")
    for row in rows:
        cells = [str(row[0]), "`" + row[1] + "`"] + [
            "-" if v is None else (f"{v:.3f}" if isinstance(v, float) else str(v)) for v in row[2:]
        ]
        print("| " + " | ".join(cells) + " |")


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("name", nargs="?", help="run name (output file name)")
    p.add_argument("--table", action="store_true", help="print the table of all runs and exit")
    p.add_argument("--minutes", type=float, default=10.0)
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--n-train", type=int, default=100_000)
    p.add_argument("--n-prior", type=int, default=2000)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--smoke", action="store_true", help="seconds-long run on 2,000 molecules (tests the script)")
    p.add_argument("--alphabet")
    p.add_argument("--beta", type=float)
    p.add_argument("--free-bits", type=float)
    p.add_argument("--free-bits-groups", type=int)
    p.add_argument("--word-dropout", type=float)
    p.add_argument("--n-latent", type=int)
    p.add_argument("--encoder-hidden", type=int)
    p.add_argument("--decoder-hidden", type=int)
    p.add_argument("--bidirectional", action="store_true")
    p.add_argument("--lr", type=float)
    p.add_argument("--batch-size", type=int, default=128)
    p.add_argument("--kl-warmup", type=int)
    p.add_argument("--kl-schedule")
    args = p.parse_args()
    if args.table:
        table()
        return
    if not args.name:
        p.error("give a run name (or --table)")
    from scivae.molecules import MolVAE
    from scivae.molecules.io import clean_smiles

    torch.set_num_threads(args.threads)
    n_train = 2000 if args.smoke else args.n_train
    splits = moses_splits(n_train, 300 if args.smoke else 2000, 300 if args.smoke else 2000, seed=args.seed)
    model_opts = {
        k: getattr(args, k)
        for k in (
            "alphabet",
            "beta",
            "free_bits",
            "free_bits_groups",
            "word_dropout",
            "n_latent",
            "encoder_hidden",
            "decoder_hidden",
        )
        if getattr(args, k) is not None
    }
    if args.bidirectional:
        model_opts["bidirectional"] = True
    fit_opts = {k: getattr(args, k) for k in ("lr", "kl_warmup", "kl_schedule") if getattr(args, k) is not None}
    options = " ".join(f"{k}={v}" for k, v in {**model_opts, **fit_opts}.items()) or "defaults"
    data = clean_smiles(splits["train"], source=f"MOSES train subset n={n_train}")
    vae = MolVAE(data, architecture="cpu", seed=args.seed, **model_opts)
    print(f"{args.name}: {vae!r} ({options}); load {os.getloadavg()[0]:.1f}", flush=True)
    cpu0 = time.process_time()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        vae.fit(
            max_epochs=1 if args.smoke else 1000,
            batch_size=args.batch_size,
            max_time=0.1 if args.smoke else args.minutes,
            progress_bar=False,
            accelerator="cpu",
            seed=args.seed,
            **fit_opts,
        )
    cpu_s = time.process_time() - cpu0
    if not args.smoke:
        vae.save(MODELS / args.name)  # git-ignored; lets a run be evaluated again
    fit = fit_summary(vae.fit_result.metrics)
    print(json.dumps(fit), flush=True)
    small = args.smoke
    ev = evaluate_latent(
        vae,
        splits["validation"],
        train=vae.training_smiles,
        n_recon=50 if small else 1000,
        n_prior=50 if small else args.n_prior,
        n_neighbors=5 if small else 100,
        n_interp=3 if small else 50,
        neighbor_scales=(0.5, 1.0, 2.0, 4.0),
        fcd_reference=None if small else splits["validation"],
        seed=args.seed,
    )
    record = {
        "name": args.name,
        "options": options,
        "minutes": args.minutes,
        "train_cpu_s": round(cpu_s, 1),
        "machine": f"{platform.machine()}, {os.cpu_count()} cores, torch {torch.__version__}, {args.threads} thread(s)",
        "load_average_end": os.getloadavg()[0],
        "n_train": len(vae.training_smiles),
        "evaluated_on": "validation molecules (MOSES train, disjoint from the training subset)",
        "fit": fit,
        "eval": ev,
    }
    out = RESULTS / f"{args.name}.json"
    if not args.smoke:
        RESULTS.mkdir(parents=True, exist_ok=True)
        out.write_text(json.dumps(record, indent=2, default=float))
    print(json.dumps(record["eval"], default=float)[:2000], flush=True)


if __name__ == "__main__":
    main()
