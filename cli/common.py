"""What every verb of the command line shares: option types with one name and one help each, torch threads, and
the mapping from the library's option names to the command line's flags.

Kept light (typer and the standard library only): ``scivae --help`` imports it.
"""

from __future__ import annotations

import os
import time
from typing import Annotated

import typer

#: Flags whose name is not ``--`` + the option name with dashes.
IRREGULAR_FLAGS = {"n": "-n", "output": "-o", "json_out": "--json", "gen": "GEN"}


def flag(option: str) -> str:
    """The command line's flag for a library option name (``batch_size`` -> ``--batch-size``)."""
    return IRREGULAR_FLAGS.get(option, "--" + option.replace("_", "-"))


def echo(message: str) -> None:
    """A line on stderr (stdout is for results: SMILES, tables)."""
    typer.echo(message, err=True)


# -- options shared by several verbs (same flag, same help everywhere) ---------------------------------------
Threads = Annotated[
    int,
    typer.Option(
        "--threads",
        help="CPU threads for torch; 0: the cores that other processes leave idle when the command starts (at "
        "least 1).",
    ),
]
Accelerator = Annotated[
    str,
    typer.Option(
        "--accelerator",
        help="Where the model computes: auto (a GPU when there is one), cpu, or gpu (cuda, cuda:N for one GPU).",
    ),
]
Seed = Annotated[int | None, typer.Option("--seed", help="Random seed: the same seed gives the same result.")]
BatchSize = Annotated[int | None, typer.Option("--batch-size", help="Items per batch (default: the command's).")]
MODEL_HELP = "Output folder of `scivae fit` (OUT) or its model folder (OUT/model)."


# -- threads --------------------------------------------------------------------------------------------------
def usable_cores() -> int:
    """Cores this process may run on (its CPU affinity, which containers and schedulers set)."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not on Linux
        return os.cpu_count() or 1


def _cpu_times() -> tuple[float, float] | None:
    """(idle, total) jiffies of all CPUs from /proc/stat, or None off Linux."""
    try:
        with open("/proc/stat") as fh:
            fields = [float(v) for v in fh.readline().split()[1:]]
    except (OSError, ValueError):
        return None
    return fields[3] + (fields[4] if len(fields) > 4 else 0.0), sum(fields[:8])


def auto_threads(window_s: float = 0.5) -> int:
    """Torch threads for ``--threads 0``: the usable cores that other processes leave idle, at least one.

    Threads that share a core with another busy process make every parallel step wait for the slowest one, so
    a fit on a busy machine runs several times slower with every core than with the idle ones alone
    (benchmarks/molecules/RESULTS.md). The idle share is read over ``window_s`` seconds from /proc/stat.
    """
    usable = usable_cores()
    first = _cpu_times()
    if first is None:
        return usable
    time.sleep(window_s)
    second = _cpu_times()
    if second is None or second[1] <= first[1]:
        return usable
    idle_share = (second[0] - first[0]) / (second[1] - first[1])
    idle_cores = idle_share * (os.cpu_count() or usable)
    return max(1, min(usable, int(idle_cores + 0.25)))


def set_threads(threads: int) -> int:
    """Set torch's threads for this command (``0``: :func:`auto_threads`); returns the number set."""
    from scivae.core.options import positive_int

    positive_int(threads, "threads", minimum=0)
    import torch

    n = threads or auto_threads()
    torch.set_num_threads(n)
    return n
