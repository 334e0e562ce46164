"""Count log-likelihoods against scipy.stats / torch.distributions references."""

from __future__ import annotations

import mpmath
import numpy as np
import pytest
import scipy.stats as st
import torch

from scivae.cells.likelihoods import (
    NegativeBinomial,
    Poisson,
    ZeroInflatedNegativeBinomial,
    nb_log_prob,
    poisson_log_prob,
    zinb_log_prob,
)

# Grid over counts, means and inverse dispersions, including extremes seen in single-cell fits.
X = np.array([0, 1, 2, 5, 17, 100, 1000, 25000], dtype=np.float64)
MU = np.array([1e-6, 0.01, 0.5, 3.0, 40.0, 1e3, 3e4])
THETA = np.array([1e-3, 0.1, 1.0, 10.0, 1e3, 1e5])


def _grid() -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    x, mu, theta = np.meshgrid(X, MU, THETA, indexing="ij")
    return x.ravel(), mu.ravel(), theta.ravel()


def _t(a: np.ndarray, dtype: torch.dtype = torch.float64) -> torch.Tensor:
    return torch.as_tensor(a, dtype=dtype)


def _nb_exact(x: np.ndarray, mu: np.ndarray, theta: np.ndarray) -> np.ndarray:
    """log NB with 50-digit arithmetic (scipy loses ~1e-6 relative when theta >> mu)."""
    mpmath.mp.dps = 50
    out = []
    for xi, mi, ti in zip(x, mu, theta, strict=True):
        xi, mi, ti = mpmath.mpf(float(xi)), mpmath.mpf(float(mi)), mpmath.mpf(float(ti))
        lp = mpmath.loggamma(xi + ti) - mpmath.loggamma(ti) - mpmath.loggamma(xi + 1)
        out.append(float(lp + ti * mpmath.log(ti / (ti + mi)) + xi * mpmath.log(mi / (ti + mi))))
    return np.array(out)


def test_nb_matches_scipy_and_exact_reference() -> None:
    x, mu, theta = _grid()
    ours = nb_log_prob(_t(x), _t(np.log(mu)), _t(np.log(theta))).numpy()
    assert np.all(np.isfinite(ours))
    np.testing.assert_allclose(ours, _nb_exact(x, mu, theta), rtol=1e-9, atol=1e-8)
    ref = st.nbinom.logpmf(x, theta, theta / (theta + mu))
    moderate = np.isfinite(ref) & (theta <= 1e3)
    assert moderate.mean() > 0.6
    np.testing.assert_allclose(ours[moderate], ref[moderate], rtol=1e-8, atol=1e-6)


def test_nb_matches_torch_distribution() -> None:
    x, mu, theta = _grid()
    keep = theta <= 1e3  # torch's logits parameterisation loses precision for huge theta
    x, mu, theta = x[keep], mu[keep], theta[keep]
    ref = torch.distributions.NegativeBinomial(total_count=_t(theta), logits=_t(np.log(mu) - np.log(theta)))
    ours = NegativeBinomial(_t(np.log(mu)), _t(np.log(theta))).log_prob(_t(x))
    np.testing.assert_allclose(ours.numpy(), ref.log_prob(_t(x)).numpy(), rtol=1e-8, atol=1e-6)


def test_zinb_matches_mixture() -> None:
    x, mu, theta = _grid()
    rng = np.random.default_rng(0)
    logits = rng.normal(0, 3, size=x.shape)
    pi = 1 / (1 + np.exp(-logits))
    nb = st.nbinom.pmf(x, theta, theta / (theta + mu))
    with np.errstate(divide="ignore"):
        ref = np.log(pi * (x == 0) + (1 - pi) * nb)
    ours = zinb_log_prob(_t(x), _t(np.log(mu)), _t(np.log(theta)), _t(logits)).numpy()
    finite = np.isfinite(ref) & (theta <= 1e3)
    np.testing.assert_allclose(ours[finite], ref[finite], rtol=1e-8, atol=1e-6)
    assert np.all(np.isfinite(ours))


def test_poisson_matches_scipy() -> None:
    x, mu, _ = _grid()
    ours = poisson_log_prob(_t(x), _t(np.log(mu))).numpy()
    np.testing.assert_allclose(ours, st.poisson.logpmf(x, mu), rtol=1e-10, atol=1e-8)
    ref = torch.distributions.Poisson(_t(mu)).log_prob(_t(x)).numpy()
    np.testing.assert_allclose(Poisson(_t(np.log(mu))).log_prob(_t(x)).numpy(), ref, rtol=1e-10, atol=1e-8)


def test_nb_tends_to_poisson_for_large_theta() -> None:
    x = _t(np.arange(0, 30.0))
    log_mu = _t(np.full(30, np.log(7.0)))
    nb = nb_log_prob(x, log_mu, _t(np.full(30, np.log(1e7))))
    # the NB - Poisson gap is O(x^2 / theta) = 1e-4 at x = 30
    np.testing.assert_allclose(nb.numpy(), poisson_log_prob(x, log_mu).numpy(), atol=1e-4)


def test_nb_broadcasts_per_gene_dispersion() -> None:
    x = torch.tensor([[0.0, 3.0, 1.0], [2.0, 0.0, 7.0]])
    log_mu = torch.log(torch.tensor([[0.5, 2.0, 1.0], [3.0, 0.1, 6.0]]))
    log_theta = torch.log(torch.tensor([0.7, 4.0, 20.0]))
    full = nb_log_prob(x, log_mu, log_theta.expand(2, 3))
    assert torch.allclose(nb_log_prob(x, log_mu, log_theta), full)
    theta, mu = log_theta.exp().numpy(), log_mu.exp().numpy()
    ref = st.nbinom.logpmf(x.numpy(), theta, theta / (theta + mu))
    np.testing.assert_allclose(full.numpy(), ref, rtol=1e-5)


@pytest.mark.parametrize("kind", ["nb", "zinb", "poisson"])
def test_float32_extremes_are_finite_with_finite_gradients(kind: str) -> None:
    x, mu, theta = _grid()
    log_mu = _t(np.log(mu), torch.float32).requires_grad_(True)
    log_theta = _t(np.log(theta), torch.float32).requires_grad_(True)
    logits = torch.linspace(-20, 20, x.size).requires_grad_(True)
    xs = _t(x, torch.float32)
    if kind == "nb":
        lp = nb_log_prob(xs, log_mu, log_theta)
    elif kind == "zinb":
        lp = zinb_log_prob(xs, log_mu, log_theta, logits)
    else:
        lp = poisson_log_prob(xs, log_mu)
    assert torch.isfinite(lp).all()
    lp.sum().backward()
    assert torch.isfinite(log_mu.grad).all()
    if kind != "poisson":
        assert torch.isfinite(log_theta.grad).all()
    # float32 stays close to the exact value everywhere, large theta included (lgamma terms in float64)
    ref = _nb_exact(x, mu, theta) if kind != "poisson" else st.poisson.logpmf(x, mu)
    if kind == "zinb":
        log_pi = -np.logaddexp(0, -logits.detach().numpy().astype(np.float64))
        log_not_pi = -np.logaddexp(0, logits.detach().numpy().astype(np.float64))
        ref = np.where(x == 0, np.logaddexp(log_pi, log_not_pi + ref), log_not_pi + ref)
    # float32 rounding of terms that cancel (x log mu vs lgamma(x + 1) at x = 25,000) bounds the agreement
    np.testing.assert_allclose(lp.detach().numpy(), ref, rtol=3e-5, atol=1e-3)


def test_pmf_sums_to_one() -> None:
    x = _t(np.arange(0, 4000.0))[:, None]
    log_mu, log_theta = _t(np.log([0.2, 5.0, 60.0])), _t(np.log([0.3, 2.0, 50.0]))
    logits = _t([-1.0, 0.5, 2.0])
    for lp in (
        nb_log_prob(x, log_mu, log_theta),
        zinb_log_prob(x, log_mu, log_theta, logits),
        poisson_log_prob(x, log_mu),
    ):
        np.testing.assert_allclose(lp.exp().sum(0).numpy(), 1.0, atol=1e-6)


N = 200_000


@pytest.mark.parametrize(
    "dist",
    [
        NegativeBinomial(torch.full((N,), np.log(4.0)), torch.full((N,), np.log(1.5))),
        ZeroInflatedNegativeBinomial(
            torch.full((N,), np.log(4.0)), torch.full((N,), np.log(1.5)), torch.full((N,), -0.5)
        ),
        Poisson(torch.full((N,), np.log(4.0))),
    ],
)
def test_samples_match_moments(dist) -> None:
    torch.manual_seed(0)
    s = dist.sample()
    assert torch.equal(s, s.round()) and (s >= 0).all()
    np.testing.assert_allclose(s.mean().item(), dist.mean[0].item(), rtol=0.02)
    np.testing.assert_allclose(s.var().item(), dist.variance[0].item(), rtol=0.04)


def _row_case(n_rows: int = 6, n_genes: int = 40, seed: int = 0):
    """Counts with empty rows and large values, float64 log means, and the non-zero coordinates."""
    import scipy.sparse as sp

    from scivae.core.data.device import DeviceArrays

    rng = np.random.default_rng(seed)
    counts = rng.negative_binomial(2, 0.3, size=(n_rows, n_genes)).astype(np.float32)
    counts[rng.random(counts.shape) < 0.6] = 0
    counts[1] = 0
    counts[2, 3] = 25000
    batch = DeviceArrays({"x": sp.csr_matrix(counts)}).take(torch.arange(n_rows))
    nz = (batch["x__nz_rows"], batch["x__nz_cols"], batch["x__nz_values"])
    log_mu = _t(rng.normal(0, 2, size=(n_rows, n_genes))).requires_grad_()
    return _t(counts), log_mu, nz, batch["x__log_factorial"]


@pytest.mark.parametrize("theta_shape", ["gene", "one-row", "cell"])
@pytest.mark.parametrize("given", [False, True])
def test_row_sums_and_gradients_match_the_elementwise_nb(theta_shape, given) -> None:
    """nb_log_likelihood (dense part with a hand-written gradient, lgamma terms on the non-zeros) equals
    nb_log_prob(...).sum(-1) in value and gradient, with the non-zeros found or handed over."""
    from scivae.cells.likelihoods import nb_log_likelihood

    x, log_mu, nz, log_fact = _row_case()
    shape = {"gene": (40,), "one-row": (1, 40), "cell": (6, 40)}[theta_shape]
    log_theta = _t(np.random.default_rng(1).normal(1, 3, size=shape)).requires_grad_()
    ref = nb_log_prob(x, log_mu, log_theta).sum(-1)
    got = nb_log_likelihood(x, log_mu, log_theta, nz if given else None, log_fact if given else None)
    np.testing.assert_allclose(got.detach().numpy(), ref.detach().numpy(), rtol=1e-6 if given else 1e-9)
    w = torch.linspace(-1, 2, 6, dtype=torch.float64)
    g_ref = torch.autograd.grad((ref * w).sum(), [log_mu, log_theta])
    g_got = torch.autograd.grad((got * w).sum(), [log_mu, log_theta])
    for a, b in zip(g_ref, g_got, strict=True):
        np.testing.assert_allclose(b.numpy(), a.numpy(), rtol=1e-9, atol=1e-9)


def test_row_sums_of_every_likelihood_class() -> None:
    x, log_mu, nz, log_fact = _row_case()
    log_mu = log_mu.detach()
    log_theta, logits = _t(np.full(40, 0.7)), _t(np.full((6, 40), -1.0))
    for dist in (
        NegativeBinomial(log_mu, log_theta),
        ZeroInflatedNegativeBinomial(log_mu, log_theta, logits),
        Poisson(log_mu),
    ):
        ref = dist.log_prob(x).sum(-1).numpy()
        np.testing.assert_allclose(dist.log_prob_rows(x).numpy(), ref, rtol=1e-9)
        np.testing.assert_allclose(dist.log_prob_rows(x, nz, log_fact).numpy(), ref, rtol=1e-7, atol=2e-3)


@pytest.mark.parametrize("scale", [1.0, 0.5])
def test_count_table_and_lgamma_fallback_agree_with_lgamma(scale) -> None:
    """Integer counts (1 to 25,000) take the per-gene log table on the CPU; non-integral values take lgamma.
    Both equal the elementwise NB in value and in the gradient of log theta."""
    from scivae.cells.likelihoods import _TABLE_COUNTS, nb_log_likelihood

    x, log_mu, _, _ = _row_case(n_rows=20, n_genes=60, seed=3)
    x = x * scale
    assert (x > _TABLE_COUNTS).any() and ((x > 0) & (x <= _TABLE_COUNTS)).any()
    log_theta = _t(np.random.default_rng(2).normal(0, 4, size=60)).requires_grad_()
    ref = nb_log_prob(x, log_mu, log_theta).sum(-1)
    got = nb_log_likelihood(x, log_mu, log_theta)
    np.testing.assert_allclose(got.detach().numpy(), ref.detach().numpy(), rtol=1e-10)
    g_ref = torch.autograd.grad(ref.sum(), log_theta)[0]
    g_got = torch.autograd.grad(got.sum(), log_theta)[0]
    np.testing.assert_allclose(g_got.numpy(), g_ref.numpy(), rtol=1e-8, atol=1e-8)


def test_row_sums_run_under_bf16_autocast_and_stay_close() -> None:
    """check_bf16 evaluates the ELBO under CPU/GPU bf16 autocast: the NB row sums must run there (matrix
    products come back in bf16) and land near the float32 value."""
    from scivae.cells.likelihoods import nb_log_likelihood

    x, log_mu, nz, log_fact = _row_case()
    x, log_mu = x.float(), log_mu.detach().float()
    log_theta = torch.full((40,), 0.5)
    nz = (nz[0], nz[1], nz[2].float())
    ref = nb_log_likelihood(x, log_mu, log_theta, nz, log_fact.float())
    with torch.autocast("cpu", dtype=torch.bfloat16):
        got = nb_log_likelihood(x, log_mu, log_theta, nz, log_fact.float())
    assert got.dtype == torch.float32
    np.testing.assert_allclose(got.numpy(), ref.numpy(), rtol=2e-2)


@pytest.mark.parametrize("theta_shape", ["gene", "cell"])
def test_count_terms_computed_once_give_the_same_row_sums(theta_shape) -> None:
    """The count terms handed over (as the samples of the IWAE bound share them) give the row sums and the
    gradient in the means of the elementwise NB."""
    from scivae.cells.likelihoods import nb_count_terms, nb_log_likelihood

    x, log_mu, nz, log_fact = _row_case()
    log_theta = _t(np.random.default_rng(1).normal(1, 3, size=(40,) if theta_shape == "gene" else (6, 40)))
    ref = nb_log_prob(x, log_mu, log_theta).sum(-1)
    g_ref = torch.autograd.grad(ref.sum(), log_mu)[0]
    for args in ((nz, log_fact), (None, None)):
        terms = nb_count_terms(x, log_theta, *args)
        got = nb_log_likelihood(x, log_mu, log_theta, *args, count_terms=terms)
        np.testing.assert_allclose(got.detach().numpy(), ref.detach().numpy(), rtol=1e-6)
        g_got = torch.autograd.grad(got.sum(), log_mu)[0]
        np.testing.assert_allclose(g_got.numpy(), g_ref.numpy(), rtol=1e-9, atol=1e-9)


@pytest.mark.parametrize("dispersion", ["gene", "gene-batch", "gene-cell"])
def test_iwae_with_shared_count_terms_equals_the_bound_term_by_term(dispersion) -> None:
    """The IWAE bound of the count VAE, with the count terms computed once per batch, equals the bound whose
    every sample evaluates the whole likelihood (same draws)."""
    import math

    import scipy.sparse as sp

    from scivae.cells.module import CellVAEModule
    from scivae.core.data.device import iterate_device_batches
    from scivae.core.module.base import standard_normal_log_prob

    rng = np.random.default_rng(0)
    counts = sp.csr_matrix(rng.negative_binomial(2, 0.6, size=(30, 25)).astype(np.float32))
    arrays = {"x": counts, "batch": np.arange(30) % 2}
    torch.manual_seed(0)
    module = CellVAEModule(25, n_latent=3, n_hidden=16, dispersion=dispersion, n_batches=2).eval()
    batch = next(iter(iterate_device_batches(arrays, batch_size=30)))
    torch.manual_seed(1)
    got = module.iwae(dict(batch), k=7)
    torch.manual_seed(1)
    posterior = module.inference(batch)
    log_w = []
    for _ in range(7):
        z = posterior.rsample()
        log_w.append(module.importance_log_likelihood(batch, z) + standard_normal_log_prob(z) - posterior.log_prob(z))
    ref = torch.logsumexp(torch.stack(log_w), 0) - math.log(7)
    torch.testing.assert_close(got, ref, rtol=1e-6, atol=1e-4)
