"""Short fits with LayerNorm vs BatchNorm: does the latent carry information? (validation cells only)

From the repository root, after ``prepare_data``::

    python -m benchmarks.cells.norm_short_runs --data benchmarks/out/cells/pbmc3k.h5ad

``seeds regularisation`` ranks the hidden-layer norms by the validation ELBO of 200-epoch fits, where
LayerNorm and BatchNorm tie within the seed noise. This script asks the other question a default must
answer: on short fits of few cells, does the code stay informative? For each number of ``--cells``
(random ``split == "train"`` cells, seeded), each norm and each seed, it fits CellVAE (defaults otherwise,
``--epochs`` epochs) and reports what the fit's own validation cells (taken from those train cells) give:
ELBO, mutual information I(x; z), latent gain (nats the decoder gains from the cell's own code) and the
collapse flag. Test cells are not read. Prints a table and writes JSON (``--json``).
"""

from __future__ import annotations

import argparse
import sys
import warnings
from pathlib import Path

from benchmarks.cells._common import DATA_DIR, save_raw


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--data", type=Path, required=True)
    ap.add_argument("--cells", type=int, nargs="+", default=[700, 2000])
    ap.add_argument("--epochs", type=int, default=12)
    ap.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    ap.add_argument("--json", type=Path, default=DATA_DIR / "norm_short_runs.json")
    args = ap.parse_args(argv)

    import anndata as ad
    import numpy as np
    import torch

    import scivae

    warnings.simplefilter("ignore")
    torch.set_num_threads(1)
    a = ad.read_h5ad(args.data)
    train = a[(a.obs["split"] == "train").to_numpy()]
    rows = []
    for n in args.cells:
        for seed in args.seeds:
            pick = np.sort(np.random.default_rng(seed).permutation(train.n_obs)[: min(n, train.n_obs)])
            cells = train[pick].copy()
            for norm in ("layer", "batch"):
                m = scivae.CellVAE(cells, norm=norm, seed=seed)
                m.fit(max_epochs=args.epochs, accelerator="cpu", early_stopping=False, progress_bar=False, seed=seed)
                met = m.fit_result.metrics
                row = {
                    "cells": int(cells.n_obs),
                    "seed": seed,
                    "norm": norm,
                    "validation_elbo": float(m.history["elbo_validation"].iloc[-1]),
                    "mutual_information": float(met["mutual_information"]),
                    "latent_gain": float(met["latent_gain_validation"]),
                    "collapsed": bool(met["collapsed"]),
                }
                rows.append(row)
                print(
                    f"{row['cells']} cells, seed {seed}, {norm}: validation ELBO {row['validation_elbo']:.1f}, "
                    f"MI {row['mutual_information']:.2f}, latent gain {row['latent_gain']:.1f}, "
                    f"collapsed {row['collapsed']}",
                    flush=True,
                )
    print("\n| cells | norm | validation ELBO | mutual information | latent gain | collapsed |")
    print("|---:|---|---|---|---|---|")
    summary = []
    for n in sorted({r["cells"] for r in rows}):
        for norm in ("layer", "batch"):
            sel = [r for r in rows if r["cells"] == n and r["norm"] == norm]
            entry = {"cells": n, "norm": norm, "collapsed": sum(r["collapsed"] for r in sel), "runs": len(sel)}
            for key in ("validation_elbo", "mutual_information", "latent_gain"):
                v = np.array([r[key] for r in sel])
                entry[key] = {"mean": float(v.mean()), "sd": float(v.std(ddof=1)) if v.size > 1 else 0.0}
            summary.append(entry)
            print(
                f"| {n} | {norm} | {entry['validation_elbo']['mean']:.1f} ± {entry['validation_elbo']['sd']:.1f} "
                f"| {entry['mutual_information']['mean']:.2f} ± {entry['mutual_information']['sd']:.2f} "
                f"| {entry['latent_gain']['mean']:.1f} ± {entry['latent_gain']['sd']:.1f} "
                f"| {entry['collapsed']}/{entry['runs']} |"
            )
    out = {"data": str(args.data.name), "epochs": args.epochs, "summary": summary, "runs": rows}
    save_raw(out, args.json)
    return 0


if __name__ == "__main__":
    sys.exit(main())
