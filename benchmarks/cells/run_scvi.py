"""scvi-tools side of the cells benchmark. Runs in benchmarks/.venv-scvi (see setup_scvi_venv.sh)::

    benchmarks/.venv-scvi/bin/python benchmarks/cells/run_scvi.py --data benchmarks/out/cells/pbmc3k.h5ad \
        --out benchmarks/out/cells/scvi/pbmc3k --max-epochs 200

Trains ``scvi.model.SCVI`` (NB likelihood, n_latent=10, n_hidden=128, n_layers=1, everything else at
scvi-tools defaults, early stopping off) on the ``split == "train"`` cells, then writes:

- ``latent.npy``: posterior means for ALL cells in file order,
- ``elbo_test.npy`` / ``marginal_ll_test.npy``: per-cell ELBO and importance-sampled log p(x) of the test
  cells, in nats, higher is better (scvi-tools 1.4: ``get_elbo`` returns ``-(reconstruction_loss +
  kl_local)``, i.e. the ELBO itself; ``get_marginal_ll`` returns log p(x); both asked per cell with
  ``return_mean=False`` and averaged here, since ``return_mean=True`` averages per-minibatch means),
- ``history.csv`` (scvi's per-epoch history), ``run.json`` (settings, versions, timings, throughput).
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _common import machine, make_epoch_timer, save_json, save_npy, throughput  # noqa: E402


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description="Train scvi-tools SCVI on a prepared benchmark file.")
    ap.add_argument("--data", type=Path, required=True)
    ap.add_argument("--out", type=Path, required=True)
    ap.add_argument("--batch-key", default=None)
    ap.add_argument("--max-epochs", type=int, default=200)
    ap.add_argument("--batch-size", type=int, default=128)
    ap.add_argument("--n-mc-samples", type=int, default=1000, help="importance samples for log p(x)")
    ap.add_argument(
        "--validation-mc-samples",
        type=int,
        default=None,
        help="importance samples for log p(x) of the validation cells (default: --n-mc-samples; 0 skips it)",
    )
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument(
        "--kl-warmup-epochs",
        type=int,
        default=None,
        help="n_epochs_kl_warmup (default: scvi-tools' own default, 400 epochs)",
    )
    ap.add_argument(
        "--kl-warmup-steps",
        type=int,
        default=None,
        help="n_steps_kl_warmup, linear per step as scivae's (replaces the epoch warm-up); see seeds.py",
    )
    args = ap.parse_args(argv)

    import anndata as ad
    import numpy as np
    import pandas as pd
    import scvi
    import torch

    scvi.settings.seed = args.seed
    scvi.settings.num_threads = args.threads
    torch.set_num_threads(args.threads)
    args.out.mkdir(parents=True, exist_ok=True)

    adata = ad.read_h5ad(args.data)
    train = adata[(adata.obs["split"] == "train").to_numpy()].copy()
    test = adata[(adata.obs["split"] == "test").to_numpy()].copy()
    # "validation" cells (prepare_data.py) are never trained on: they are for choosing defaults only.
    val = adata[(adata.obs["split"] == "validation").to_numpy()].copy()

    scvi.model.SCVI.setup_anndata(train, layer=None, batch_key=args.batch_key)
    model = scvi.model.SCVI(train, n_latent=10, n_hidden=128, n_layers=1, gene_likelihood="nb")
    timer = make_epoch_timer()
    plan_kwargs = None
    if args.kl_warmup_steps is not None:
        plan_kwargs = {"n_steps_kl_warmup": args.kl_warmup_steps, "n_epochs_kl_warmup": None}
    elif args.kl_warmup_epochs is not None:
        plan_kwargs = {"n_epochs_kl_warmup": args.kl_warmup_epochs}
    train_size = 0.9
    t0 = time.perf_counter()
    model.train(
        max_epochs=args.max_epochs,
        batch_size=args.batch_size,
        train_size=train_size,
        early_stopping=False,
        accelerator="cpu",
        devices=1,
        callbacks=[timer],
        enable_progress_bar=False,
        plan_kwargs=plan_kwargs,
    )
    fit_s = time.perf_counter() - t0
    n_fit_cells = len(model.train_indices)

    torch.manual_seed(args.seed)
    t1 = time.perf_counter()
    latent = model.get_latent_representation(adata)
    elbo_test = model.get_elbo(test, return_mean=False).cpu().numpy()
    elbo_train = model.get_elbo(train, return_mean=False).cpu().numpy()
    mll_test = (
        model.get_marginal_ll(test, n_mc_samples=args.n_mc_samples, return_mean=False, n_mc_samples_per_pass=100)
        .cpu()
        .numpy()
    )
    elbo_val, mll_val = np.zeros(0), np.zeros(0)
    n_mc_val = args.n_mc_samples if args.validation_mc_samples is None else args.validation_mc_samples
    if val.n_obs:
        elbo_val = model.get_elbo(val, return_mean=False).cpu().numpy()
    if val.n_obs and n_mc_val > 0:
        mll_val = (
            model.get_marginal_ll(val, n_mc_samples=n_mc_val, return_mean=False, n_mc_samples_per_pass=100)
            .cpu()
            .numpy()
        )
    eval_s = time.perf_counter() - t1

    save_npy(latent.astype(np.float32), args.out / "latent.npy")
    save_npy(elbo_test.astype(np.float64), args.out / "elbo_test.npy")
    save_npy(mll_test.astype(np.float64), args.out / "marginal_ll_test.npy")
    save_npy(np.asarray(elbo_val, dtype=np.float64), args.out / "elbo_validation.npy")
    save_npy(np.asarray(mll_val, dtype=np.float64), args.out / "marginal_ll_validation.npy")
    hist = pd.concat([v for v in model.history.values()], axis=1)
    tmp = args.out / "history.csv.tmp"
    hist.to_csv(tmp)
    tmp.replace(args.out / "history.csv")

    plan = model.trainer.lightning_module if hasattr(model, "trainer") else None
    run = {
        "tool": "scvi-tools",
        "versions": {"scvi-tools": scvi.__version__, "torch": torch.__version__},
        "machine": machine() | {"torch_threads": torch.get_num_threads()},
        "data": str(args.data),
        "settings": {
            "n_latent": 10,
            "n_hidden": 128,
            "n_layers": 1,
            "gene_likelihood": "nb",
            "dispersion": model.module.dispersion,
            "use_observed_lib_size": model.module.use_observed_lib_size,
            "batch_key": args.batch_key,
            "max_epochs": args.max_epochs,
            "batch_size": args.batch_size,
            "train_size_within_train_split": train_size,
            "early_stopping": False,
            "n_epochs_kl_warmup": getattr(plan, "n_epochs_kl_warmup", None),
            "n_steps_kl_warmup": getattr(plan, "n_steps_kl_warmup", None),
            "lr": getattr(plan, "lr", None),
            "seed": args.seed,
            "n_mc_samples": args.n_mc_samples,
        },
        "n_cells": {
            "train_split": int(train.n_obs),
            "fitted": n_fit_cells,
            "validation": int(val.n_obs),
            "test": int(test.n_obs),
        },
        "epochs_run": len(timer.seconds),
        "fit_s": fit_s,
        "eval_s": eval_s,
        "throughput": throughput(timer.seconds, n_fit_cells),
        "test": {"elbo_mean": float(np.mean(elbo_test)), "marginal_ll_mean": float(np.mean(mll_test))},
        "validation": {
            "n_cells": int(val.n_obs),
            "elbo_mean": float(np.mean(elbo_val)) if val.n_obs else None,
            "marginal_ll_mean": float(np.mean(mll_val)) if mll_val.size else None,
        },
        "train": {"elbo_mean": float(np.mean(elbo_train))},
    }
    save_json(run, args.out / "run.json")
    print(
        f"scvi-tools {scvi.__version__}: {args.data.name} fit {fit_s:.1f}s,"
        f" test ELBO {run['test']['elbo_mean']:.2f},"
        f" test log p(x) {run['test']['marginal_ll_mean']:.2f}, train ELBO {run['train']['elbo_mean']:.2f}"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
