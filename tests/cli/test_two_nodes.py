"""``--num-nodes 2``: two ``scivae fit`` processes, one per "node", meet on loopback (gloo) and train like one
process; only global rank 0 touches ``--out``, and the embedding keeps the input's cell order.

Each process is started the way a user starts one per node: by hand with ``NODE_RANK`` (Lightning's own
environment), or by ``torchrun`` (Lightning's TorchElasticEnvironment). Both share this filesystem and the same
``--out``, as nodes share a cluster filesystem.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import anndata as ad
import numpy as np
import pandas as pd
import pytest
import torch
from typer.testing import CliRunner

import scivae
from scivae_cli.main import app
from tests.cells.conftest import pbmc_subset

runner = CliRunner()
N_OBS, N_GENES, N_TRAIN = 800, 300, 720  # 10% of the cells validate
FIT = ["--max-epochs", "10", "--batch-size", "64", "--no-early-stopping", "--accelerator", "cpu"]
FIT += ["--n-latent", "6", "--seed", "2"]
TWO_NODES = ["--devices", "1", "--num-nodes", "2", "--strategy", "ddp"]
TIMEOUT_S = 300  # both processes together; a rank left waiting for the other would otherwise hang the suite
#: Launcher and cluster variables of the environment the suite runs in (a SLURM job, torchrun): each test sets
#: its own, and Lightning must not pick up the suite's.
LAUNCH_VARIABLES = ("RANK", "LOCAL_RANK", "GROUP_RANK", "LOCAL_WORLD_SIZE", "NODE_RANK", "WORLD_SIZE")
LAUNCH_VARIABLES += ("MASTER_ADDR", "MASTER_PORT", "PL_GLOBAL_SEED")


@pytest.fixture(autouse=True)
def _one_thread():
    torch.set_num_threads(1)


@pytest.fixture(scope="module")
def one_process(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict]:
    """The input and the metrics of the same fit in one process (the reference)."""
    torch.set_num_threads(1)
    folder = tmp_path_factory.mktemp("one_process")
    adata = pbmc_subset(N_OBS, N_GENES, seed=21)
    adata.obs_names = [f"cell{i:04d}" for i in np.random.default_rng(0).permutation(N_OBS)]  # not sorted
    path = folder / "cells.h5ad"
    adata.write_h5ad(path)
    out = folder / "one"
    r = runner.invoke(app, ["fit", str(path), "--out", str(out), *FIT])
    assert r.exit_code == 0, r.output
    return path, json.loads((out / "metrics.json").read_text())


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _clean_env() -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k not in LAUNCH_VARIABLES}
    env = {k: v for k, v in env.items() if not k.startswith(("SLURM_", "TORCHELASTIC_"))}
    return {**env, "OMP_NUM_THREADS": "1", "PYTHONWARNINGS": "ignore"}


def _run_together(commands: list[tuple[list[str], dict[str, str]]], logs: Path) -> list[str]:
    """Run the commands at once (each in its own empty folder ``logs/nodeN``), wait for all of them, and return
    their stderr; a failure or the timeout kills every process group and fails the test with their output."""
    logs.mkdir()
    procs, errs = [], []
    try:
        for i, (cmd, env) in enumerate(commands):
            cwd = logs / f"node{i}"
            cwd.mkdir()
            errs.append(logs / f"{i}.err")
            with open(logs / f"{i}.out", "w") as out, open(errs[-1], "w") as err:  # the child keeps its own copies
                # its own process group: killing it also ends what torchrun started
                procs.append(subprocess.Popen(cmd, env=env, cwd=cwd, stdout=out, stderr=err, start_new_session=True))
        deadline = time.monotonic() + TIMEOUT_S
        while any(p.poll() is None for p in procs):
            failed = [p for p in procs if p.poll() not in (None, 0)]
            if failed or time.monotonic() > deadline:
                break
            time.sleep(0.2)
    finally:
        for p in procs:
            if p.poll() is None:
                os.killpg(p.pid, signal.SIGKILL)
                p.wait()
    texts = [e.read_text() for e in errs]
    codes = [p.returncode for p in procs]
    assert codes == [0] * len(procs), "\n".join(
        f"-- rank {i} exit {c}:\n{t[-3000:]}" for i, (c, t) in enumerate(zip(codes, texts, strict=True))
    )
    return texts


def _fit_command(path: Path, out: Path, *extra: str) -> list[str]:
    return [sys.executable, "-m", "scivae_cli.main", "fit", str(path), "--out", str(out), *FIT, *TWO_NODES, *extra]


def _lightning_nodes(path: Path, out: Path, extra: tuple[str, ...]) -> list[tuple[list[str], dict[str, str]]]:
    """One command per node as the README gives it for Lightning's own environment: no LOCAL_RANK, so each
    process is its node's launcher (of one device)."""
    port = str(_free_port())
    env = {**_clean_env(), "MASTER_ADDR": "127.0.0.1", "MASTER_PORT": port, "WORLD_SIZE": "2"}
    return [(_fit_command(path, out, *extra), {**env, "NODE_RANK": str(node)}) for node in (0, 1)]


def _torchrun_nodes(path: Path, out: Path, extra: tuple[str, ...]) -> list[tuple[list[str], dict[str, str]]]:
    port = str(_free_port())
    commands = []
    for node in (0, 1):
        run = [sys.executable, "-m", "torch.distributed.run", "--nnodes", "2", "--nproc-per-node", "1"]
        run += ["--node-rank", str(node), "--master-addr", "127.0.0.1", "--master-port", port]
        commands.append(([*run, *_fit_command(path, out, *extra)[1:]], _clean_env()))
    return commands


def _check_two_node_fit(path: Path, single: dict, logs: Path, out: Path, stderr: list[str]) -> dict:
    ddp = json.loads((out / "metrics.json").read_text())
    history = pd.read_csv(out / "history.csv")
    # every training cell once per epoch, summed over the two processes, as with one process
    assert (history["n_obs_train"] == N_TRAIN).all() and single["n_obs_train"] == N_TRAIN
    assert abs(ddp["elbo_validation"] / single["elbo_validation"] - 1) < 0.02, (ddp, single)
    # each process takes its share of every global batch: the same optimizer steps as one process
    assert ddp["optimizer_steps"] == single["optimizer_steps"]
    embedded, original = ad.read_h5ad(out / "embedded.h5ad"), ad.read_h5ad(path)
    # the input's cells in the input's order, each with its own counts and its own latent: the model's latent of
    # the input read in order matches row by row (a permutation of the cells would not)
    assert embedded.obs_names.equals(original.obs_names)
    assert (embedded.X != original.X).nnz == 0
    z = scivae.load(out / "model").get_latent(original)
    np.testing.assert_allclose(embedded.obsm["X_scivae"], z, rtol=1e-5, atol=1e-5)
    # rank 1 wrote nothing: not in its own folder, and it printed no report of outputs
    assert not any((logs / "node1").iterdir())
    assert "wrote " in stderr[0] and "wrote " not in stderr[1], stderr
    return ddp


def test_two_nodes_train_like_one_process(tmp_path, one_process):
    path, single = one_process
    out = tmp_path / "out"
    stderr = _run_together(_lightning_nodes(path, out, ()), tmp_path / "logs")
    _check_two_node_fit(path, single, tmp_path / "logs", out, stderr)
    # only rank 0 created anything under the shared folder: the output, and the logs of this test
    assert sorted(p.name for p in tmp_path.iterdir()) == ["logs", "out"]
    one_files = sorted(p.name for p in (path.parent / "one").iterdir())
    assert sorted(p.name for p in out.iterdir()) == one_files  # no lock, probe or checkpoint left by either rank


def test_two_nodes_under_torchrun_backed(tmp_path, one_process):
    """The other launcher and the other data path in one run (each run costs ~50 s on two CPU cores)."""
    path, single = one_process
    out = tmp_path / "out"
    stderr = _run_together(_torchrun_nodes(path, out, ("--backed",)), tmp_path / "logs")
    ddp = _check_two_node_fit(path, single, tmp_path / "logs", out, stderr)
    assert ddp["params"]["backed"] is True
    assert sorted(p.name for p in tmp_path.iterdir()) == ["logs", "out"]


@pytest.mark.parametrize(
    "launcher",
    [
        # srun started 2 tasks per node: --devices 1 does not match
        {"SLURM_NTASKS": "2", "SLURM_PROCID": "0", "SLURM_LOCALID": "0", "SLURM_NODEID": "0", "SLURM_NNODES": "1"}
        | {"SLURM_NTASKS_PER_NODE": "2", "SLURM_JOB_NAME": "fit", "SLURM_JOB_ID": "1"},
        # torchrun started 2 processes in all: 1 device on 1 node does not match
        {"TORCHELASTIC_RUN_ID": "x", "RANK": "0", "LOCAL_RANK": "0", "GROUP_RANK": "0", "LOCAL_WORLD_SIZE": "1"}
        | {"WORLD_SIZE": "2"},
    ],
    ids=["slurm", "torchrun"],
)
def test_a_launch_that_does_not_match_the_flags_is_refused_in_one_line(tmp_path, monkeypatch, launcher):
    for name in (*LAUNCH_VARIABLES, "TORCHELASTIC_RUN_ID", *(k for k in os.environ if k.startswith("SLURM_"))):
        monkeypatch.delenv(name, raising=False)
    for name, value in {**launcher, "MASTER_ADDR": "127.0.0.1", "MASTER_PORT": str(_free_port())}.items():
        monkeypatch.setenv(name, value)  # Lightning would set MASTER_ADDR/PORT itself: restored after the test
    path = tmp_path / "cells.h5ad"
    pbmc_subset(60, 40, seed=1).write_h5ad(path)
    out = tmp_path / "out"
    nodes = "2" if "SLURM_NTASKS" in launcher else "1"
    args = ["fit", str(path), "--out", str(out), "--max-epochs", "1", "--accelerator", "cpu", "--devices", "1"]
    r = runner.invoke(app, [*args, "--num-nodes", nodes, "--strategy", "ddp"])
    assert r.exit_code == 2, r.output
    assert "--devices 1 and --num-nodes" in r.output and "Traceback" not in r.output
    assert not out.exists()  # refused before anything was written
