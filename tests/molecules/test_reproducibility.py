"""Fitting twice with the same seed gives the same molecule model (the cell counterpart is in tests/cells)."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from scivae.datasets._moses import moses
from scivae.molecules import MolVAE

TINY = dict(n_latent=4, embedding_dim=16, encoder_hidden=32, decoder_hidden=48, decoder_layers=1)


@pytest.mark.filterwarnings("ignore")
def test_same_seed_same_latents_and_samples():
    torch.set_num_threads(1)
    train, probe = moses("train", n=300, seed=4), moses("test", n=50, seed=4)

    def fit(seed: int) -> MolVAE:
        vae = MolVAE(train, **TINY, seed=seed)
        vae.fit(max_epochs=2, batch_size=64, lr=3e-3, progress_bar=False, accelerator="cpu")
        return vae

    a, b, c = fit(1), fit(1), fit(2)
    np.testing.assert_array_equal(a.encode(probe), b.encode(probe))
    assert a.fit_result.history.equals(b.fit_result.history)
    assert a.sample(20, seed=0)["smiles"].tolist() == b.sample(20, seed=0)["smiles"].tolist()
    assert not np.allclose(a.encode(probe), c.encode(probe))
