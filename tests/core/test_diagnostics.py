import math

import torch

from scivae.core import GaussianPosterior, VAEModule, active_units, collapse_report, kl_per_dimension
from scivae.core.diagnostics import latent_gain, mutual_information


def test_active_units_on_constructed_data():
    g = torch.Generator().manual_seed(0)
    n = 2000
    mu = torch.stack(
        [
            torch.randn(n, generator=g),  # variance 1: active
            0.05 * torch.randn(n, generator=g) + 3.0,  # variance 0.0025: inactive
            0.3 * torch.randn(n, generator=g),  # variance 0.09: active
            1e-3 * torch.randn(n, generator=g),  # variance 1e-6: inactive despite a non-zero mean
            torch.full((n,), 5.0),  # constant: inactive
        ],
        dim=1,
    )
    assert active_units(mu) == 2
    assert active_units(mu, threshold=0.001) == 3


def test_collapse_report():
    n = 500
    mu = torch.zeros(n, 3)
    logvar = torch.zeros(n, 3)
    rep = collapse_report(mu, logvar)
    assert rep.active_units == 0 and rep.kl_total == 0.0 and rep.collapsed
    assert "free bits" in rep.message() and "beta < 1" in rep.message()
    mu[:, 0] = torch.linspace(-2, 2, n)
    rep = collapse_report(mu, logvar)
    assert rep.active_units == 1 and not rep.collapsed
    assert rep.kl_per_dim[1] == 0.0 and rep.kl_per_dim[0] > 0.5
    assert torch.allclose(kl_per_dimension(mu, logvar), torch.tensor(rep.kl_per_dim))


def _linear_gaussian_posteriors(n: int, seed: int = 0):
    """x ~ N(0, I_4), q(z|x) = N(W x, diag(s^2)): I(x; z) = 0.5 (log det(W W^T + S) - log det S) in closed form."""
    g = torch.Generator().manual_seed(seed)
    w = torch.tensor([[1.5, 0.0, 0.3, 0.0], [0.0, 0.8, 0.0, 0.0], [0.2, 0.0, 0.0, 0.1]], dtype=torch.float64)
    s2 = torch.tensor([0.2, 0.5, 1.0], dtype=torch.float64)
    x = torch.randn(n, 4, generator=g, dtype=torch.float64)
    mu = x @ w.T
    logvar = s2.log().expand(n, -1)
    exact = 0.5 * (torch.logdet(w @ w.T + torch.diag(s2)) - s2.log().sum())
    return mu, logvar, float(exact)


def test_mutual_information_matches_the_linear_gaussian_closed_form():
    mu, logvar, exact = _linear_gaussian_posteriors(5000)
    assert 1.5 < exact < 3.0  # well below log N = 8.5, so the log N ceiling does not bias the estimate
    est = mutual_information(mu, logvar)
    assert abs(est - exact) < 0.1, (est, exact)
    # the report carries it, and KL = MI + KL(q(z) || p(z)) with a non-negative marginal KL
    rep = collapse_report(mu, logvar)
    assert abs(rep.mutual_information - est) < 1e-6
    assert rep.marginal_kl > 0 and abs(rep.kl_total - rep.mutual_information - rep.marginal_kl) < 1e-6
    assert abs(rep.mi_upper_bound - math.log(5000)) < 1e-9


def test_mutual_information_is_capped_by_log_n_and_zero_without_information():
    g = torch.Generator().manual_seed(1)
    n = 1000
    # each item pinned to its own far-away point: all log N nats, no more
    mu = 10 * torch.randn(n, 8, generator=g)
    logvar = torch.full((n, 8), -8.0)
    assert abs(mutual_information(mu, logvar) - math.log(n)) < 0.05
    # free-bits padding: every posterior sits at the floor (KL > 0 per dimension) but all are the same
    mu = torch.full((n, 8), 0.5)
    logvar = torch.full((n, 8), -0.5)
    rep = collapse_report(mu, logvar)
    assert rep.kl_total > 0.5
    assert abs(rep.mutual_information) < 1e-6 and rep.collapsed
    assert "mutual information" in rep.message()


class _IgnoresZ(VAEModule):
    """Encoder reads x, decoder does not read z: the latent is padding."""

    def __init__(self) -> None:
        super().__init__(n_latent=2)
        self.enc = torch.nn.Linear(3, 4)
        self.loc = torch.nn.Parameter(torch.zeros(3))

    def inference(self, batch):
        h = self.enc(batch["x"])
        return GaussianPosterior(h[:, :2], h[:, 2:].clamp(-4, 1))

    def generative(self, z, batch):
        return torch.distributions.Normal(self.loc.expand(z.shape[0], -1), 1.0)


class _ReadsZ(_IgnoresZ):
    def generative(self, z, batch):
        return torch.distributions.Normal(torch.cat([z, z[:, :1]], 1) * 3.0, 0.5)


def test_latent_gain_tells_a_decoder_that_ignores_z():
    torch.manual_seed(0)
    batch = {"x": torch.randn(256, 3)}
    for cls, used in ((_IgnoresZ, False), (_ReadsZ, True)):
        module = cls().eval()
        with torch.no_grad():
            module.enc.weight.mul_(3.0)  # make the posterior means vary across items: "active" units
            post = module.inference(batch)
        gain = float(latent_gain(module, batch, post).mean())
        rep = collapse_report(post.mu, post.logvar, latent_gain=gain)
        assert rep.active_units == 2
        if used:
            assert gain > 1.0 and not rep.collapsed
        else:
            assert abs(gain) < 1e-6 and rep.collapsed and "decoder gains" in rep.message()


def test_non_finite_posteriors_are_not_called_collapse():
    mu = torch.full((10, 3), float("nan"))
    rep = collapse_report(mu, torch.zeros(10, 3))
    assert not rep.finite and not rep.collapsed
    assert rep.to_dict()["mutual_information"] is None
