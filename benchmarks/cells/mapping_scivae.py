"""scivae side of the reference-mapping benchmark (``mapping_vs_scvi``), one seed, in scivae's venv::

    python -m benchmarks.cells.mapping_scivae --data benchmarks/out/cells/mapping/ifnb_mapping.h5ad \
        --out benchmarks/out/cells/mapping/scivae/seed0 --seed 0

Steps (each timed): **reference fit** = ``CellVAE(ref, batch_key="condition", labels_key="label",
unlabeled_category="Unknown", encode_covariates=True)`` + ``fit`` (``--reference-epochs``, early stopping off);
**query fit** = ``CellVAE.load_query_data(query, reference)`` + ``fit`` (``--query-epochs``, early stopping off,
the query model's defaults otherwise: no weight decay); **predict** = ``query.predict()`` (the query cells);
**de** = ``query.differential_expression(both, groupby="de_group", group1="stim", group2="ctrl",
mode="change", delta=...)``. Architecture: NB, n_latent 10, n_hidden 128, one layer, dropout 0.1, LayerNorm
(scivae's defaults); batch 128; 10 % of the cells held out for validation (scivae's defaults). Files: see
:func:`benchmarks.cells.mapping_data.write_run`.
"""

from __future__ import annotations

import sys
import time
from importlib.metadata import version

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


def reference_model(ref, seed: int, **options):
    """The benchmark's labelled reference model of the cells ``ref`` (not fitted); ``options``: more of
    :class:`~scivae.CellVAE`'s."""
    from scivae import CellVAE

    return CellVAE(
        ref,
        batch_key=BATCH_KEY,
        labels_key=LABEL_KEY,
        unlabeled_category=UNKNOWN,
        encode_covariates=True,
        likelihood="nb",
        seed=seed,
        **ARCHITECTURE,
        **options,
    )


def main(argv: list[str] | None = None) -> int:
    args = run_arguments("scivae: reference fit, query mapping, label transfer and DE on one seed.").parse_args(argv)

    import warnings

    import anndata as ad
    import torch

    # `import scivae` is lazy: resolving CellVAE imports the cells adapter (and Lightning, about 2.5 s here) now,
    # outside the timed steps, as `import scvi` does on scvi-tools' side
    from scivae import CellVAE

    torch.set_num_threads(args.threads)
    warnings.filterwarnings("ignore")
    ref, query, both = split_cells(ad.read_h5ad(args.data))
    fit_kw = {"early_stopping": False, "progress_bar": False, "accelerator": "cpu"}
    times: dict[str, float] = {}

    t0 = time.perf_counter()
    reference = reference_model(ref, args.seed).fit(max_epochs=args.reference_epochs, **fit_kw)
    times["reference_fit"] = time.perf_counter() - t0

    t0 = time.perf_counter()
    model = CellVAE.load_query_data(query, reference)
    times["surgery"] = time.perf_counter() - t0
    model.fit(max_epochs=args.query_epochs, **fit_kw)
    times["query_fit"] = time.perf_counter() - t0

    t0 = time.perf_counter()
    predicted = model.predict()
    times["predict"] = time.perf_counter() - t0

    t0 = time.perf_counter()
    z_query = model.get_latent()
    z_reference = model.get_latent(ref)
    times["latent"] = time.perf_counter() - t0

    t0 = time.perf_counter()
    de = model.differential_expression(
        both,
        groupby=DE_KEY,
        group1=QUERY,
        group2=REFERENCE,
        mode="change",
        delta=args.delta,
        batch_correction=False,
        n_samples=args.de_samples,
        seed=args.seed,
    )
    times["de"] = time.perf_counter() - t0

    metrics = reference.fit_result.metrics
    head = {
        "tool": "scivae",
        "versions": {"scivae": version("scivae"), "torch": torch.__version__},
        "torch_threads": torch.get_num_threads(),
        "settings": {
            **ARCHITECTURE,
            "likelihood": "nb",
            "norm": "layer",
            "encode_covariates": True,
            "reference_epochs": args.reference_epochs,
            "query_epochs": args.query_epochs,
            "early_stopping": False,
            "reference_kl_warmup_steps": metrics.get("kl_warmup_steps"),
            "query_kl_warmup_steps": model.fit_result.metrics.get("kl_warmup_steps"),
            "reference_epochs_trained": metrics.get("epochs_trained"),
            "query_epochs_trained": model.fit_result.metrics.get("epochs_trained"),
            "delta": args.delta,
            "de_samples": args.de_samples,
            "seed": args.seed,
        },
    }
    write_run(args.out, head, times, z_reference, z_query, predicted, de)
    print("scivae " + ", ".join(f"{k} {v:.1f}s" for k, v in times.items()))
    return 0


if __name__ == "__main__":
    sys.exit(main())
