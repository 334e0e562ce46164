"""Fit a molecule VAE with the command a user runs (`scivae fit train.smi --max-time M`), then measure it on
random MOSES test molecules.

Two settings (``--setting``), both with ``scivae fit``'s defaults unless ``--beta`` is given:

* ``full``: 100,000 random MOSES training molecules, ``--max-time 30``;
* ``small``: 30,000 random MOSES training molecules, ``--max-time 10 --threads 1``;
* ``curve``: the small setting's molecules with ``--max-epochs 37 --no-early-stopping --threads 1`` (the points
  of the FCD-versus-reconstruction curve across ``--beta``: the same training whatever the machine's load).

Every figure is measured on random MOSES *test* molecules (seed 1), never used to choose a default
(``prior_choice.py`` and the grids chose them on validation molecules): reconstruction of 1,000 molecules,
10,000 prior samples from the learned prior and from N(0, I) (MOSES metrics over all strings against 10,000
test molecules), ``neighbors`` (200 queries x 10 points), ``interpolate`` (100 pairs x 10 points).

Usage, from the repository root::

    python -m benchmarks.molecules.fit_eval --setting full --seed 0 --threads 1
    python -m benchmarks.molecules.fit_eval --setting small --seed 0 --beta 0.1

Writes ``benchmarks/molecules/results/<setting>/beta<beta>_seed<seed>.json`` (the fit folder goes to the
git-ignored ``benchmarks/out/molecules/``); ``python -m benchmarks.molecules.report`` prints the tables.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
from pathlib import Path

from benchmarks.molecules.data import OUT, RESULTS, machine, moses_splits, reference_stats
from benchmarks.molecules.latent_eval import evaluate_latent, fit_summary

SETTINGS = {
    "full": {"n_train": 100_000, "minutes": 30.0, "threads": 0},
    "small": {"n_train": 30_000, "minutes": 10.0, "threads": 1},
    # The KL-weight curve: the small setting's data with a budget in epochs (the 37-38 that the small setting's
    # idle-enough runs trained), so that every point gets the same training whatever the machine's load.
    "curve": {"n_train": 30_000, "epochs": 37, "threads": 1},
}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--setting", choices=sorted(SETTINGS), required=True)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--beta", type=float, help="KL weight (default: scivae fit's)")
    p.add_argument("--threads", type=int, help="torch threads of the fit (default: the setting's; 0 = scivae's auto)")
    p.add_argument("--minutes", type=float, help="training budget (default: the setting's)")
    p.add_argument("--n-prior", type=int, default=10_000)
    p.add_argument("--n-test", type=int, default=10_000)
    p.add_argument("--smoke", action="store_true", help="a seconds-long run on 1,000 molecules (tests the script)")
    args = p.parse_args()
    import torch

    from scivae.molecules import MolVAE
    from scivae.molecules.model import DEFAULT_BETA

    setting = dict(SETTINGS[args.setting])
    threads = setting["threads"] if args.threads is None else args.threads
    minutes = setting.get("minutes") if args.minutes is None else args.minutes
    n_train = 1000 if args.smoke else setting["n_train"]
    n_test = 300 if args.smoke else args.n_test
    beta = DEFAULT_BETA if args.beta is None else args.beta
    torch.set_num_threads(max(threads, 1))
    splits = moses_splits(n_train, 0, n_test, seed=0)
    name = f"beta{beta:g}_seed{args.seed}" + ("_smoke" if args.smoke else "")
    run_dir = OUT / args.setting / name
    run_dir.mkdir(parents=True, exist_ok=True)
    train_file = run_dir / "train.smi"
    train_file.write_text("\n".join(splits["train"]) + "\n")
    cmd = ["scivae", "fit", str(train_file), "--out", str(run_dir / "fit"), "--force", "--seed", str(args.seed)]
    if minutes is not None or args.smoke:
        cmd += ["--max-time", str(0.05 if args.smoke else minutes)]
    if "epochs" in setting and not args.smoke:
        cmd += ["--max-epochs", str(setting["epochs"]), "--no-early-stopping"]
    cmd += ["--threads", str(threads)]
    if args.beta is not None:
        cmd += ["--beta", str(args.beta)]
    if args.smoke:
        cmd += ["--max-epochs", "1"]
    print(" ".join(cmd), flush=True)
    before = machine()
    t0 = time.perf_counter()
    subprocess.run([str(Path(sys.executable).parent / cmd[0]), *cmd[1:]], check=True)
    fit_wall = time.perf_counter() - t0
    after_fit = machine()
    report = json.loads((run_dir / "fit" / "metrics.json").read_text())
    vae = MolVAE.load(run_dir / "fit" / "model")
    reference = reference_stats(splits["test"], f"moses_test_seed1_n{len(splits['test'])}")
    small = args.smoke
    ev = evaluate_latent(
        vae,
        splits["test"],
        train=vae.training_smiles or _canonical(splits["train"]),
        reference=reference,
        n_recon=50 if small else 1000,
        n_prior=200 if small else args.n_prior,
        n_neighbors=5 if small else 200,
        n_interp=3 if small else 100,
        seed=args.seed,
    )
    record = {
        "command": " ".join(["scivae", *cmd[1:]]).replace(str(run_dir), "RUN"),
        "setting": args.setting,
        "n_train": len(splits["train"]),
        "beta": beta,
        "seed": args.seed,
        "machine_before_fit": before,
        "machine_after_fit": after_fit,
        "fit_wall_s": round(fit_wall, 1),
        "model": repr(vae),
        "n_parameters": sum(p.numel() for p in vae.module.parameters()),
        "evaluated_on": f"{len(splits['test'])} random MOSES test molecules (seed 1)",
        "fit": fit_summary(report),
        "eval": ev,
    }
    print(json.dumps(record, indent=1, default=float), flush=True)
    if not small:
        out = RESULTS / args.setting / f"{name}.json"
        out.parent.mkdir(parents=True, exist_ok=True)
        out.write_text(json.dumps(record, indent=2, default=float) + "\n")
        print(f"wrote {out}", flush=True)


def _canonical(smiles: list[str]) -> list[str]:
    from scivae.molecules.data import canonicalize_many

    return [c for c in canonicalize_many(smiles) if c is not None]


if __name__ == "__main__":
    main()
