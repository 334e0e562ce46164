"""The default molecule recipe learns a latent space that carries the molecule (after a short fit on a subset).

Baselines that an unused latent would score: decoding every molecule from another molecule's code (the
reconstruction a latent-free language model gets), and the similarity of random pairs of molecules.
"""

from __future__ import annotations

import warnings

import numpy as np
import pytest
import torch

from scivae.datasets._moses import moses
from scivae.molecules import MolVAE
from scivae.molecules.metrics import tanimoto_to

N_TRAIN = 1000
EPOCHS = 150  # early stopping ends it sooner: about 80 CPU-seconds


@pytest.fixture(scope="module")
def default_recipe():
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    train = moses("train", n=N_TRAIN, seed=11)
    vae = MolVAE(train, architecture="cpu", seed=0)  # every other setting is the default recipe
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        result = vae.fit(max_epochs=EPOCHS, batch_size=64, progress_bar=False, accelerator="cpu").fit_result
    yield vae, result
    torch.set_num_threads(threads)


def test_default_recipe_reconstructs_far_above_an_unused_latent(default_recipe):
    vae, result = default_recipe
    train = vae.training_smiles[:300]
    acc = vae.reconstruct(train)["same"].mean()
    # the same decoder given other molecules' codes: what a latent that carries nothing would reconstruct
    mu = vae.encode(train)
    swapped = vae.decode(np.roll(mu, 1, axis=0))
    baseline = float(np.mean(swapped["smiles"].to_numpy() == np.asarray(train)))
    assert baseline < 0.01
    assert acc > 0.03, acc  # 0.067 when written (latent 32, beta 0.2); an unused latent scores the baseline


def test_collapse_diagnostics_see_an_informative_latent(default_recipe):
    _, result = default_recipe
    m = result.metrics
    assert not m["collapsed"]
    assert m["mutual_information"] > 2.0  # of at most log(50 validation molecules) = 3.9 nats
    assert m["latent_gain_validation"] > 10.0  # nats of reconstruction the decoder takes from z (39 when written)
    assert m["active_units"] > 10
    for col in ("mutual_information", "latent_gain_validation", "reconstruction_accuracy_validation"):
        assert col in result.history and result.history[col].notna().all()


def test_neighbors_and_interpolation_stay_closer_than_random_pairs(default_recipe):
    vae, _ = default_recipe
    mols = vae.training_smiles
    rng = np.random.default_rng(0)
    pairs = rng.choice(len(mols), size=(200, 2))
    random_pairs = np.nanmean([tanimoto_to(mols[i], [mols[j]])[0] for i, j in pairs if i != j])
    sims, valid = [], []
    for q in mols[:20]:
        nb = vae.neighbors(q, n=5, seed=1)
        sims.extend(nb["similarity"].dropna())
        valid.extend(nb["valid"])
    assert np.mean(valid) > 0.7
    assert np.mean(sims) > random_pairs + 0.07, (np.mean(sims), random_pairs)  # +0.13 when written
    near_start = []
    for a, b in zip(mols[20:30], mols[30:40], strict=True):
        path = vae.interpolate(a, b, steps=6)
        s = tanimoto_to(a, path["smiles"].where(path["valid"], "").tolist())
        near_start.append(np.nanmean(s[:2]))
    assert np.nanmean(near_start) > random_pairs + 0.07, (np.nanmean(near_start), random_pairs)


def test_learned_prior_samples_are_closer_to_unseen_molecules_than_standard_normal_ones(default_recipe):
    """The prior fitted after training (the default) against N(0, I), on the same model: FCD to 1,000 held-out MOSES
    test molecules over all 500 strings of each (lower: the samples are distributed more like real molecules)."""
    from scivae.molecules.metrics import compute_metrics

    vae, result = default_recipe
    assert vae.learned_prior is not None and result.metrics["prior"] == "midpoints"
    held_out = moses("test", n=1000, seed=5)
    figures = {}
    for prior in ("learned", "standard"):
        gen = vae.sample(500, seed=0, prior=prior)
        strings = gen["smiles"].where(gen["valid"], "").tolist()
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            figures[prior] = compute_metrics(strings, train=vae.training_smiles, test=held_out, n_jobs=1)
    learned, standard = figures["learned"], figures["standard"]
    assert learned["FCD/Test"] < standard["FCD/Test"] - 1.0, (learned["FCD/Test"], standard["FCD/Test"])
    assert learned["valid"] >= standard["valid"] - 0.02
    assert learned["Novelty"] > 0.5  # new molecules, not copies of the 1,000 training molecules


def test_learned_prior_survives_save_and_load(default_recipe, tmp_path):
    import scivae
    from scivae.errors import ModelFormatError

    vae, _ = default_recipe
    path = vae.save(tmp_path / "model")
    assert (path / "prior.safetensors").exists() and (path / "prior.json").exists()
    loaded = scivae.load(path)
    assert type(loaded.learned_prior) is type(vae.learned_prior)
    assert loaded.sample(40, seed=3).equals(vae.sample(40, seed=3))
    assert loaded.sample(40, seed=3, prior="standard").equals(vae.sample(40, seed=3, prior="standard"))
    (path / "prior.json").unlink()
    with pytest.raises(ModelFormatError, match="only one of prior.safetensors and prior.json"):
        scivae.load(path)
