"""Decoding constraints: the SMILES syntax mask accepts every real molecule token by token, and constrained
sampling from an untrained decoder only ends strings that parse."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from rdkit import Chem, RDLogger

from scivae.datasets import moses
from scivae.molecules.constraints import (
    ATOM,
    BOND,
    CLOSE,
    OPEN,
    RING,
    AtomFirst,
    SmilesSyntax,
    decoding_constraint,
    smiles_token_kind,
)
from scivae.molecules.module import MolVAEModule
from scivae.molecules.tokenizer import EOS_ID, Vocabulary, tokenize_many


def _vocab_and_ids(smiles: list[str]) -> tuple[Vocabulary, np.ndarray, np.ndarray]:
    toks, failed = tokenize_many(smiles, "smiles")
    assert not failed
    vocab = Vocabulary.build(toks, "smiles")
    x, lengths = vocab.encode(toks)
    return vocab, x, lengths


def test_token_kinds():
    kinds = {t: smiles_token_kind(t) for t in ["C", "c", "Cl", "[nH]", "[C@@H]", "*", "1", "%12", "(", ")", "=", "#"]}
    assert kinds == {
        "C": ATOM, "c": ATOM, "Cl": ATOM, "[nH]": ATOM, "[C@@H]": ATOM, "*": ATOM, "1": RING, "%12": RING,
        "(": OPEN, ")": CLOSE, "=": BOND, "#": BOND,
    }  # fmt: skip


def test_every_shipped_moses_molecule_passes_the_syntax_mask():
    smiles = moses("train") + moses("test")  # 60,000 canonical SMILES
    vocab, x, lengths = _vocab_and_ids(smiles)
    syntax = SmilesSyntax(vocab)
    x_t = torch.from_numpy(x)
    state = syntax.start(len(x), torch.device("cpu"))
    rows = torch.arange(len(x))
    for t in range(int(lengths.max())):
        live = torch.from_numpy(lengths > t)
        ok = syntax.allowed(state)[rows, x_t[:, t]]
        bad = torch.nonzero(live & ~ok).squeeze(1)
        assert len(bad) == 0, f"{smiles[int(bad[0])]!r} rejected at token {t}"
        syntax.advance(state, x_t[:, t])
    # the last real id of every row is <eos>, which was allowed: all branches and rings were closed
    assert (x[rows.numpy(), lengths - 1] == EOS_ID).all()


def test_known_syntax_errors_are_masked():
    vocab, _, _ = _vocab_and_ids(["CC(=O)Nc1ccccc1", "C1CC2CCC1C2", "C#N"])
    syntax = SmilesSyntax(vocab)
    ids = {t: i for i, t in enumerate(vocab.tokens)}

    def allowed_after(prefix: list[str]) -> set[str]:
        state = syntax.start(1, torch.device("cpu"))
        for tok in prefix:
            syntax.advance(state, torch.tensor([ids[tok]]))
        mask = syntax.allowed(state)[0]
        return {vocab.tokens[i] for i in range(len(vocab)) if mask[i]}

    assert allowed_after([]) >= {"C", "N", "c", "O"} and not allowed_after([]) & {"(", ")", "=", "1", "<eos>"}
    assert ")" not in allowed_after(["C", "C"])  # no open branch
    assert "<eos>" not in allowed_after(["C", "(", "C"])  # open branch
    assert "<eos>" not in allowed_after(["C", "1", "C", "C"])  # open ring bond
    assert "<eos>" in allowed_after(["C", "1", "C", "C", "1"])  # closed again
    assert not allowed_after(["C", "="]) & {"=", "#", ")", "(", "<eos>"}  # a bond needs an atom next
    assert ")" not in allowed_after(["C", "("])  # no empty branch
    # RDKit rejects a ring bond closed on its own atom (C11), on the chain neighbour (C1C1) or twice (C12CCC12)
    assert "1" not in allowed_after(["C", "1"])
    assert "1" not in allowed_after(["C", "1", "C"])
    assert "2" not in allowed_after(["C", "1", "2", "C", "C", "C", "1"])
    assert "1" in allowed_after(["C", "1", "C", "C"]) and "2" in allowed_after(["C", "1", "2", "C", "C", "C"])
    assert "1" not in allowed_after(["C", "1", "(", "C"])  # the branch atom hangs from the ring atom
    assert "1" not in allowed_after(["C", "(", "="]) and "1" in allowed_after(["C", "="])  # "C(=1" does not parse


@pytest.mark.parametrize("syntax", [False, True])
def test_constrained_sampling_ends_only_parseable_strings(syntax):
    smiles = moses("train", n=2000)
    vocab, _, _ = _vocab_and_ids(smiles)
    torch.manual_seed(0)
    module = MolVAEModule(
        len(vocab), n_latent=8, embedding_dim=8, encoder_hidden=16, decoder_hidden=32, decoder_layers=1
    )
    module.eval()
    constraint = decoding_constraint(vocab, syntax=syntax)
    assert isinstance(constraint, SmilesSyntax if syntax else AtomFirst)
    ids = module.decode(torch.randn(400, 8), 60, generator=torch.Generator().manual_seed(0), constraint=constraint)
    ended = [vocab.decode(row) for row in ids.tolist() if EOS_ID in row]
    assert len(ended) > 50
    RDLogger.DisableLog("rdApp.*")
    parses = [Chem.MolFromSmiles("".join(t), sanitize=False) is not None for t in ended]
    RDLogger.EnableLog("rdApp.*")
    if syntax:
        assert all(parses)
    else:  # an untrained decoder without the mask writes mostly broken strings
        assert np.mean(parses) < 0.5


def test_selfies_models_get_the_atom_rule_only():
    toks, _ = tokenize_many(["CCO", "c1ccccc1"], "selfies")
    vocab = Vocabulary.build(toks, "selfies")
    assert isinstance(decoding_constraint(vocab, syntax=True), AtomFirst)
    with pytest.raises(ValueError, match="SMILES vocabulary"):
        SmilesSyntax(vocab)
