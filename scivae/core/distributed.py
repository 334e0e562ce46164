"""Where this process stands in a distributed (DDP) run, and gathering rows across processes.

Lightning starts the processes and the process group; these helpers only read it, so that data, diagnostics
and outputs behave the same with one process or many.
"""

from __future__ import annotations

import os

import torch
import torch.distributed as dist
from torch import Tensor


def rank_world() -> tuple[int, int]:
    """``(global rank, world size)`` of this process: ``(0, 1)`` outside a process group."""
    if dist.is_available() and dist.is_initialized():
        return dist.get_rank(), dist.get_world_size()
    return 0, 1


def launched_rank() -> int:
    """0 for the first process of a launched distributed run (or a run without a launcher), > 0 for the others,
    read before any process group exists.

    Lightning's DDP launcher re-runs the command in child processes (``LOCAL_RANK`` > 0), torchrun sets
    ``RANK`` and SLURM ``SLURM_PROCID``; a command that writes outputs lets only rank 0 write them.
    """
    for key in ("RANK", "SLURM_PROCID"):
        if key in os.environ and (key != "SLURM_PROCID" or int(os.environ.get("SLURM_NTASKS", "1")) > 1):
            return int(os.environ[key])
    return int(os.environ.get("LOCAL_RANK", "0")) + int(os.environ.get("NODE_RANK", "0"))


def is_global_zero() -> bool:
    """Whether this process writes outputs: rank 0 of a distributed run, or the only process.

    After a DDP fit Lightning may already have torn the process group down; its rank is then still known
    to ``rank_zero_only``, which Lightning sets when it starts the process.
    """
    if dist.is_available() and dist.is_initialized():
        return dist.get_rank() == 0
    from lightning.fabric.utilities.rank_zero import rank_zero_only

    return getattr(rank_zero_only, "rank", 0) == 0


def gather_rows(t: Tensor) -> Tensor:
    """Concatenate the rows of ``t`` from every process (row counts may differ); ``t`` itself with one process."""
    _, world = rank_world()
    if world == 1:
        return t
    home = t.device
    if dist.get_backend() == "nccl":  # NCCL gathers GPU tensors only
        t = t.to(torch.device("cuda", torch.cuda.current_device()))
    n = torch.tensor([t.shape[0]], dtype=torch.long, device=t.device)
    counts = [torch.zeros_like(n) for _ in range(world)]
    dist.all_gather(counts, n)
    longest = int(max(c.item() for c in counts))
    padded = torch.zeros((longest, *t.shape[1:]), dtype=t.dtype, device=t.device)
    padded[: t.shape[0]] = t
    parts = [torch.zeros_like(padded) for _ in range(world)]
    dist.all_gather(parts, padded.contiguous())
    return torch.cat([p[: int(c.item())] for p, c in zip(parts, counts, strict=True)]).to(home)
