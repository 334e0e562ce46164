"""MolVAE end to end on a small MOSES subset: training improves the ELBO, sampling, SELFIES validity,
save/load with seeded reproducibility, latent-space moves, and clear errors for bad input."""

from __future__ import annotations

import warnings

import numpy as np
import pandas as pd
import pytest
import torch

from scivae.datasets._moses import moses
from scivae.errors import ModelFormatError, ScivaeInputError
from scivae.molecules import MolVAE
from scivae.molecules.data import canonicalize_many
from scivae.molecules.tokenizer import tokenize_smiles

TINY = dict(n_latent=8, embedding_dim=16, encoder_hidden=48, decoder_hidden=96, decoder_layers=1)


@pytest.fixture(scope="module")
def one_thread():
    # On a shared 2-core machine OpenMP threads spin against each other; one thread is faster and stable.
    n = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(n)


@pytest.fixture(scope="module")
def smiles_train():
    return moses("train", n=1200, seed=3)


@pytest.fixture(scope="module")
def trained(one_thread, smiles_train):
    vae = MolVAE(smiles_train, alphabet="smiles", **TINY, seed=0)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        fitted = vae.fit(max_epochs=4, batch_size=64, lr=3e-3, progress_bar=False, accelerator="cpu")
    assert fitted is vae  # fit returns the model, as every scivae model's fit does
    return vae, vae.fit_result


def test_training_improves_validation_elbo(trained):
    vae, result = trained
    elbo = result.history["elbo_validation"].to_numpy()
    assert len(elbo) == 4 and np.isfinite(elbo).all()
    # a molecule of ~37 tokens starts near 37 * log(26) ~ 120 nats; training must gain a lot
    assert elbo[-1] > elbo[0] + 5
    assert result.metrics["n_latent"] == 8
    assert vae.is_trained


def test_sample_generates_strings_from_the_vocabulary(trained):
    vae, _ = trained
    df = vae.sample(40, seed=0)
    assert isinstance(df, pd.DataFrame) and list(df.columns) == ["smiles", "valid"] and len(df) == 40
    assert df["smiles"].str.len().mean() > 5
    known = set(vae.vocab.tokens)
    for s, ok in zip(df["smiles"], df["valid"], strict=True):
        if not ok:
            assert set(tokenize_smiles(s)) <= known
    # valid rows hold canonical SMILES
    valid = df.loc[df["valid"], "smiles"].tolist()
    assert canonicalize_many(valid) == valid
    assert (df["smiles"].str.len() > 0).all()  # never an empty molecule


def test_seeded_sampling_and_save_load_reproducible(trained, tmp_path):
    vae, _ = trained
    a = vae.sample(25, seed=7)
    assert a.equals(vae.sample(25, seed=7))
    # this 4-epoch model decodes most codes greedily to one string; sampled tokens show the seed's effect
    tokens = vae.sample(25, seed=7, greedy=False)
    assert tokens.equals(vae.sample(25, seed=7, greedy=False))
    assert not tokens["smiles"].equals(vae.sample(25, seed=8, greedy=False)["smiles"])
    path = vae.save(tmp_path / "model")
    assert (path / "model.safetensors").exists() and (path / "config.json").exists()
    loaded = MolVAE.load(path)
    assert loaded.vocab.tokens == vae.vocab.tokens
    assert loaded.sample(25, seed=7)["smiles"].tolist() == a["smiles"].tolist()
    np.testing.assert_allclose(loaded.encode(["CCO", "c1ccccc1"]), vae.encode(["CCO", "c1ccccc1"]), rtol=1e-5)
    import scivae.core

    assert isinstance(scivae.core.load(path), MolVAE)


def test_encode_interpolate_neighbors(trained, smiles_train):
    vae, _ = trained
    z = vae.encode(smiles_train[:3])
    assert z.shape == (3, 8) and np.isfinite(z).all()
    path = vae.interpolate(smiles_train[0], smiles_train[1], steps=5, method="slerp")
    assert list(path.columns) == ["t", "smiles", "valid", "similarity_a", "same_as_a", "similarity_b", "same_as_b"]
    assert len(path) == 5
    assert path["t"].iloc[0] == 0.0 and path["t"].iloc[-1] == 1.0
    lin = vae.interpolate(smiles_train[0], smiles_train[1], steps=3, method="linear")
    assert len(lin) == 3
    nb = vae.neighbors(smiles_train[0], n=6, scale=0.3, seed=1)
    assert len(nb) == 6 and (nb["distance"] > 0).all()
    assert nb.equals(vae.neighbors(smiles_train[0], n=6, scale=0.3, seed=1))
    elbo = vae.elbo(smiles_train[:4])
    iw = vae.marginal_log_likelihood(smiles_train[:4], n_samples=20)
    assert elbo.shape == iw.shape == (4,) and (iw > elbo - 1.0).all()


def test_selfies_samples_are_all_valid(one_thread, smiles_train):
    # also exercises the bidirectional encoder, word dropout and free bits
    vae = MolVAE(
        smiles_train[:600], alphabet="selfies", **TINY, bidirectional=True, word_dropout=0.2, free_bits=0.1, seed=1
    )
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        vae.fit(max_epochs=2, batch_size=64, lr=3e-3, progress_bar=False, accelerator="cpu")
    df = vae.sample(150, seed=0, greedy=False)  # sampled tokens: any string the decoder can emit
    assert df["valid"].all()
    assert df["smiles"].nunique() > 10
    assert vae.sample(150, seed=0)["valid"].all()


def test_kekule_model_returns_canonical_aromatic_smiles(one_thread, smiles_train):
    vae = MolVAE(smiles_train[:600], alphabet="kekule", **TINY, seed=2)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        vae.fit(max_epochs=2, batch_size=64, lr=3e-3, progress_bar=False, accelerator="cpu")
    assert "c" not in vae.vocab.tokens
    df = vae.sample(200, seed=0)
    valid = df.loc[df["valid"], "smiles"].tolist()
    assert valid and canonicalize_many(valid) == valid  # written back as RDKit's canonical (aromatic) SMILES
    mu = vae.encode(["c1ccccc1O", "C1=CC=C(O)C=C1"])  # the same molecule in both notations
    np.testing.assert_allclose(mu[0], mu[1])


def test_bad_input_errors(trained, tmp_path):
    vae, _ = trained
    with pytest.raises(ScivaeInputError, match=r"token '\[se\]' in 'c1cc\[se\]c1' is not in this model") as e:
        vae.encode("[se]1cccc1")
    assert "\n" not in str(e.value)
    with pytest.raises(ScivaeInputError, match="not a valid SMILES"):
        vae.encode("C1CC")
    with pytest.raises(ScivaeInputError, match="no valid molecule"):
        MolVAE(["nonsense", ""], **TINY)
    with pytest.raises(ScivaeInputError, match="does not exist"):
        MolVAE.from_file(tmp_path / "missing.smi")
    csv = tmp_path / "m.csv"
    csv.write_text("name,structure\na,CCO\n")
    with pytest.raises(ScivaeInputError, match="column=NAME"):
        MolVAE.from_file(csv)
    with pytest.raises(ScivaeInputError, match="not trained"):
        MolVAE(["CCO", "CCN"], **TINY).sample(3)
    with pytest.raises(ScivaeInputError, match="slerp"):
        vae.interpolate("CCO", "CCN", method="cubic")
    with pytest.raises(ModelFormatError):
        MolVAE.load(tmp_path / "nowhere")
