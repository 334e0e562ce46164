"""scivae side of the cells benchmark. Runs in scivae's venv::

    PYTHONPATH=. .venv/bin/python benchmarks/cells/run_scivae.py --data benchmarks/out/cells/pbmc3k.h5ad \
        --out benchmarks/out/cells/scivae/pbmc3k --max-epochs 200

Trains ``scivae.CellVAE`` (NB likelihood, n_latent=10, n_hidden=128, n_layers=1, scivae defaults otherwise,
early stopping off, 10 % of the training cells held out for validation as scvi-tools does) on the
``split == "train"`` cells and writes the same files as run_scvi.py: ``latent.npy`` (all cells, file order),
``elbo_test.npy`` / ``marginal_ll_test.npy`` (per test cell, nats, higher is better), ``history.csv``,
``run.json``.

Per-epoch wall times are recorded by adding a timing callback to the Lightning Trainer that scivae builds
(a wrapper around ``lightning.Trainer.__init__`` in this process only), since ``fit`` takes no callbacks.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _common import machine, make_epoch_timer, save_json, save_npy, throughput  # noqa: E402


def _install_timer():
    import lightning

    timer = make_epoch_timer()
    original = lightning.Trainer.__init__

    def init(self, *args, callbacks=None, **kwargs):
        original(self, *args, callbacks=[*(callbacks or []), timer], **kwargs)

    lightning.Trainer.__init__ = init
    return timer


def _keep_last_epoch() -> None:
    """Make scivae return the last epoch's weights (like scvi-tools) instead of the best validation epoch's.

    Benchmark-only switch, to separate the effect of best-epoch restoration from the model itself.
    """
    import scivae.core.fit as core_fit

    class NoRestore(core_fit.BestWeights):
        def on_fit_end(self, trainer, pl_module) -> None:  # noqa: ARG002
            return None

    core_fit.BestWeights = NoRestore


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description="Train scivae.CellVAE on a prepared benchmark file.")
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
    ap.add_argument("--kl-warmup", type=int, default=None, help="KL warm-up in steps (default: scivae's)")
    ap.add_argument("--norm", choices=("layer", "batch"), default=None, help="hidden-layer norm (default: scivae's)")
    ap.add_argument("--adam-eps", type=float, default=None, help="Adam eps (default: scivae's)")
    ap.add_argument("--weight-decay", type=float, default=None, help="Adam weight decay (default: scivae's)")
    ap.add_argument("--gradient-clip", default=None, help="gradient-norm clip, a number or none (default: scivae's)")
    ap.add_argument(
        "--last-epoch",
        action="store_true",
        help="keep the last epoch's weights (scivae restores the best validation epoch's)",
    )
    args = ap.parse_args(argv)

    import anndata as ad
    import numpy as np
    import torch

    import scivae

    torch.set_num_threads(args.threads)
    args.out.mkdir(parents=True, exist_ok=True)
    timer = _install_timer()
    if args.last_epoch:
        _keep_last_epoch()

    adata = ad.read_h5ad(args.data)
    train = adata[(adata.obs["split"] == "train").to_numpy()].copy()
    test = adata[(adata.obs["split"] == "test").to_numpy()].copy()
    # "validation" cells (prepare_data.py) are never trained on: they are for choosing defaults only.
    val = adata[(adata.obs["split"] == "validation").to_numpy()].copy()

    extra_model = {} if args.norm is None else {"norm": args.norm}
    extra_fit = {} if args.adam_eps is None else {"adam_eps": args.adam_eps}
    if args.weight_decay is not None:
        extra_fit["weight_decay"] = args.weight_decay
    if args.gradient_clip is not None:
        extra_fit["gradient_clip_val"] = None if args.gradient_clip == "none" else float(args.gradient_clip)
    model = scivae.CellVAE(
        train,
        layer=None,
        batch_key=args.batch_key,
        likelihood="nb",
        n_latent=10,
        n_hidden=128,
        n_layers=1,
        seed=args.seed,
        **extra_model,
    )
    if len(model.genes) != adata.n_vars:
        raise SystemExit(f"scivae kept {len(model.genes)} of {adata.n_vars} genes: inputs would differ")
    validation_fraction = 0.1
    t0 = time.perf_counter()
    model.fit(
        max_epochs=args.max_epochs,
        batch_size=args.batch_size,
        accelerator="cpu",
        devices=1,
        validation_fraction=validation_fraction,
        early_stopping=False,
        kl_warmup=args.kl_warmup,
        seed=args.seed,
        progress_bar=False,
        **extra_fit,
    )
    fit_s = time.perf_counter() - t0
    metrics = model.fit_result.metrics
    n_fit_cells = train.n_obs - int(round(validation_fraction * train.n_obs))

    t1 = time.perf_counter()
    latent = model.get_latent(adata)
    elbo_test = model.get_elbo(test, n_samples=1, seed=args.seed)
    elbo_train = model.get_elbo(train, n_samples=1, seed=args.seed)
    mll_test = model.get_marginal_ll(test, n_samples=args.n_mc_samples, seed=args.seed)
    elbo_val = model.get_elbo(val, n_samples=1, seed=args.seed) if val.n_obs else np.zeros(0)
    n_mc_val = args.n_mc_samples if args.validation_mc_samples is None else args.validation_mc_samples
    mll_val = np.zeros(0)
    if val.n_obs and n_mc_val > 0:
        mll_val = model.get_marginal_ll(val, n_samples=n_mc_val, seed=args.seed)
    eval_s = time.perf_counter() - t1

    save_npy(np.asarray(latent, dtype=np.float32), args.out / "latent.npy")
    save_npy(np.asarray(elbo_test, dtype=np.float64), args.out / "elbo_test.npy")
    save_npy(np.asarray(mll_test, dtype=np.float64), args.out / "marginal_ll_test.npy")
    save_npy(np.asarray(elbo_val, dtype=np.float64), args.out / "elbo_validation.npy")
    save_npy(np.asarray(mll_val, dtype=np.float64), args.out / "marginal_ll_validation.npy")
    tmp = args.out / "history.csv.tmp"
    model.history.to_csv(tmp, index=False)
    tmp.replace(args.out / "history.csv")

    m = model.module
    run = {
        "tool": "scivae",
        "versions": {"scivae": getattr(scivae, "__version__", "dev"), "torch": torch.__version__},
        "machine": machine() | {"torch_threads": torch.get_num_threads()},
        "data": str(args.data),
        "settings": {
            "n_latent": 10,
            "n_hidden": 128,
            "n_layers": 1,
            "likelihood": m.likelihood,
            "dispersion": m.dispersion,
            "library": m.library,
            "batch_key": args.batch_key,
            "max_epochs": args.max_epochs,
            "batch_size": args.batch_size,
            "validation_fraction_within_train_split": validation_fraction,
            "early_stopping": False,
            "kl_warmup_steps": metrics.get("kl_warmup_steps"),
            "norm": m.norm,
            "adam_eps": args.adam_eps,
            "weight_decay": args.weight_decay,
            "best_validation_epoch": metrics.get("best_epoch"),
            "weights": "last epoch" if args.last_epoch else "best validation epoch",
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
        "fit_metrics": {k: v for k, v in metrics.items() if not isinstance(v, list)},
        "active_units": metrics.get("active_units"),
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
        f"scivae: {args.data.name} fit {fit_s:.1f}s, test ELBO {run['test']['elbo_mean']:.2f},"
        f" test log p(x) {run['test']['marginal_ll_mean']:.2f}, train ELBO {run['train']['elbo_mean']:.2f},"
        f" best epoch {metrics.get('best_epoch')}"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
