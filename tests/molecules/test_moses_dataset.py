"""The shipped MOSES subset and its loader."""

from __future__ import annotations

import pytest

from scivae.datasets._moses import moses
from scivae.errors import ScivaeInputError


def test_moses_subset_sizes_and_seeded_subsets():
    train, test = moses("train"), moses("test")
    assert len(train) == 50_000 and len(test) == 10_000
    a, b = moses("train", n=500, seed=1), moses("train", n=500, seed=1)
    assert a == b and len(set(a)) == 500 and set(a) <= set(train)
    assert moses("train", n=500, seed=2) != a
    # random, not the first lines of the file
    assert a != train[:500]


def test_moses_bad_arguments():
    with pytest.raises(ScivaeInputError, match="split"):
        moses("valid")
    with pytest.raises(ScivaeInputError, match="between 1 and"):
        moses("test", n=10_001)
