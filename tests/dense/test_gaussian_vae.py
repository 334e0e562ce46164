"""The core trained end to end on real data (scikit-learn's digits) through the Gaussian adapter."""

import warnings

import numpy as np
import pytest
import torch

from scivae.dense import GaussianVAE
from scivae.errors import CollapseWarning, ModelFormatError, ScivaeInputError

FIT = dict(max_epochs=25, progress_bar=False, kl_schedule="constant", early_stopping=False)


@pytest.fixture(scope="module")
def trained(digits):
    model = GaussianVAE(64, n_latent=8, seed=0)
    model.fit(digits, **FIT)
    return model


def test_validation_elbo_improves_and_units_stay_active(trained):
    h = trained.fit_result.history
    assert h["elbo_validation"].iloc[-1] > h["elbo_validation"].iloc[0] + 20
    assert trained.fit_result.metrics["active_units"] >= 4
    assert not trained.fit_result.collapse.collapsed
    best = trained.fit_result.metrics["best_epoch"]
    assert h.loc[h["epoch"] == best, "elbo_validation"].item() == h["elbo_validation"].max()


def test_high_beta_collapses_and_free_bits_prevent_it(digits):
    with pytest.warns(CollapseWarning, match="free bits"):
        collapsed = GaussianVAE(64, n_latent=8, beta=50.0, seed=0)
        collapsed.fit(digits, **FIT)
    assert collapsed.fit_result.collapse.collapsed
    assert collapsed.fit_result.collapse.kl_total < 0.1

    with warnings.catch_warnings():
        warnings.simplefilter("error", CollapseWarning)
        rescued = GaussianVAE(64, n_latent=8, beta=50.0, free_bits=1.0, seed=0)
        rescued.fit(digits, **FIT)
    assert rescued.fit_result.metrics["active_units"] > 0
    assert rescued.fit_result.collapse.kl_total > 1.0


def test_iwae_bound_above_elbo_and_increasing_in_k(trained, digits):
    x = digits[:400]
    torch.manual_seed(0)
    elbo = trained.get_elbo(x).mean()
    iwae = {k: trained.get_marginal_ll(x, n_samples=k).mean() for k in (1, 10, 100)}
    # k = 1 is an unbiased estimate of the ELBO itself
    assert abs(iwae[1] - elbo) < 0.05 * abs(elbo) + 1.0
    assert iwae[10] > elbo and iwae[100] > iwae[10] > iwae[1]


def test_save_load_round_trip_gives_identical_outputs(trained, digits, tmp_path):
    path = trained.save(tmp_path / "model")
    assert {p.name for p in path.iterdir()} >= {"model.safetensors", "config.json", "history.csv"}
    loaded = GaussianVAE.load(path)
    np.testing.assert_array_equal(loaded.get_latent(digits[:50]), trained.get_latent(digits[:50]))
    torch.manual_seed(7)
    a = loaded.get_elbo(digits[:50])
    torch.manual_seed(7)
    b = trained.get_elbo(digits[:50])
    np.testing.assert_array_equal(a, b)
    import scivae

    assert isinstance(scivae.load(path), GaussianVAE)


def test_same_seed_same_model(digits):
    fits = []
    for _ in range(2):
        m = GaussianVAE(64, n_latent=4, seed=3)
        m.fit(digits[:300], max_epochs=2, progress_bar=False, seed=3)
        fits.append(m.get_latent(digits[:20]))
    np.testing.assert_array_equal(*fits)


def test_bad_input(trained, tmp_path):
    with pytest.raises(ScivaeInputError, match="64 features"):
        trained.get_latent(np.zeros((3, 10)))
    x = np.zeros((3, 64), dtype=np.float32)
    x[0, 0] = np.nan
    with pytest.raises(ScivaeInputError, match="NaN"):
        trained.get_latent(x)
    with pytest.raises(ModelFormatError, match="not a model directory"):
        GaussianVAE.load(tmp_path / "nothing")
    with pytest.raises(ScivaeInputError, match="not trained"):
        GaussianVAE(64).save(tmp_path / "m")
