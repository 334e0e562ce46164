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


@contextlib.contextmanager
def seeded(seed: int | None) -> Iterator[None]:
    """Run the block with torch's random state seeded by ``seed``, then restore the caller's state.

    ``None`` runs the block on the global random state unchanged. The CPU and every visible CUDA device are
    forked, so the block is reproducible on either and leaves no trace in the caller's random streams.
    """
    if seed is None:
        yield
        return
    devices = list(range(torch.cuda.device_count())) if torch.cuda.is_available() else []
    with torch.random.fork_rng(devices=devices):
        torch.manual_seed(int(seed))
        yield


def resolve_seed(seed: int | None) -> int:
    """``seed`` itself, or a fresh seed drawn from torch's global random state when ``None``."""
    return int(seed) if seed is not None else int(torch.randint(0, 2**62, (1,)).item())


def cpu_generator(seed: int | None) -> tuple[torch.Generator, int]:
    """A CPU generator seeded with :func:`resolve_seed` of ``seed``, and that seed.

    Latent points are drawn on the CPU so that a seed gives the same points on every device.
    """
    s = resolve_seed(seed)
    return torch.Generator(device="cpu").manual_seed(s), s
