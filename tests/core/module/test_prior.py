"""Latent priors: sampling, densities, fits that follow the data, and saved state that round-trips (or is refused)."""

import math

import numpy as np
import pytest
import torch

from scivae.core.module.prior import (
    FlowPrior,
    GaussianMixturePrior,
    MidpointPrior,
    StandardNormalPrior,
    prior_from_state,
)
from scivae.errors import ModelFormatError


def _ring(n: int, seed: int, noise: float = 0.02) -> np.ndarray:
    """Points on the unit circle in 2 of 4 dimensions (a thin, curved set, like an informative code)."""
    rng = np.random.default_rng(seed)
    angle = rng.uniform(0, 2 * np.pi, n)
    x = np.zeros((n, 4))
    x[:, 0], x[:, 1] = np.cos(angle), np.sin(angle)
    return (x + noise * rng.standard_normal(x.shape)).astype(np.float32)


def _off_ring(z: np.ndarray) -> np.ndarray:
    """Distance of points from the circle."""
    return np.abs(np.hypot(z[:, 0], z[:, 1]) - 1.0) + np.abs(z[:, 2:]).sum(1)


@pytest.fixture(scope="module")
def ring():
    return _ring(3000, 0), _ring(1000, 1)


def _gen(seed=0):
    return torch.Generator().manual_seed(seed)


def _priors(ring):
    train, val = ring
    sd = np.full_like(train, 0.02)
    return [
        StandardNormalPrior(4),
        GaussianMixturePrior.fit(train, n_components=8, seed=0),
        FlowPrior.fit(train, val, n_layers=4, hidden=64, max_epochs=30, seed=0),
        MidpointPrior.fit(train, sd, k=5, noise=1.0),
    ]


@pytest.fixture(scope="module")
def priors(ring):
    return _priors(ring)


def test_samples_are_seeded_and_densities_finite(priors):
    for prior in priors:
        a, b = prior.sample(500, _gen(3)), prior.sample(500, _gen(3))
        assert a.shape == (500, 4) and a.dtype == torch.float32
        assert torch.equal(a, b), prior.kind
        assert not torch.equal(a, prior.sample(500, _gen(4))), prior.kind
        lp = prior.log_prob(a[:50])
        assert lp.shape == (50,) and bool(torch.isfinite(lp).all()), prior.kind


def test_standard_normal_density_is_the_closed_form():
    z = torch.tensor([[0.0, 0.0], [1.0, -2.0]])
    expected = -0.5 * (2 * math.log(2 * math.pi) + (z**2).sum(1))
    torch.testing.assert_close(StandardNormalPrior(2).log_prob(z), expected)


def test_fitted_priors_follow_a_thin_curved_set_better_than_the_standard_normal(priors, ring):
    _, val = ring
    held_out = {p.kind: float(p.log_prob(torch.as_tensor(val)).mean()) for p in priors}
    # every fitted density explains held-out points of the ring far better than N(0, I)
    for kind in ("gmm", "flow", "midpoints"):
        assert held_out[kind] > held_out["standard"] + 5, held_out
    # and its samples lie near the ring (N(0, I) samples do not); the midpoints stay closest
    off = {p.kind: float(np.median(_off_ring(p.sample(2000, _gen(1)).numpy()))) for p in priors}
    assert off["standard"] > 1.0
    assert off["midpoints"] < 0.1 and off["midpoints"] < off["gmm"] and off["midpoints"] < off["flow"], off


def test_gaussian_mixture_finds_two_clusters():
    rng = np.random.default_rng(0)
    x = np.concatenate([rng.normal(-3, 0.5, (500, 3)), rng.normal(3, 0.5, (500, 3))])
    prior = GaussianMixturePrior.fit(x, n_components=2, seed=0)
    centres = sorted(prior.means[:, 0].tolist())
    assert centres[0] == pytest.approx(-3, abs=0.15) and centres[1] == pytest.approx(3, abs=0.15)
    torch.testing.assert_close(prior.weights.sum(), torch.tensor(1.0, dtype=torch.float64))


def test_midpoint_density_matches_the_full_mixture_on_small_data():
    rng = np.random.default_rng(2)
    codes = rng.standard_normal((12, 3)).astype(np.float32)
    prior = MidpointPrior.fit(codes, np.full_like(codes, 0.3), k=3, noise=0.5)
    z = torch.as_tensor(rng.standard_normal((7, 3)), dtype=torch.float32)
    # brute force: every code with each of its 3 nearest neighbours (scaled distances)
    c = torch.as_tensor(codes)
    d = torch.cdist(c / prior.scale, c / prior.scale)
    d.fill_diagonal_(float("inf"))
    partners = d.topk(3, largest=False).indices
    mids = 0.5 * (c.unsqueeze(1) + c[partners]).reshape(-1, 3)
    sd = prior.noise * prior.scale
    comp = (-0.5 * ((z[:, None] - mids) / sd) ** 2 - torch.log(sd) - 0.5 * math.log(2 * math.pi)).sum(-1)
    expected = torch.logsumexp(comp, 1) - math.log(mids.shape[0])
    torch.testing.assert_close(prior.log_prob(z, n_near=12), expected, atol=1e-4, rtol=1e-4)


def test_midpoint_samples_lie_between_neighbours():
    codes = np.array([[0.0, 0.0], [1.0, 0.0], [10.0, 10.0], [11.0, 10.0]], dtype=np.float32)
    prior = MidpointPrior.fit(codes, np.full_like(codes, 0.1), k=1, noise=0.0)
    z = prior.sample(200, _gen(0)).numpy()
    assert {tuple(p) for p in np.round(z, 4)} == {(0.5, 0.0), (10.5, 10.0)}


def test_state_round_trip_gives_the_same_prior(priors):
    for prior in priors:
        tensors, meta = prior.state()
        back = prior_from_state({k: v.clone() for k, v in tensors.items()}, meta)
        assert type(back) is type(prior) and back.n_latent == prior.n_latent
        assert torch.equal(back.sample(100, _gen(5)), prior.sample(100, _gen(5))), prior.kind
        z = prior.sample(20, _gen(6))
        torch.testing.assert_close(back.log_prob(z), prior.log_prob(z))


def test_damaged_state_is_refused(priors):
    _, gmm, flow, mid = priors
    tensors, meta = gmm.state()
    with pytest.raises(ModelFormatError, match="do not match"):
        prior_from_state({**tensors, "means": tensors["means"][:, :2]}, meta)
    bad = tensors["weights"].clone()
    bad[0] = -1.0
    with pytest.raises(ModelFormatError, match="not a distribution"):
        prior_from_state({**tensors, "weights": bad}, meta)
    tensors, meta = flow.state()
    name = next(iter(k for k in tensors if k.endswith("weight")))
    with pytest.raises(ModelFormatError, match="not finite"):
        prior_from_state({**tensors, name: torch.full_like(tensors[name], float("nan"))}, meta)
    tensors, meta = mid.state()
    with pytest.raises(ModelFormatError, match="out of range"):
        prior_from_state(tensors, {**meta, "config": {**meta["config"], "t_low": 0.9, "t_high": 0.1}})
    for broken in ({**meta, "kind": "pickle"}, {**meta, "config": "x"}, [1, 2]):
        with pytest.raises(ModelFormatError):
            prior_from_state(tensors, broken)
