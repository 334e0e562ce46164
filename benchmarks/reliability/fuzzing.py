"""Seeded fuzzing of scivae's inputs: corrupted copies of a valid ``.h5ad``, ``.smi`` and model folder.

Shared by the fuzz benchmark (:mod:`benchmarks.reliability.fuzz`, many seeds) and the test suite
(``tests/cli/test_hostile_inputs.py``, a few, on its own inputs of the same kinds): both corrupt the inputs the
same way and run them in a child process, so a segmentation fault or a hang is recorded instead of killing the
caller.

Kinds: ``h5ad`` and ``backed`` (``scivae fit cells.h5ad``, in memory and ``--backed``), ``smi`` (``scivae fit
mols.smi``) and ``model`` (one file of a trained molecule model folder corrupted, then ``scivae generate`` and
``scivae.load``). Modes: ``overwrite`` (1-5 runs of 1-64 random bytes) and ``truncate`` (the file cut at a
random length). A seed, kind and mode give the same corrupted file on every machine.

Run as ``python -m benchmarks.reliability.fuzzing ASSETS_JSON WORK CASES_JSON`` it is the child: one JSON
line ``{"case": i, "kind": ..., "mode": ..., "seed": s, "start": true}`` before each case and one with its
outcome after it.
"""

from __future__ import annotations

import json
import os
import queue
import shutil
import signal
import subprocess
import sys
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

#: the repository root (child processes import this checkout)
ROOT = Path(__file__).resolve().parents[2]
KINDS = ("h5ad", "backed", "smi", "model")
MODES = ("overwrite", "truncate")
#: options that keep every fit tiny (the fuzz is about reading the input, not training)
FIT = ["--max-epochs", "1", "--batch-size", "32", "--n-latent", "3", "--accelerator", "cpu", "--threads", "1"]
#: ``scivae generate`` on a corrupted model folder
GENERATE = ["-n", "5", "--seed", "0", "--accelerator", "cpu", "--threads", "1"]
#: exit codes of a crash: abort, segmentation fault, bus error (as a shell and as subprocess report them)
CRASH_CODES = {134, 135, 139, -signal.SIGSEGV, -signal.SIGABRT, -signal.SIGBUS}


@dataclass
class FuzzAssets:
    """The valid inputs that are corrupted (never changed themselves: each case corrupts a copy)."""

    cells: Path
    smiles: Path
    mol_model: Path

    def source(self, kind: str) -> Path:
        """The valid input of ``kind``."""
        return {"h5ad": self.cells, "backed": self.cells, "smi": self.smiles, "model": self.mol_model}[kind]


def build_assets(root: Path) -> FuzzAssets:
    """Write 120 PBMC cells x 50 genes (``.h5ad``), 60 MOSES molecules (``.smi``) and a tiny trained molecule
    model (one epoch; the folder holds weights, config and the learned prior) into ``root``."""
    import pandas as pd
    import torch

    from scivae import MolVAE
    from scivae.datasets import pbmc3k
    from scivae.datasets._moses import moses

    root.mkdir(parents=True, exist_ok=True)
    adata = pbmc3k(n_obs=120, seed=7)
    detected = np.asarray((adata.X > 0).sum(0)).ravel()
    adata = adata[:, np.sort(np.argsort(-detected, kind="stable")[:50])].copy()
    adata.obs["sample"] = pd.Categorical(np.where(np.arange(adata.n_obs) % 2 == 0, "a", "b"))
    cells = root / "cells.h5ad"
    adata.write_h5ad(cells)
    smiles = moses("train", n=60, seed=11)
    smi = root / "mols.smi"
    smi.write_text("\n".join(smiles) + "\n")
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        mol = MolVAE(smiles, n_latent=4, embedding_dim=8, encoder_hidden=16, decoder_hidden=16, decoder_layers=1)
        mol.fit(max_epochs=1, batch_size=32, progress_bar=False, accelerator="cpu")
        mol_dir = Path(mol.save(root / "mol_model"))
    finally:
        torch.set_num_threads(threads)
    return FuzzAssets(cells, smi, mol_dir)


def corrupt(raw: bytes, rng: np.random.Generator, mode: str) -> bytes:
    """``raw`` with 1-5 runs of 1-64 bytes overwritten at random (``overwrite``) or cut at a random length
    (``truncate``, 0 to ``len(raw) - 1`` bytes kept)."""
    if mode == "truncate":
        return raw[: int(rng.integers(0, max(len(raw), 1)))]
    data = bytearray(raw)
    for _ in range(int(rng.integers(1, 6))):
        at, n = int(rng.integers(0, max(len(data), 1))), int(rng.integers(1, 65))
        data[at : at + n] = rng.bytes(n)[: len(data) - at]
    return bytes(data)


def corrupted_copy(src: Path, work: Path, kind: str, mode: str, seed: int) -> tuple[Path, str]:
    """Write the corrupted copy of case ``seed`` into ``work``; return its path and the file corrupted."""
    rng = np.random.default_rng([seed, KINDS.index(kind), MODES.index(mode)])
    work.mkdir(parents=True, exist_ok=True)
    if kind == "model":
        folder = work / f"model{seed}"
        shutil.copytree(src, folder)
        files = sorted(p.name for p in folder.iterdir() if p.is_file())
        name = files[int(rng.integers(0, len(files)))]
        target = folder / name
        target.write_bytes(corrupt(target.read_bytes(), rng, mode))
        return folder, name
    path = work / f"fuzz{seed}{src.suffix}"
    path.write_bytes(corrupt(src.read_bytes(), rng, mode))
    return path, src.name


# -- the child --------------------------------------------------------------------------------------------------
def _child(assets: FuzzAssets, work: Path, cases: list[list[Any]]) -> None:
    """Run each case ``[index, kind, mode, seed]`` in this process; one JSON line before and one after each."""
    from typer.testing import CliRunner

    import scivae
    import scivae_cli.molecules as molcli
    from scivae.errors import ScivaeInputError
    from scivae_cli.main import app

    # tiny molecule models and few check samples: what is tested is the reading of the input
    molcli.MODEL_OVERRIDES = dict(embedding_dim=8, encoder_hidden=16, decoder_hidden=16, decoder_layers=1)
    molcli.CHECK_SAMPLES = 20
    runner = CliRunner()
    for index, kind, mode, seed in cases:
        case = {"case": index, "kind": kind, "mode": mode, "seed": seed}
        print(json.dumps({**case, "start": True}), flush=True)
        name = f"{kind}_{mode}_{seed}"
        path, corrupted = corrupted_copy(assets.source(kind), work / name, kind, mode, seed)
        out, generated = work / f"out_{name}", work / f"gen_{name}.smi"
        if kind == "model":
            args = ["generate", str(path), *GENERATE, "-o", str(generated)]
        else:
            args = ["fit", str(path), *FIT, "--out", str(out), *(["--backed"] if kind == "backed" else [])]
        r = runner.invoke(app, args)
        text = r.output.strip()
        clean = "Traceback" not in text and (r.exception is None or isinstance(r.exception, SystemExit))
        report: dict[str, Any] = {**case, "file": corrupted, "code": r.exit_code, "clean": clean,
                                  "last": text.splitlines()[-1:]}  # fmt: skip
        if not clean and r.exception is not None and not isinstance(r.exception, SystemExit):
            report["exception"] = f"{type(r.exception).__name__}: {str(r.exception)[:300]}"
        if kind == "model":
            try:
                scivae.load(path)
                report["load"] = "ok"
            except ScivaeInputError:
                report["load"] = "typed"  # the one-line error a user gets
            except Exception as e:  # noqa: BLE001 - recorded: an untyped error is a finding
                report["load"] = f"untyped {type(e).__name__}: {str(e)[:300]}"
        print(json.dumps(report), flush=True)
        # what this case wrote (inside the caller's work folder) goes, so that a long run needs little disk
        shutil.rmtree(work / name, ignore_errors=True)
        shutil.rmtree(out, ignore_errors=True)
        generated.unlink(missing_ok=True)


# -- the parent -------------------------------------------------------------------------------------------------
def _pump(stream: Any, lines: queue.Queue[str | None]) -> None:
    """Put each line of ``stream`` into ``lines``, then ``None`` at its end."""
    for line in stream:
        lines.put(line)
    lines.put(None)


def run_cases(
    assets: FuzzAssets, cases: list[tuple[str, str, int]], work: Path, *, case_timeout: float = 120.0
) -> list[dict[str, Any]]:
    """Run ``cases`` (``(kind, mode, seed)``) in child processes; one outcome per case, in order.

    One child runs the cases one after the other (its start-up, mostly imports, is paid once); after a crash
    (``{..., "crash": exit code}``) or a case that outlives ``case_timeout`` seconds (``{..., "hang": true}``,
    the child killed) a new child goes on with the next case.

    Parameters
    ----------
    assets
        The valid inputs; only read.
    cases
        Each a kind of :data:`KINDS`, a mode of :data:`MODES` and a seed.
    work
        An existing folder for the corrupted copies and the outputs.
    case_timeout
        Seconds one case may take (a fit of the tiny input takes a few).

    Returns
    -------
    list of dict
        ``case`` (its position), ``kind``, ``mode``, ``seed`` and the outcome: ``code`` (exit code), ``clean``
        (no traceback), ``file`` (the file corrupted), ``last`` (the last line printed), ``load`` (model folders:
        ``ok``, ``typed`` or ``untyped ...``); or ``crash`` / ``hang``.
    """
    env = {**os.environ, "PYTHONPATH": str(ROOT), "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1",
           "PYTHONWARNINGS": "ignore"}  # fmt: skip
    where = json.dumps({"cells": str(assets.cells), "smiles": str(assets.smiles), "mol_model": str(assets.mol_model)})
    numbered = [[i, kind, mode, seed] for i, (kind, mode, seed) in enumerate(cases)]
    results: list[dict[str, Any]] = []
    todo = numbered
    while todo:
        proc = subprocess.Popen(
            [sys.executable, "-m", "benchmarks.reliability.fuzzing", where, str(work), json.dumps(todo)],
            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env, cwd=ROOT,
        )  # fmt: skip
        lines: queue.Queue[str | None] = queue.Queue()
        errors: list[str] = []
        # reader threads, so that a silent child is noticed (a read with a timeout) and stderr never fills up
        threading.Thread(target=_pump, args=(proc.stdout, lines), daemon=True).start()
        threading.Thread(target=errors.extend, args=(proc.stderr,), daemon=True).start()
        current: int | None = None
        deadline = time.monotonic() + case_timeout + 60  # the child's start-up (imports) counts once
        while True:
            try:
                line = lines.get(timeout=max(deadline - time.monotonic(), 0.01))
            except queue.Empty:  # a hang: the case started and said nothing more in time
                proc.kill()  # the child this function started
                proc.wait()
                if current is None:
                    raise RuntimeError(f"the fuzz child did not start: {''.join(errors)[-2000:]}") from None
                results.append({**_case(numbered[current]), "hang": True})
                todo = numbered[current + 1 :]
                break
            if line is None:  # the child ended
                code = proc.wait()
                if current is not None:  # it died inside a case
                    results.append({**_case(numbered[current]), "crash": code, "stderr": "".join(errors)[-1500:]})
                    todo = numbered[current + 1 :]
                elif code != 0:
                    raise RuntimeError(f"the fuzz child failed with code {code}: {''.join(errors)[-2000:]}")
                else:
                    todo = []
                break
            if not line.startswith("{"):
                continue
            report = json.loads(line)
            if report.get("start"):
                current = report["case"]
            else:
                results.append(report)
                current = None
                todo = numbered[report["case"] + 1 :]
            deadline = time.monotonic() + case_timeout
    return results


def _case(numbered: list[Any]) -> dict[str, Any]:
    index, kind, mode, seed = numbered
    return {"case": index, "kind": kind, "mode": mode, "seed": seed}


def tally(results: list[dict[str, Any]]) -> dict[str, int]:
    """Counts of a list of outcomes: cases, exit 0 / 1 / 2 / other, crashes, hangs, tracebacks and (model
    folders) ``scivae.load`` raising anything but :class:`~scivae.errors.ScivaeInputError`."""
    codes = [r.get("code") for r in results]
    return {
        "cases": len(results),
        "exit_0": codes.count(0),
        "exit_1": codes.count(1),
        "exit_2": codes.count(2),
        "exit_other": sum(c not in (0, 1, 2, None) for c in codes),
        "crashes": sum("crash" in r for r in results),
        "hangs": sum("hang" in r for r in results),
        "tracebacks": sum(r.get("clean") is False for r in results),
        "load_untyped_errors": sum(str(r.get("load", "")).startswith("untyped") for r in results),
    }


def findings(results: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The outcomes that break the contract: a crash, a hang, a traceback, an exit code other than 0, 1 or 2,
    or an untyped error of ``scivae.load``."""
    return [
        r
        for r in results
        if "crash" in r
        or "hang" in r
        or r.get("clean") is False
        or r.get("code") not in (0, 1, 2)
        or str(r.get("load", "")).startswith("untyped")
    ]


if __name__ == "__main__":
    _child(FuzzAssets(**{k: Path(v) for k, v in json.loads(sys.argv[1]).items()}), Path(sys.argv[2]),
           json.loads(sys.argv[3]))  # fmt: skip
