"""Choose the default scale of ``MolVAE.neighbors`` on validation molecules.

``neighbors(query, scale=s)`` decodes points ``mu + s * sigma * eps`` around a molecule's code. Small scales give
back the query itself, large ones molecules unlike it. For each scale, 200 validation molecules (from MOSES train,
not in the training set; never test molecules) x 10 points: validity, the share of points that decode to the query
itself, the Tanimoto similarity to the query of the others, and the distinct other molecules per query.

Usage, from the repository root, on a model of ``fit_eval.py --setting full``::

    python -m benchmarks.molecules.neighbor_scale benchmarks/out/molecules/full/beta0.2_seed0/fit

Writes ``benchmarks/molecules/results/neighbor_scale.json``.
"""

from __future__ import annotations

import argparse
import json
import warnings
from pathlib import Path

import numpy as np
import torch

from benchmarks.molecules.data import RESULTS, encodable, machine, moses_splits

SCALES = (0.25, 0.5, 0.75, 1.0, 1.5)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("fit_dir", type=Path)
    p.add_argument("--n-queries", type=int, default=200)
    p.add_argument("--n-train", type=int, default=100_000)
    p.add_argument("--out", type=Path, default=RESULTS / "neighbor_scale.json")
    args = p.parse_args()
    from scivae.molecules import MolVAE

    torch.set_num_threads(1)
    vae = MolVAE.load(args.fit_dir / "model")
    val = moses_splits(args.n_train, 22_000, 0, seed=0)["validation"]
    pool, _ = encodable(vae, val[12_000:])  # the molecules prior_choice.py does not use as a reference
    queries = [pool[i] for i in np.random.default_rng(0).permutation(len(pool))[: args.n_queries]]
    rows = []
    for scale in SCALES:
        frames = []
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            for i, q in enumerate(queries):
                frames.append(vae.neighbors(q, n=10, scale=scale, seed=i))
        same = np.concatenate([f["same"].to_numpy() for f in frames])
        sims = np.concatenate([f["similarity"].to_numpy(dtype=float) for f in frames])
        valid = np.concatenate([f["valid"].to_numpy() for f in frames])
        others = [f.loc[f["valid"] & ~f["same"], "smiles"].nunique() for f in frames]
        row = {
            "scale": scale,
            "valid": float(valid.mean()),
            "identical_to_query": float(same.mean()),
            "tanimoto_mean_excluding_query": float(np.nanmean(np.where(same, np.nan, sims))),
            "distinct_others_per_query": float(np.mean(others)),
        }
        rows.append(row)
        print(json.dumps(row), flush=True)
    record = {
        "command": f"python -m benchmarks.molecules.neighbor_scale {args.fit_dir}",
        "model": repr(vae),
        "machine": machine(),
        "queries": f"{len(queries)} MOSES validation molecules, 10 points each",
        "rows": rows,
    }
    args.out.write_text(json.dumps(record, indent=2) + "\n")
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
