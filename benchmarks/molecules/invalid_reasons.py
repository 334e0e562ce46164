"""Why are a model's prior samples invalid? Counts RDKit's reasons over n samples, raw and syntax-constrained.

Usage (a model directory written by train_moses_cpu.py)::

    .venv/bin/python benchmarks/molecules/invalid_reasons.py benchmarks/out/molecules/model_smiles_cpu_30min_run4

Reasons: ``parse: unbalanced branches`` and ``parse: other`` (mostly unpaired ring-bond digits) are strings
RDKit cannot even read; ``KekulizeException`` and friends are RDKit's sanitisation problems of strings it
reads (``Chem.DetectChemistryProblems``).
"""

from __future__ import annotations

import argparse
import sys
from collections import Counter
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))

from scivae.molecules import MolVAE  # noqa: E402
from scivae.molecules.io import rdkit_quiet  # noqa: E402


def reason(smiles: str) -> str:
    from rdkit import Chem

    mol = Chem.MolFromSmiles(smiles, sanitize=False)
    if mol is None:
        return "parse: unbalanced branches" if smiles.count("(") != smiles.count(")") else "parse: other"
    problems = Chem.DetectChemistryProblems(mol)
    return problems[0].GetType() if problems else "other"


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("model", type=Path)
    p.add_argument("-n", type=int, default=2000)
    p.add_argument("--seed", type=int, default=3)
    p.add_argument("--temperature", type=float, default=1.0)
    args = p.parse_args()
    torch.set_num_threads(1)
    vae = MolVAE.load(args.model)
    modes = {"raw": False, "syntax": True} if vae.alphabet != "selfies" else {"raw": False}
    for mode, syntax in modes.items():
        df = vae.sample(args.n, seed=args.seed, temperature=args.temperature, syntax=syntax)
        with rdkit_quiet():
            counts = Counter(reason(s) for s in df.loc[~df["valid"], "smiles"])
        shown = ", ".join(f"{k} {v}" for k, v in counts.most_common())
        print(f"{mode}: valid {df['valid'].mean():.4f} of {args.n}; invalid: {shown or 'none'}")


if __name__ == "__main__":
    main()
