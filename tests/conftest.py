import numpy as np
import pytest
import torch


@pytest.fixture(autouse=True)
def _few_threads():
    # The test models are small: on CI's 2 cores one thread is several times faster than two (thread
    # start-up and contention dominate the tiny matrix products).
    torch.set_num_threads(1)


@pytest.fixture(scope="session")
def digits() -> np.ndarray:
    """scikit-learn's 8x8 handwritten digits (1,797 real images, shipped inside scikit-learn), in [0, 1]."""
    from sklearn.datasets import load_digits

    return (load_digits().data / 16.0).astype(np.float32)


@pytest.fixture(scope="session")
def cell_model():
    """A CellVAE fitted on 800 real PBMC cells x 300 genes (20 epochs), shared by the latent and plot tests.

    20 epochs: with LayerNorm this small model uses its code from about epoch 15 (tests/cells/test_model.py).
    """
    import warnings

    from scivae.cells import CellVAE
    from tests.cells.conftest import pbmc_subset

    torch.set_num_threads(1)
    adata = pbmc_subset(800, 300, seed=3)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return CellVAE(adata, n_latent=8, n_hidden=64, seed=0).fit(max_epochs=20, kl_warmup=20, progress_bar=False)


@pytest.fixture(scope="session")
def mol_model():
    """A MolVAE (the "cpu" preset, default KL settings) after a short fit on 1,500 MOSES molecules."""
    import warnings

    from scivae.datasets import moses
    from scivae.molecules import MolVAE

    torch.set_num_threads(1)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        vae = MolVAE(moses("train", n=1500, seed=21), architecture="cpu", seed=0)
        return vae.fit(max_epochs=3, batch_size=64, progress_bar=False, accelerator="cpu")
