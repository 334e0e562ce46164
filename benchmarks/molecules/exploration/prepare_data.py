"""Tokenised MOSES subsets for prototype.py: 100k random training molecules (seed 0), 2k test (seed 1)."""

import gzip
import json
import os
import sys
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[3]
MOSES = Path(os.environ.get("SCIVAE_MOSES_DIR", ROOT.parent / "shared" / "data" / "moses"))
WORK = Path(os.environ.get("SCIVAE_EXPLORE_DIR", ROOT / "benchmarks" / "out" / "exploration"))
WORK.mkdir(parents=True, exist_ok=True)
sys.path.insert(0, str(ROOT))
from scivae.molecules.io import clean_smiles  # noqa: E402
from scivae.molecules.tokenizer import Vocabulary, tokenize_many  # noqa: E402


def read(split):
    with gzip.open(MOSES / f"{split}.csv.gz", "rt") as fh:
        return [s for s in fh.read().splitlines()[1:] if s]


tr, te = read("train"), read("test")
rng = np.random.default_rng(0)
tr = [tr[i] for i in np.sort(rng.choice(len(tr), 100_000, replace=False))]
te = [te[i] for i in np.sort(np.random.default_rng(1).choice(len(te), 2_000, replace=False))]
for alpha in ("kekule", "smiles"):
    dtr = clean_smiles(tr)
    dte = clean_smiles(te)
    ttr, _ = tokenize_many(dtr.smiles, alpha)
    tte, _ = tokenize_many(dte.smiles, alpha)
    vocab = Vocabulary.build(ttr, alpha)
    keep = [i for i, t in enumerate(tte) if all(x in vocab.index for x in t)]
    tte = [tte[i] for i in keep]
    dte.smiles = [dte.smiles[i] for i in keep]
    xtr, ltr = vocab.encode(ttr)
    xte, lte = vocab.encode(tte)
    np.savez(WORK / f"data_{alpha}.npz", xtr=xtr, ltr=ltr, xte=xte, lte=lte)
    json.dump(
        {"vocab": vocab.to_dict(), "train": dtr.smiles, "test": dte.smiles}, open(WORK / f"meta_{alpha}.json", "w")
    )
    print(alpha, xtr.shape, xte.shape, len(vocab), ltr.mean(), ltr.max())
