"""The molecule VAE module: the per-molecule likelihood is the sum of the step-by-step token log-probs,
padding is ignored, word dropout acts only in training, and the KL controls reach the objective."""

from __future__ import annotations

import torch

from scivae.core import KLConfig
from scivae.molecules.constraints import AtomFirst
from scivae.molecules.module import MolVAEModule
from scivae.molecules.tokenizer import BOS_ID, EOS_ID, PAD_ID, Vocabulary, tokenize_many

SMILES = ["CCO", "c1ccccc1Cl", "CC(=O)Nc1ccc(O)cc1", "N#Cc1ccncc1"]


def _batch():
    toks, _ = tokenize_many(SMILES)
    vocab = Vocabulary.build(toks, "smiles")
    x, lengths = vocab.encode(toks)
    return vocab, {"x": torch.from_numpy(x), "length": torch.from_numpy(lengths)}


def _module(vocab, **kw):
    torch.manual_seed(0)
    return MolVAEModule(
        len(vocab), n_latent=6, embedding_dim=8, encoder_hidden=16, decoder_hidden=24, decoder_layers=2, **kw
    ).eval()


@torch.no_grad()
def test_log_likelihood_is_sum_of_stepwise_log_probs():
    vocab, batch = _batch()
    m = _module(vocab, bidirectional=True)
    z = torch.randn(len(SMILES), 6)
    ll = m.log_likelihood(batch, z)
    for i in range(len(SMILES)):
        n = int(batch["length"][i])
        h = m.initial_state(z[i : i + 1])
        prev, total = BOS_ID, 0.0
        for t in range(n):
            step = torch.cat([m.embedding(torch.tensor([prev])), z[i : i + 1]], -1).unsqueeze(1)
            o, h = m.decoder(step, h)
            logp = torch.log_softmax(m.output(o[:, 0]), -1)[0]
            tok = int(batch["x"][i, t])
            total += float(logp[tok])
            prev = tok
        assert tok == EOS_ID
        assert abs(total - float(ll[i])) < 1e-4


def test_padding_is_ignored_and_word_dropout_only_in_training():
    vocab, batch = _batch()
    m = _module(vocab, word_dropout=0.5)
    z = torch.randn(len(SMILES), 6)
    ll = m.log_likelihood(batch, z)
    # widen the padding: nothing changes
    wide = {"x": torch.cat([batch["x"], torch.full((4, 5), PAD_ID)], 1), "length": batch["length"]}
    torch.testing.assert_close(m.log_likelihood(wide, z), ll)
    torch.testing.assert_close(m.inference(wide).mu, m.inference(batch).mu)
    m.train()
    torch.manual_seed(1)
    assert not torch.allclose(m.log_likelihood(batch, z), ll)
    m.eval()
    torch.testing.assert_close(m.log_likelihood(batch, z), ll)


@torch.no_grad()
def test_encoding_of_a_molecule_does_not_depend_on_its_batch_mates():
    vocab, batch = _batch()
    for bidirectional in (False, True):
        m = _module(vocab, bidirectional=bidirectional, encoder_layers=2)
        mu = m.inference(batch).mu
        for i in range(len(SMILES)):
            n = int(batch["length"][i])
            alone = m.inference({"x": batch["x"][i : i + 1, :n], "length": batch["length"][i : i + 1]}).mu
            torch.testing.assert_close(alone, mu[i : i + 1])
            # the encoder summary is the GRU's final state after the molecule's own last token
            _, h = m.encoder(m.embedding(batch["x"][i : i + 1, :n]))
            last = h[-m.n_directions :].transpose(0, 1).reshape(1, -1)
            torch.testing.assert_close(m.head(last).mu, mu[i : i + 1])


def test_kl_controls_reach_the_loss():
    vocab, batch = _batch()
    plain = _module(vocab)
    torch.manual_seed(2)
    base = plain.loss(batch)
    plain.kl_config = KLConfig(free_bits=5.0)
    torch.manual_seed(2)
    floored = plain.loss(batch)
    # with a 5-nat floor on each of 6 dimensions the regulariser is at least 30 nats
    assert float(floored.kl_regulariser) >= 30.0 - 1e-4 > float(base.kl_regulariser)
    torch.testing.assert_close(floored.kl, base.kl)


def test_decode_stops_at_eos_and_never_emits_specials_or_empty():
    vocab, _ = _batch()
    m = _module(vocab)
    atoms = torch.as_tensor(vocab.atom_mask())
    g = torch.Generator().manual_seed(0)
    ids = m.decode(torch.randn(64, 6), vocab.max_tokens, generator=g, constraint=AtomFirst(vocab))
    for row in ids.tolist():
        body = row[: row.index(EOS_ID)] if EOS_ID in row else row
        assert body and all(t not in (PAD_ID, BOS_ID, 3) for t in body)
        assert any(atoms[t] for t in body)
