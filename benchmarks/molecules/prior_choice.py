"""Choose the latent prior on validation molecules: every candidate density fitted to the training codes of one
trained model, 10,000 samples each (greedy, syntax mask), MOSES metrics over all strings against 10,000
*validation* molecules (from MOSES train, disjoint from the training molecules; never test molecules).

Candidates: N(0, I); a Gaussian mixture (1, 10, 50 components) and a RealNVP flow on the posterior means; the
midpoint prior for several neighbour counts ``k`` and noise scales; and, for reference, two densities that are
not usable priors: the training codes' own aggregate posterior (it reproduces training molecules) and the
posterior means of *held-out* molecules (the codes of molecules the prior never saw: the floor that the decoder
itself sets).

Usage, from the repository root, on a model of ``fit_eval.py --setting full``::

    python -m benchmarks.molecules.prior_choice benchmarks/out/molecules/full/beta0.2_seed0/fit

Writes ``benchmarks/molecules/results/prior_choice.json``.
"""

from __future__ import annotations

import argparse
import json
import time
import warnings
from pathlib import Path
from typing import Any

import numpy as np
import torch

from benchmarks.molecules.data import RESULTS, encodable, machine, moses_splits, reference_stats
from benchmarks.molecules.latent_eval import KEEP

MIDPOINTS = [(5, 1.0), (10, 1.0), (20, 1.0), (40, 1.0), (10, 0.0), (10, 0.5), (20, 0.5)]


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("fit_dir", type=Path, help="a `scivae fit` output folder of fit_eval.py --setting full")
    p.add_argument("--n", type=int, default=10_000)
    p.add_argument("--n-train", type=int, default=100_000)
    p.add_argument("--out", type=Path, default=RESULTS / "prior_choice.json")
    args = p.parse_args()
    from scivae.core.module.prior import FlowPrior, GaussianMixturePrior, MidpointPrior, StandardNormalPrior
    from scivae.molecules import MolVAE
    from scivae.molecules import metrics as M

    torch.set_num_threads(1)
    splits = moses_splits(args.n_train, 22_000, 0, seed=0)
    val = splits["validation"]
    reference = reference_stats(val[2000:12000], "moses_validation_2000_12000")
    vae = MolVAE.load(args.fit_dir / "model")
    train, _ = encodable(vae, splits["train"])
    train_set = frozenset(train)
    mu, logvar = vae.get_posterior(train)
    sd = np.exp(0.5 * logvar)
    early, _ = encodable(vae, val[:2000])  # early stopping of the flow
    vmu, _ = vae.get_posterior(early)
    rows: list[dict[str, Any]] = []

    def score(name: str, z: np.ndarray, **info: Any) -> None:
        t0 = time.perf_counter()
        gen = vae.decode(z.astype(np.float32), greedy=True)
        strings = gen["smiles"].where(gen["valid"], "").tolist()
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            m = M.compute_metrics(strings, train=train_set, test=reference, n_jobs=1, train_is_canonical=True)
        row = {"prior": name, **info, **{k: round(float(m[k]), 4) for k in KEEP if k in m}}
        row["eval_s"] = round(time.perf_counter() - t0, 1)
        rows.append(row)
        print(json.dumps(row), flush=True)

    def draw(prior: Any) -> np.ndarray:
        return prior.sample(args.n, torch.Generator().manual_seed(0)).numpy()

    score("standard", draw(StandardNormalPrior(vae.n_latent)))
    for k in (1, 10, 50):
        score("gmm", draw(GaussianMixturePrior.fit(mu, n_components=k, seed=0)), n_components=k)
    t0 = time.perf_counter()
    flow = FlowPrior.fit(mu, vmu, seed=0)
    score(
        "flow",
        draw(flow),
        fit_s=round(time.perf_counter() - t0, 1),
        **{k: v for k, v in flow.summary.items() if k != "history"},
    )
    for k, noise in MIDPOINTS:
        score("midpoints", draw(MidpointPrior.fit(mu, sd, k=k, noise=noise)), k=k, noise=noise)
    rng = np.random.default_rng(0)
    i = rng.integers(0, len(mu), args.n)
    score("reference: training aggregate posterior", mu[i] + sd[i] * rng.standard_normal(mu[i].shape))
    held, _ = encodable(vae, val[12000:22000])  # disjoint from the reference molecules
    hmu, _ = vae.get_posterior(held)
    score("reference: held-out posterior means", hmu)
    record = {
        "command": f"python -m benchmarks.molecules.prior_choice {args.fit_dir}",
        "model": repr(vae),
        "machine": machine(),
        "reference": "10,000 MOSES validation molecules (from MOSES train, not in the training set)",
        "n_samples": args.n,
        "rows": rows,
    }
    args.out.write_text(json.dumps(record, indent=2) + "\n")
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
