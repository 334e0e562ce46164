"""The one seeding scheme refuses seeds that torch or numpy would refuse with a traceback."""

from __future__ import annotations

import pytest

from scivae.core.options import MAX_SEED
from scivae.core.seeding import cpu_generator, next_seed, resolve_seed, seeded
from scivae.errors import OptionError


@pytest.mark.parametrize("seed", [-1, MAX_SEED + 1, 2**64, 1.5, "3", True])
def test_a_seed_outside_0_to_2_pow_32_is_an_option_error(seed) -> None:
    for use in (lambda: seeded(seed).__enter__(), lambda: resolve_seed(seed), lambda: cpu_generator(seed)):
        with pytest.raises(OptionError, match=r"^seed=.* is not an integer between 0 and 4294967295$"):
            use()


def test_fresh_seeds_and_the_edges_are_accepted() -> None:
    assert all(0 <= resolve_seed(None) <= MAX_SEED for _ in range(20))
    assert resolve_seed(0) == 0 and resolve_seed(MAX_SEED) == MAX_SEED
    with seeded(MAX_SEED):
        pass


def test_the_largest_seed_works_where_a_call_derives_a_second_one() -> None:
    from scivae import MolVAE, latent
    from scivae.datasets import moses

    assert next_seed(3) == 4 and next_seed(MAX_SEED) == 0
    model = MolVAE(moses("train", n=30, seed=1), n_latent=2, embedding_dim=4, encoder_hidden=8, decoder_hidden=8)
    model.fit(max_epochs=1, progress_bar=False, accelerator="cpu", prior=None)
    assert len(latent.sample(model, 2, seed=MAX_SEED)) == 2  # its decoder samples with the seed after it
