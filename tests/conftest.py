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
