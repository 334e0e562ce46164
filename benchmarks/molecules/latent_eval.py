"""What a molecule VAE's latent space is worth, measured the same way by every benchmark in this folder.

* reconstruction: greedy decoding from the posterior mean, canonical match, plus teacher-forced token accuracy;
* prior samples, from the learned prior and from N(0, I): MOSES metrics over *all* generated strings (invalid
  ones count against validity, as MOSES counts them), against reference molecules and the training set;
* neighbours (``MolVAE.neighbors`` at its default scale): validity, Tanimoto to the query with and without the
  points that decode to the query itself, and the share of such points;
* interpolation (``MolVAE.interpolate``, slerp): validity, similarity to the start along the path, and how often
  the end points reconstruct;
* a baseline: the Tanimoto similarity of random pairs of the evaluated molecules.
"""

from __future__ import annotations

import time
import warnings
from typing import Any

import numpy as np
from scipy.stats import spearmanr

from benchmarks.molecules.data import encodable

#: The MOSES metrics each prior's samples are scored with.
KEEP = (
    "valid",
    "unique@1000",
    "unique@10000",
    "FCD/Test",
    "SNN/Test",
    "Frag/Test",
    "Scaf/Test",
    "IntDiv",
    "IntDiv2",
    "Filters",
    "Novelty",
)


def prior_metrics(vae: Any, n: int, reference: Any, train: frozenset[str], seed: int, prior: str) -> dict[str, Any]:
    """MOSES metrics of ``n`` prior samples (greedy, syntax mask: ``scivae generate``'s defaults), all strings."""
    from scivae.molecules import metrics as M

    t0 = time.perf_counter()
    gen = vae.sample(n, seed=seed, prior=prior)
    sample_s = time.perf_counter() - t0
    strings = gen["smiles"].where(gen["valid"], "").tolist()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        m = M.compute_metrics(strings, train=train, test=reference, n_jobs=1, train_is_canonical=True)
    out = {k: float(m[k]) for k in KEEP if k in m}
    out.update(n=n, sample_s=round(sample_s, 2))
    return out


def evaluate_latent(
    vae: Any,
    molecules: list[str],
    *,
    train: list[str],
    reference: Any,
    n_recon: int = 1000,
    n_prior: int = 10000,
    n_neighbors: int = 200,
    n_interp: int = 100,
    seed: int = 0,
) -> dict[str, Any]:
    """All latent-space figures of a trained ``MolVAE`` on held-out ``molecules`` (never training ones).

    ``reference``: MOSES reference statistics (or SMILES) the prior samples are compared with; ``train``: the
    training molecules (canonical), for novelty.
    """
    from scivae.molecules import metrics as M

    rng = np.random.default_rng(seed)
    pool, n_left_out = encodable(vae, molecules)
    pool = [pool[i] for i in rng.permutation(len(pool))]
    out: dict[str, Any] = {"n_not_encodable": n_left_out}
    t0 = time.perf_counter()

    recon = vae.reconstruct(pool[:n_recon])
    out["reconstruction"] = {
        "n": len(recon),
        "accuracy": float(recon["same"].mean()),
        "valid": float(recon["valid"].mean()),
        "token_accuracy": vae.token_accuracy(pool[:n_recon]),
        "tanimoto_mean": float(np.nanmean(recon["similarity"].to_numpy(dtype=float))),
    }

    train_set = frozenset(train)
    out["prior"] = {}
    for prior in ("learned", "standard") if vae.learned_prior is not None else ("standard",):
        out["prior"][prior] = prior_metrics(vae, n_prior, reference, train_set, seed, prior)

    queries = pool[:n_neighbors]
    frames = []
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # the "decodes to the query itself" warning: counted below instead
        for i, q in enumerate(queries):
            frames.append(vae.neighbors(q, n=10, seed=seed + i))
    valid = np.concatenate([f["valid"].to_numpy() for f in frames])
    sims = np.concatenate([f["similarity"].to_numpy(dtype=float) for f in frames])
    same = np.concatenate([f["same"].to_numpy() for f in frames])
    out["neighbors"] = {
        "n_queries": len(queries),
        "points_per_query": 10,
        "valid": float(valid.mean()),
        "identical_to_query": float(same.mean()),
        "tanimoto_mean_excluding_query": float(np.nanmean(np.where(same, np.nan, sims))),
        "tanimoto_mean_including_query": float(np.nanmean(sims)),
        "distinct_per_query": float(np.mean([f.loc[f["valid"], "smiles"].nunique() for f in frames])),
    }

    starts = pool[n_neighbors : n_neighbors + n_interp]
    ends = pool[n_neighbors + n_interp : n_neighbors + 2 * n_interp]
    paths, rhos, ends_ok = [], [], []
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # end points that do not reconstruct: counted below
        for a, b in zip(starts, ends, strict=False):
            path = vae.interpolate(a, b, steps=10)
            sims = path["similarity_a"].to_numpy(dtype=float)
            paths.append((path["valid"].to_numpy(), sims))
            ends_ok.append(bool(path["same_as_a"].iloc[0]) and bool(path["same_as_b"].iloc[-1]))
            ok = ~np.isnan(sims)
            if ok.sum() >= 3 and np.nanstd(sims) > 0:
                rhos.append(spearmanr(path["t"].to_numpy()[ok], sims[ok]).statistic)
    valid = np.stack([v for v, _ in paths])
    sims = np.stack([s for _, s in paths])
    out["interpolation"] = {
        "n_pairs": len(paths),
        "steps": 10,
        "valid": float(valid.mean()),
        "both_ends_reconstruct": float(np.mean(ends_ok)),
        "similarity_to_start_by_t": [float(x) for x in np.nanmean(sims, axis=0)],
        "spearman_t_vs_similarity_median": float(np.median(rhos)) if rhos else float("nan"),
    }
    a = rng.integers(0, len(pool), 2000)
    b = (a + rng.integers(1, len(pool), 2000)) % len(pool)
    out["random_pair_tanimoto"] = float(
        np.mean([M.tanimoto_to(pool[i], [pool[j]])[0] for i, j in zip(a, b, strict=True)])
    )
    out["eval_s"] = round(time.perf_counter() - t0, 1)
    return out


def fit_summary(m: dict[str, Any]) -> dict[str, Any]:
    """The training figures the benchmarks report, from ``metrics.json`` of ``scivae fit``."""
    keys = (
        "epochs_trained",
        "time_s",
        "optimizer_steps",
        "weights_epoch",
        "precision",
        "elbo_validation",
        "objective_validation",
        "reconstruction_validation",
        "kl_validation",
        "active_units",
        "mutual_information",
        "latent_gain_validation",
        "reconstruction_accuracy_validation",
        "token_accuracy_validation",
        "collapsed",
        "skipped_steps",
    )
    out = {k: m[k] for k in keys if k in m}
    out.update({k: v for k, v in m.items() if k == "prior" or k.startswith("prior_")})
    return out
