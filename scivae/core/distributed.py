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
    """This process's global rank in a launched distributed run, read from the launcher's environment before any
    process group exists: 0 for the first process (or a run without a launcher), > 0 for the others.

    The launchers are looked for in Lightning's order (``_AcceleratorConnector``): torchrun (``RANK``, with
    ``TORCHELASTIC_RUN_ID``), then ``srun`` (``SLURM_PROCID``; Lightning ignores SLURM in a job named ``bash`` or
    ``interactive``), then any other ``RANK``. Otherwise Lightning launches: its DDP launcher re-runs the command
    for the other devices of a node with ``LOCAL_RANK`` set, and with ``num_nodes`` the user starts one such command
    per node with ``NODE_RANK`` (or ``GROUP_RANK``). The global rank is then ``NODE_RANK * processes per node +
    LOCAL_RANK``; the processes per node are known only from ``LOCAL_WORLD_SIZE``, else ``LOCAL_RANK + 1`` stands
    in for them, which keeps exact the one thing a writer needs: the result is 0 only on node 0's first process.
    """
    env = os.environ
    if "TORCHELASTIC_RUN_ID" in env and "RANK" in env:
        return int(env["RANK"])
    if "SLURM_NTASKS" in env and env.get("SLURM_JOB_NAME") not in ("bash", "interactive"):
        return int(env.get("SLURM_PROCID", "0"))
    if "RANK" in env:
        return int(env["RANK"])
    local = int(env.get("LOCAL_RANK", "0"))
    node = int(env.get("NODE_RANK", env.get("GROUP_RANK", "0")))
    per_node = int(env.get("LOCAL_WORLD_SIZE", "0")) or local + 1
    return node * per_node + local


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
