"""Peak memory and training throughput over full epochs: streamed (``backed=True``) vs in-memory CellVAE.

Each measurement is a fresh child process (so its peak RSS, ``getrusage`` maxrss, is its own) that runs what a
user runs, ``CellVAE(path, backed=True, ...)`` (or ``CellVAE(anndata.read_h5ad(path), ...)``) then
``.fit(max_epochs=1)`` with the library's other training defaults (batch size 128, validation fraction 0.1;
``--batch-size`` and ``--max-epochs`` change them), then ``get_latent`` of every cell:
1. prepare: count checks, seurat_v3 genes, library statistics (streamed passes, or in memory);
2. fit: every training cell once per epoch. Training throughput = cells trained / training seconds, timed from
   the start of each training epoch to its last batch (validation excluded; loading the batches included); the
   whole ``fit`` call's wall time is recorded too. The child checks that the cells it trained plus the
   validation cells are all the non-empty cells (a full epoch) and fails otherwise;
3. latent of every cell (streamed in backed mode).
The child also records where its peak RSS grew: after preparing, at the first validation, after each validation
(the library's end-of-validation report included), at the end of the fit, and ``hwm_trace`` (cells trained when
it rose by 8 MB or more).
Runs alternate (backed small, memory small, backed large, ...) for ``--repeats`` rounds; with ``--memory-large``
the in-memory path also runs on the largest size in round 0, when at least ``--min-available-gb`` of memory is
available (``MemAvailable``) right then (else it is skipped and the report says so). The load average is
recorded before and after each run. Missing data files are generated first (``make_data``).
``--zarr`` also streams each size from an AnnData Zarr v3 store, sharded (mode ``zarr``: ``CellVAE(store,
backed=True, ...)``; the store is written once from the ``.h5ad`` by ``make_data.write_zarr_copy``), after the
streamed ``.h5ad`` of the same size in every round, and reports its peak RSS ratio largest / smallest size and its
peak RSS and throughput over the streamed ``.h5ad``'s.
``--tune-allocator`` sets glibc's malloc thresholds in each child right before its fit, as ``scivae fit`` does
(``scivae.core.train.allocator.tune_allocator``); without it malloc keeps glibc's defaults, as in a Python session.

From the repository root::

    python -m benchmarks.scale.run --memory-large --zarr   # the RESULTS.md figures (about 15 min on 2 idle cores)
    python -m benchmarks.scale.run --smoke --json /tmp/scale-smoke/r.json   # seconds; run by the test suite

Writes ``--json`` (every run, machine, settings, summary; default ``results/full_epoch.json`` here) and the same
name with ``.csv`` (one row per run), and prints the summary: peak RSS per configuration, the streamed peak RSS
ratio largest / smallest size, and the throughput ratio streamed / in-memory at each size where both ran (per
round, paired within the round), each against its target (``TARGETS``). The same ratio of cells per CPU second
of the training epochs (``time.process_time``) is reported beside it: on a machine shared with other jobs the
wall-clock ratio also measures how the load changed between the two runs.
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
from benchmarks.scale.make_data import write, write_zarr_copy
from scivae._atomic import write_text_atomic

HERE = Path(__file__).resolve().parent

#: The issue's targets: streamed peak RSS at the largest size at most 1.25x the smallest, and streamed training
#: throughput at least 0.7x in-memory at the same size.
TARGETS = {"backed_peak_rss_ratio_max": 1.25, "throughput_ratio_min": 0.7}


def _hwm_mb() -> float:
    """Peak resident memory of this process so far (MB)."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0


def _available_gb() -> float:
    """``MemAvailable`` of /proc/meminfo (GB, 1e9 bytes)."""
    for line in open("/proc/meminfo"):
        if line.startswith("MemAvailable"):
            return int(line.split()[1]) * 1024 / 1e9
    return float("nan")


def _rows(batch) -> int:
    """Cells in a training or validation batch (a dict of tensors, ``x`` first)."""
    if isinstance(batch, dict):
        return int(batch["x"].shape[0])
    if isinstance(batch, (list, tuple)):
        return _rows(batch[0])
    return int(batch.shape[0])


def child(args: argparse.Namespace) -> None:
    """One measurement; prints a JSON line."""
    import lightning as L
    import torch

    torch.set_num_threads(args.threads)
    import anndata as ad

    from scivae.cells import CellVAE

    out: dict = {"mode": args.mode, "file": str(args.file), "rss_start_mb": _hwm_mb()}
    out["torch_threads"] = torch.get_num_threads()
    t = time.perf_counter()
    kw = {"batch_key": "sample", "n_top_genes": args.n_top_genes}
    if args.mode in ("backed", "zarr"):  # zarr: the file is the store
        model = CellVAE(str(args.file), backed=True, **kw)
    else:
        model = CellVAE(ad.read_h5ad(args.file), **kw)
    out["prepare_s"], out["hwm_after_prepare_mb"] = time.perf_counter() - t, _hwm_mb()

    class EpochTimer(L.Callback):
        """Training seconds (each epoch's start to its last batch), cells trained, validation cells and time."""

        train_s = train_cpu_s = validation_s = 0.0
        train_cells = train_batches = validation_cells = epochs = 0

        def __init__(self):
            # where the peak RSS grows: [phase, cells trained so far, peak RSS MB], a row when it rose >= 8 MB
            self.hwm_trace = [["fit start", 0, _hwm_mb()]]

        def trace(self, phase):
            hwm = _hwm_mb()
            if hwm >= self.hwm_trace[-1][2] + 8:
                self.hwm_trace.append([phase, self.train_cells, round(hwm, 1)])

        def on_train_epoch_start(self, trainer, pl_module):
            self.start = self.last = time.perf_counter()
            self.cpu_start = self.cpu_last = time.process_time()

        def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx):
            self.last, self.cpu_last = time.perf_counter(), time.process_time()
            self.train_cells += _rows(batch)
            self.train_batches += 1
            self.trace("train")

        def on_validation_epoch_start(self, trainer, pl_module):
            self.val_start, self.validation_cells = time.perf_counter(), 0  # the cells of the last validation
            self.hwm_at_validation_start_mb = _hwm_mb()

        def on_validation_batch_end(self, trainer, pl_module, outputs, batch, batch_idx, dataloader_idx=0):
            self.validation_cells += _rows(batch)
            self.trace("validation")

        def on_validation_epoch_end(self, trainer, pl_module):
            self.validation_s += time.perf_counter() - self.val_start
            self.hwm_after_validation_mb = _hwm_mb()  # after the library's end-of-validation report too

        def on_fit_end(self, trainer, pl_module):
            self.hwm_at_fit_end_mb = _hwm_mb()  # before the fit's final latent report on the validation cells

        def on_train_epoch_end(self, trainer, pl_module):
            self.train_s += self.last - self.start
            self.hwm_at_train_epoch_end_mb = _hwm_mb()
            self.train_cpu_s += self.cpu_last - self.cpu_start
            self.epochs += 1

    timer = EpochTimer()
    if args.tune_allocator:
        from scivae.core.train.allocator import tune_allocator

        out["allocator"] = tune_allocator()
    options = {"max_epochs": args.max_epochs, "accelerator": "cpu", "progress_bar": False}
    if args.batch_size is not None:
        options["batch_size"] = args.batch_size
    if args.validation_fraction is not None:
        options["validation_fraction"] = args.validation_fraction
    t = time.perf_counter()
    model.fit(callbacks=[timer], **options)
    out["fit_s"], out["hwm_after_fit_mb"] = time.perf_counter() - t, _hwm_mb()
    n_trainable = model.data_summary["n_cells_trained"]  # the non-empty cells: training + validation
    out.update(n_cells_nonempty=n_trainable, epochs=timer.epochs, train_batches=timer.train_batches)
    out.update(train_cells=timer.train_cells, validation_cells=timer.validation_cells)
    out.update(train_s=timer.train_s, train_cpu_s=timer.train_cpu_s, validation_s=timer.validation_s)
    out["hwm_trace"] = timer.hwm_trace
    for key in ("validation_start", "train_epoch_end", "fit_end"):
        out[f"hwm_at_{key}_mb"] = getattr(timer, f"hwm_at_{key}_mb", None)
    out["hwm_after_validation_mb"] = getattr(timer, "hwm_after_validation_mb", None)
    out["full_epochs"] = timer.epochs == args.max_epochs and (
        timer.train_cells == args.max_epochs * (n_trainable - timer.validation_cells)
    )
    if not out["full_epochs"]:
        raise SystemExit(f"not {args.max_epochs} full epoch(s): {out}")
    out["train_cells_per_s"] = timer.train_cells / timer.train_s
    out["train_cells_per_cpu_s"] = timer.train_cells / timer.train_cpu_s  # less sensitive to other processes
    out["fit_time_s_reported"] = model.fit_result.metrics.get("time_s")
    t = time.perf_counter()
    latent = model.get_latent(batch_size=4096)
    out["latent_s"], out["latent_rows"] = time.perf_counter() - t, int(latent.shape[0])
    out["n_cells"], out["n_genes"] = model.data_summary["n_cells_input"], len(model.genes)
    out["peak_rss_mb"] = _hwm_mb()
    print("RESULT " + json.dumps(out), flush=True)


def _run_child(mode: str, file: Path, args: argparse.Namespace) -> dict:
    cmd = [sys.executable, "-m", "benchmarks.scale.run", "--child", "--mode", mode, "--file", str(file)]
    for k in ("max_epochs", "batch_size", "threads", "n_top_genes", "validation_fraction"):
        if getattr(args, k) is not None:
            cmd += [f"--{k.replace('_', '-')}", str(getattr(args, k))]
    cmd += ["--tune-allocator"] if args.tune_allocator else []
    load_before, available_before = os.getloadavg(), _available_gb()
    t = time.perf_counter()
    done = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, env={**os.environ, "OMP_NUM_THREADS": "1"})
    if done.returncode != 0:
        raise SystemExit(f"{mode} {file.name} failed:\n{done.stdout[-2000:]}\n{done.stderr[-3000:]}")
    line = next(ln for ln in done.stdout.splitlines() if ln.startswith("RESULT "))
    result = json.loads(line[len("RESULT ") :])
    result.update(wall_s=time.perf_counter() - t, load_before=load_before, load_after=os.getloadavg())
    result["available_gb_before"] = available_before
    return result


def _machine(threads: int, load_at_start: tuple) -> dict:
    import torch

    mem = next((ln.split(":", 1)[1].strip() for ln in open("/proc/meminfo") if ln.startswith("MemTotal")), "?")
    info = machine()
    return {
        "cpu": info["cpu"],
        "cores": info["logical_cores"],
        "memory": mem,
        "python": info["python"],
        "torch": torch.__version__,
        "torch_threads": threads,
        "load_at_start": load_at_start,
    }


def _spread(values: list[float]) -> dict:
    return {"median": statistics.median(values), "min": min(values), "max": max(values), "runs": values}


def summarise(runs: list[dict], sizes: list[int]) -> dict:
    def of(mode: str, n: int, key: str) -> list[float]:
        return [r[key] for r in runs if r["mode"] == mode and r["n_cells"] == n]

    small, large = min(sizes), max(sizes)
    rounds = sorted({r["round"] for r in runs})
    configs = [(mode, n) for mode in ("backed", "memory", "zarr") for n in sizes if of(mode, n, "peak_rss_mb")]
    out: dict = {
        key: {f"{mode}_{n}": _spread(of(mode, n, key)) for mode, n in configs}
        for key in (
            "peak_rss_mb",
            "train_cells_per_s",
            "train_cells_per_cpu_s",
            "train_s",
            "fit_s",
            "prepare_s",
            "latent_s",
            "wall_s",
        )
    }
    for key, name in (("train_cells_per_s", "throughput"), ("train_cells_per_cpu_s", "cpu_throughput")):
        ratios: dict = {}
        for n in sizes:
            per_round = []
            for k in rounds:
                b = [r for r in runs if r["round"] == k and r["mode"] == "backed" and r["n_cells"] == n]
                m = [r for r in runs if r["round"] == k and r["mode"] == "memory" and r["n_cells"] == n]
                if b and m:
                    per_round.append(b[0][key] / m[0][key])
            if per_round:
                target = TARGETS["throughput_ratio_min"]
                ratios[str(n)] = {**_spread(per_round), "target_met_every_round": min(per_round) >= target}
                ratios[str(n)]["median_target_met"] = statistics.median(per_round) >= target
        out[f"{name}_ratio_backed_over_memory"] = ratios
    for mode in ("backed", "zarr"):
        big, little = of(mode, large, "peak_rss_mb"), of(mode, small, "peak_rss_mb")
        if large == small or not big or not little:
            continue
        ratio = statistics.median(big) / statistics.median(little)
        out[f"{mode}_peak_rss_ratio_large_over_small"] = {
            "median_over_median": ratio,
            "max_over_min": max(big) / min(little),
            "target_met": ratio <= TARGETS["backed_peak_rss_ratio_max"],
            "worst_case_target_met": max(big) / min(little) <= TARGETS["backed_peak_rss_ratio_max"],
        }
    zarr_over_h5ad: dict = {}
    for n in sizes:  # the Zarr store against the streamed .h5ad of the same size: medians
        z, b = of("zarr", n, "peak_rss_mb"), of("backed", n, "peak_rss_mb")
        zt, bt = of("zarr", n, "train_cells_per_s"), of("backed", n, "train_cells_per_s")
        if z and b:
            zarr_over_h5ad[str(n)] = {
                "peak_rss": statistics.median(z) / statistics.median(b),
                "throughput": statistics.median(zt) / statistics.median(bt),
            }
    if zarr_over_h5ad:
        out["zarr_over_backed_h5ad"] = zarr_over_h5ad
    out["targets"] = TARGETS
    return out


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument(
        "--json",
        type=Path,
        default=HERE / "results" / "full_epoch.json",
        help="every run, machine and settings; the runs also go to a .csv beside it",
    )
    p.add_argument("--data-dir", type=Path, default=HERE.parent / "out" / "scale")
    p.add_argument("--sizes", type=int, nargs="+", default=[100_000, 1_000_000])
    p.add_argument("--genes", type=int, default=2000)
    p.add_argument("--n-top-genes", type=int, default=1000)
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--memory-large", action="store_true", help="also run the in-memory path on the largest size")
    p.add_argument(
        "--min-available-gb",
        type=float,
        default=14.0,
        help="skip the in-memory run on the largest size when less memory than this is available then",
    )
    p.add_argument("--max-epochs", type=int, default=1, help="full epochs per fit")
    p.add_argument("--batch-size", type=int, default=None, help="default: the library's (128)")
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--validation-fraction", type=float, default=None, help="default: the library's (0.1)")
    p.add_argument(
        "--tune-allocator",
        action="store_true",
        help="set glibc's malloc thresholds before each fit, as scivae fit does",
    )
    p.add_argument("--zarr", action="store_true", help="also stream each size from a sharded Zarr v3 copy")
    p.add_argument("--smoke", action="store_true", help="tiny files, one round: a check that it runs")
    p.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    p.add_argument("--mode", choices=["backed", "memory", "zarr"], help=argparse.SUPPRESS)
    p.add_argument("--file", type=Path, help=argparse.SUPPRESS)
    args = p.parse_args()
    if args.child:
        child(args)
        return
    if args.smoke:
        args.sizes, args.genes, args.n_top_genes, args.repeats = [2000, 6000], 300, 100, 1
        args.data_dir = args.json.parent / "data"
    load_at_start, files = os.getloadavg(), {}
    for n in args.sizes:
        files[n] = args.data_dir / f"cells_{n}{'_g' + str(args.genes) if args.genes != 2000 else ''}.h5ad"
        if not files[n].exists():
            print(f"generating {files[n]} ...", flush=True)
            write(files[n], n, args.genes)
    if args.zarr:
        for n in args.sizes:
            files[("zarr", n)] = files[n].with_suffix(".v3_sharded.zarr")
            write_zarr_copy(files[n], files[("zarr", n)])
    small, large = min(args.sizes), max(args.sizes)
    plan = [("backed", small), ("memory", small)] + [("backed", n) for n in args.sizes if n != small]
    plan += [("zarr", n) for n in args.sizes] if args.zarr else []
    runs, skipped = [], []
    for k in range(args.repeats):
        extra = [("memory", large)] if args.memory_large and k == 0 and large != small else []
        for mode, n in plan + extra:
            if (mode, n) == ("memory", large) and large != small and _available_gb() < args.min_available_gb:
                skipped.append({"round": k, "mode": mode, "n_cells": n, "available_gb": _available_gb()})
                print(f"round {k} memory {n} cells skipped: {_available_gb():.1f} GB available", flush=True)
                continue
            r = _run_child(mode, files[(mode, n)] if mode == "zarr" else files[n], args)
            r["round"] = k
            runs.append(r)
            print(
                f"round {k} {mode:6s} {n:>8d} cells: peak RSS {r['peak_rss_mb']:7.0f} MB, "
                f"{r['train_cells_per_s']:7.0f} cells/s ({r['train_cells']} cells in {r['train_s']:.1f} s; "
                f"{r['train_cells_per_cpu_s']:.0f} per CPU s), "
                f"fit {r['fit_s']:.1f} s, prepare {r['prepare_s']:.1f} s, latent {r['latent_s']:.1f} s, "
                f"load {r['load_before'][0]:.2f} -> {r['load_after'][0]:.2f}",
                flush=True,
            )
    summary = summarise(runs, args.sizes)
    settings = {k: getattr(args, k) for k in ("sizes", "genes", "n_top_genes", "repeats", "max_epochs")}
    settings.update(batch_size=args.batch_size, threads=args.threads, validation_fraction=args.validation_fraction)
    settings.update(tune_allocator=args.tune_allocator, memory_large=args.memory_large, zarr=args.zarr)
    settings.update(min_available_gb=args.min_available_gb, smoke=args.smoke)
    report = {
        "command": " ".join(["python", "-m", "benchmarks.scale.run", *sys.argv[1:]]),
        "machine": _machine(args.threads, load_at_start),
        "settings": settings,
        "summary": summary,
        "skipped": skipped,
        "runs": runs,
    }
    report["machine"]["load_at_end"] = os.getloadavg()
    args.json.parent.mkdir(parents=True, exist_ok=True)
    write_text_atomic(args.json, json.dumps(report, indent=1) + "\n")
    cols = ["round", "mode", "n_cells", "n_genes", "peak_rss_mb", "hwm_after_prepare_mb", "hwm_after_fit_mb"]
    cols += ["train_cells", "validation_cells", "train_s", "train_cells_per_s", "train_cpu_s", "train_cells_per_cpu_s"]
    cols += ["prepare_s", "fit_s", "latent_s", "wall_s"]
    lines = [",".join(cols + ["load_before_1min", "load_after_1min"])]
    for r in runs:
        vals = [f"{r[c]:.3f}" if isinstance(r[c], float) else str(r[c]) for c in cols]
        lines.append(",".join(vals + [f"{r['load_before'][0]:.2f}", f"{r['load_after'][0]:.2f}"]))
    write_text_atomic(args.json.with_suffix(".csv"), "\n".join(lines) + "\n")
    for key in ("peak_rss_mb", "train_cells_per_s", "train_cells_per_cpu_s", "fit_s"):
        print(key, {c: round(v["median"], 1) for c, v in summary[key].items()}, "(medians)")
    ratios = ("throughput_ratio_backed_over_memory", "cpu_throughput_ratio_backed_over_memory")
    for key in (*ratios, "backed_peak_rss_ratio_large_over_small", "zarr_peak_rss_ratio_large_over_small"):
        print(key, json.dumps(summary.get(key)))
    if "zarr_over_backed_h5ad" in summary:
        print("zarr_over_backed_h5ad", json.dumps(summary["zarr_over_backed_h5ad"]))
    print(f"wrote {args.json} and {args.json.with_suffix('.csv').name}")


if __name__ == "__main__":
    main()
