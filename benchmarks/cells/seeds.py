"""Likelihood over seeds, scivae vs scvi-tools, and the regularisation experiment chosen on validation cells.

From the repository root, after ``prepare_data`` (and ``setup_scvi_venv.sh`` for scvi-tools)::

    python -m benchmarks.cells.seeds compare --data pbmc3k --seeds 0 1 2
    python -m benchmarks.cells.seeds regularisation --data pbmc3k --seeds 0 1 2
    python -m benchmarks.cells.seeds compare --smoke        # seconds: tiny simulated data

``compare`` trains, for every seed, scivae with its defaults, scvi-tools with its defaults (``scvi``) and
scvi-tools with scivae's default KL warm-up (``scvi_warmup``: the exact number of optimiser steps scivae
used in the same seed's run, given as ``n_steps_kl_warmup``, linear per step as in scivae), each on the
``split == "train"`` cells, early stopping off, ``--epochs`` epochs, batch 128, one thread; then evaluates
the ``"test"`` cells: ELBO (one z sample) and log p(x) (``--n-mc`` importance samples).

``regularisation`` trains scivae in the settings of ``REG_CONFIGS`` (old default: LayerNorm, Adam eps 1e-8,
weight decay 0; ``adam``: eps 0.01, weight decay 1e-6; ``bn``: BatchNorm; ``bn_adam``: both; each with the
gradient norm clipped at 10, and the ``adam``/``bn_adam`` settings also clipped at 100 or not at all) and
ranks them by the ELBO of the ``"validation"`` cells (never trained on, not the reported test cells), mean
over seeds, with each setting's paired difference to the highest (per seed, then mean ± sd); it also reports
the validation log p(x). Test cells are not evaluated for the ranking.

Every run's files go to ``<out>/seeds/<tool>/<data>/seed<k>/`` (``run_scivae`` / ``run_scvi`` outputs). The
summary (mean ± sd over seeds; paired differences per seed, then mean ± sd over seeds) is printed as a
table and written as JSON and CSV to ``--results`` (default ``benchmarks/cells/results``), the small raw
files that RESULTS.md quotes.
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

from benchmarks.cells._common import DATA_DIR, RESULTS_DIR, ROOT, SCVI_PYTHON, child_env, scvi_python_or_none

_ADAM = ["--adam-eps", "0.01", "--weight-decay", "1e-6"]
REG_CONFIGS = {
    "old_default": ["--norm", "layer", "--adam-eps", "1e-8", "--weight-decay", "0", "--gradient-clip", "10"],
    "adam": ["--norm", "layer", *_ADAM, "--gradient-clip", "10"],
    "bn": ["--norm", "batch", "--adam-eps", "1e-8", "--weight-decay", "0", "--gradient-clip", "10"],
    "bn_adam": ["--norm", "batch", *_ADAM, "--gradient-clip", "10"],
    # gradient clipping: the four above clip the gradient norm at 10 (scivae's default until then); scvi-tools
    # does not clip
    "adam_noclip": ["--norm", "layer", *_ADAM, "--gradient-clip", "none"],
    "bn_adam_clip100": ["--norm", "batch", *_ADAM, "--gradient-clip", "100"],
    "bn_adam_noclip": ["--norm", "batch", *_ADAM, "--gradient-clip", "none"],
}


def _run(python: str, script: str, out: Path, args: list[str], threads: int) -> dict:
    """``python -m benchmarks.cells.<script>`` (run_scivae or run_scvi) into ``out``; its run.json."""
    if (out / "run.json").exists():  # resumable: a finished run is not repeated
        return json.loads((out / "run.json").read_text())
    cmd = [python, "-m", f"benchmarks.cells.{script}", "--out", str(out), "--threads", str(threads), *args]
    t0 = time.perf_counter()
    proc = subprocess.run(cmd, cwd=ROOT, env=child_env(threads), capture_output=True, text=True)
    if proc.returncode != 0:
        raise RuntimeError(f"{' '.join(cmd)} failed:\n{proc.stderr[-3000:]}")
    print(f"  {script} {' '.join(args)} -> {out} ({time.perf_counter() - t0:.0f} s)", flush=True)
    return json.loads((out / "run.json").read_text())


def _ms(values: list[float]) -> dict:
    v = np.asarray(values, dtype=float)
    return {"mean": float(v.mean()), "sd": float(v.std(ddof=1)) if v.size > 1 else 0.0, "n": int(v.size)}


def _fmt(d: dict, spec: str = ".2f") -> str:
    return f"{d['mean']:{spec}} ± {d['sd']:{spec}}"


def _write(results: Path, stem: str, summary: dict, rows: list[dict]) -> None:
    results.mkdir(parents=True, exist_ok=True)
    tmp = results / f"{stem}.json.tmp"
    tmp.write_text(json.dumps(summary, indent=1) + "\n")
    os.replace(tmp, results / f"{stem}.json")
    tmp = results / f"{stem}.csv.tmp"
    with tmp.open("w", newline="") as fh:
        w = csv.DictWriter(fh, fieldnames=list(rows[0]))
        w.writeheader()
        w.writerows(rows)
    os.replace(tmp, results / f"{stem}.csv")
    print(f"raw figures: {results / stem}.json, .csv")


def compare(args: argparse.Namespace) -> dict:
    data = args.out / f"{args.data}.h5ad"
    common = ["--data", str(data), "--max-epochs", str(args.epochs), "--n-mc-samples", str(args.n_mc)]
    common += ["--validation-mc-samples", "0"] + (["--batch-key", args.batch_key] if args.batch_key else [])
    tools = ["scivae", "scvi", "scvi_warmup"] if args.scvi_python else ["scivae"]
    rows = []
    for seed in args.seeds:
        base = [*common, "--seed", str(seed)]
        root = args.out / "seeds"
        sv = _run(sys.executable, "run_scivae", root / "scivae" / args.data / f"seed{seed}", base, args.threads)
        runs = {"scivae": sv}
        if args.scvi_python:
            runs["scvi"] = _run(args.scvi_python, "run_scvi", root / "scvi" / args.data / f"seed{seed}", base, 1)
            warm = str(sv["settings"]["kl_warmup_steps"])
            runs["scvi_warmup"] = _run(
                args.scvi_python,
                "run_scvi",
                root / "scvi_warmup" / args.data / f"seed{seed}",
                [*base, "--kl-warmup-steps", warm],
                args.threads,
            )
        for tool, run in runs.items():
            d = root / tool / args.data / f"seed{seed}"
            rows.append(
                {
                    "data": args.data,
                    "seed": seed,
                    "tool": tool,
                    "test_elbo": run["test"]["elbo_mean"],
                    "test_log_px": run["test"]["marginal_ll_mean"],
                    "train_elbo": run["train"]["elbo_mean"],
                    "kl_warmup_steps": run["settings"].get("kl_warmup_steps", run["settings"].get("n_steps_kl_warmup")),
                    "median_cells_per_s": run["throughput"].get("median_cells_per_s"),
                    "fit_s": run["fit_s"],
                    "_elbo": np.load(d / "elbo_test.npy"),
                    "_mll": np.load(d / "marginal_ll_test.npy"),
                }
            )
    summary: dict = {"data": args.data, "epochs": args.epochs, "seeds": args.seeds, "n_mc": args.n_mc, "tools": {}}
    for tool in tools:
        sel = [r for r in rows if r["tool"] == tool]
        summary["tools"][tool] = {
            k: _ms([r[k] for r in sel]) for k in ("test_elbo", "test_log_px", "train_elbo", "median_cells_per_s")
        }
    summary["paired"] = {}
    for other in tools[1:]:
        de, dm = [], []
        for seed in args.seeds:
            a = next(r for r in rows if r["tool"] == "scivae" and r["seed"] == seed)
            b = next(r for r in rows if r["tool"] == other and r["seed"] == seed)
            de.append(float(np.mean(a["_elbo"] - b["_elbo"])))
            dm.append(float(np.mean(a["_mll"] - b["_mll"])))
        summary["paired"][f"scivae - {other}"] = {"test_elbo": _ms(de), "test_log_px": _ms(dm)}
    print(f"\n{args.data}, {args.epochs} epochs, seeds {args.seeds}: mean ± sd over seeds (nats per test cell)")
    print("| tool | test ELBO | test log p(x) | train ELBO | median cells/s per epoch |")
    print("|---|---|---|---|---|")
    for tool, s in summary["tools"].items():
        print(
            f"| {tool} | {_fmt(s['test_elbo'])} | {_fmt(s['test_log_px'])} | {_fmt(s['train_elbo'])} "
            f"| {_fmt(s['median_cells_per_s'], '.0f')} |"
        )
    for name, p in summary["paired"].items():
        print(f"paired, {name}: ELBO {_fmt(p['test_elbo'])}, log p(x) {_fmt(p['test_log_px'])} (per-seed means)")
    _write(args.results, f"seeds_{args.data}", summary, [{k: v for k, v in r.items() if k[0] != "_"} for r in rows])
    return summary


def regularisation(args: argparse.Namespace) -> dict:
    data = args.out / f"{args.data}.h5ad"
    common = ["--data", str(data), "--max-epochs", str(args.epochs), "--n-mc-samples", str(args.n_mc)]
    common += ["--batch-key", args.batch_key] if args.batch_key else []
    rows = []
    for seed in args.seeds:
        for name, flags in REG_CONFIGS.items():
            out = args.out / "seeds" / f"reg_{name}" / args.data / f"seed{seed}"
            run = _run(sys.executable, "run_scivae", out, [*common, *flags, "--seed", str(seed)], args.threads)
            rows.append(
                {
                    "data": args.data,
                    "seed": seed,
                    "config": name,
                    "flags": " ".join(flags),
                    "validation_elbo": run["validation"]["elbo_mean"],
                    "validation_log_px": run["validation"]["marginal_ll_mean"],
                    "best_epoch": run["settings"]["best_validation_epoch"],
                }
            )
    summary: dict = {"data": args.data, "epochs": args.epochs, "seeds": args.seeds, "configs": {}}
    for name in REG_CONFIGS:
        sel = [r for r in rows if r["config"] == name]
        summary["configs"][name] = {
            "flags": sel[0]["flags"],
            "validation_elbo": _ms([r["validation_elbo"] for r in sel]),
            "validation_log_px": _ms([r["validation_log_px"] for r in sel]),
            "best_epoch": _ms([r["best_epoch"] or 0 for r in sel]),
        }
    best = max(summary["configs"], key=lambda k: summary["configs"][k]["validation_elbo"]["mean"])
    summary["chosen_by_validation_elbo"] = best
    by = {(r["config"], r["seed"]): r for r in rows}
    for name, s in summary["configs"].items():
        for key in ("validation_elbo", "validation_log_px"):
            s[f"{key}_minus_{best}"] = _ms([by[name, k][key] - by[best, k][key] for k in args.seeds])
    print(f"\n{args.data}: validation cells, mean ± sd over seeds {args.seeds} (nats per cell)")
    print(f"| setting | flags | validation ELBO | minus {best} | validation log p(x) | minus {best} | best epoch |")
    print("|---|---|---|---|---|---|---|")
    for name, s in summary["configs"].items():
        print(
            f"| {name} | `{s['flags']}` | {_fmt(s['validation_elbo'])} | {_fmt(s[f'validation_elbo_minus_{best}'])} "
            f"| {_fmt(s['validation_log_px'])} | {_fmt(s[f'validation_log_px_minus_{best}'])} "
            f"| {_fmt(s['best_epoch'], '.0f')} |"
        )
    print(f"highest validation ELBO: {best}")
    _write(args.results, f"regularisation_{args.data}", summary, rows)
    return summary


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("mode", choices=("compare", "regularisation"))
    ap.add_argument("--data", default="pbmc3k", help="<out>/<data>.h5ad from prepare_data")
    ap.add_argument("--batch-key", default=None, help="e.g. condition for ifnb")
    ap.add_argument("--seeds", nargs="+", type=int, default=[0, 1, 2])
    ap.add_argument("--epochs", type=int, default=200)
    ap.add_argument("--n-mc", type=int, default=1000, help="importance samples for log p(x)")
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--out", type=Path, default=DATA_DIR, help="data files and per-run outputs")
    ap.add_argument("--results", type=Path, default=RESULTS_DIR, help="where the summary JSON and CSV go")
    ap.add_argument("--scvi-python", default=SCVI_PYTHON)
    ap.add_argument("--smoke", action="store_true", help="tiny simulated data, 2 epochs, 1 seed (seconds)")
    args = ap.parse_args(argv)
    if args.smoke:
        from benchmarks.cells.simulate import simulate

        args.out = args.out / "smoke"
        args.out.mkdir(parents=True, exist_ok=True)
        args.data, args.batch_key, args.seeds, args.epochs, args.n_mc = "seeds_smoke", "batch", [0, 1], 2, 5
        args.results = args.out / "results"
        if not (args.out / f"{args.data}.h5ad").exists():
            simulate(500, n_genes=100, seed=0).write_h5ad(args.out / f"{args.data}.h5ad")
    args.scvi_python = scvi_python_or_none(args.scvi_python)
    if args.mode == "compare":
        compare(args)
    else:
        regularisation(args)
    return 0


if __name__ == "__main__":
    sys.exit(main())
