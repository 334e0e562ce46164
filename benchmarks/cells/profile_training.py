"""Where the time of a CellVAE training step goes (torch.profiler), and what bf16 autocast does to its ELBO.

From the repository root::

    python -m benchmarks.cells.profile_training --data benchmarks/out/cells/sim20k.h5ad
    python -m benchmarks.cells.profile_training --smoke

Trains ``CellVAE`` (NB, n_hidden 128, n_latent 10, batch key ``batch`` when present) on the first
``--cells`` cells for one warm-up epoch, then profiles one more epoch for each ``--batch-sizes`` and each
data path (``device``: the default ``DeviceDataModule``; ``host``: the previous ``ArrayDataModule``, which
slices the scipy matrix per batch), and prints the operators with the most self CPU time, per training
step. Then it measures :func:`scivae.core.train.precision.check_bf16` (the mean absolute per-cell ELBO change
under bf16 autocast, on the CPU) on the trained model. Writes everything as JSON (``--json``). The process tunes
glibc's malloc first, as ``scivae fit`` does (``scivae.core.train.allocator.tune_allocator``).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
import warnings
from pathlib import Path

from benchmarks.cells._common import DATA_DIR
from scivae._atomic import write_text_atomic


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--data", type=Path, default=None, help="h5ad from simulate (default: simulated here)")
    ap.add_argument("--cells", type=int, default=8000)
    ap.add_argument("--batch-sizes", type=int, nargs="+", default=[128, 1024])
    ap.add_argument("--top", type=int, default=15)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--json", type=Path, default=DATA_DIR / "profile.json")
    ap.add_argument("--smoke", action="store_true")
    args = ap.parse_args(argv)

    import anndata as ad
    import torch
    from torch.profiler import ProfilerActivity, profile

    import scivae
    from scivae.core.train.allocator import tune_allocator
    from scivae.core.train.precision import check_bf16

    tune_allocator()
    warnings.simplefilter("ignore")
    torch.set_num_threads(args.threads)
    if args.smoke:
        args.cells, args.batch_sizes, args.top = 400, [64], 5
    if args.data is None:
        from benchmarks.cells.simulate import simulate

        adata = simulate(args.cells, n_genes=200 if args.smoke else 2000)
    else:
        adata = ad.read_h5ad(args.data)[: args.cells].copy()
    batch_key = "batch" if "batch" in adata.obs else None
    out: dict = {"cells": adata.n_obs, "genes": adata.n_vars, "threads": args.threads, "profiles": []}
    out["loadavg_start"] = os.getloadavg()
    model = None
    for bs in args.batch_sizes:
        for path in ("device", "host"):
            model = scivae.CellVAE(adata, batch_key=batch_key)
            fit = {"batch_size": bs, "accelerator": "cpu", "progress_bar": False, "early_stopping": False}
            model.fit(max_epochs=1, **fit)
            with profile(activities=[ProfilerActivity.CPU]) as prof:
                t0 = time.perf_counter()
                if path == "device":
                    model.fit(max_epochs=1, **fit)
                else:
                    _fit_host(model, fit)
                wall = time.perf_counter() - t0
            steps = -(-len(model.data.nonempty) * 9 // 10 // bs)
            rows = sorted(prof.key_averages(), key=lambda e: -e.self_cpu_time_total)[: args.top]
            total = sum(e.self_cpu_time_total for e in prof.key_averages())
            entry = {
                "batch_size": bs,
                "data_path": path,
                "wall_s": wall,
                "steps": steps,
                "self_cpu_ms_per_step_total": total / 1e3 / steps,
                "top": [
                    {
                        "op": e.key,
                        "ms_per_step": e.self_cpu_time_total / 1e3 / steps,
                        "share": e.self_cpu_time_total / total,
                    }
                    for e in rows
                ],
            }
            out["profiles"].append(entry)
            print(f"\nbatch {bs}, {path} data path: {entry['self_cpu_ms_per_step_total']:.2f} ms self CPU per step")
            print("| operator | ms per step | share |")
            print("|---|---:|---:|")
            for r in entry["top"]:
                print(f"| {r['op']} | {r['ms_per_step']:.3f} | {r['share']:.1%} |")
    assert model is not None
    out["bf16"] = check_bf16(model.module, model.data.arrays, "cpu", n_rows=512)
    print(f"\nbf16 autocast on the CPU, 512 cells: {out['bf16']}")
    out["loadavg_end"] = os.getloadavg()
    write_text_atomic(args.json, json.dumps(out, indent=1) + "\n")
    print(f"load average {out['loadavg_start'][0]:.2f} -> {out['loadavg_end'][0]:.2f}; raw figures: {args.json}")
    return 0


def _fit_host(model, fit: dict) -> None:
    """One epoch of the model's training through the host data path (ArrayDataModule: scipy slicing per batch)."""
    from scivae.core import ArrayDataModule, fit_module, split_indices

    options = model.training_options(None, max_epochs=1, **fit)
    train, val = split_indices(model.data.nonempty.size, options.validation_fraction, int(options.seed))
    datamodule = ArrayDataModule(
        model.data.arrays,
        batch_size=options.batch_size,
        seed=int(options.seed),
        train_indices=model.data.nonempty[train],
        validation_indices=model.data.nonempty[val],
    )
    model.module.train()
    fit_module(model.module, datamodule, options)
    model.module.eval()


if __name__ == "__main__":
    sys.exit(main())
