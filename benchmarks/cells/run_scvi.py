"""scvi-tools side of the cells benchmark. Runs in benchmarks/.venv-scvi (see setup_scvi_venv.sh), from the
repository root::

    benchmarks/.venv-scvi/bin/python -m benchmarks.cells.run_scvi --data benchmarks/out/cells/pbmc3k.h5ad \
        --out benchmarks/out/cells/scvi/pbmc3k --max-epochs 200

Trains ``scvi.model.SCVI`` (NB likelihood, n_latent=10, n_hidden=128, n_layers=1, everything else at
scvi-tools defaults, early stopping off) on the ``split == "train"`` cells, then writes:

- ``latent.npy``: posterior means for ALL cells in file order,
- ``elbo_test.npy`` / ``marginal_ll_test.npy``: per-cell ELBO and importance-sampled log p(x) of the test
  cells, in nats, higher is better (scvi-tools 1.4: ``get_elbo`` returns ``-(reconstruction_loss +
  kl_local)``, i.e. the ELBO itself; ``get_marginal_ll`` returns log p(x); both asked per cell with
  ``return_mean=False`` and averaged here, since ``return_mean=True`` averages per-minibatch means),
- the same for the validation cells, ``history.csv`` (scvi's per-epoch history), ``run.json`` (settings,
  versions, timings, throughput).
"""

from __future__ import annotations

import sys
import time

from benchmarks.cells._common import ARCHITECTURE, likelihoods, make_epoch_timer, run_arguments, split_cells, write_run


def main(argv: list[str] | None = None) -> int:
    ap = run_arguments("Train scvi-tools SCVI on a prepared benchmark file.")
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
        help="n_steps_kl_warmup, linear per step as scivae's (replaces the epoch warm-up); see seeds",
    )
    args = ap.parse_args(argv)

    import anndata as ad
    import pandas as pd
    import scvi
    import torch

    scvi.settings.seed = args.seed
    scvi.settings.num_threads = args.threads
    torch.set_num_threads(args.threads)
    args.out.mkdir(parents=True, exist_ok=True)

    adata = ad.read_h5ad(args.data)
    # "validation" cells (prepare_data) are never trained on: they are for choosing defaults only.
    train, test, val = split_cells(adata)

    scvi.model.SCVI.setup_anndata(train, layer=None, batch_key=args.batch_key)
    model = scvi.model.SCVI(train, **ARCHITECTURE, gene_likelihood="nb")
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
    cells = (train, test, val, n_fit_cells)
    lik = likelihoods(
        lambda a: model.get_elbo(a, return_mean=False).cpu().numpy(),
        lambda a, n: (
            model.get_marginal_ll(a, n_mc_samples=n, return_mean=False, n_mc_samples_per_pass=100).cpu().numpy()
        ),
        cells,
        args.n_mc_samples,
        args.validation_mc_samples,
    )
    eval_s = time.perf_counter() - t1

    hist = pd.concat([v for v in model.history.values()], axis=1)
    hist.index.name = hist.index.name or "epoch"
    plan = model.trainer.lightning_module if hasattr(model, "trainer") else None
    head = {
        "tool": "scvi-tools",
        "versions": {"scvi-tools": scvi.__version__, "torch": torch.__version__},
        "data": str(args.data),
        "settings": {
            **ARCHITECTURE,
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
    }
    run = write_run(args.out, head, cells, timer.seconds, fit_s, eval_s, latent, lik, hist)
    print(
        f"scvi-tools {scvi.__version__}: {args.data.name} fit {fit_s:.1f}s,"
        f" test ELBO {run['test']['elbo_mean']:.2f},"
        f" test log p(x) {run['test']['marginal_ll_mean']:.2f}, train ELBO {run['train']['elbo_mean']:.2f}"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
