"""The one seeding scheme of scivae: a seed gives the same result without touching the caller's random state.

Every model builds its initial weights inside :func:`seeded` with the seed given at construction, and every
stochastic evaluation (posterior samples, ELBO estimates, prior samples) takes a ``seed`` argument used the
same way; ``seed=None`` draws from the global random state instead. Training seeds torch, numpy and Python
through Lightning (see :func:`~scivae.core.train.fit.fit_module`), with the model's seed unless another is given.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator

import torch

from scivae.core.options import MAX_SEED, check_seed


@contextlib.contextmanager
def seeded(seed: int | None) -> Iterator[None]:
    """Run the block with torch's random state seeded by ``seed``, then restore the caller's state.

    ``None`` runs the block on the global random state unchanged. The CPU and every visible CUDA device are
    forked, so the block is reproducible on either and leaves no trace in the caller's random streams.
    """
    if seed is None:
        yield
        return
    seed = check_seed(seed)  # torch refuses negative seeds, numpy those past 2**32: one message for both
    devices = list(range(torch.cuda.device_count())) if torch.cuda.is_available() else []
    with torch.random.fork_rng(devices=devices):
        torch.manual_seed(int(seed))
        yield


def resolve_seed(seed: int | None) -> int:
    """``seed`` itself (checked: an integer in [0, 2^32)), or a fresh one drawn from torch's global random state when
    ``None``."""
    return check_seed(seed) if seed is not None else int(torch.randint(0, MAX_SEED + 1, (1,)).item())


def next_seed(seed: int) -> int:
    """The seed after ``seed`` (for a second random stream of one call), wrapping to 0 after the largest."""
    return (int(seed) + 1) % (MAX_SEED + 1)


def cpu_generator(seed: int | None) -> tuple[torch.Generator, int]:
    """A CPU generator seeded with :func:`resolve_seed` of ``seed``, and that seed.

    Latent points are drawn on the CPU so that a seed gives the same points on every device.
    """
    s = resolve_seed(seed)
    return torch.Generator(device="cpu").manual_seed(s), s
