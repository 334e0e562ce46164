"""scvi-tools side of the reference-mapping benchmark (``mapping_vs_scvi``), one seed, in scvi-tools' venv::

    benchmarks/.venv-scvi/bin/python -m benchmarks.cells.mapping_scvi \
        --data benchmarks/out/cells/mapping/ifnb_mapping.h5ad --out benchmarks/out/cells/mapping/scvi/seed0 --seed 0

scvi-tools' scANVI + scArches route (its reference-mapping tutorial), steps timed as scivae's: **reference
fit** = ``SCVI.setup_anndata(ref, batch_key="condition")``, ``SCVI(...)`` and ``train`` for
``--reference-epochs`` minus ``--scanvi-epochs`` epochs, then ``SCANVI.from_scvi_model(labels_key="label",
unlabeled_category="Unknown")`` and ``train`` for ``--scanvi-epochs`` (so the reference cells are seen as often
as by scivae); **query fit** = ``SCANVI.load_query_data(query, reference)`` (its defaults) + ``train`` for
``--query-epochs`` with ``plan_kwargs={"weight_decay": 0.0}`` (the scArches tutorial); **predict** =
``predict()`` (the query cells); **de** = ``differential_expression(both, groupby="de_group", group1="stim",
group2="ctrl", mode="change", delta=...)``. Architecture as scivae's: NB, n_latent 10, n_hidden 128, one layer,
dropout 0.1, ``encode_covariates=True``, LayerNorm in encoder and decoder and no BatchNorm (scvi-tools' scArches
settings); batch 128, 10 % held out (defaults), early stopping off (default), KL warm-up at scvi-tools' default.
Imports no scivae. Files: see :func:`benchmarks.cells.mapping_data.write_run`.
"""

from __future__ import annotations

import sys
import time

from benchmarks.cells._common import ARCHITECTURE
from benchmarks.cells.mapping_data import (
    BATCH_KEY,
    DE_KEY,
    LABEL_KEY,
    QUERY,
    REFERENCE,
    UNKNOWN,
    run_arguments,
    write_run,
)
from benchmarks.cells.mapping_data import split as split_cells


def main(argv: list[str] | None = None) -> int:
    args = run_arguments("scvi-tools: SCVI + SCANVI reference, scArches query, label transfer and DE.").parse_args(argv)

    import logging
    import warnings

    import anndata as ad
    import scvi
    import torch

    warnings.filterwarnings("ignore")
    logging.getLogger("scvi").setLevel(logging.ERROR)
    _ = scvi.model.SCVI, scvi.model.SCANVI  # any import they defer happens here, outside the timed steps
    scvi.settings.seed = args.seed
    scvi.settings.num_threads = args.threads
    torch.set_num_threads(args.threads)
    ref, query, both = split_cells(ad.read_h5ad(args.data))
    train_kw = {"accelerator": "cpu", "devices": 1, "enable_progress_bar": False}
    scvi_epochs = args.reference_epochs - args.scanvi_epochs
    if scvi_epochs < 1:
        raise SystemExit(f"--reference-epochs {args.reference_epochs} leaves no SCVI epoch before SCANVI's")
    times: dict[str, float] = {}

    t0 = time.perf_counter()
    scvi.model.SCVI.setup_anndata(ref, batch_key=BATCH_KEY)
    vae = scvi.model.SCVI(
        ref,
        **ARCHITECTURE,
        dropout_rate=0.1,
        gene_likelihood="nb",
        encode_covariates=True,
        use_layer_norm="both",
        use_batch_norm="none",
    )
    vae.train(max_epochs=scvi_epochs, **train_kw)
    times["reference_scvi"] = time.perf_counter() - t0
    reference = scvi.model.SCANVI.from_scvi_model(vae, unlabeled_category=UNKNOWN, labels_key=LABEL_KEY)
    reference.train(max_epochs=args.scanvi_epochs, **train_kw)
    times["reference_fit"] = time.perf_counter() - t0

    t0 = time.perf_counter()
    model = scvi.model.SCANVI.load_query_data(query, reference)
    times["surgery"] = time.perf_counter() - t0
    model.train(max_epochs=args.query_epochs, plan_kwargs={"weight_decay": 0.0}, **train_kw)
    times["query_fit"] = time.perf_counter() - t0

    t0 = time.perf_counter()
    predicted = model.predict()
    times["predict"] = time.perf_counter() - t0

    t0 = time.perf_counter()
    z_query = model.get_latent_representation()
    ref_cells, _, _ = split_cells(ad.read_h5ad(args.data))  # unregistered copies: the query model sets them up
    z_reference = model.get_latent_representation(ref_cells)
    times["latent"] = time.perf_counter() - t0

    torch.manual_seed(args.seed)
    t0 = time.perf_counter()
    de = model.differential_expression(
        both,
        groupby=DE_KEY,
        group1=QUERY,
        group2=REFERENCE,
        mode="change",
        delta=args.delta,
        batch_correction=False,
        n_samples_overall=args.de_samples,
        silent=True,
    )
    times["de"] = time.perf_counter() - t0

    plan = model.trainer.lightning_module if hasattr(model, "trainer") else None
    head = {
        "tool": "scvi-tools",
        "versions": {"scvi-tools": scvi.__version__, "torch": torch.__version__},
        "torch_threads": torch.get_num_threads(),
        "settings": {
            **ARCHITECTURE,
            "gene_likelihood": "nb",
            "dropout_rate": 0.1,
            "encode_covariates": True,
            "use_layer_norm": "both",
            "use_batch_norm": "none",
            "reference_epochs": args.reference_epochs,
            "scvi_epochs": scvi_epochs,
            "scanvi_epochs": args.scanvi_epochs,
            "query_epochs": args.query_epochs,
            "query_weight_decay": 0.0,
            "early_stopping": False,
            "query_n_epochs_kl_warmup": getattr(plan, "n_epochs_kl_warmup", None),
            "query_n_steps_kl_warmup": getattr(plan, "n_steps_kl_warmup", None),
            "delta": args.delta,
            "de_samples": args.de_samples,
            "seed": args.seed,
        },
    }
    write_run(args.out, head, times, z_reference, z_query, predicted, de)
    print("scvi-tools " + ", ".join(f"{k} {v:.1f}s" for k, v in times.items()))
    return 0


if __name__ == "__main__":
    sys.exit(main())
