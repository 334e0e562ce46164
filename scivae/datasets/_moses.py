"""MOSES benchmark molecules shipped with scivae (random subsets of the MOSES train and test sets)."""

from __future__ import annotations

import gzip
from pathlib import Path

import numpy as np

from scivae.datasets._files import data_file
from scivae.errors import ScivaeInputError

_SPLITS = ("train", "test")


def moses_path(split: str = "train") -> Path:
    """Path of the shipped ``datasets/moses/{split}.csv.gz`` file (gzip CSV, header ``SMILES``)."""
    if split not in _SPLITS:
        raise ScivaeInputError(f"unknown MOSES split {split!r}: use 'train' or 'test'")
    return data_file("moses", f"{split}.csv.gz")


def moses(split: str = "train", n: int | None = None, seed: int = 0) -> list[str]:
    """SMILES from the shipped MOSES subset (50,000 train / 10,000 test molecules, MIT licence).

    The shipped files are uniform random subsets of the MOSES sets (``molsets==0.3.1``); see
    ``datasets/moses/README.md``.

    Parameters
    ----------
    split
        ``"train"`` or ``"test"``.
    n
        Return a random subset of this many molecules (drawn with ``seed``, in file order); ``None``: all.
    seed
        Seed of the random subset.

    Returns
    -------
    list of str
        SMILES strings as in MOSES (RDKit canonical form).
    """
    with gzip.open(moses_path(split), "rt") as fh:
        lines = fh.read().splitlines()
    smiles = [s for s in lines[1:] if s]
    if n is None:
        return smiles
    if not 0 < n <= len(smiles):
        raise ScivaeInputError(f"n must be between 1 and {len(smiles)} for the MOSES {split} subset, got {n}")
    idx = np.sort(np.random.default_rng(seed).choice(len(smiles), size=n, replace=False))
    return [smiles[i] for i in idx]
