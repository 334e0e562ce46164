"""Cells training throughput, scivae vs scvi-tools, alternating runs in one script (from the repository root)::

    python -m benchmarks.cells.throughput                  # full: sim 20k, sim 200k, PBMC 3k
    python -m benchmarks.cells.throughput --smoke          # seconds: tiny simulated data
    python -m benchmarks.cells.throughput --datasets sim20k --batch-sizes 128 --reps 3

Every (data set, batch size) pair is trained by both tools with the same architecture (NB, n_hidden 128,
n_latent 10, one layer), the same cells (``split == "train"``, 10 % of them held out for validation by
each tool), the same batch size, the same thread count and the same KL warm-up in optimiser steps (scivae's
default, given to scvi-tools as ``n_steps_kl_warmup``), each tool's defaults otherwise; early stopping is off.
Runs alternate (scvi-tools first in odd repetitions, scivae first in even ones) so that load from other
processes hits both alike; each run is a fresh process of its own venv (scvi-tools: ``SCVI_PYTHON``,
default ``benchmarks/.venv-scvi/bin/python``, made by ``setup_scvi_venv.sh``). scivae's process tunes glibc's
malloc first (``scivae.core.train.allocator.tune_allocator``), as ``scivae fit`` does.

Throughput is measured inside the training loop: the wall time between consecutive training-batch ends
(data loading + step), the first ``SKIP`` batches of each epoch left out, summed over the run; cells/s =
cells in those batches / that time. Validation passes are outside it. Each run also reports the held-out
ELBO (mean over the ``split == "test"`` cells, one z sample, nats) after its epochs (default: 2, 1 on sim200k,
and more where an epoch has few batches, so that each run times at least ``--min-timed-batches``, 30: PBMC 3k at
batch 1,024 has 2 batches per epoch, 1 timed, and runs 30 epochs) and its peak resident
memory beside the size of the CSR matrix it read, and its minor page faults from building the model to the
held-out ELBO (``--max-minutes`` stops each fit early: enough for the
memory and throughput figures of the 200k-cell set on a slow machine). The table prints medians over
repetitions and the median of the per-pair ratios; the raw figures of every run go to ``--json`` (default
``benchmarks/out/cells/throughput.json``).

``--tools`` adds two allocator variants (see ``scivae.core.train.allocator``): ``scivae-glibc`` is scivae with
``SCIVAE_MALLOPT=0`` (glibc's default malloc), ``scvi-mallopt`` is scvi-tools given the malloc thresholds
``scivae fit`` sets for itself (``MALLOC_MMAP_THRESHOLD_`` / ``MALLOC_TRIM_THRESHOLD_``); their ratios print in a
second table.

Data: ``sim20k`` / ``sim200k`` are written by ``simulate`` (20,000 / 200,000 cells x 2,000 genes, 8 cell
types, two batches, seed 0) into ``--data-dir`` (default ``$SCIVAE_BENCH_OUT`` or ``benchmarks/out/cells``)
when missing; ``pbmc3k`` is ``<data-dir>/pbmc3k.h5ad`` from ``prepare_data`` (2,000 seurat_v3 genes of
the PBMC 3k shipped in ``datasets/``) and ``pbmc3k_all`` the same cells with all 16,634 genes.

Whole fits: each run also times the whole ``fit`` call from the model's construction (scvi-tools:
``setup_anndata``, the model, ``train``; scivae: ``CellVAE``, ``fit``) to its return, the packages imported
before the clock starts. With ``--validation on`` (the default) both tools validate every epoch: scvi-tools is
given ``check_val_every_n_epoch=1`` (it validates only for early stopping otherwise), scivae validates as it
always does and computes its collapse diagnostics. The whole-fit speed-up is scvi-tools' time over scivae's,
per alternating pair.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import time
from datetime import timedelta
from pathlib import Path

from benchmarks.cells._common import ARCHITECTURE, DATA_DIR, ROOT, SCVI_PYTHON, child_env, machine, scvi_python_or_none

SKIP = 5  # batches left out at the start of each epoch (allocations, first-call overheads)


# --------------------------------------------------------------------------------------------------------
# worker (runs in either venv: only the standard library at import time)
# --------------------------------------------------------------------------------------------------------
def _batch_timer():
    from lightning.pytorch import Callback

    class BatchTimer(Callback):
        """Wall time between consecutive training-batch ends, per epoch, with the batch sizes."""

        def __init__(self) -> None:
            self.epochs: list[list[tuple[float, int]]] = []

        def on_train_epoch_start(self, trainer, pl_module) -> None:  # noqa: ARG002
            self.epochs.append([(time.perf_counter(), 0)])

        def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx) -> None:  # noqa: ARG002
            x = batch["x"] if isinstance(batch, dict) and "x" in batch else batch.get("X")
            self.epochs[-1].append((time.perf_counter(), int(x.shape[0])))

        def cells_per_s(self) -> tuple[float, int]:
            cells, seconds = 0, 0.0
            for marks in self.epochs:
                skip = min(SKIP, (len(marks) - 1) // 2)  # short epochs (smoke mode) keep half their batches
                for (t0, _), (t1, n) in zip(marks[skip:-1], marks[skip + 1 :], strict=True):
                    cells += n
                    seconds += t1 - t0
            return (cells / seconds if seconds > 0 else float("nan")), cells

    return BatchTimer()


def _warmup_steps(n_fit: int, batch_size: int, epochs: int) -> int:
    """scivae's default linear KL warm-up (CellVAE.fit): a quarter of the steps, at most 10 epochs."""
    per_epoch = max(1, -(-n_fit // batch_size))
    return max(1, min(per_epoch * epochs // 4, 10 * per_epoch))


def _default_epochs(data: Path, batch_size: int, min_timed: int, least: int) -> int:
    """At least ``least`` epochs, and enough for ``min_timed`` timed batches (small data sets: few per epoch)."""
    import anndata as ad

    obs = ad.read_h5ad(data, backed="r").obs
    n_train = int((obs["split"] == "train").sum()) if "split" in obs else len(obs)
    n_fit = n_train - int(round(0.1 * n_train))
    batches = max(1, -(-n_fit // batch_size))
    timed = max(1, batches - min(SKIP, batches // 2))  # BatchTimer.cells_per_s: batches timed per epoch
    return max(least, -(-min_timed // timed))


def worker(args: argparse.Namespace) -> dict:
    import anndata as ad
    import numpy as np
    import torch

    if args.worker == "scivae":  # as the CLI does before training (SCIVAE_MALLOPT=0, the scivae-glibc variant: off)
        from scivae.core.train.allocator import tune_allocator

        tune_allocator()
    torch.set_num_threads(args.threads)
    adata = ad.read_h5ad(args.data)
    train = adata[(adata.obs["split"] == "train").to_numpy()].copy()
    test = adata[(adata.obs["split"] == "test").to_numpy()].copy()
    data_mb = (adata.X.data.nbytes + adata.X.indices.nbytes + adata.X.indptr.nbytes) / 2**20  # the CSR read
    del adata
    batch_key = "batch" if "batch" in train.obs else None
    n_fit = train.n_obs - int(round(0.1 * train.n_obs))
    warmup = _warmup_steps(n_fit, args.batch_size, args.epochs)
    timer = _batch_timer()
    faults_before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
    limit = {}
    if args.max_minutes:  # scivae takes minutes, scvi-tools passes it to Lightning
        limit["max_time"] = args.max_minutes if args.worker == "scivae" else timedelta(minutes=args.max_minutes)
    if args.validation == "on" and args.worker == "scvi":  # scvi-tools validates only for early stopping otherwise
        limit["check_val_every_n_epoch"] = 1
    # the packages are imported before the clock starts: the whole-fit time is set-up + fit, not imports
    if args.worker == "scvi":
        import scvi
    else:
        import scivae
    extra: dict = {}  # what one tool reports beside the common figures
    t0 = time.perf_counter()
    if args.worker == "scvi":
        scvi.settings.seed = args.seed
        scvi.settings.num_threads = args.threads
        scvi.model.SCVI.setup_anndata(train, batch_key=batch_key)
        model = scvi.model.SCVI(train, **ARCHITECTURE, gene_likelihood="nb")
        model.train(
            max_epochs=args.epochs,
            batch_size=args.batch_size,
            train_size=0.9,
            early_stopping=False,
            accelerator="cpu",
            devices=1,
            callbacks=[timer],
            enable_progress_bar=False,
            plan_kwargs={"n_steps_kl_warmup": warmup, "n_epochs_kl_warmup": None},
            **limit,
        )
        fit_s = time.perf_counter() - t0
        torch.manual_seed(args.seed)
        elbo = model.get_elbo(test, return_mean=False).cpu().numpy()
        if args.marginal_ll:
            t1 = time.perf_counter()
            n = args.marginal_ll
            marginal = model.get_marginal_ll(test, n_mc_samples=n, return_mean=False, n_mc_samples_per_pass=n)
            marginal_s, marginal = time.perf_counter() - t1, marginal.cpu().numpy()
        version = scvi.__version__
        allocator = "env" if os.environ.get("MALLOC_TRIM_THRESHOLD_") else "default"
    else:
        model = scivae.CellVAE(train, batch_key=batch_key, likelihood="nb", **ARCHITECTURE)
        model.fit(
            max_epochs=args.epochs,
            batch_size=args.batch_size,
            accelerator="cpu",
            devices=1,
            early_stopping=False,
            seed=args.seed,
            progress_bar=False,
            callbacks=[timer],
            **limit,
        )
        fit_s = time.perf_counter() - t0
        assert model.fit_result is not None and model.fit_result.metrics["kl_warmup_steps"] == warmup
        elbo = model.get_elbo(test, seed=args.seed)
        if args.marginal_ll:
            t1 = time.perf_counter()
            marginal = model.get_marginal_ll(test, n_samples=args.marginal_ll, seed=args.seed)
            marginal_s = time.perf_counter() - t1
        version = scivae.__version__
        allocator = model.fit_result.metrics.get("allocator")
        # the per-epoch collapse diagnostics' share of the training time, as the fit reports it
        extra["diagnostics_share"] = model.fit_result.metrics.get("diagnostics_share")
    cps, cells_timed = timer.cells_per_s()
    if args.marginal_ll:  # the IWAE bound of the test cells with the same number of samples in both tools
        extra |= {
            "marginal_ll_samples": args.marginal_ll,
            "marginal_ll_s": round(marginal_s, 2),
            "test_marginal_ll": float(np.mean(marginal)),
        }
    faults = resource.getrusage(resource.RUSAGE_SELF).ru_minflt - faults_before  # model set-up, fit and ELBO
    return {
        "tool": args.worker,
        "version": version,
        "torch": torch.__version__,
        "data": Path(args.data).stem,
        "n_fit_cells": n_fit,
        "batch_size": args.batch_size,
        "epochs": args.epochs,
        "threads": torch.get_num_threads(),
        "seed": args.seed,
        "kl_warmup_steps": warmup,
        "cells_per_s": round(cps, 1),
        "cells_timed": cells_timed,
        "fit_s": round(fit_s, 2),
        "validation": args.validation,
        "test_elbo": float(np.mean(elbo)),
        "peak_rss_mb": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1),
        "minor_page_faults": faults,
        "allocator": allocator,
        "data_mb": round(data_mb, 1),
        "loadavg_end": os.getloadavg()[0],
        **extra,
    }


# --------------------------------------------------------------------------------------------------------
# orchestration (scivae venv)
# --------------------------------------------------------------------------------------------------------
SIM_CELLS = {"sim20k": 20_000, "sim200k": 200_000, "smoke": 600}
# Allocator variants (scivae.core.train.allocator): scivae with glibc's default malloc, and scvi-tools given the
# malloc thresholds scivae sets for itself, so that the allocator's share of the ratio can be read off.
_MALLOPT = {"MALLOC_MMAP_THRESHOLD_": str(32 << 20), "MALLOC_TRIM_THRESHOLD_": str(64 << 20)}
VARIANT_ENV = {"scivae-glibc": {"SCIVAE_MALLOPT": "0"}, "scvi-mallopt": _MALLOPT}
TOOLS = ("scvi", "scivae", "scivae-glibc", "scvi-mallopt")
#: (numerator, denominator) of the ratios reported; the first is the headline
RATIOS = (("scivae", "scvi"), ("scivae-glibc", "scvi"), ("scivae", "scvi-mallopt"), ("scvi-mallopt", "scvi"))


def ensure_data(name: str, data_dir: Path) -> Path:
    path = data_dir / f"{name}.h5ad"
    if path.exists():
        return path
    if name not in SIM_CELLS:
        raise SystemExit(f"{path} is missing: run python -m benchmarks.cells.prepare_data --out {data_dir} first")
    from benchmarks.cells.simulate import simulate

    genes = 200 if name == "smoke" else 2000
    adata = simulate(SIM_CELLS[name], n_genes=genes, seed=0)
    data_dir.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    adata.write_h5ad(tmp)
    os.replace(tmp, path)
    return path


def _run(
    tool: str,
    python: str,
    data: Path,
    batch_size: int,
    epochs: int,
    threads: int,
    seed: int,
    max_minutes=None,
    validation: str = "on",
    marginal_ll: int = 0,
) -> dict:
    env = child_env(threads, VARIANT_ENV.get(tool))
    cmd = [python, "-m", "benchmarks.cells.throughput", "--worker", tool.split("-")[0], "--data", str(data)]
    cmd += ["--batch-size", str(batch_size), "--epochs", str(epochs), "--threads", str(threads), "--seed", str(seed)]
    cmd += ["--validation", validation, "--marginal-ll", str(marginal_ll)]
    if max_minutes:
        cmd += ["--max-minutes", str(max_minutes)]
    load = os.getloadavg()[0]
    proc = subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, text=True)
    if proc.returncode != 0:
        raise RuntimeError(f"{tool} run failed:\n{proc.stderr[-3000:]}")
    row = json.loads(proc.stdout.strip().splitlines()[-1])
    row["tool"] = tool
    row["loadavg_start"] = load
    return row


def _median(values: list[float]) -> float:
    v = sorted(values)
    n = len(v)
    return v[n // 2] if n % 2 else 0.5 * (v[n // 2 - 1] + v[n // 2])


def _speed_up(s: dict, by_tool: dict[str, list[dict]], key: str, name: str) -> None:
    """scvi-tools' seconds over scivae's (``key``) per alternating pair, into ``s``: ``<name>_ratio_median/min/max``
    and each tool's median seconds (``scivae_<key>``, ``scvi_<key>``); nothing when no pair has ``key``."""
    scvi = {r["rep"]: r[key] for r in by_tool["scvi"] if key in r}
    ours = [r for r in by_tool["scivae"] if key in r and r["rep"] in scvi]
    if not ours:
        return
    ratios = [scvi[r["rep"]] / r[key] for r in ours]
    s[f"{name}_ratio_median"] = _median(ratios)
    s[f"{name}_ratio_min"], s[f"{name}_ratio_max"] = min(ratios), max(ratios)
    s[f"scivae_{key}"] = _median([r[key] for r in by_tool["scivae"] if key in r])
    s[f"scvi_{key}"] = _median(list(scvi.values()))


def summarise(rows: list[dict]) -> list[dict]:
    out = []
    keys = sorted({(r["data"], r["batch_size"], r["threads"]) for r in rows})
    for data, bs, threads in keys:
        sel = [r for r in rows if r["data"] == data and r["batch_size"] == bs and r["threads"] == threads]
        by_tool = {t: [r for r in sel if r["tool"] == t] for t in TOOLS}
        s = {"data": data, "batch_size": bs, "threads": threads}
        for t, rs in by_tool.items():
            if rs:
                s[f"{t}_cells_per_s"] = _median([r["cells_per_s"] for r in rs])
                s[f"{t}_test_elbo"] = _median([r["test_elbo"] for r in rs])
                s[f"{t}_peak_rss_mb"] = max(r["peak_rss_mb"] for r in rs)
                s["data_mb"] = rs[0].get("data_mb")
        _speed_up(s, by_tool, "fit_s", "fit")  # the whole fit call (set-up, training, validation, report)
        _speed_up(s, by_tool, "marginal_ll_s", "marginal_ll")  # the IWAE bound of the test cells
        for num, den in RATIOS:
            pairs = {r["rep"]: r for r in by_tool[den]}
            ratios = [a["cells_per_s"] / pairs[a["rep"]]["cells_per_s"] for a in by_tool[num] if a["rep"] in pairs]
            if ratios:
                key = "ratio" if (num, den) == RATIOS[0] else f"ratio_{num}_{den}"
                s[f"{key}_median"], s[f"{key}_min"], s[f"{key}_max"] = _median(ratios), min(ratios), max(ratios)
                s[f"{key}_pairs"] = len(ratios)
        out.append(s)
    return out


def print_table(summary: list[dict]) -> None:
    print(
        "| data | batch | threads | scivae cells/s | scvi-tools cells/s | ratio (median, range) "
        "| whole fit s scivae / scvi | whole-fit speed-up (median, range) "
        "| test ELBO scivae / scvi | peak RSS MB scivae / scvi (CSR read, MB) |"
    )
    print("|---|---:|---:|---:|---:|---|---|---|---|---|")
    for s in summary:
        ratio = (
            f"{s['ratio_median']:.2f} ({s['ratio_min']:.2f}-{s['ratio_max']:.2f}, {s['ratio_pairs']} pairs)"
            if "ratio_median" in s
            else "-"
        )
        whole = (
            f"{s['scivae_fit_s']:.1f} / {s['scvi_fit_s']:.1f} | {s['fit_ratio_median']:.2f} "
            f"({s['fit_ratio_min']:.2f}-{s['fit_ratio_max']:.2f})"
            if "fit_ratio_median" in s
            else "- | -"
        )
        print(
            f"| {s['data']} | {s['batch_size']} | {s['threads']} | {s.get('scivae_cells_per_s', float('nan')):.0f} "
            f"| {s.get('scvi_cells_per_s', float('nan')):.0f} | {ratio} | {whole} "
            f"| {s.get('scivae_test_elbo', float('nan')):.2f} / {s.get('scvi_test_elbo', float('nan')):.2f} "
            f"| {s.get('scivae_peak_rss_mb', float('nan')):.0f} / {s.get('scvi_peak_rss_mb', float('nan')):.0f} "
            f"({s.get('data_mb') or float('nan'):.0f}) |"
        )


def print_variant_ratios(summary: list[dict]) -> None:
    """The allocator variants' ratios (medians over repetitions), where they were run."""
    extra = [(num, den) for num, den in RATIOS[1:] if any(f"ratio_{num}_{den}_median" in s for s in summary)]
    if not extra:
        return
    print("\n| data | batch | threads | " + " | ".join(f"{n} / {d}" for n, d in extra) + " |")
    print("|---|---:|---:|" + "---|" * len(extra))
    for s in summary:
        cells = []
        for n, d in extra:
            k = f"ratio_{n}_{d}"
            cells.append(
                f"{s[k + '_median']:.2f} ({s[k + '_min']:.2f}-{s[k + '_max']:.2f})" if k + "_median" in s else "-"
            )
        print(f"| {s['data']} | {s['batch_size']} | {s['threads']} | " + " | ".join(cells) + " |")


def _save(path: Path, cpu: str, rows: list[dict], summary: list[dict]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(json.dumps({"cpu": cpu, "argv": sys.argv[1:], "runs": rows, "summary": summary}, indent=1) + "\n")
    os.replace(tmp, path)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0], formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--worker", choices=("scivae", "scvi"), help=argparse.SUPPRESS)
    ap.add_argument("--data", type=Path, help=argparse.SUPPRESS)
    ap.add_argument("--datasets", nargs="+", default=["sim20k", "sim200k", "pbmc3k"])
    ap.add_argument("--batch-sizes", nargs="+", type=int, default=[128, 1024])
    ap.add_argument("--batch-size", type=int, default=128, help=argparse.SUPPRESS)
    ap.add_argument(
        "--epochs",
        type=int,
        default=None,
        help="epochs per run (default: 2, 1 for sim200k, more where needed for --min-timed-batches)",
    )
    ap.add_argument(
        "--min-timed-batches", type=int, default=30, help="default epochs time at least this many batches per run"
    )
    ap.add_argument("--reps", type=int, default=3)
    ap.add_argument("--max-minutes", type=float, default=None, help="stop each fit after this many minutes (max_time)")
    ap.add_argument("--threads", type=int, nargs="+", default=[1], help="torch threads (several: each in turn)")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument(
        "--marginal-ll",
        type=int,
        default=0,
        help="also time the importance-sampled log p(x) of the test cells with this many samples (0: not)",
    )
    ap.add_argument(
        "--validation",
        choices=("on", "off"),
        default="on",
        help="on: both tools validate every epoch (scvi-tools' check_val_every_n_epoch=1); off: scvi-tools' default "
        "(no validation without early stopping; scivae still validates, as it always does)",
    )
    ap.add_argument(
        "--tools",
        nargs="+",
        default=["scvi", "scivae"],
        choices=TOOLS,
        help="scivae-glibc: scivae with SCIVAE_MALLOPT=0; scvi-mallopt: scvi-tools with scivae's malloc thresholds",
    )
    ap.add_argument("--data-dir", type=Path, default=DATA_DIR)
    ap.add_argument("--scvi-python", default=SCVI_PYTHON)
    ap.add_argument("--json", type=Path, default=None, help="raw figures (default: <data-dir>/throughput.json)")
    ap.add_argument("--smoke", action="store_true", help="tiny simulated data, 1 epoch, 1 repetition (seconds)")
    args = ap.parse_args(argv)

    if args.worker:
        args.threads = args.threads[0]
        print(json.dumps(worker(args)))
        return 0
    if args.smoke:
        args.datasets, args.batch_sizes, args.reps, args.epochs = ["smoke"], [128], 1, 1
    tools = list(args.tools)
    if scvi_python_or_none(args.scvi_python) is None:
        tools = [t for t in tools if not t.startswith("scvi")]
    cpu = machine()["cpu"]
    print(
        f"cpu: {cpu}, logical cores: {os.cpu_count()}, torch threads per run: {' '.join(map(str, args.threads))}, "
        f"load average: {' '.join(f'{x:.2f}' for x in os.getloadavg())}"
    )
    rows: list[dict] = []
    out = args.json or (args.data_dir / ("throughput_smoke.json" if args.smoke else "throughput.json"))
    for rep in range(args.reps):
        for name in args.datasets:
            data = ensure_data(name, args.data_dir)
            for bs in args.batch_sizes:
                epochs = args.epochs or _default_epochs(data, bs, args.min_timed_batches, 1 if name == "sim200k" else 2)
                runs = [(t, n) for n in args.threads for t in tools]
                for tool, threads in runs if rep % 2 == 0 else runs[::-1]:
                    python = args.scvi_python if tool.split("-")[0] == "scvi" else sys.executable
                    row = _run(
                        tool,
                        python,
                        data,
                        bs,
                        epochs,
                        threads,
                        args.seed + rep,
                        args.max_minutes,
                        args.validation,
                        args.marginal_ll,
                    )
                    row["rep"] = rep
                    rows.append(row)
                    _save(out, cpu, rows, summarise(rows))  # after every run: an interrupted set keeps its runs
                    print(
                        f"rep {rep} {name} batch {bs} threads {threads} {tool}: {row['cells_per_s']:.0f} cells/s, "
                        f"test ELBO {row['test_elbo']:.2f}, peak RSS {row['peak_rss_mb']:.0f} MB, "
                        f"load {row['loadavg_start']:.2f}",
                        flush=True,
                    )
    summary = summarise(rows)
    print()
    print_table(summary)
    print_variant_ratios(summary)
    for s in summary:
        if "marginal_ll_ratio_median" in s:
            print(
                f"importance-sampled log p(x) of the test cells, {s['data']} batch {s['batch_size']}: scivae "
                f"{s['scivae_marginal_ll_s']:.1f} s, scvi-tools {s['scvi_marginal_ll_s']:.1f} s, speed-up "
                f"{s['marginal_ll_ratio_median']:.2f} "
                f"({s['marginal_ll_ratio_min']:.2f}-{s['marginal_ll_ratio_max']:.2f})"
            )
    print(f"load average after: {' '.join(f'{x:.2f}' for x in os.getloadavg())}")
    _save(out, cpu, rows, summary)
    print(f"raw figures: {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
