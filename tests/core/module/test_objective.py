import pytest
import torch

from scivae.core import KLConfig, kl_term
from scivae.errors import ScivaeInputError

KL = torch.tensor([[0.02, 0.5, 2.0], [0.04, 0.7, 1.0]])  # batch-mean per dim: 0.03, 0.6, 1.5


def test_plain_and_beta():
    assert torch.isclose(kl_term(KL, KLConfig()), torch.tensor(2.13))
    assert torch.isclose(kl_term(KL, KLConfig(beta=0.5)), torch.tensor(1.065))


def test_free_bits_floor_per_dimension():
    term = kl_term(KL, KLConfig(free_bits=0.5))
    assert torch.isclose(term, torch.tensor(0.5 + 0.6 + 1.5))
    # below the floor the dimension gets no gradient: nothing to gain by collapsing it further
    kl = KL.clone().requires_grad_(True)
    kl_term(kl, KLConfig(free_bits=0.5)).backward()
    assert torch.all(kl.grad[:, 0] == 0)
    assert torch.allclose(kl.grad[:, 1:], torch.full((2, 2), 0.5))


def test_free_bits_per_group():
    # groups {0,1} -> 0.63 and {2} -> 1.5; floor 1.0 lifts the first group only
    term = kl_term(KL, KLConfig(free_bits=1.0, free_bits_groups=2))
    assert torch.isclose(term, torch.tensor(1.0 + 1.5))


def test_capacity_form_tracks_target():
    cfg = KLConfig(capacity=4.0, capacity_gamma=10.0, capacity_steps=100)
    assert cfg.capacity_at(0) == 0.0 and cfg.capacity_at(50) == 2.0 and cfg.capacity_at(500) == 4.0
    assert torch.isclose(kl_term(KL, cfg, step=50), torch.tensor(10.0 * abs(2.13 - 2.0)))
    assert torch.isclose(kl_term(KL, cfg, step=1000), torch.tensor(10.0 * abs(2.13 - 4.0)))


def test_invalid_controls_are_rejected():
    with pytest.raises(ScivaeInputError):
        KLConfig(free_bits=-1)
    with pytest.raises(ScivaeInputError):
        KLConfig(beta=-0.1)
