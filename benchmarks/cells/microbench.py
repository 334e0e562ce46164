"""Micro-benchmarks behind the cells speed choices (one process, alternating variants, medians).

From the repository root::

    python -m benchmarks.cells.microbench            # about a minute on an idle core
    python -m benchmarks.cells.microbench --smoke

1. NB summed over genes, forward + backward with the log-softmax: autograd on the elementwise NB
   (``nb_log_prob(...).sum(-1)``) vs ``nb_log_likelihood`` (hand-written gradient of the dense part,
   lgamma terms on the non-zeros), batch x 2,000 genes.
2. The terms of the non-zero counts, ``lgamma(x + theta) - lgamma(theta)``, forward + backward: float64
   lgamma (and digamma in the backward) vs the per-gene table of cumulative logs of integer counts.
3. The size of that table (counts up to K tabulated, larger ones by lgamma), forward + backward, K in
   ``--table-sizes``.
4. The count term of the NB's dense part, ``sum_g x * logsigmoid(d)``, forward: over the dense batch vs over
   its non-zero counts only (what ``_NBRows`` does).
5. The same dense part under ``torch.compile`` (with its compilation time), when a compiler is available.
6. The encoder's first layer, forward + weight gradient: dense ``log1p(x) @ W`` vs a torch sparse CSR
   product.
7. Batch gathering: ``DeviceCSR.gather_torch`` (torch ops: the GPU path), ``DeviceCSR.gather_host`` (scipy
   row slicing over the same buffers, plus the non-zero coordinates: the CPU path) and ``take_rows`` (the
   earlier per-batch path, no coordinates).

Counts are simulated (12 % non-zero, 1 + NB(2, 0.5)) unless ``--data`` names an h5ad (``simulate`` /
``prepare_data`` output): then its training cells (``split == "train"`` when present) are used.
Prints medians (ms per call) over ``--reps`` alternating repetitions and writes them as JSON (``--json``).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

import numpy as np
import scipy.sparse as sp
import torch
import torch.nn.functional as F

from benchmarks.cells._common import DATA_DIR
from scivae._atomic import write_text_atomic
from scivae.cells.likelihoods import _lgamma_ratio_table, nb_log_likelihood, nb_log_prob
from scivae.core.data.arrays import take_rows
from scivae.core.data.device import DeviceArrays


def _time(fn, n: int) -> float:
    fn()
    t0 = time.perf_counter()
    for _ in range(n):
        fn()
    return (time.perf_counter() - t0) / n * 1e3


def _alternate(variants: dict, reps: int, n: int) -> dict:
    out: dict[str, list[float]] = {k: [] for k in variants}
    names = list(variants)
    for r in range(reps):
        for k in names if r % 2 == 0 else names[::-1]:
            out[k].append(_time(variants[k], n))
    return {k: float(np.median(v)) for k, v in out.items()}


def _one_batch_size(b: int, args: argparse.Namespace, data: DeviceArrays, counts, n_cells: int, g: int) -> dict:
    """All comparisons for one batch size."""
    rows = torch.randperm(n_cells)[:b]
    batch = data.take(rows)
    x = batch["x"]
    nz = (batch["x__nz_rows"], batch["x__nz_cols"], batch["x__nz_values"])
    lf = batch["x__log_factorial"]
    s = torch.randn(b, g, requires_grad=True)
    log_theta = torch.randn(g, requires_grad=True)
    log_lib = torch.log(x.sum(1, keepdim=True).clamp_min(1.0))

    def autograd_nb():
        nb_log_prob(x, F.log_softmax(s, -1) + log_lib, log_theta).sum(-1).sum().backward()

    def rows_nb():
        nb_log_likelihood(x, F.log_softmax(s, -1) + log_lib, log_theta, nz, lf).sum().backward()

    nb = _alternate({"autograd elementwise NB": autograd_nb, "nb_log_likelihood": rows_nb}, args.reps, args.calls)
    entry = {"batch_size": b, "nb_fwd_bwd_ms": nb}

    d_ = (F.log_softmax(s, -1) + log_lib - log_theta).detach()
    sp_ = F.softplus(d_)
    flat = nz[0] * g + nz[1]

    def count_term_dense():
        (x * (d_ - sp_)).sum(-1)

    def count_term_nonzero():
        out = torch.zeros(b)
        out.index_add_(0, nz[0], (d_.reshape(-1).take(flat) - sp_.reshape(-1).take(flat)).mul_(nz[2]))

    entry["count_term_ms"] = _alternate(
        {"dense x * logsigmoid(d), row sums": count_term_dense, "non-zero counts only": count_term_nonzero},
        args.reps,
        args.calls,
    )

    values, cols = nz[2].double(), nz[1]

    def lgamma_terms():
        theta = log_theta.exp().double()
        (torch.lgamma(values + theta[cols]) - torch.lgamma(theta)[cols]).sum().backward()

    def table_terms():
        _lgamma_ratio_table(values, cols, log_theta.exp().double()).sum().backward()

    entry["lgamma_nonzero_ms"] = _alternate(
        {"lgamma + digamma": lgamma_terms, "per-gene log table": table_terms}, args.reps, args.calls
    )
    theta_d = log_theta.detach().double()

    def table_of_size(k: int):
        def run() -> None:
            t = theta_d.clone().requires_grad_()
            _lgamma_ratio_table(values, cols, t.exp(), max_count=k).sum().backward()

        return run

    entry["lgamma_table_size_ms"] = _alternate(
        {str(k): table_of_size(k) for k in args.table_sizes}, args.reps, args.calls
    )
    entry["nonzeros"] = int(values.numel())
    entry["nonzeros_above"] = {str(k): int((values > k).sum()) for k in args.table_sizes}

    def dense_part(s, log_lib, log_theta, x):
        d = F.log_softmax(s, -1) + log_lib - log_theta
        sp_ = F.softplus(d)
        return (x * (d - sp_)).sum(-1) - (sp_ * log_theta.exp()).sum(-1)

    if args.compile:
        t0 = time.perf_counter()
        compiled = torch.compile(dense_part)
        compiled(s, log_lib, log_theta, x).sum().backward()
        compile_s = time.perf_counter() - t0
        entry["dense_part_ms"] = _alternate(
            {
                "eager": lambda: dense_part(s, log_lib, log_theta, x).sum().backward(),
                "torch.compile": lambda: compiled(s, log_lib, log_theta, x).sum().backward(),
            },
            args.reps,
            args.calls,
        )
        entry["compile_s"] = compile_s

    w = torch.randn(128, g, requires_grad=True)
    crow = torch.cat([torch.zeros(1, dtype=torch.long), torch.bincount(nz[0], minlength=b).cumsum(0)])
    order = torch.argsort(nz[0] * g + nz[1])
    cols, vals = nz[1][order], torch.log1p(nz[2][order])

    def dense_mm():
        (torch.log1p(x) @ w.t()).sum().backward()

    def sparse_mm():
        (torch.sparse_csr_tensor(crow, cols, vals, size=(b, g)) @ w.t()).sum().backward()

    entry["encoder_layer_ms"] = _alternate({"dense": dense_mm, "sparse CSR": sparse_mm}, args.reps, args.calls)
    perm = torch.randperm(n_cells)

    csr = data.sparse["x"]

    def gather_torch():
        csr.gather_torch(perm[:b])

    def gather_host():
        csr.gather_host(perm[:b])

    def gather_scipy():
        take_rows({"x": counts}, np.sort(perm[:b].numpy()))

    entry["gather_ms"] = _alternate(
        {
            "torch gather (GPU path)": gather_torch,
            "scipy slice + non-zeros (CPU path)": gather_host,
            "take_rows (earlier path)": gather_scipy,
        },
        args.reps,
        args.calls,
    )
    return entry


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--batch-sizes", type=int, nargs="+", default=[128, 1024])
    ap.add_argument("--genes", type=int, default=2000)
    ap.add_argument("--reps", type=int, default=5)
    ap.add_argument("--calls", type=int, default=10)
    ap.add_argument("--table-sizes", type=int, nargs="+", default=[4, 8, 12, 16, 32])
    ap.add_argument("--data", type=Path, default=None, help="h5ad of counts (default: simulated)")
    ap.add_argument("--compile", action="store_true", help="also time torch.compile (about 20 s to compile)")
    ap.add_argument("--json", type=Path, default=DATA_DIR / "microbench.json")
    ap.add_argument("--smoke", action="store_true")
    args = ap.parse_args(argv)
    if args.smoke:
        args.batch_sizes, args.genes, args.reps, args.calls, args.table_sizes = [32], 100, 2, 2, [4, 12]
    torch.set_num_threads(1)
    torch.manual_seed(0)
    result: dict = {"threads": 1, "genes": args.genes, "loadavg_start": os.getloadavg(), "results": []}
    g = args.genes
    rng = np.random.default_rng(0)
    if args.data is not None:
        import anndata as ad

        adata = ad.read_h5ad(args.data)
        if "split" in adata.obs:
            adata = adata[(adata.obs["split"] == "train").to_numpy()]
        counts = sp.csr_matrix(adata.X, dtype=np.float32)
        n_cells, g = counts.shape
        result.update(data=str(args.data.name), genes=g)
    else:
        n_cells = 4096
        counts = sp.random(n_cells, g, density=0.12, format="csr", dtype=np.float32, random_state=0)
        counts.data = rng.negative_binomial(2, 0.5, counts.nnz).astype(np.float32) + 1
    data = DeviceArrays({"x": counts})
    for b in args.batch_sizes:
        entry = _one_batch_size(b, args, data, counts, n_cells, g)
        result["results"].append(entry)
        print(f"\nbatch {b} x {g} genes (ms per call, median of {args.reps} alternating repetitions)")
        keys = ("nb_fwd_bwd_ms", "count_term_ms", "lgamma_nonzero_ms", "lgamma_table_size_ms", "dense_part_ms")
        keys = (*keys, "encoder_layer_ms")
        for key in (*keys, "gather_ms"):
            if key in entry:
                print(f"  {key}: " + ", ".join(f"{k} {v:.3f}" for k, v in entry[key].items()))
        if "compile_s" in entry:
            print(f"  torch.compile compilation: {entry['compile_s']:.1f} s")
    result["loadavg_end"] = os.getloadavg()
    print(f"load average {result['loadavg_start'][0]:.2f} -> {result['loadavg_end'][0]:.2f}")
    write_text_atomic(args.json, json.dumps(result, indent=1) + "\n")
    print(f"raw figures: {args.json}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
