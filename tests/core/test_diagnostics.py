import torch

from scivae.core import active_units, collapse_report, kl_per_dimension


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
