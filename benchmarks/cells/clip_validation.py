"""Gradient-clipping threshold of CellVAE.fit, chosen on validation cells (never the test cells).

From the repository root (after ``throughput`` or ``simulate`` wrote the data)::

    python -m benchmarks.cells.clip_validation --data benchmarks/out/cells/sim20k.h5ad

Trains CellVAE (defaults otherwise) on the ``split == "train"`` cells for ``--epochs`` epochs at each batch
size and clipping threshold (gradient norm; ``none`` = no clipping, as scvi-tools; ``--norm``: the hidden-layer
norm, default scivae's) and reports the mean
ELBO of the ``split == "validation"`` cells (one z sample). Writes JSON (``--json``).
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
    ap.add_argument("--batch-sizes", type=int, nargs="+", default=[128, 1024])
    ap.add_argument("--clips", nargs="+", default=["10", "100", "none"])
    ap.add_argument("--epochs", type=int, default=1)
    ap.add_argument("--seeds", type=int, nargs="+", default=[0])
    ap.add_argument("--norm", choices=("layer", "batch"), default=None, help="hidden-layer norm (default: scivae's)")
    ap.add_argument("--json", type=Path, default=DATA_DIR / "clip_validation.json")
    args = ap.parse_args(argv)

    import anndata as ad
    import numpy as np
    import torch

    import scivae

    warnings.simplefilter("ignore")
    torch.set_num_threads(1)
    a = ad.read_h5ad(args.data)
    train = a[(a.obs["split"] == "train").to_numpy()].copy()
    val = a[(a.obs["split"] == "validation").to_numpy()].copy()
    key = "batch" if "batch" in a.obs else None
    rows = []
    for bs in args.batch_sizes:
        for seed in args.seeds:
            for clip in args.clips:
                value = None if clip == "none" else float(clip)
                m = scivae.CellVAE(train, batch_key=key, seed=seed, **({"norm": args.norm} if args.norm else {}))
                m.fit(
                    max_epochs=args.epochs,
                    batch_size=bs,
                    accelerator="cpu",
                    early_stopping=False,
                    progress_bar=False,
                    seed=seed,
                    gradient_clip_val=value,
                )
                elbo = float(np.mean(m.get_elbo(val, seed=seed)))
                rows.append({"batch_size": bs, "seed": seed, "clip": clip, "validation_elbo": elbo})
                print(f"batch {bs} seed {seed} clip {clip}: validation ELBO {elbo:.2f}", flush=True)
    out = {"data": str(args.data), "epochs": args.epochs, "norm": args.norm, "runs": rows}
    save_raw(out, args.json)
    return 0


if __name__ == "__main__":
    sys.exit(main())
