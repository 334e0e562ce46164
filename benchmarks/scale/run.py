"""Peak memory and training throughput: streamed (``backed=True``) vs in-memory CellVAE, 100k and 1M cells.

Each measurement is a fresh child process (so its peak RSS, ``getrusage`` maxrss, is its own) that
1. prepares the data (count checks, seurat_v3 genes, library statistics): streamed passes or in memory,
2. trains for ``--steps`` batches of one epoch (throughput timed after ``--warmup`` batches),
3. computes the latent of every cell (streamed in backed mode).
Runs alternate (backed 100k, memory 100k, backed 1M, ...) for ``--repeats`` rounds; the load average is
recorded before and after each run. Missing data files are generated first (``make_data``).
``--tune-allocator`` sets glibc's malloc thresholds in each child right before its fit, as ``scivae fit`` does
(``scivae.core.train.allocator.tune_allocator``); without it malloc keeps glibc's defaults, as in a Python session.

From the repository root::

    python -m benchmarks.scale.run --memory-large       # the RESULTS.md figures (about 20-30 min on 2 cores)
    python -m benchmarks.scale.run --smoke --json /tmp/scale-smoke/r.json   # seconds; run by the test suite

Writes ``--json`` (every run, machine, settings; default ``results/streamed_vs_memory.json`` here) and the same
name with ``.csv`` (one row per run), and prints
the summary: peak RSS per configuration, RSS growth from 100k to 1M cells (streamed), and the throughput
ratio streamed / in-memory (median of the per-round ratios).
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import statistics
import subprocess
import sys
import time
from pathlib import Path

from benchmarks.cells._common import ROOT, machine
from benchmarks.scale.make_data import write
from scivae._atomic import write_text_atomic

HERE = Path(__file__).resolve().parent


def _hwm_mb() -> float:
    """Peak resident memory of this process so far (MB)."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0


def child(args: argparse.Namespace) -> None:
    """One measurement; prints a JSON line."""
    import lightning as L
    import torch

    torch.set_num_threads(args.threads)
    import anndata as ad

    from scivae.cells import CellVAE

    out: dict = {"mode": args.mode, "file": str(args.file), "rss_start_mb": _hwm_mb()}
    t = time.perf_counter()
    kw = {"batch_key": "sample", "n_top_genes": args.n_top_genes}
    if args.mode == "backed":
        model = CellVAE(str(args.file), backed=True, **kw)
    else:
        model = CellVAE(ad.read_h5ad(args.file), **kw)
    out["prepare_s"], out["hwm_after_prepare_mb"] = time.perf_counter() - t, _hwm_mb()

    class StepTimer(L.Callback):
        batches = 0

        def on_train_batch_start(self, trainer, pl_module, batch, batch_idx):
            if batch_idx == args.warmup:
                self.start = time.perf_counter()

        def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx):
            self.batches += 1
            if batch_idx + 1 == args.steps:
                self.elapsed = time.perf_counter() - self.start
                trainer.should_stop = True

    timer = StepTimer()
    if args.tune_allocator:
        from scivae.core.train.allocator import tune_allocator

        out["allocator"] = tune_allocator()
    t = time.perf_counter()
    model.fit(
        max_epochs=1,
        batch_size=args.batch_size,
        accelerator="cpu",
        progress_bar=False,
        early_stopping=False,
        callbacks=[timer],
        validation_fraction=args.validation_fraction,
    )
    out["fit_s"], out["hwm_after_fit_mb"] = time.perf_counter() - t, _hwm_mb()
    if not hasattr(timer, "elapsed"):
        raise SystemExit(f"--steps {args.steps} is more than the {timer.batches} batches of one epoch: lower it")
    out["train_batches"] = timer.batches
    out["train_cells_per_s"] = (args.steps - args.warmup) * args.batch_size / timer.elapsed
    t = time.perf_counter()
    latent = model.get_latent(batch_size=4096)
    out["latent_s"], out["latent_rows"] = time.perf_counter() - t, int(latent.shape[0])
    out["n_cells"], out["n_genes"] = model.data_summary["n_cells_input"], len(model.genes)
    out["peak_rss_mb"] = _hwm_mb()
    print("RESULT " + json.dumps(out), flush=True)


def _run_child(mode: str, file: Path, args: argparse.Namespace) -> dict:
    cmd = [sys.executable, "-m", "benchmarks.scale.run", "--child", "--mode", mode, "--file", str(file)]
    for k in ("steps", "warmup", "batch_size", "threads", "n_top_genes", "validation_fraction"):
        cmd += [f"--{k.replace('_', '-')}", str(getattr(args, k))]
    cmd += ["--tune-allocator"] if args.tune_allocator else []
    load_before = os.getloadavg()
    t = time.perf_counter()
    done = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, env={**os.environ, "OMP_NUM_THREADS": "1"})
    if done.returncode != 0:
        raise SystemExit(f"{mode} {file.name} failed:\n{done.stderr[-3000:]}")
    line = next(ln for ln in done.stdout.splitlines() if ln.startswith("RESULT "))
    result = json.loads(line[len("RESULT ") :])
    result.update(wall_s=time.perf_counter() - t, load_before=load_before, load_after=os.getloadavg())
    return result


def _machine() -> dict:
    import torch

    mem = next((ln.split(":", 1)[1].strip() for ln in open("/proc/meminfo") if ln.startswith("MemTotal")), "?")
    info = machine()
    return {
        "cpu": info["cpu"],
        "cores": info["logical_cores"],
        "memory": mem,
        "python": info["python"],
        "torch": torch.__version__,
    }


def summarise(runs: list[dict], sizes: list[int]) -> dict:
    def med(mode: str, n: int, key: str) -> float:
        return statistics.median(r[key] for r in runs if r["mode"] == mode and r["n_cells"] == n)

    small, large = min(sizes), max(sizes)
    rounds = sorted({r["round"] for r in runs})
    ratios = []
    for k in rounds:
        b = [r for r in runs if r["round"] == k and r["mode"] == "backed" and r["n_cells"] == small]
        m = [r for r in runs if r["round"] == k and r["mode"] == "memory" and r["n_cells"] == small]
        if b and m:
            ratios.append(b[0]["train_cells_per_s"] / m[0]["train_cells_per_s"])
    out = {
        "peak_rss_mb": {
            f"{mode}_{n}": med(mode, n, "peak_rss_mb")
            for mode in ("backed", "memory")
            for n in sizes
            if any(r["mode"] == mode and r["n_cells"] == n for r in runs)
        },
        "train_cells_per_s": {
            f"{mode}_{n}": med(mode, n, "train_cells_per_s")
            for mode in ("backed", "memory")
            for n in sizes
            if any(r["mode"] == mode and r["n_cells"] == n for r in runs)
        },
        "throughput_ratio_backed_over_memory": {
            "median": statistics.median(ratios),
            "min": min(ratios),
            "max": max(ratios),
            "per_round": ratios,
        },
    }
    if large != small:
        out["backed_rss_growth"] = med("backed", large, "peak_rss_mb") / med("backed", small, "peak_rss_mb") - 1
    return out


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument(
        "--json",
        type=Path,
        default=HERE / "results" / "streamed_vs_memory.json",
        help="every run, machine and settings; the runs also go to a .csv beside it",
    )
    p.add_argument("--data-dir", type=Path, default=HERE.parent / "out" / "scale")
    p.add_argument("--sizes", type=int, nargs="+", default=[100_000, 1_000_000])
    p.add_argument("--genes", type=int, default=2000)
    p.add_argument("--n-top-genes", type=int, default=1000)
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--memory-large", action="store_true", help="also run the in-memory path on the largest size")
    p.add_argument("--steps", type=int, default=160, help="training batches per run (within one epoch)")
    p.add_argument("--warmup", type=int, default=20, help="batches before the throughput clock starts")
    p.add_argument("--batch-size", type=int, default=512)
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--validation-fraction", type=float, default=0.1)
    p.add_argument(
        "--tune-allocator",
        action="store_true",
        help="set glibc's malloc thresholds before each fit, as scivae fit does",
    )
    p.add_argument("--smoke", action="store_true", help="tiny files, few steps, one round: a check that it runs")
    p.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    p.add_argument("--mode", choices=["backed", "memory"], help=argparse.SUPPRESS)
    p.add_argument("--file", type=Path, help=argparse.SUPPRESS)
    args = p.parse_args()
    if args.child:
        child(args)
        return
    if args.smoke:
        args.sizes, args.genes, args.n_top_genes, args.repeats = [2000, 6000], 300, 100, 1
        args.steps, args.warmup, args.batch_size = 8, 2, 128
        args.data_dir = args.json.parent / "data"
    files = {}
    for n in args.sizes:
        files[n] = args.data_dir / f"cells_{n}{'_g' + str(args.genes) if args.genes != 2000 else ''}.h5ad"
        if not files[n].exists():
            print(f"generating {files[n]} ...", flush=True)
            write(files[n], n, args.genes)
    small, large = min(args.sizes), max(args.sizes)
    plan = [("backed", small), ("memory", small)] + [("backed", n) for n in args.sizes if n != small]
    runs = []
    for k in range(args.repeats):
        for mode, n in plan + ([("memory", large)] if args.memory_large and k == 0 and large != small else []):
            r = _run_child(mode, files[n], args)
            r["round"] = k
            runs.append(r)
            print(
                f"round {k} {mode:6s} {n:>8d} cells: peak RSS {r['peak_rss_mb']:7.0f} MB, "
                f"{r['train_cells_per_s']:7.0f} cells/s, prepare {r['prepare_s']:.1f} s, latent {r['latent_s']:.1f} s, "
                f"load {r['load_before'][0]:.2f}",
                flush=True,
            )
    summary = summarise(runs, args.sizes)
    settings = {k: getattr(args, k) for k in ("sizes", "genes", "n_top_genes", "repeats", "steps", "warmup")}
    settings.update(batch_size=args.batch_size, threads=args.threads, validation_fraction=args.validation_fraction)
    settings.update(tune_allocator=args.tune_allocator)
    report = {"machine": _machine(), "settings": settings, "summary": summary, "runs": runs}
    args.json.parent.mkdir(parents=True, exist_ok=True)
    write_text_atomic(args.json, json.dumps(report, indent=1) + "\n")
    cols = ["round", "mode", "n_cells", "n_genes", "peak_rss_mb", "hwm_after_prepare_mb", "hwm_after_fit_mb"]
    cols += ["train_cells_per_s", "prepare_s", "fit_s", "latent_s", "wall_s"]
    lines = [",".join(cols + ["load_before_1min", "load_after_1min"])]
    for r in runs:
        vals = [f"{r[c]:.3f}" if isinstance(r[c], float) else str(r[c]) for c in cols]
        lines.append(",".join(vals + [f"{r['load_before'][0]:.2f}", f"{r['load_after'][0]:.2f}"]))
    write_text_atomic(args.json.with_suffix(".csv"), "\n".join(lines) + "\n")
    print(json.dumps(summary, indent=1))


if __name__ == "__main__":
    main()
