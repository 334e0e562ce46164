import numpy as np
import pytest
import torch


@pytest.fixture(autouse=True)
def _few_threads():
    # CI has 2 cores; more torch threads than cores makes the suite slower, not faster.
    torch.set_num_threads(2)


@pytest.fixture(scope="session")
def digits() -> np.ndarray:
    """scikit-learn's 8x8 handwritten digits (1,797 real images, shipped inside scikit-learn), in [0, 1]."""
    from sklearn.datasets import load_digits

    return (load_digits().data / 16.0).astype(np.float32)
