"""Agreement of scivae's MOSES metrics with MOSES's own implementation (molsets 0.3.1) on the same samples.

The generated set is a seeded mixture built from the MOSES data: test molecules not in the reference subset
(half written as random, non-canonical SMILES), training molecules (not novel), mutated SMILES (some
valid, some not), molecules decorated with charged, large-ring or disallowed-atom groups (fail Filters),
duplicates, truncated strings and empty strings. The reference (test) set is a seeded random subset of the
MOSES test set; novelty uses the full MOSES training set. scivae runs in this venv, MOSES in its own venv
(subprocess), and the figures are printed side by side with their absolute differences.

Setup of the MOSES venv (once, from the repository root; git-ignored)::

    python3 -m venv benchmarks/.venv-moses
    benchmarks/.venv-moses/bin/pip install -c constraints.txt torch==2.13.0 rdkit pandas numpy scipy \\
        fcd_torch tqdm matplotlib
    benchmarks/.venv-moses/bin/pip install --no-deps molsets==0.3.1

Run::

    .venv/bin/python -m benchmarks.molecules.metrics_vs_moses --n-gen 12000 --n-test 10000
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import time
import warnings
from pathlib import Path

import numpy as np
import pandas as pd

from benchmarks.molecules.data import RESULTS, ROOT
from scivae.molecules.metrics import MOSES_KEYS, compute_metrics

DATA = Path("/work/shared/data/moses")
OUT = ROOT / "benchmarks" / "out" / "metrics_vs_moses"
MOSES_PY = ROOT / "benchmarks" / ".venv-moses" / "bin" / "python"
RUNNER = Path(__file__).with_name("metrics_moses_runner.py")

DECORATIONS = ("[N+](=O)[O-]", "C1CCCCCCCC1", "[Si](C)(C)C", "I", "P(=O)(O)O", "[O-]", "C=CC#N", "B(O)O")


def _mutate(s: str, rng: np.random.Generator) -> str:
    # One random edit: substitute, delete or insert a character (often still valid, often not).
    i = int(rng.integers(len(s)))
    op = int(rng.integers(3))
    alphabet = "CNOSFcno()=#1"
    if op == 0:
        return s[:i] + alphabet[int(rng.integers(len(alphabet)))] + s[i + 1 :]
    if op == 1:
        return s[:i] + s[i + 1 :]
    return s[:i] + alphabet[int(rng.integers(len(alphabet)))] + s[i:]


def build_sets(n_gen: int, n_test: int, seed: int) -> tuple[list[str], list[str], dict[str, int]]:
    """The generated mixture (``n_gen`` strings) and the reference subset (``n_test`` test molecules)."""
    from rdkit import Chem
    from rdkit.rdBase import BlockLogs

    rng = np.random.default_rng(seed)
    test_all = pd.read_csv(DATA / "test.csv.gz")["SMILES"].tolist()
    train_all = pd.read_csv(DATA / "train.csv.gz")["SMILES"].tolist()
    perm = rng.permutation(len(test_all))
    test = [test_all[i] for i in perm[:n_test]]
    parts = {
        "test molecules (outside the reference subset)": int(0.40 * n_gen),
        "training molecules": int(0.30 * n_gen),
        "mutated SMILES": int(0.10 * n_gen),
        "decorated (charge / ring >= 8 / disallowed atom / alert)": int(0.045 * n_gen),
        "truncated strings": int(0.03 * n_gen),
        "empty strings": int(0.005 * n_gen),
    }
    parts["duplicates of the above"] = n_gen - sum(parts.values())
    block = BlockLogs()  # noqa: F841
    gen: list[str] = []
    n_held = parts["test molecules (outside the reference subset)"]
    held_out = [test_all[i] for i in perm[n_test : n_test + n_held]]
    for j, s in enumerate(held_out):
        if j % 2:  # a random (non-canonical) SMILES of the same molecule: exercises canonicalisation
            s = Chem.MolToRandomSmilesVect(Chem.MolFromSmiles(s), 1, randomSeed=seed + j)[0]
        gen.append(s)
    tr = rng.choice(len(train_all), parts["training molecules"] + parts["mutated SMILES"], replace=False)
    gen += [train_all[i] for i in tr[: parts["training molecules"]]]
    gen += [_mutate(train_all[i], rng) for i in tr[parts["training molecules"] :]]
    base = rng.choice(len(train_all), parts["decorated (charge / ring >= 8 / disallowed atom / alert)"])
    gen += [train_all[i] + DECORATIONS[int(rng.integers(len(DECORATIONS)))] for i in base]
    cut = rng.choice(len(train_all), parts["truncated strings"])
    gen += [train_all[i][: max(1, len(train_all[i]) // 2)] + "(" for i in cut]
    gen += [""] * parts["empty strings"]
    gen += [gen[i] for i in rng.choice(len(gen), parts["duplicates of the above"])]
    order = rng.permutation(len(gen))
    return [gen[i] for i in order], test, parts


def _machine() -> str:
    cpu = platform.processor() or platform.machine()
    try:
        for line in open("/proc/cpuinfo"):
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    return f"{cpu}, {os.cpu_count()} cores, Python {platform.python_version()}, {platform.system()}"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--n-gen", type=int, default=12000)
    ap.add_argument("--n-test", type=int, default=10000)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--n-jobs", type=int, default=2)
    ap.add_argument("--json", type=Path, default=RESULTS / "metrics_vs_moses.json", help="raw figures")
    args = ap.parse_args()
    if not MOSES_PY.exists():
        sys.exit(f"MOSES venv missing: {MOSES_PY} (see the setup in this script's docstring)")

    gen, test, parts = build_sets(args.n_gen, args.n_test, args.seed)
    OUT.mkdir(parents=True, exist_ok=True)
    gen_path, test_path, moses_json = OUT / "gen.txt", OUT / "test.txt", OUT / "moses.json"
    gen_path.write_text("".join(s + "\n" for s in gen))
    test_path.write_text("".join(s + "\n" for s in test))

    print(f"machine: {_machine()}")
    print(f"generated set: n={len(gen)} strings (seed {args.seed}):")
    for name, n in parts.items():
        print(f"  {n:6d}  {name}")
    print(f"reference: {len(test)} random MOSES test molecules; train: the full MOSES train set")
    print(f"worker processes: {args.n_jobs}")

    train = pd.read_csv(DATA / "train.csv.gz")["SMILES"].tolist()
    import torch

    torch.set_num_threads(args.n_jobs)
    t0 = time.perf_counter()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        # MOSES compares with the training strings as they are (they are RDKit canonical): do the same.
        ours = compute_metrics(gen, train, test, n_jobs=args.n_jobs, train_is_canonical=True)
    t_ours = time.perf_counter() - t0

    cmd = [str(MOSES_PY), str(RUNNER), str(gen_path), str(test_path), str(DATA / "train.csv.gz")]
    cmd += [str(moses_json), str(args.n_jobs)]
    env = dict(os.environ, OMP_NUM_THREADS=str(args.n_jobs), PYTHONWARNINGS="ignore")
    subprocess.run(cmd, check=True, env=env, stderr=subprocess.DEVNULL)
    theirs = json.loads(moses_json.read_text())

    print(f"valid generated molecules: {round(ours['valid'] * len(gen))} of {len(gen)}")
    print(f"\n| metric | scivae | MOSES {theirs['_moses_version']} | abs. difference |")
    print("|---|---:|---:|---:|")
    worst = 0.0
    for key in MOSES_KEYS:
        a, b = ours[key], theirs[key]
        d = abs(a - b)
        worst = max(worst, d)
        print(f"| {key} | {a:.4f} | {b:.4f} | {d:.1e} |")
    verdict = "agree" if worst < 5e-4 else "DISAGREE"
    print(f"\nlargest absolute difference: {worst:.1e} ({verdict} to 3 decimals)")
    print(f"wall time of the metrics call: scivae {t_ours:.0f} s, MOSES {theirs['_seconds']:.0f} s")
    record = {
        "command": f"python -m benchmarks.molecules.metrics_vs_moses --n-gen {args.n_gen} --n-test {args.n_test}",
        "machine": _machine(),
        "generated": parts,
        "n_generated": len(gen),
        "n_reference": len(test),
        "moses_version": theirs["_moses_version"],
        "scivae": {k: ours[k] for k in MOSES_KEYS},
        "moses": {k: theirs[k] for k in MOSES_KEYS},
        "largest_abs_difference": worst,
        "seconds": {"scivae": t_ours, "moses": theirs["_seconds"]},
    }
    args.json.write_text(json.dumps(record, indent=2) + "\n")
    print(f"wrote {args.json}")


if __name__ == "__main__":
    main()
