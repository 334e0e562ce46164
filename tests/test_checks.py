"""Option checks: one message per bad value, naming the flag and the Python argument."""

from __future__ import annotations

import pytest
import torch

from scivae.checks import check_accelerator, check_device, positive_float, positive_int
from scivae.errors import OptionError


def test_positive_numbers():
    assert positive_int(3, "batch_size") == 3 and positive_int(2.0, "batch_size") == 2
    for bad in (0, -1, 1.5, "3", None, True):
        with pytest.raises(
            OptionError, match=r"--batch-size must be an integer >= 1, got .* \(batch_size= in Python\)"
        ):
            positive_int(bad, "batch_size")
    assert positive_int(0, "kl_warmup", minimum=0) == 0
    assert positive_float(0.5, "temperature") == 0.5 and positive_float(0, "free_bits", allow_zero=True) == 0
    for bad in (0, -1, float("nan"), float("inf"), "x"):
        with pytest.raises(OptionError, match="--temperature must be a finite number > 0"):
            positive_float(bad, "temperature")


def test_accelerator_and_devices():
    check_accelerator("cpu", "auto")
    check_accelerator("auto", "2")
    check_accelerator("cpu", 1)
    with pytest.raises(OptionError, match="--accelerator 'tpu' is unknown"):
        check_accelerator("tpu")
    for bad in ("two", "0", 0, "-2", "0,x", ""):
        with pytest.raises(OptionError, match="--devices"):
            check_accelerator("cpu", bad)
    if not torch.cuda.is_available():
        with pytest.raises(OptionError, match="no CUDA GPU is available on this machine"):
            check_accelerator("gpu")
        with pytest.raises(OptionError, match="--device cuda: no CUDA GPU"):
            check_device("cuda")
    assert check_device("cpu").type == "cpu"
    with pytest.raises(OptionError, match="is not a device"):
        check_device("gpu0")
