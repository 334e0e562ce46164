"""Which process writes, read from the launcher's environment before any process group exists."""

from __future__ import annotations

import pytest

from scivae.core.distributed import launched_rank

VARIABLES = ("RANK", "LOCAL_RANK", "NODE_RANK", "GROUP_RANK", "LOCAL_WORLD_SIZE", "TORCHELASTIC_RUN_ID")
VARIABLES += ("SLURM_PROCID", "SLURM_NTASKS", "SLURM_JOB_NAME")


@pytest.mark.parametrize(
    ("env", "rank"),
    [
        ({}, 0),  # no launcher: the only process
        ({"NODE_RANK": "0", "WORLD_SIZE": "2"}, 0),  # --num-nodes 2, node 0: launches its node's processes
        ({"NODE_RANK": "1", "WORLD_SIZE": "2"}, 1),  # --num-nodes 2 --devices 1, node 1
        ({"NODE_RANK": "0", "LOCAL_RANK": "1"}, 1),  # a child Lightning launched for node 0's second device
        ({"NODE_RANK": "1", "LOCAL_RANK": "0", "LOCAL_WORLD_SIZE": "2"}, 2),  # node 1's first of two devices
        ({"NODE_RANK": "1", "LOCAL_RANK": "1", "LOCAL_WORLD_SIZE": "2"}, 3),  # ... not NODE_RANK + LOCAL_RANK
        ({"NODE_RANK": "1", "LOCAL_RANK": "0"}, 1),  # processes per node unknown: still not 0
        ({"GROUP_RANK": "1"}, 1),  # Lightning reads GROUP_RANK when NODE_RANK is unset
        ({"RANK": "3", "LOCAL_RANK": "1", "GROUP_RANK": "1", "LOCAL_WORLD_SIZE": "2", "TORCHELASTIC_RUN_ID": "x"}, 3),
        ({"RANK": "0", "LOCAL_RANK": "0", "GROUP_RANK": "0", "TORCHELASTIC_RUN_ID": "x"}, 0),  # torchrun's first
        ({"RANK": "0", "TORCHELASTIC_RUN_ID": "x", "SLURM_NTASKS": "2", "SLURM_PROCID": "1"}, 0),  # torchrun in srun
        ({"SLURM_PROCID": "2", "SLURM_NTASKS": "4", "SLURM_JOB_NAME": "fit"}, 2),  # srun, one task per device
        ({"SLURM_PROCID": "0", "SLURM_NTASKS": "1", "SLURM_JOB_NAME": "fit"}, 0),  # a one-task job
        ({"SLURM_PROCID": "1", "SLURM_NTASKS": "2", "SLURM_JOB_NAME": "bash"}, 0),  # Lightning ignores this SLURM
        ({"SLURM_PROCID": "1", "SLURM_NTASKS": "2", "SLURM_JOB_NAME": "interactive", "NODE_RANK": "1"}, 1),
        ({"RANK": "1", "WORLD_SIZE": "2"}, 1),  # another launcher's RANK (Kubeflow)
    ],
)
def test_launched_rank(monkeypatch, env, rank):
    for name in VARIABLES:
        monkeypatch.delenv(name, raising=False)
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    assert launched_rank() == rank
