"""Likelihood table for the regularisation experiment (scivae variants vs scvi-tools on one data set).

Reads the per-cell test ELBO / log p(x) written by run_scivae.py / run_scvi.py under ``<root>/<tool>/<name>``
and prints, per scivae variant: test ELBO and log p(x) (mean ± s.e. over test cells), train ELBO, best
validation epoch, validation ELBO at the best and at the last epoch, fit time, and the paired per-cell
differences against a reference run (default ``scvi_warmup50``)::

    .venv/bin/python benchmarks/cells/regularisation.py --root benchmarks/out/cells --name pbmc3k \
        --tools scivae scivae_adam scivae_bn scivae_bn_adam

Writes ``<root>/regularisation_<name>.md`` and ``.json``; it does not touch evaluate.py's results files.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path

import numpy as np
import pandas as pd

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _common import save_json  # noqa: E402


def _mean_se(x: np.ndarray) -> tuple[float, float]:
    return float(np.mean(x)), float(np.std(x, ddof=1) / np.sqrt(len(x)))


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--root", type=Path, default=Path("benchmarks/out/cells"))
    ap.add_argument("--name", default="pbmc3k")
    ap.add_argument("--tools", nargs="+", required=True)
    ap.add_argument("--reference", default="scvi_warmup50")
    args = ap.parse_args(argv)

    def load(tool: str) -> dict:
        d = args.root / tool / args.name
        return {
            "elbo": np.load(d / "elbo_test.npy"),
            "mll": np.load(d / "marginal_ll_test.npy"),
            "run": json.loads((d / "run.json").read_text()),
            "history": pd.read_csv(d / "history.csv") if (d / "history.csv").exists() else None,
        }

    ref = load(args.reference)
    rows, out = [], {}
    for tool in [args.reference, *args.tools]:
        r = load(tool)
        s = r["run"].get("settings", {})
        e, m = _mean_se(r["elbo"]), _mean_se(r["mll"])
        entry = {
            "settings": {k: s.get(k) for k in ("norm", "adam_eps", "weight_decay", "weights", "n_mc_samples")},
            "test_elbo": e,
            "test_marginal_ll": m,
            "train_elbo": r["run"].get("train", {}).get("elbo_mean"),
            "fit_s": r["run"].get("fit_s"),
        }
        h = r["history"]
        if h is not None and "elbo_validation" in h and h["elbo_validation"].notna().any():
            v = h["elbo_validation"].to_numpy()
            entry |= {"best_epoch": int(np.nanargmax(v)), "val_best": float(np.nanmax(v)), "val_last": float(v[-1])}
        if tool != args.reference:
            entry["paired_elbo"] = _mean_se(r["elbo"] - ref["elbo"])
            entry["paired_mll"] = _mean_se(r["mll"] - ref["mll"])
        out[tool] = entry

        def f(x, spec=".2f"):
            return "-" if x is None else format(x, spec)

        pm = entry.get("paired_mll")
        pe = entry.get("paired_elbo")
        rows.append(
            f"| {tool} | {e[0]:.2f} ± {e[1]:.2f} | {m[0]:.2f} ± {m[1]:.2f} | "
            + (f"{pe[0]:+.2f} ± {pe[1]:.2f} | {pm[0]:+.2f} ± {pm[1]:.2f}" if pe else "- | -")
            + f" | {f(entry['train_elbo'])} | {entry.get('best_epoch', '-')} | {f(entry.get('val_best'))} | "
            f"{f(entry.get('val_last'))} | {f(entry['fit_s'], '.0f')} |"
        )
    n = len(ref["elbo"])
    md = "\n".join(
        [
            f"{args.name}, {n} test cells; paired = per-cell difference tool - {args.reference}, ± s.e.",
            "",
            "| run | test ELBO | test log p(x) | paired ELBO | paired log p(x) | train ELBO | best val. epoch"
            " | val. ELBO best | val. ELBO last | fit s |",
            "|---|---|---|---|---|---|---|---|---|---|",
            *rows,
        ]
    )
    print(md)
    save_json(out, args.root / f"regularisation_{args.name}.json")
    tmp = args.root / f"regularisation_{args.name}.md.tmp"
    tmp.write_text(md + "\n")
    os.replace(tmp, args.root / f"regularisation_{args.name}.md")
    return 0


if __name__ == "__main__":
    sys.exit(main())
