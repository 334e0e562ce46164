"""MOSES data for the molecule benchmarks: random, disjoint subsets of the MOSES files.

The files are read from ``SCIVAE_MOSES_DIR`` (default ``../shared/data/moses`` beside the repository). They are
ordered (consecutive rows are similar), so every subset is drawn at random with a seed.
"""

from __future__ import annotations

import gzip
import os
from pathlib import Path
from typing import Any

import numpy as np

ROOT = Path(__file__).resolve().parents[2]
MOSES_DIR = Path(os.environ.get("SCIVAE_MOSES_DIR", ROOT.parent / "shared" / "data" / "moses"))
#: Where runs keep their models and caches (git-ignored).
OUT = ROOT / "benchmarks" / "out" / "molecules"
RESULTS = Path(__file__).resolve().parent / "results"


def read_moses(split: str) -> list[str]:
    """All SMILES of the MOSES ``train`` or ``test`` file."""
    path = MOSES_DIR / f"{split}.csv.gz"
    if not path.exists():
        raise SystemExit(f"{path} not found: set SCIVAE_MOSES_DIR to the folder with MOSES train.csv.gz/test.csv.gz")
    with gzip.open(path, "rt") as fh:
        lines = fh.read().splitlines()
    return [s for s in lines[1:] if s]


def moses_splits(n_train: int, n_validation: int, n_test: int, seed: int = 0) -> dict[str, list[str]]:
    """Random, disjoint subsets: ``train`` and ``validation`` from MOSES train (``seed``), ``test`` from MOSES test.

    ``seed`` 0 draws the same 100k training molecules as the earlier benchmarks; a smaller ``n_train`` draws a
    different random subset. Validation molecules (for choosing defaults) come from the rest of MOSES train;
    test molecules (for the reported figures) from MOSES test with ``seed + 1``.
    """
    train_all = read_moses("train")
    rng = np.random.default_rng(seed)
    train_idx = np.sort(rng.choice(len(train_all), size=min(n_train, len(train_all)), replace=False))
    rest = np.setdiff1d(np.arange(len(train_all)), train_idx)
    val_idx = np.sort(np.random.default_rng(seed + 100).choice(rest, size=min(n_validation, len(rest)), replace=False))
    test_all = read_moses("test")
    n_test = min(n_test, len(test_all))
    test_idx = np.sort(np.random.default_rng(seed + 1).choice(len(test_all), size=n_test, replace=False))
    return {
        "train": [train_all[i] for i in train_idx],
        "validation": [train_all[i] for i in val_idx],
        "test": [test_all[i] for i in test_idx],
    }


def encodable(vae: Any, smiles: list[str]) -> tuple[list[str], int]:
    """The molecules the model's vocabulary can write (canonical), and how many were left out."""
    from scivae.errors import ScivaeInputError
    from scivae.molecules.data import canonicalize_many
    from scivae.molecules.tokenizer import tokenize

    keep = []
    for c in canonicalize_many(smiles):
        if c is None:
            continue
        try:
            toks = tokenize(c, vae.alphabet)
            vae.vocab.ids(toks)
        except ScivaeInputError:
            continue
        if len(toks) <= vae.vocab.max_tokens:
            keep.append(c)
    return keep, len(smiles) - len(keep)


def reference_stats(smiles: list[str], name: str) -> Any:
    """MOSES reference statistics (ChemNet, fingerprints, fragments, scaffolds) of ``smiles``, cached in ``OUT``."""
    from scivae.molecules.metrics import ReferenceStats, compute_reference_stats

    path = OUT / "cache" / f"{name}.npz"
    if path.exists():
        return ReferenceStats.load(path)
    stats = compute_reference_stats(smiles)
    path.parent.mkdir(parents=True, exist_ok=True)
    stats.save(path)
    return stats


def machine() -> str:
    """One line: processor, cores, torch version and threads, load average."""
    import platform

    import torch

    cpu = platform.processor() or platform.machine()
    try:
        with open("/proc/cpuinfo") as fh:
            cpu = next((line.split(":", 1)[1].strip() for line in fh if line.startswith("model name")), cpu)
    except OSError:
        pass
    return (
        f"{cpu}, {os.cpu_count()} cores, torch {torch.__version__}, {torch.get_num_threads()} torch thread(s), "
        f"load average {tuple(round(x, 2) for x in os.getloadavg())}"
    )
