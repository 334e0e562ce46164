"""SMILES/SELFIES tokenisation and the vocabulary: round trips on the shipped MOSES subset, clear errors."""

from __future__ import annotations

import pytest

from scivae.datasets._moses import moses
from scivae.errors import ScivaeInputError
from scivae.molecules.data import canonicalize_many
from scivae.molecules.tokenizer import (
    EOS_ID,
    PAD_ID,
    Vocabulary,
    detokenize,
    tokenize,
    tokenize_many,
    tokenize_smiles,
)


@pytest.fixture(scope="module")
def moses_all():
    return moses("train") + moses("test")


def test_smiles_tokens():
    assert tokenize_smiles("Clc1ccc(Br)cc1") == ["Cl", "c", "1", "c", "c", "c", "(", "Br", ")", "c", "c", "1"]
    assert tokenize_smiles("C[C@@H](O)c1cc[nH]c1") == [
        "C",
        "[C@@H]",
        "(",
        "O",
        ")",
        "c",
        "1",
        "c",
        "c",
        "[nH]",
        "c",
        "1",
    ]
    assert tokenize_smiles("C%12CC%12") == ["C", "%12", "C", "C", "%12"]
    assert tokenize_smiles("F/C=C\\F") == ["F", "/", "C", "=", "C", "\\", "F"]
    assert tokenize_smiles("[NH3+]CC(=O)[O-]")[0] == "[NH3+]"
    with pytest.raises(ScivaeInputError, match="cannot tokenise"):
        tokenize_smiles("CC O")


def test_smiles_round_trip_every_moses_molecule(moses_all):
    toks, failed = tokenize_many(moses_all, "smiles")
    assert not failed
    vocab = Vocabulary.build(toks, "smiles")
    arr, lengths = vocab.encode(toks)
    assert arr.shape[0] == len(moses_all) == 60_000
    assert (arr[range(len(arr)), lengths - 1] == EOS_ID).all()
    back = ["".join(vocab.decode(row)) for row in arr]
    assert back == moses_all
    # MOSES tokens that must be single tokens
    assert {"Cl", "Br", "[nH]"} <= set(vocab.tokens)


def test_selfies_round_trip_every_moses_molecule(moses_all):
    canon = canonicalize_many(moses_all)
    assert None not in canon
    toks, failed = tokenize_many(canon, "selfies")
    assert not failed
    vocab = Vocabulary.build(toks, "selfies")
    arr, _ = vocab.encode(toks)
    decoded = [detokenize(vocab.decode(row), "selfies") for row in arr]
    assert canonicalize_many(decoded) == canon


def test_kekule_round_trip_every_moses_molecule(moses_all):
    canon = canonicalize_many(moses_all)  # a few MOSES strings are not RDKit 2026 canonical
    toks, failed = tokenize_many(canon, "kekule")
    assert not failed
    vocab = Vocabulary.build(toks, "kekule")
    # Kekulé form: explicit double bonds, no aromatic atoms (so no [nH] either)
    assert not {"c", "n", "o", "s", "[nH]"} & set(vocab.tokens) and "=" in vocab.tokens
    arr, _ = vocab.encode(toks)
    decoded = [detokenize(vocab.decode(row), "kekule") for row in arr]
    assert canonicalize_many(decoded) == canon


def test_selfies_any_sequence_is_valid():
    toks = tokenize("c1ccccc1CCN", "selfies")
    assert all(t.startswith("[") for t in toks)
    # an arbitrary shuffled token sequence still decodes to a valid molecule
    mixed = toks[::-1] + toks[:3]
    assert canonicalize_many([detokenize(mixed, "selfies")])[0] is not None


def test_vocabulary_json_and_unknown_token():
    toks, _ = tokenize_many(["CCO", "c1ccccc1"], "smiles")
    vocab = Vocabulary.build(toks, "smiles")
    again = Vocabulary.from_dict(vocab.to_dict())
    assert again.tokens == vocab.tokens and again.max_tokens == 8
    arr, lengths = again.encode(toks)
    assert arr.shape == (2, 9) and lengths.tolist() == [4, 9] and arr[0, 4] == PAD_ID
    with pytest.raises(ScivaeInputError, match="token 'Cl' in 'CCCl' is not in this model") as e:
        again.encode([tokenize("CCCl")], smiles=["CCCl"])
    assert "\n" not in str(e.value)
    with pytest.raises(ScivaeInputError, match="alphabet"):
        tokenize_many(["CCO"], "inchi")
