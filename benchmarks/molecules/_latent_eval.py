"""What a molecule VAE's latent space is worth, measured the same way by every benchmark in this folder.

* reconstruction: greedy decoding from the posterior mean, canonical match, plus teacher-forced token accuracy;
* prior samples: validity (syntax mask on, the default, and raw), unique@1k, novelty, optionally FCD;
* neighbours (``MolVAE.neighbors`` at its default scale): validity, Tanimoto to the query, share identical;
* interpolation (``MolVAE.interpolate``, slerp): validity along the path and similarity to the start molecule;
* a baseline: the Tanimoto similarity of random pairs of the evaluated molecules.

Data helpers read the MOSES files from ``SCIVAE_MOSES_DIR`` (default ``../shared/data/moses`` beside the
repository); the files are ordered, so subsets are always drawn at random with a seed.
"""

from __future__ import annotations

import gzip
import os
import time
from pathlib import Path
from typing import Any

import numpy as np
from scipy.stats import spearmanr

ROOT = Path(__file__).resolve().parents[2]
MOSES_DIR = Path(os.environ.get("SCIVAE_MOSES_DIR", ROOT.parent / "shared" / "data" / "moses"))


def read_moses(split: str) -> list[str]:
    """All SMILES of the MOSES ``train`` or ``test`` file."""
    path = MOSES_DIR / f"{split}.csv.gz"
    if not path.exists():
        raise SystemExit(f"{path} not found: set SCIVAE_MOSES_DIR to the folder with MOSES train.csv.gz/test.csv.gz")
    with gzip.open(path, "rt") as fh:
        lines = fh.read().splitlines()
    return [s for s in lines[1:] if s]


def moses_splits(n_train: int, n_validation: int, n_test: int, seed: int = 0) -> dict[str, list[str]]:
    """Random, disjoint subsets: ``train`` and ``validation`` from MOSES train (``seed``), ``test`` from MOSES test.

    The training subset is the same as the earlier benchmarks' (``seed`` 0 draws the same 100k molecules);
    validation molecules (for choosing defaults) are drawn from the rest of MOSES train; the test molecules
    (for the reported figures) from MOSES test with ``seed + 1``.
    """
    train_all = read_moses("train")
    rng = np.random.default_rng(seed)
    train_idx = np.sort(rng.choice(len(train_all), size=min(n_train, len(train_all)), replace=False))
    rest = np.setdiff1d(np.arange(len(train_all)), train_idx)
    val_idx = np.sort(np.random.default_rng(seed + 100).choice(rest, size=min(n_validation, len(rest)), replace=False))
    test_all = read_moses("test")
    n_test = min(n_test, len(test_all))
    test_idx = np.sort(np.random.default_rng(seed + 1).choice(len(test_all), size=n_test, replace=False))
    return {
        "train": [train_all[i] for i in train_idx],
        "validation": [train_all[i] for i in val_idx],
        "test": [test_all[i] for i in test_idx],
    }


def encodable(vae: Any, smiles: list[str]) -> tuple[list[str], int]:
    """The molecules the model's vocabulary can write (canonical), and how many were left out."""
    from scivae.errors import ScivaeInputError
    from scivae.molecules.io import canonicalize_many
    from scivae.molecules.tokenizer import tokenize

    keep = []
    for c in canonicalize_many(smiles):
        if c is None:
            continue
        try:
            toks = tokenize(c, vae.alphabet)
            vae.vocab.ids(toks)
        except ScivaeInputError:
            continue
        if len(toks) <= vae.vocab.max_tokens:
            keep.append(c)
    return keep, len(smiles) - len(keep)


def _random_pair_similarity(smiles: list[str], n_pairs: int, rng: np.random.Generator) -> float:
    from scivae.molecules.metrics import tanimoto_to

    a = rng.integers(0, len(smiles), n_pairs)
    b = (a + rng.integers(1, len(smiles), n_pairs)) % len(smiles)
    return float(np.mean([tanimoto_to(smiles[i], [smiles[j]])[0] for i, j in zip(a, b, strict=True)]))


def evaluate_latent(
    vae: Any,
    molecules: list[str],
    *,
    train: list[str],
    n_recon: int = 1000,
    n_prior: int = 2000,
    n_neighbors: int = 100,
    n_interp: int = 50,
    neighbor_scales: tuple[float, ...] | None = None,
    fcd_reference: list[str] | None = None,
    seed: int = 0,
) -> dict[str, Any]:
    """All latent-space figures of a trained ``MolVAE`` on ``molecules`` (validation or test molecules).

    Parameters
    ----------
    vae
        A trained :class:`scivae.MolVAE`.
    molecules
        Held-out molecules (never training ones) used as queries.
    train
        The training molecules (novelty).
    n_recon, n_prior, n_neighbors, n_interp
        How many molecules to reconstruct, prior samples, neighbour queries (10 neighbours each) and
        interpolation pairs (10 points each).
    neighbor_scales
        Also measure neighbours at these scales (to choose the default); the default scale is always measured.
    fcd_reference
        Compute the MOSES metrics of the prior samples (FCD, SNN...) against these molecules.
    seed
        Seeds the subsets and the samples.
    """
    from scivae.molecules import metrics as M
    from scivae.molecules.vae import DEFAULT_NEIGHBOR_SCALE

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
    }

    prior: dict[str, Any] = {"n": n_prior, "temperature": 1.0}
    train_set = frozenset(train)
    # syntax: tokens sampled at temperature 1 under the SMILES syntax mask (MolVAE's default); raw: no mask (as
    # MOSES samples its models); greedy: the most likely token at each step, so z alone makes the diversity.
    modes = {"syntax": (True, False), "raw": (False, False), "greedy": (True, True)}
    if vae.alphabet == "selfies":
        modes = {"raw": (False, False), "greedy": (False, True)}
    for mode, (syntax, greedy) in modes.items():
        t1 = time.perf_counter()
        gen = vae.sample(n_prior, seed=seed, syntax=syntax, greedy=greedy)
        prior[f"sample_s_{mode}"] = round(time.perf_counter() - t1, 2)
        valid = gen.loc[gen["valid"], "smiles"].tolist()
        prior[f"valid_{mode}"] = float(gen["valid"].mean())
        prior[f"unique@1000_{mode}"] = len(set(valid[:1000])) / max(min(len(valid), 1000), 1)
        distinct = set(valid)
        prior[f"novelty_{mode}"] = len(distinct - train_set) / max(len(distinct), 1)
        if fcd_reference is not None and (mode != "raw" or vae.alphabet == "selfies"):
            strings = gen["smiles"].where(gen["valid"], "").tolist()
            prior[f"moses_{mode}"] = M.compute_metrics(strings, train=train_set, test=fcd_reference, n_jobs=1)
    out["prior"] = prior

    queries = pool[:n_neighbors]
    scales = sorted({DEFAULT_NEIGHBOR_SCALE, *(neighbor_scales or ())})
    out["neighbors"] = {}
    for scale in scales:
        frames = [vae.neighbors(q, n=10, scale=scale, seed=seed + i) for i, q in enumerate(queries)]
        valid = np.concatenate([f["valid"].to_numpy() for f in frames])
        sims = np.concatenate([f["similarity"].to_numpy() for f in frames])
        same = np.concatenate([f["same"].to_numpy() for f in frames])
        distinct = [f.loc[f["valid"], "smiles"].nunique() for f in frames]
        out["neighbors"][str(scale)] = {
            "n_queries": len(queries),
            "valid": float(valid.mean()),
            "tanimoto_mean": float(np.nanmean(sims)),
            "identical_to_query": float(same.mean()),
            "distinct_per_query": float(np.mean(distinct)),
            "tanimoto_mean_excluding_query": float(np.nanmean(np.where(same, np.nan, sims))),
        }
    out["neighbors"]["default_scale"] = DEFAULT_NEIGHBOR_SCALE

    starts, ends = pool[n_neighbors : n_neighbors + n_interp], pool[n_neighbors + n_interp : n_neighbors + 2 * n_interp]
    paths, rhos = [], []
    for a, b in zip(starts, ends, strict=False):
        path = vae.interpolate(a, b, steps=10)
        sims = M.tanimoto_to(a, path["smiles"].where(path["valid"], "").tolist())
        paths.append((path["valid"].to_numpy(), sims))
        ok = ~np.isnan(sims)
        if ok.sum() >= 3 and np.nanstd(sims) > 0:
            rhos.append(spearmanr(path["t"].to_numpy()[ok], sims[ok]).statistic)
    valid = np.stack([v for v, _ in paths])
    sims = np.stack([s for _, s in paths])
    out["interpolation"] = {
        "n_pairs": len(paths),
        "steps": 10,
        "valid": float(valid.mean()),
        "similarity_to_start_by_t": [float(x) for x in np.nanmean(sims, axis=0)],
        "spearman_t_vs_similarity_median": float(np.median(rhos)) if rhos else float("nan"),
    }
    out["random_pair_tanimoto"] = _random_pair_similarity(pool, 2000, rng)
    out["eval_s"] = round(time.perf_counter() - t0, 1)
    return out


def fit_summary(m: dict[str, Any]) -> dict[str, Any]:
    """The training figures the latent-space benchmarks report, from a fit's metrics (``fit_result.metrics``
    or the ``metrics.json`` of ``scivae fit``)."""
    keys = (
        "epochs_trained",
        "time_s",
        "weights_epoch",
        "elbo_validation",
        "reconstruction_validation",
        "kl_validation",
        "active_units",
        "mutual_information",
        "mutual_information_upper_bound",
        "latent_gain_validation",
        "reconstruction_accuracy_validation",
        "token_accuracy_validation",
        "collapsed",
        "skipped_steps",
    )
    return {k: m[k] for k in keys if k in m}
