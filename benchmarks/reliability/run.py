"""Reliability benchmark: bad inputs and kill -9 / --resume through the real ``scivae`` command, and what it costs.

From the repository root, in scivae's venv::

    python -m benchmarks.reliability.run            # the full run (about 15 minutes on 2 busy cores)
    python -m benchmarks.reliability.run --smoke    # one short kill per domain, one overhead round (a few minutes)
    python -m benchmarks.reliability.run --tables   # the tables of the raw files in results/

Part 1 runs each case of :func:`bad_inputs` (a short list of bad files, counts, SMILES, keys and options, written in
a temporary folder) as its own ``python -m scivae_cli.main`` process and checks the contract: exit code 2, one
``error:`` line on stderr (no traceback) holding the expected message, the input's sha256 unchanged, no output
(nor temporary) left. The full bad-input corpus is tested in-process by the test suite (``tests/cli/``). Part 2 fits
a data set uninterrupted, then fits it again while killing the process with SIGKILL at random moments (resuming
each time with ``--resume``) and compares the two final models: optimiser steps, validation ELBO, per-dimension
correlation of the latent means, and whether they are equal. Cells: PBMC 3k (``datasets/pbmc3k``, or ``--cells
FILE``), 1,000 genes, 30 epochs; molecules: 2,000 MOSES training molecules (``datasets/moses``, or ``--molecules
FILE``), the command's default architecture, 3 epochs. Part 3 measures, in alternating in-process fits on PBMC 3k,
what checkpoints at every epoch end cost.

Writes ``results/contract.csv``, ``results/resume.json`` and ``results/overhead.json`` (``--results DIR``) and
prints the tables.
"""

from __future__ import annotations

import argparse
import csv
import hashlib
import json
import os
import random
import signal
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from benchmarks.cells._common import ROOT, machine

#: options that keep a fit tiny (each case fails before training anyway); a later value of a flag wins
FIT = ["--max-epochs", "1", "--batch-size", "64", "--n-latent", "3", "--accelerator", "cpu"]


def _scivae(args: list[str], timeout: float = 600) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONPATH": str(ROOT), "PYTHONWARNINGS": "ignore"}
    return subprocess.run(
        [sys.executable, "-m", "scivae_cli.main", *args], capture_output=True, text=True, env=env, timeout=timeout
    )


# -- part 1: bad inputs ----------------------------------------------------------------------------------------
@dataclass
class Case:
    """One bad input: the ``scivae`` arguments, a fragment of the expected one-line message, the files that must
    stay byte-identical and the paths that must not exist afterwards."""

    group: str
    name: str
    args: list[str]
    expect: str
    inputs: list[Path] = field(default_factory=list)
    absent: list[Path] = field(default_factory=list)


def bad_inputs(work: Path, cells: Path) -> list[Case]:
    """Write the bad inputs into ``work`` (a subset of ``cells``, MOSES SMILES) and return their cases."""
    import anndata as ad
    import scipy.sparse as sp
    import torch

    from scivae.datasets import moses

    work.mkdir(parents=True, exist_ok=True)
    adata = ad.read_h5ad(cells)[:300].copy()
    adata.X = sp.csr_matrix(adata.X, dtype=np.float32)
    good = work / "cells.h5ad"
    adata.write_h5ad(good)
    cases: list[Case] = []

    def fit(group: str, name: str, data: Path, expect: str, *extra: str) -> None:
        out = work / "out" / name
        cases.append(Case(group, name, ["fit", str(data), *FIT, "--out", str(out), *extra], expect, [data], [out]))

    def h5ad(name: str, x) -> Path:
        changed = adata.copy()
        changed.X = sp.csr_matrix(x)
        changed.write_h5ad(work / name)
        return work / name

    raw = good.read_bytes()
    (work / "truncated.h5ad").write_bytes(raw[: len(raw) // 2])
    fit("files", "truncated_h5ad", work / "truncated.h5ad", "cannot read")
    (work / "empty.h5ad").write_bytes(b"")
    fit("files", "empty_h5ad", work / "empty.h5ad", "is empty")
    x = adata.X.toarray()
    lognorm = np.log1p(x / np.maximum(x.sum(1, keepdims=True), 1) * 1e4)
    fit("counts", "log_normalised", h5ad("lognorm.h5ad", lognorm), "looks log-normalised")
    x[0, 0] = -2
    fit("counts", "negative", h5ad("negative.h5ad", x), "negative values")
    fit("keys", "missing_batch_key", good, "batch key 'donor' is not a column", "--batch-key", "donor")
    (work / "invalid.smi").write_text("not_a_molecule\nC1CC\nXyz(\n")
    fit("smiles", "only_invalid", work / "invalid.smi", "no valid molecule")
    (work / "long.smi").write_text("\n".join(moses("train", n=20, seed=5)) + "\n" + "C" * 3_000 + "\n")
    fit("smiles", "smiles_3000_characters", work / "long.smi", "over the 500-token limit")
    (work / "huge.smi").write_text("C" * 30_000 + "\n")  # RDKit's stack overflows on it: refused before parsing
    fit("smiles", "smiles_30000_characters", work / "huge.smi", "over the 5000-character limit")
    cases.append(
        Case("model", "not_a_model_folder", ["generate", str(work), "-n", "3"],
             "not a complete scivae model directory", [good], [])
    )  # fmt: skip
    fit("options", "zero_batch_size", good, "integer >= 1", "--batch-size", "0")
    if not torch.cuda.is_available():
        fit("options", "gpu_without_gpu", good, "no CUDA GPU is available", "--accelerator", "gpu")
    return cases


def _sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def leftovers(path: Path) -> list[str]:
    """Temporary siblings (``.NAME.*``) an interrupted atomic write would leave beside ``path``."""
    return sorted(p.name for p in path.parent.glob(f".{path.name}.*"))


def run_contract(work: Path, cells: Path) -> list[dict]:
    rows = []
    for case in bad_inputs(work / "bad_inputs", cells):
        before = {p: _sha256(p) for p in case.inputs}
        t0 = time.perf_counter()
        proc = _scivae(case.args)
        lines = proc.stderr.strip().splitlines()
        message = lines[0] if lines else ""
        intact = all(_sha256(p) == sha for p, sha in before.items())
        nothing_left = all(not (p.exists() or p.is_symlink()) and not leftovers(p) for p in case.absent)
        one_line = len(lines) == 1 and message.startswith("error: ") and "Traceback" not in proc.stderr
        ok = proc.returncode == 2 and one_line and case.expect in message and intact and nothing_left
        rows.append({
            "group": case.group, "case": case.name, "exit_code": proc.returncode, "one_line": one_line,
            "message": message.removeprefix("error: "), "input_intact": intact, "no_output_left": nothing_left,
            "pass": ok, "seconds": round(time.perf_counter() - t0, 2),
        })  # fmt: skip
        print(f"{'ok  ' if ok else 'FAIL'} {case.group}/{case.name}: exit {proc.returncode}, {message[:110]}")
    return rows


# -- part 2: kill -9 and --resume --------------------------------------------------------------------------------
def _fit_args(kind: str, data: Path, smoke: bool) -> list[str]:
    if kind == "cells":
        epochs = "4" if smoke else "30"
        extra = ["--n-top-genes", "1000", "--max-epochs", epochs, "--n-latent", "10"]
    else:
        extra = ["--max-epochs", "2" if smoke else "3", "--batch-size", "128"]
    return ["fit", str(data), *extra, "--accelerator", "cpu", "--seed", "7", "--checkpoint-every", "0.02"]


def _latents(kind: str, out: Path, probe: list[str]) -> np.ndarray:
    if kind == "cells":
        import anndata as ad

        return np.asarray(ad.read_h5ad(out / "embedded.h5ad").obsm["X_scivae"])
    from scivae import MolVAE

    return MolVAE.load(out / "model").encode(probe)


def _checkpoint_where(out: Path) -> str:
    from scivae.core.train.resume import checkpoint_position

    ckpt = out / "checkpoints" / "last.ckpt"
    if not ckpt.exists():
        return "no checkpoint yet"
    p = checkpoint_position(ckpt)
    if p["batches_done"] is None:
        return f"end of epoch {p['epoch'] - 1}"
    return f"epoch {p['epoch']}, after batch {p['batches_done']}"


def kill_and_resume(kind: str, data: Path, work: Path, n_kills: int, smoke: bool, rng: random.Random) -> dict:
    args = _fit_args(kind, data, smoke)
    ref_out, out = work / f"{kind}_reference", work / f"{kind}_killed"
    t0 = time.perf_counter()
    proc = _scivae([*args, "--out", str(ref_out)], timeout=3600)
    ref_seconds = time.perf_counter() - t0
    if proc.returncode != 0:
        raise SystemExit(f"reference fit failed: {proc.stderr[-2000:]}")
    kills, resume = [], False
    total = 0.0
    env = {**os.environ, "PYTHONPATH": str(ROOT), "PYTHONWARNINGS": "ignore"}
    ckpt = out / "checkpoints" / "last.ckpt"
    for _ in range(n_kills):
        cmd = [sys.executable, "-m", "scivae_cli.main", *args, "--out", str(out), *(["--resume"] if resume else [])]
        seen = ckpt.stat().st_mtime_ns if ckpt.exists() else None
        t0 = time.perf_counter()
        child = subprocess.Popen(cmd, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
        # Once this run has written a checkpoint (training is under way), kill it at a random moment: anywhere in an
        # epoch, in validation, or while a checkpoint is being written.
        while child.poll() is None and (not ckpt.exists() or ckpt.stat().st_mtime_ns == seen):
            time.sleep(0.05)
        delay = rng.uniform(0.0, 4.0)
        try:
            child.wait(timeout=delay)
            finished = True
        except subprocess.TimeoutExpired:
            os.kill(child.pid, signal.SIGKILL)
            child.wait()
            finished = False
        total += time.perf_counter() - t0
        err = child.stderr.read()
        child.stderr.close()
        if finished:  # it ended before the kill: keep what it did
            kills.append({"after_first_checkpoint_s": round(delay, 2), "killed": False, "exit_code": child.returncode})
            if child.returncode != 0:
                raise SystemExit(f"fit failed: {err[-2000:]}")
            break
        where = _checkpoint_where(out)
        kills.append({"after_first_checkpoint_s": round(delay, 2), "killed": True, "last_checkpoint": where})
        resume = True
    if not (out / "metrics.json").exists():
        t0 = time.perf_counter()
        proc = _scivae([*args, "--out", str(out), *(["--resume"] if resume else [])], timeout=3600)
        total += time.perf_counter() - t0
        if proc.returncode != 0:
            raise SystemExit(f"resumed fit failed: {proc.stderr[-2000:]}")
    from scivae.datasets import moses

    probe = moses("test", n=500, seed=1) if kind == "molecules" else []
    ref = json.loads((ref_out / "metrics.json").read_text())
    res = json.loads((out / "metrics.json").read_text())
    z_ref, z = _latents(kind, ref_out, probe), _latents(kind, out, probe)
    corr = [
        1.0 if np.array_equal(z_ref[:, j], z[:, j]) else float(np.corrcoef(z_ref[:, j], z[:, j])[0, 1])
        for j in range(z.shape[1])
    ]
    return {
        "kind": kind,
        "data": str(data),
        "command": "scivae " + " ".join(args[:1] + ["DATA"] + args[2:]),
        "kills": kills,
        "resumes": res.get("resumes"),
        "optimizer_steps": {"uninterrupted": ref["optimizer_steps"], "killed_and_resumed": res["optimizer_steps"]},
        "epochs_trained": {"uninterrupted": ref["epochs_trained"], "killed_and_resumed": res["epochs_trained"]},
        "elbo_validation": {"uninterrupted": ref["elbo_validation"], "killed_and_resumed": res["elbo_validation"]},
        "elbo_relative_difference": abs(res["elbo_validation"] - ref["elbo_validation"]) / abs(ref["elbo_validation"]),
        "latent_correlation_min": min(corr),
        "latents_identical": bool(np.array_equal(z_ref, z)),
        "history_rows": len((out / "history.csv").read_text().splitlines()) - 1,
        "wall_s": {"uninterrupted": round(ref_seconds, 1), "killed_and_resumed_total": round(total, 1)},
        "leftovers": leftovers(out) + sorted(p.name for p in out.iterdir() if p.name.startswith(".")),
    }


# -- part 3: what it costs -----------------------------------------------------------------------------------------
def overhead(cells: Path, work: Path, rounds: int, epochs: int) -> dict:
    import anndata as ad
    import torch

    from scivae import CellVAE

    torch.set_num_threads(1)
    adata = ad.read_h5ad(cells)

    def fit(variant: str) -> float:
        model = CellVAE(adata, n_top_genes=1000, seed=0)
        kwargs = {"checkpoint_dir": work / "overhead_ckpt"} if variant == "epoch_checkpoints" else {}
        model.fit(max_epochs=epochs, early_stopping=False, progress_bar=False, accelerator="cpu", **kwargs)
        return model.fit_result.metrics["train_obs_per_s"]

    variants = ("plain", "epoch_checkpoints")
    runs: dict[str, list[float]] = {v: [] for v in variants}
    for _ in range(rounds):  # alternating, so that the machine's load hits every variant alike
        for v in variants:
            runs[v].append(fit(v))
    med = {v: float(np.median(x)) for v, x in runs.items()}
    return {
        "data": str(cells),
        "epochs_per_fit": epochs,
        "rounds": rounds,
        "train_obs_per_s": runs,
        "median_train_obs_per_s": med,
        "ratio_checkpoints_vs_plain": med["epoch_checkpoints"] / med["plain"],
        "checkpoint_bytes": (work / "overhead_ckpt" / "last.ckpt").stat().st_size,
    }


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--smoke", action="store_true", help="one short kill per domain, one short overhead round")
    ap.add_argument("--cells", type=Path, default=ROOT / "datasets" / "pbmc3k" / "pbmc3k_raw.h5ad")
    ap.add_argument(
        "--molecules", type=Path, default=None, help="SMILES file (default: 2,000 MOSES training molecules)"
    )
    ap.add_argument("--kills", type=int, default=3, help="SIGKILLs per domain")
    ap.add_argument("--seed", type=int, default=0, help="seed of the kill times")
    ap.add_argument("--results", type=Path, default=Path(__file__).resolve().parent / "results")
    ap.add_argument("--skip", nargs="*", default=[], choices=["contract", "resume", "overhead"])
    ap.add_argument("--tables", action="store_true", help="only print the tables of the results already in --results")
    opts = ap.parse_args(argv)
    if opts.tables:
        print(tables(opts.results))
        return 0
    rng = random.Random(opts.seed)
    opts.results.mkdir(parents=True, exist_ok=True)
    info = {**machine(), "load_average_start": os.getloadavg(), "smoke": opts.smoke}
    with tempfile.TemporaryDirectory(prefix="scivae-reliability-") as tmp:
        work = Path(tmp)
        if "contract" not in opts.skip:
            rows = run_contract(work, opts.cells)
            with (opts.results / "contract.csv").open("w", newline="") as fh:
                writer = csv.DictWriter(fh, fieldnames=list(rows[0]))
                writer.writeheader()
                writer.writerows(rows)
            print(f"\n{sum(r['pass'] for r in rows)}/{len(rows)} cases keep the contract\n")
            print(contract_table(rows))
        if "resume" not in opts.skip:
            molecules = opts.molecules
            if molecules is None:
                from scivae.datasets import moses

                molecules = work / "moses_train.smi"
                molecules.write_text("\n".join(moses("train", n=600 if opts.smoke else 2000, seed=2)) + "\n")
            cells = opts.cells
            if opts.smoke:
                import anndata as ad

                cells = work / "pbmc_600.h5ad"
                ad.read_h5ad(opts.cells)[:600].copy().write_h5ad(cells)
            results = [
                kill_and_resume(kind, path, work, 1 if opts.smoke else opts.kills, opts.smoke, rng)
                for kind, path in (("cells", cells), ("molecules", molecules))
            ]
            (opts.results / "resume.json").write_text(
                json.dumps({"machine": {**info, "load_average_end": os.getloadavg()}, "runs": results}, indent=2) + "\n"
            )
            print(resume_table(results))
        if "overhead" not in opts.skip:
            cost = overhead(opts.cells, work, rounds=1 if opts.smoke else 3, epochs=2 if opts.smoke else 10)
            cost["machine"] = {**info, "load_average_end": os.getloadavg()}
            (opts.results / "overhead.json").write_text(json.dumps(cost, indent=2) + "\n")
            print(json.dumps({k: v for k, v in cost.items() if k.startswith(("ratio", "median"))}, indent=2))
    return 0


def contract_table(rows: list[dict]) -> str:
    """Markdown table of the bad-input results."""
    out = ["| group | case | exit code | message | input intact | no output left |", "|---|---|---:|---|---|---|"]
    for r in rows:
        msg = r["message"].replace("|", "\\|")
        if len(msg) > 150:
            msg = msg[:147] + "..."
        out.append(
            f"| {r['group']} | {r['case']} | {r['exit_code']} | {msg} | {'yes' if r['input_intact'] else 'NO'} | "
            f"{'yes' if r['no_output_left'] else 'NO'} |"
        )
    return "\n".join(out)


def resume_table(results: list[dict]) -> str:
    """Markdown table of the kill/resume comparison."""
    out = [
        "| data | kills (last checkpoint at each) | optimiser steps (uninterrupted / resumed) | validation ELBO "
        "(uninterrupted / resumed) | relative difference | min latent correlation | latents identical |",
        "|---|---|---|---|---:|---:|---|",
    ]
    for r in results:
        kills = "; ".join(k.get("last_checkpoint", "finished first") for k in r["kills"])
        s, e = r["optimizer_steps"], r["elbo_validation"]
        out.append(
            f"| {r['kind']} | {kills} | {s['uninterrupted']} / {s['killed_and_resumed']} | "
            f"{e['uninterrupted']:.4f} / {e['killed_and_resumed']:.4f} | {r['elbo_relative_difference']:.2e} | "
            f"{r['latent_correlation_min']:.6f} | {'yes' if r['latents_identical'] else 'no'} |"
        )
    return "\n".join(out)


def tables(results: Path) -> str:
    """Markdown tables of the raw results in ``results`` (what RESULTS.md shows)."""
    parts = []
    if (results / "contract.csv").exists():
        with (results / "contract.csv").open() as fh:
            rows = [
                {**r, "input_intact": r["input_intact"] == "True", "no_output_left": r["no_output_left"] == "True",
                 "pass": r["pass"] == "True"}
                for r in csv.DictReader(fh)
            ]  # fmt: skip
        parts.append(f"{sum(r['pass'] for r in rows)} of {len(rows)} cases keep the whole contract.\n")
        parts.append(contract_table(rows))
    if (results / "resume.json").exists():
        data = json.loads((results / "resume.json").read_text())
        parts.append(resume_table(data["runs"]))
        for r in data["runs"]:
            parts.append(
                f"- {r['kind']}: `{r['command']}`; wall time uninterrupted {r['wall_s']['uninterrupted']} s, "
                f"killed and resumed (all runs) {r['wall_s']['killed_and_resumed_total']} s; "
                f"{r['history_rows']} history rows; leftovers {r['leftovers'] or 'none'}"
            )
        m = data["machine"]
        start, end = m["load_average_start"][0], m["load_average_end"][0]
        parts.append(
            f"- machine: {m['cpu']}, {m['logical_cores']} logical cores; load average {start:.1f} at the start, "
            f"{end:.1f} at the end"
        )
    if (results / "overhead.json").exists():
        o = json.loads((results / "overhead.json").read_text())
        med = o["median_train_obs_per_s"]
        parts.append(
            "| variant (PBMC 3k, 1,000 genes, " + f"{o['epochs_per_fit']} epochs, {o['rounds']} alternating rounds)"
            " | median cells/s | ratio |\n|---|---:|---:|\n"
            f"| no checkpoints | {med['plain']:.0f} | 1 |\n"
            f"| checkpoint at every epoch end | {med['epoch_checkpoints']:.0f} | "
            f"{o['ratio_checkpoints_vs_plain']:.3f} |"
        )
        parts.append(f"- checkpoint size {o['checkpoint_bytes'] / 2**20:.1f} MiB; load average at the end "
                     f"{o['machine']['load_average_end'][0]:.1f}")  # fmt: skip
    return "\n\n".join(parts)


if __name__ == "__main__":
    sys.exit(main())
