"""scivae side of the cells benchmark. Runs in scivae's venv, from the repository root::

    python -m benchmarks.cells.run_scivae --data benchmarks/out/cells/pbmc3k.h5ad \
        --out benchmarks/out/cells/scivae/pbmc3k --max-epochs 200

Trains ``scivae.CellVAE`` (NB likelihood, n_latent=10, n_hidden=128, n_layers=1, scivae defaults otherwise,
early stopping off, 10 % of the training cells held out for validation as scvi-tools does) on the
``split == "train"`` cells and writes the same files as ``run_scvi``: ``latent.npy`` (all cells, file order),
``elbo_test.npy`` / ``marginal_ll_test.npy`` (per test cell, nats, higher is better), the same for the
validation cells, ``history.csv``, ``run.json``. Per-epoch wall times come from a timing callback given to
``fit(callbacks=...)``. ``seeds`` runs it once per seed and setting.
"""

from __future__ import annotations

import sys
import time

from benchmarks.cells._common import ARCHITECTURE, likelihoods, make_epoch_timer, run_arguments, split_cells, write_run


def main(argv: list[str] | None = None) -> int:
    ap = run_arguments("Train scivae.CellVAE on a prepared benchmark file.")
    ap.add_argument("--kl-warmup", type=int, default=None, help="KL warm-up in steps (default: scivae's)")
    ap.add_argument("--norm", choices=("layer", "batch"), default=None, help="hidden-layer norm (default: scivae's)")
    ap.add_argument("--adam-eps", type=float, default=None, help="Adam eps (default: scivae's)")
    ap.add_argument("--weight-decay", type=float, default=None, help="Adam weight decay (default: scivae's)")
    ap.add_argument("--gradient-clip", default=None, help="gradient-norm clip, a number or none (default: scivae's)")
    args = ap.parse_args(argv)

    import anndata as ad
    import torch

    import scivae

    torch.set_num_threads(args.threads)
    args.out.mkdir(parents=True, exist_ok=True)
    timer = make_epoch_timer()

    adata = ad.read_h5ad(args.data)
    # "validation" cells (prepare_data) are never trained on: they are for choosing defaults only.
    train, test, val = split_cells(adata)

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
        **ARCHITECTURE,
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
        callbacks=[timer],
        **extra_fit,
    )
    fit_s = time.perf_counter() - t0
    metrics = model.fit_result.metrics
    n_fit_cells = train.n_obs - int(round(validation_fraction * train.n_obs))

    t1 = time.perf_counter()
    latent = model.get_latent(adata)
    cells = (train, test, val, n_fit_cells)
    lik = likelihoods(
        lambda a: model.get_elbo(a, n_samples=1, seed=args.seed),
        lambda a, n: model.get_marginal_ll(a, n_samples=n, seed=args.seed),
        cells,
        args.n_mc_samples,
        args.validation_mc_samples,
    )
    eval_s = time.perf_counter() - t1

    m = model.module
    head = {
        "tool": "scivae",
        "versions": {"scivae": getattr(scivae, "__version__", "dev"), "torch": torch.__version__},
        "data": str(args.data),
        "settings": {
            **ARCHITECTURE,
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
            "weights": "best validation epoch",
            "seed": args.seed,
            "n_mc_samples": args.n_mc_samples,
        },
        "fit_metrics": {k: v for k, v in metrics.items() if not isinstance(v, list)},
        "active_units": metrics.get("active_units"),
    }
    run = write_run(args.out, head, cells, timer.seconds, fit_s, eval_s, latent, lik, model.history)
    print(
        f"scivae: {args.data.name} fit {fit_s:.1f}s, test ELBO {run['test']['elbo_mean']:.2f},"
        f" test log p(x) {run['test']['marginal_ll_mean']:.2f}, train ELBO {run['train']['elbo_mean']:.2f},"
        f" best epoch {metrics.get('best_epoch')}"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
