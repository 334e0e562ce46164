import math

import torch

from scivae.core import GaussianHead, GaussianPosterior, standard_normal_log_prob


def test_closed_form_kl_matches_monte_carlo():
    torch.manual_seed(0)
    post = GaussianPosterior(torch.tensor([[0.5, -1.2, 2.0]]), torch.tensor([[-0.7, 0.3, -2.0]]))
    z = post.rsample(200_000)  # (S, 1, 3)
    mc = (post.log_prob(z) - standard_normal_log_prob(z)).mean()
    assert torch.isclose(mc, post.kl()[0], rtol=0.02)


def test_kl_is_zero_only_at_the_prior():
    at_prior = GaussianPosterior(torch.zeros(2, 4), torch.zeros(2, 4))
    assert torch.allclose(at_prior.kl(), torch.zeros(2))
    off = GaussianPosterior(torch.full((1, 4), 0.1), torch.zeros(1, 4))
    assert (off.kl() > 0).all()
    # KL per dimension = mu^2 / 2 when the variance is 1
    assert torch.allclose(off.kl_per_dim(), torch.full((1, 4), 0.005))


def test_log_prob_matches_torch_normal():
    post = GaussianPosterior(torch.randn(5, 3), torch.randn(5, 3))
    z = torch.randn(5, 3)
    ref = torch.distributions.Normal(post.mu, post.std).log_prob(z).sum(-1)
    assert torch.allclose(post.log_prob(z), ref, atol=1e-5)
    assert torch.allclose(standard_normal_log_prob(z), torch.distributions.Normal(0, 1).log_prob(z).sum(-1), atol=1e-6)


def test_gradients_flow_through_reparameterised_sample():
    mu = torch.zeros(4, 2, requires_grad=True)
    logvar = torch.zeros(4, 2, requires_grad=True)
    z = GaussianPosterior(mu, logvar).rsample()
    (z**2).sum().backward()
    assert mu.grad is not None and logvar.grad is not None
    assert mu.grad.abs().sum() > 0 and logvar.grad.abs().sum() > 0


def test_sample_statistics_follow_mu_and_sigma():
    torch.manual_seed(1)
    post = GaussianPosterior(torch.tensor([[3.0]]), torch.tensor([[math.log(4.0)]]))
    z = post.rsample(100_000)
    assert abs(z.mean().item() - 3.0) < 0.03
    assert abs(z.std().item() - 2.0) < 0.03


def test_gaussian_head_clamps_logvar():
    head = GaussianHead(3, 2, logvar_bounds=(-1.0, 1.0))
    with torch.no_grad():
        head.logvar.bias.fill_(50.0)
    post = head(torch.randn(6, 3))
    assert post.logvar.max() <= 1.0 and post.mu.shape == (6, 2)
