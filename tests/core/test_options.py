"""Options: TrainingOptions is checked when made and passed on whole; messages name options, which the CLI
renders as its flags."""

from __future__ import annotations

import dataclasses
import re
from pathlib import Path

import pytest
import torch

from scivae.core.options import (
    FIELDS,
    TrainingOptions,
    check_accelerator,
    check_device,
    check_seed,
    positive_float,
    positive_int,
)
from scivae.errors import DivergenceError, OptionError, ScivaeInputError
from scivae_cli.common import flag


def _cli(error: Exception) -> str:
    return error.render(flag)


def test_positive_numbers_name_the_option_for_python_and_the_flag_for_the_cli():
    assert positive_int(3, "batch_size") == 3 and positive_int(2.0, "batch_size") == 2
    for bad in (0, -1, 1.5, "3", None, True):
        with pytest.raises(OptionError, match=r"^batch_size=.* is not an integer >= 1") as info:
            positive_int(bad, "batch_size")
        assert _cli(info.value).startswith("--batch-size=")
    assert positive_int(0, "kl_warmup", minimum=0) == 0
    assert positive_float(0.5, "temperature") == 0.5 and positive_float(0, "free_bits", allow_zero=True) == 0
    for bad in (0, -1, float("nan"), float("inf"), "x"):
        with pytest.raises(OptionError, match="temperature=.* is not a finite number > 0"):
            positive_float(bad, "temperature")
    for bad in (-1, 2**32, 1.5, "7", True):
        with pytest.raises(OptionError, match="seed="):
            check_seed(bad)
    assert check_seed(2**32 - 1) == 2**32 - 1


def test_accelerator_and_devices():
    check_accelerator("cpu", "auto")
    check_accelerator("auto", "2")
    check_accelerator("cpu", 1)
    with pytest.raises(OptionError, match="accelerator='tpu' is unknown") as info:
        check_accelerator("tpu")
    assert "--accelerator='tpu'" in _cli(info.value)
    for bad in ("two", "0", 0, "-2", "0,x", ""):
        with pytest.raises(OptionError, match="devices="):
            check_accelerator("cpu", bad)
    if not torch.cuda.is_available():
        with pytest.raises(OptionError, match="no CUDA GPU is available on this machine"):
            check_accelerator("gpu")
        with pytest.raises(OptionError, match="device=cuda: no CUDA GPU") as info:
            check_device("cuda")
        assert "--device=cpu" in _cli(info.value)
        assert check_device("auto").type == "cpu"
    assert check_device("cpu").type == "cpu"
    with pytest.raises(OptionError, match="is not a device"):
        check_device("gpu0")


def test_training_options_are_checked_when_made_and_replaced():
    opts = TrainingOptions(max_epochs=3.0, devices="2", batch_size=64)
    assert opts.max_epochs == 3 and isinstance(opts.max_epochs, int) and opts.devices == 2
    assert opts.replace(lr=0.01).lr == 0.01 and opts.lr == 1e-3  # frozen: replace makes a copy
    with pytest.raises(dataclasses.FrozenInstanceError):
        opts.lr = 1.0  # type: ignore[misc]
    for bad in (
        {"batch_size": 0},
        {"lr": -1},
        {"lr_schedule": "step"},
        {"kl_schedule": "wavy"},
        {"validation_fraction": 1.0},
        {"accelerator": "tpu"},
        {"max_time": 0},
        {"seed": -5},
        {"patience": 0},
    ):
        with pytest.raises(OptionError, match=next(iter(bad))):
            TrainingOptions(**bad)
    with pytest.raises(OptionError, match="unknown training option.*colour"):
        opts.replace(colour="red")
    assert FIELDS == set(opts.to_dict())


def test_a_message_without_an_option_list_finds_its_placeholders():
    e = ScivaeInputError("pass {layer}=counts or leave {batch_key} out; {x} stays literal? no")
    assert e.options == ("layer", "batch_key", "x")
    assert str(e) == "pass layer=counts or leave batch_key out; x stays literal? no"
    assert _cli(e).startswith("pass --layer=counts or leave --batch-key out")
    d = DivergenceError("lower {lr}", options=("lr",))
    d.append(" and retry")
    assert str(d) == "lower lr and retry" and _cli(d) == "lower --lr and retry"


def test_no_message_of_the_library_names_a_command_line_flag():
    """Library code names options as {name}; the only flags allowed are other programs' (pip's)."""
    root = Path(__file__).resolve().parents[2] / "scivae"
    flag_in_string = re.compile(r"""["'][^"'\n]*(?<![\w`-])--[a-z][a-z-]+""")
    found = []
    for path in root.rglob("*.py"):
        in_doc = False
        for number, line in enumerate(path.read_text().splitlines(), start=1):
            stripped = line.strip()
            quotes = stripped.count('"""')
            if quotes == 1:
                in_doc = not in_doc
                continue
            if in_doc or quotes >= 2 or stripped.startswith("#"):
                continue
            if flag_in_string.search(line) and "pip install" not in line:
                found.append(f"{path.relative_to(root)}:{number}: {stripped}")
    assert not found, "\n".join(found)
