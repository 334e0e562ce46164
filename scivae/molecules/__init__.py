"""Molecules: SMILES/SELFIES VAEs (:class:`MolVAE`), reading SMILES files, tokenisation.

MOSES metrics live in :mod:`scivae.molecules.metrics`. Needs the ``molecules`` extra (RDKit, SELFIES).
"""

import rdkit  # noqa: F401  (fail here, with the extra named by ``scivae.MolVAE``, not deep inside a fit)

from scivae.molecules.data import MoleculeSet, canonical_smiles, clean_smiles, read_smiles_entries, read_smiles_file
from scivae.molecules.model import MolVAE
from scivae.molecules.module import MolVAEModule
from scivae.molecules.tokenizer import Vocabulary, detokenize, tokenize, tokenize_smiles

__all__ = [
    "MolVAE",
    "MolVAEModule",
    "MoleculeSet",
    "Vocabulary",
    "canonical_smiles",
    "clean_smiles",
    "detokenize",
    "read_smiles_entries",
    "read_smiles_file",
    "tokenize",
    "tokenize_smiles",
]


def __dir__() -> list[str]:
    # tab completion and dir() show the public API, not the modules this one imports
    return list(__all__)
