"""The molecule latent space after `scivae fit mols.smi --max-time 30` on a 2-core CPU, on MOSES test molecules.

Runs the command a user would run, with the defaults of ``scivae fit`` (only the budget, the torch threads and
the seed are given), on the same 100k random MOSES training molecules as the other benchmarks here, then
measures on random MOSES *test* molecules (never used to choose the defaults: latent_grid.py chose them on
validation molecules):

* held-out reconstruction accuracy (greedy from the posterior mean, canonical match) and token accuracy;
* prior samples (temperature 1, syntax mask on, the default; and raw): validity, unique@1k/10k, novelty
  against the training molecules, and the MOSES metrics (FCD/Test, SNN, Frag, Scaf, IntDiv, Filters) against
  10,000 test molecules;
* ``neighbors`` at its default scale: validity and Tanimoto similarity to the query;
* ``interpolate`` (slerp) between random pairs: validity along the path, similarity to the start molecule;
* the fit report's rate, distortion, mutual information, latent gain and active units.

Usage (alone on the machine; it uses both cores)::

    .venv/bin/python benchmarks/molecules/latent_cpu.py --minutes 30 --threads 2 --seed 0 [--alphabet selfies]

Writes ``benchmarks/molecules/results/latent_cpu_<alphabet>_seed<seed>.json`` (the model and fit report go to
the git-ignored ``benchmarks/out/molecules/latent/``); ``--table`` prints all result files side by side.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import subprocess
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from _latent_eval import ROOT, evaluate_latent, fit_summary, moses_splits  # noqa: E402

RESULTS = Path(__file__).resolve().parent / "results"
OUT = ROOT / "benchmarks" / "out" / "molecules" / "latent"


def table() -> None:
    """All result files side by side: prior samples decoded greedily (the default of ``generate``) and, for
    comparison, with tokens sampled at temperature 1 (under the syntax mask for SMILES; raw for SELFIES)."""
    print(
        "| run | epochs | KL | MI | latent gain | AU | recon acc | token acc | valid (greedy) | unique@1k | "
        "unique@10k | novelty | FCD/Test | valid (T=1) | FCD/Test (T=1) | nbr valid | nbr Tanimoto | interp valid |"
    )
    print("|---" * 18 + "|")
    rows: dict[str, list[list]] = {}
    for path in sorted(RESULTS.glob("latent_cpu_*.json")):
        r = json.loads(path.read_text())
        f, e = r["fit"], r["eval"]
        p = e["prior"]
        sampled = "syntax" if "valid_syntax" in p else "raw"
        greedy = p.get("moses_greedy", {})
        nb = e["neighbors"][str(e["neighbors"]["default_scale"])]
        cells = [
            f.get("epochs_trained"),
            f.get("kl_validation"),
            f.get("mutual_information"),
            f.get("latent_gain_validation"),
            f.get("active_units"),
            e["reconstruction"]["accuracy"],
            e["reconstruction"]["token_accuracy"],
            p.get("valid_greedy"),
            greedy.get("unique@1000"),
            greedy.get("unique@10000"),
            greedy.get("Novelty"),
            greedy.get("FCD/Test"),
            p.get(f"valid_{sampled}"),
            p.get(f"moses_{sampled}", {}).get("FCD/Test"),
            nb["valid"],
            nb["tanimoto_mean"],
            e["interpolation"]["valid"],
        ]
        text = ["-" if v is None else (f"{v:.3f}" if isinstance(v, float) else str(v)) for v in cells]
        print(f"| {path.stem} | " + " | ".join(text) + " |")
        rows.setdefault(path.stem.rsplit("_seed", 1)[0], []).append(cells)
    for name, runs in rows.items():  # mean ± sd over the seeds of one setting
        if len(runs) < 2:
            continue
        stats = []
        for column in zip(*runs, strict=True):
            values = [float(v) for v in column if v is not None]
            if len(values) < 2:
                stats.append("-")
                continue
            mean, sd = sum(values) / len(values), statistics.stdev(values)
            stats.append(f"{mean:.3f} ± {sd:.3f}")
        print(f"| {name}, mean ± sd of {len(runs)} seeds | " + " | ".join(stats) + " |")


def _history(fit_dir: Path) -> dict[str, list]:
    import pandas as pd

    h = pd.read_csv(fit_dir / "history.csv")
    cols = [
        c
        for c in (
            "epoch",
            "elbo_validation",
            "reconstruction_validation",
            "kl_validation",
            "mutual_information",
            "latent_gain_validation",
            "active_units",
            "reconstruction_accuracy_validation",
            "token_accuracy_validation",
            "kl_weight",
        )
        if c in h
    ]
    return h[cols].round(4).to_dict(orient="list")


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--minutes", type=float, default=30.0)
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--alphabet", help="default: scivae fit's")
    p.add_argument("--n-train", type=int, default=100_000)
    p.add_argument("--n-prior", type=int, default=10_000)
    p.add_argument("--n-test", type=int, default=10_000)
    p.add_argument("--from-model", type=Path, help="skip training: evaluate the fit folder of an earlier run")
    p.add_argument("--smoke", action="store_true", help="a seconds-long run on 1,000 molecules (tests the script)")
    p.add_argument("--table", action="store_true", help="print the table of all result files and exit")
    args = p.parse_args()
    if args.table:
        table()
        return
    import torch

    from scivae.molecules import MolVAE

    torch.set_num_threads(args.threads)
    n_train = 1000 if args.smoke else args.n_train
    splits = moses_splits(n_train, 0, 200 if args.smoke else args.n_test, seed=0)
    name = f"{args.alphabet or 'default'}_seed{args.seed}" + ("_smoke" if args.smoke else "")
    run_dir = OUT / name
    machine = f"{platform.machine()}, {os.cpu_count()} cores, torch {torch.__version__}, {args.threads} thread(s)"
    print(f"machine: {machine}; load average {os.getloadavg()}", flush=True)
    fit_wall = None
    if args.from_model is None:
        run_dir.mkdir(parents=True, exist_ok=True)
        train_file = run_dir / "train.smi"
        train_file.write_text("\n".join(splits["train"]) + "\n")
        cmd = [
            str(Path(sys.executable).parent / "scivae"),
            "fit",
            str(train_file),
            "--out",
            str(run_dir / "fit"),
            "--max-time",
            str(0.1 if args.smoke else args.minutes),
            "--threads",
            str(args.threads),
            "--seed",
            str(args.seed),
        ]
        if args.smoke:
            cmd += ["--max-epochs", "1"]
        if args.alphabet:
            cmd += ["--alphabet", args.alphabet]
        print(" ".join(cmd), flush=True)
        t0 = time.perf_counter()
        subprocess.run(cmd, check=True)
        fit_wall = time.perf_counter() - t0
        fit_dir = run_dir / "fit"
    else:
        fit_dir = args.from_model
    report = json.loads((fit_dir / "metrics.json").read_text())
    vae = MolVAE.load(fit_dir / "model")
    small = args.smoke
    ev = evaluate_latent(
        vae,
        splits["test"],
        train=splits["train"],
        n_recon=50 if small else 1000,
        n_prior=100 if small else args.n_prior,
        n_neighbors=5 if small else 200,
        n_interp=3 if small else 100,
        fcd_reference=splits["test"],
        seed=args.seed,
    )
    record = {
        "command": f"scivae fit train.smi --max-time {args.minutes} --threads {args.threads} --seed {args.seed}"
        + (f" --alphabet {args.alphabet}" if args.alphabet else ""),
        "machine": machine,
        "load_average_end": os.getloadavg(),
        "fit_wall_s": fit_wall,
        "model": repr(vae),
        "n_parameters": sum(p.numel() for p in vae.module.parameters()),
        "n_train": len(splits["train"]),
        "evaluated_on": f"{len(splits['test'])} random MOSES test molecules (seed 1)",
        "fit": fit_summary(report),
        "history": _history(fit_dir),
        "eval": ev,
    }
    print(json.dumps({k: v for k, v in record.items() if k != "history"}, indent=1, default=float), flush=True)
    if not small:
        RESULTS.mkdir(parents=True, exist_ok=True)
        (RESULTS / f"latent_cpu_{name}.json").write_text(json.dumps(record, indent=2, default=float))


if __name__ == "__main__":
    main()
