"""Reference mapping, label transfer and DE: scivae vs scvi-tools 1.4.2 side by side (issue 19).

From the repository root, in scivae's venv (scvi-tools' venv: ``bash benchmarks/cells/setup_scvi_venv.sh``)::

    python -m benchmarks.cells.mapping_vs_scvi                 # 3 seeds, 100 reference + 100 query epochs
    python -m benchmarks.cells.mapping_vs_scvi --smoke         # seconds: 200 + 200 cells, 2 epochs, scivae only

Data (:mod:`benchmarks.cells.mapping_data`): the bundled IFN-beta PBMCs, 1,500 genes; the 1,000 control cells
are the labelled reference (marker lineages; cells without a dominant marker set unlabelled), the 1,000
stimulated cells the query, a batch of its own (``condition``), unlabelled. Per seed, in alternating order
(scivae first on even seeds), one fresh process per tool (``mapping_scivae`` in this venv, ``mapping_scvi`` in
scvi-tools'), one torch thread each, the same cells, genes, architecture and epochs: reference fit -> query
mapping (scArches surgery) -> label prediction of the query cells -> DE of stimulated vs control CD14 monocytes
(change mode, the same delta). The figures are computed here, identically for both tools, from the files the
runs write:

* **accuracy**: predicted vs marker lineage over the query cells that have one; beside it the majority-class
  baseline (the share of the most frequent lineage among them);
* **mixing**: the query model's latent of all reference and query cells; for each cell, the share of its k = 15
  nearest neighbours (Euclidean, itself excluded) from the *other* data set, divided by that set's share of all
  other cells (what random neighbours would give), averaged over all cells: 1 = mixed as at random, 0 = apart;
* **DE**: Spearman correlation of ``lfc_mean`` between the tools over all genes (and, as a supplement, over the
  genes seen in at least 10 % of the CD14 monocytes of one condition, whose fold changes are not mostly noise);
  the rank of each interferon gene (``ISGS`` present in the data) among all genes sorted by ``lfc_mean``
  descending (1 = most up in stimulated cells), and its position in the tool's own table (sorted by
  ``proba_de``, ties in table order); as a model-free yardstick, each tool's Spearman with the pseudo-bulk log2
  ratio of mean counts per 10,000 (+ 0.1) of the two groups, and the ISGs' ranks in that ratio
  (``data.pseudobulk_isg_lfc_rank``);
* **times** of each step (reference fit, query fit, predict, DE), as the runs measured them (imports and file
  reading not included).

Raw results (per seed, medians, machine, load average before and after, versions, command) go to
``--json`` (default ``benchmarks/cells/results/mapping_vs_scvi.json``); a Markdown table is printed.
"""

from __future__ import annotations

import argparse
import json
import os
import shlex
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd

from benchmarks.cells._common import DATA_DIR, RESULTS_DIR, ROOT, SCVI_PYTHON, child_env, machine, save_json
from benchmarks.cells.mapping_data import BATCH_KEY, DE_KEY, ISGS, QUERY, REFERENCE, STEPS, TRUTH_KEY, UNKNOWN, prepare

TOOLS = ("scivae", "scvi")
MODULES = {"scivae": "benchmarks.cells.mapping_scivae", "scvi": "benchmarks.cells.mapping_scvi"}
#: an interferon gene is "at the top" when its lfc_mean rank is at most this (of all genes)
TOP_RANK = 20


# -- the figures, computed the same way for both tools ----------------------------------------------------------
def accuracy(predicted: np.ndarray, truth: np.ndarray) -> dict:
    """Accuracy over the cells with a marker lineage, and the majority-class baseline over the same cells."""
    known = truth != UNKNOWN
    shares = pd.Series(truth[known]).value_counts(normalize=True)
    confusion = pd.crosstab(pd.Series(truth[known], name="lineage"), pd.Series(predicted[known], name="predicted"))
    return {
        "accuracy": float((predicted[known] == truth[known]).mean()),
        "majority": float(shares.iloc[0]),
        "majority_label": str(shares.index[0]),
        "n_cells": int(known.sum()),
        "confusion": {str(k): {str(c): int(v) for c, v in row.items()} for k, row in confusion.iterrows()},
    }


def mixing(z_reference: np.ndarray, z_query: np.ndarray, k: int = 15) -> dict:
    """kNN mixing score of two data sets in one latent space (see the module docstring); also per data set."""
    from scipy.spatial import cKDTree

    z = np.vstack([z_reference, z_query]).astype(np.float64)
    is_query = np.r_[np.zeros(len(z_reference), bool), np.ones(len(z_query), bool)]
    _, idx = cKDTree(z).query(z, k=k + 1)
    # drop each cell itself (the nearest, unless a duplicate point came first)
    neighbours = np.array([[j for j in row if j != i][:k] for i, row in enumerate(idx)])
    other = (is_query[neighbours] != is_query[:, None]).mean(1)
    n = len(z)
    expected = np.where(is_query, (~is_query).sum(), is_query.sum()) / (n - 1)
    ratio = other / expected
    return {
        "score": float(ratio.mean()),
        "reference_cells": float(ratio[~is_query].mean()),
        "query_cells": float(ratio[is_query].mean()),
        "k": k,
    }


def isg_ranks(de: pd.DataFrame) -> dict:
    """Rank of each interferon gene by ``lfc_mean`` (descending, 1 = most up) and in the tool's own order.

    ``de``: one tool's table over the genes both tools report (the same genes: see ``mapping_data.prepare``).
    """
    by_lfc = de["lfc_mean"].rank(ascending=False, method="min")
    genes = [g for g in ISGS if g in de.index]
    return {
        "lfc_rank": {g: int(by_lfc[g]) for g in genes},
        "tool_rank": {g: int(de.loc[g, "tool_rank"]) for g in genes},
        "proba_de": {g: float(de.loc[g, "proba_de"]) for g in genes},
        "max_lfc_rank": int(max(by_lfc[g] for g in genes)),
        "median_lfc_rank": float(np.median([by_lfc[g] for g in genes])),
    }


def _cd14_counts(data: Path) -> tuple:
    """The data's counts (CSR), each cell's ``de_group`` and the gene names (the DE's genes, in file order)."""
    import anndata as ad
    import scipy.sparse as sp

    adata = ad.read_h5ad(data)
    names = pd.Index([str(g) for g in adata.var_names], name="gene")
    return sp.csr_matrix(adata.X), adata.obs[DE_KEY].astype(str).to_numpy(), names


def pseudobulk_lfc(data: Path) -> pd.DataFrame:
    """The data's own stim-vs-ctrl change in CD14 monocytes: log2 of the ratio of the mean counts per 10,000 (plus
    0.1) of the two groups, per gene, as a one-column ``lfc_mean`` table (a model-free yardstick for the tools')."""
    import scipy.sparse as sp

    x, group, genes = _cd14_counts(data)
    per_10k = sp.csr_matrix(x.multiply(1e4 / np.maximum(np.asarray(x.sum(1)), 1)))
    mean = {g: np.asarray(per_10k[group == g].mean(0)).ravel() for g in (QUERY, REFERENCE)}
    lfc = np.log2(mean[QUERY] + 0.1) - np.log2(mean[REFERENCE] + 0.1)
    return pd.DataFrame({"lfc_mean": lfc}, index=genes)


#: a gene is "seen" when detected in at least this share of the CD14 monocytes of one condition (as the
#: reference-mapping tutorial and scvi-tools' tutorials filter a DE table)
SEEN_SHARE = 0.1


def seen_genes(data: Path) -> pd.Index:
    """The genes detected in at least ``SEEN_SHARE`` of the stimulated or of the control CD14 monocytes."""
    x, group, genes = _cd14_counts(data)
    share = [np.asarray((x[group == g] > 0).mean(0)).ravel() for g in (QUERY, REFERENCE)]
    return genes[np.maximum(*share) >= SEEN_SHARE]


def seed_figures(
    runs: dict[str, Path], truth: np.ndarray, k: int, pseudobulk: pd.DataFrame, seen: pd.Index | None = None
) -> dict:
    """Every figure of one seed from the runs' output folders (``runs``: tool -> folder); ``seen``: the genes of
    the supplementary Spearman (:func:`seen_genes`)."""
    out: dict = {"tools": {}}
    tables = {t: read_de(folder) for t, folder in runs.items()}
    genes = sorted(set.intersection(*(set(d.index) for d in tables.values())))
    out["n_genes_de"] = {t: len(d) for t, d in tables.items()} | {"common": len(genes)}
    for tool, folder in runs.items():
        run = json.loads((folder / "run.json").read_text())
        predicted = np.asarray(json.loads((folder / "predicted.json").read_text()), dtype=object)
        de = tables[tool].loc[genes]
        out["tools"][tool] = {
            "label_transfer": accuracy(predicted, truth),
            "mixing": mixing(np.load(folder / "latent_reference.npy"), np.load(folder / "latent_query.npy"), k),
            "de": {
                **isg_ranks(de),
                "n_de_fdr_0.05": int(de["is_de_fdr_0.05"].sum()),
                "lfc_spearman_vs_pseudobulk": lfc_spearman(de, pseudobulk),
            },
            "times_s": run["times_s"],
            "settings": run["settings"],
            "versions": run["versions"],
            "torch_threads": run["torch_threads"],
        }
    if len(tables) == 2:
        out["de_lfc_spearman"] = lfc_spearman(tables["scivae"], tables["scvi"])
        if seen is not None:
            out["de_lfc_spearman_seen_genes"] = lfc_spearman(tables["scivae"], tables["scvi"], seen)
    return out


def read_de(folder: Path) -> pd.DataFrame:
    """A run's DE table (gene names read as text: no gene becomes NaN)."""
    return pd.read_csv(folder / "de.csv", index_col=0, keep_default_na=False, na_values=[])


def lfc_spearman(a: pd.DataFrame, b: pd.DataFrame, genes: pd.Index | None = None) -> float:
    """Spearman correlation of ``lfc_mean`` of two DE tables over their common genes (those of ``genes`` only)."""
    from scipy.stats import spearmanr

    genes = a.index.intersection(b.index) if genes is None else a.index.intersection(b.index).intersection(genes)
    return float(spearmanr(a.loc[genes, "lfc_mean"].to_numpy(), b.loc[genes, "lfc_mean"].to_numpy()).statistic)


def between_seeds(folders: dict[int, Path], seen: pd.Index | None = None) -> dict:
    """One tool's ``lfc_mean`` Spearman between every pair of seeds (how far the tool agrees with itself), over
    all genes and over the ``seen`` ones."""
    seeds = sorted(folders)
    tables = {s: read_de(folders[s]) for s in seeds}
    out = {}
    for name, genes in (("", None), ("_seen_genes", seen)):
        pairs = {
            f"{a}-{b}": lfc_spearman(tables[a], tables[b], genes) for i, a in enumerate(seeds) for b in seeds[i + 1 :]
        }
        out["pairs" + name] = pairs
        out["median" + name] = float(np.median(list(pairs.values()))) if pairs else None
    return out


# -- running the tools --------------------------------------------------------------------------------------------
def run_tool(tool: str, python: str, data: Path, out: Path, seed: int, args: argparse.Namespace) -> float:
    """One tool's run of one seed in a fresh process; its wall time (seconds, imports included)."""
    cmd = [
        python,
        "-m",
        MODULES[tool],
        "--data",
        str(data),
        "--out",
        str(out),
        "--seed",
        str(seed),
        "--reference-epochs",
        str(args.reference_epochs),
        "--query-epochs",
        str(args.query_epochs),
        "--scanvi-epochs",
        str(args.scanvi_epochs),
        "--delta",
        str(args.delta),
        "--de-samples",
        str(args.de_samples),
        "--threads",
        str(args.threads),
    ]
    t0 = time.perf_counter()
    proc = subprocess.run(cmd, cwd=ROOT, env=child_env(args.threads), capture_output=True, text=True)
    wall = time.perf_counter() - t0
    if proc.returncode != 0:
        sys.stderr.write(proc.stdout[-3000:] + proc.stderr[-5000:])
        raise SystemExit(f"{tool} seed {seed} failed (exit {proc.returncode})")
    print(f"seed {seed}: {proc.stdout.strip().splitlines()[-1]} (process {wall:.1f}s)", flush=True)
    return wall


def _median(values: list[float]) -> float:
    return float(np.median(values))


def medians(per_seed: list[dict], tools: list[str]) -> dict:
    """Medians over seeds of every reported figure."""
    med: dict = {}
    for tool in tools:
        rows = [s["tools"][tool] for s in per_seed]
        med[tool] = {
            "accuracy": _median([r["label_transfer"]["accuracy"] for r in rows]),
            "majority": _median([r["label_transfer"]["majority"] for r in rows]),
            "mixing": _median([r["mixing"]["score"] for r in rows]),
            "isg_max_lfc_rank": _median([r["de"]["max_lfc_rank"] for r in rows]),
            "isg_median_lfc_rank": _median([r["de"]["median_lfc_rank"] for r in rows]),
            "isg_lfc_rank": {g: _median([r["de"]["lfc_rank"][g] for r in rows]) for g in rows[0]["de"]["lfc_rank"]},
            "n_de_fdr_0.05": _median([r["de"]["n_de_fdr_0.05"] for r in rows]),
            "times_s": {step: _median([r["times_s"][step] for r in rows]) for step in STEPS},
        }
    for key in ("de_lfc_spearman", "de_lfc_spearman_seen_genes"):
        if all(key in s for s in per_seed):
            med[key] = _median([s[key] for s in per_seed])
    return med


def targets(med: dict, per_seed: list[dict]) -> dict:
    """Which of issue 19's targets the medians meet (scvi-tools comparisons only when it ran)."""
    sv = med["scivae"]
    t: dict = {
        "accuracy_at_least_0.9": sv["accuracy"] >= 0.9,
        "isgs_at_top_every_seed": all(s["tools"]["scivae"]["de"]["max_lfc_rank"] <= TOP_RANK for s in per_seed),
    }
    if "scvi" in med:
        sc = med["scvi"]
        t["accuracy_at_least_scvi"] = sv["accuracy"] >= sc["accuracy"]
        t["mixing_at_least_scvi"] = sv["mixing"] >= sc["mixing"]
        t["de_lfc_spearman_at_least_0.8"] = med["de_lfc_spearman"] >= 0.8
        for step in STEPS:
            t[f"{step}_time_at_most_scvi"] = sv["times_s"][step] <= sc["times_s"][step]
    return t


def table(med: dict, per_seed: list[dict], seeds: list[int]) -> str:
    """The Markdown table of the medians (and the per-seed values in brackets)."""
    tools = [t for t in TOOLS if t in med]
    names = {"scivae": "scivae", "scvi": "scvi-tools"}
    head = (
        "| figure (median of seeds "
        + ", ".join(map(str, seeds))
        + "; per seed) | "
        + " | ".join(names[t] for t in tools)
    )
    lines = [head + " |", "|---|" + "---:|" * len(tools)]

    def row(name: str, key, fmt: str) -> None:
        cells = []
        for tool in tools:
            vals = [key(s["tools"][tool]) for s in per_seed]
            cells.append(f"**{format(np.median(vals), fmt)}** ({', '.join(format(v, fmt) for v in vals)})")
        lines.append(f"| {name} | " + " | ".join(cells) + " |")

    row("label-transfer accuracy, query cells", lambda r: r["label_transfer"]["accuracy"], ".3f")
    row("majority-class baseline", lambda r: r["label_transfer"]["majority"], ".3f")
    row("mixing, kNN k=15 (1 = random)", lambda r: r["mixing"]["score"], ".3f")
    row("ISG rank by lfc_mean, worst of the ISGs", lambda r: r["de"]["max_lfc_rank"], ".0f")
    row("ISG rank by lfc_mean, median of the ISGs", lambda r: r["de"]["median_lfc_rank"], ".0f")
    row("genes DE at FDR 0.05", lambda r: r["de"]["n_de_fdr_0.05"], ".0f")
    row("DE lfc_mean Spearman with the pseudo-bulk log2 ratio", lambda r: r["de"]["lfc_spearman_vs_pseudobulk"], ".3f")
    for step, fmt in zip(STEPS, (".1f", ".1f", ".3f", ".2f"), strict=True):
        row(f"time: {step.replace('_', ' ')} (s)", lambda r, step=step: r["times_s"][step], fmt)
    for key, genes in (("", "all genes"), ("_seen_genes", f"genes seen in >= {SEEN_SHARE:.0%} of a group")):
        if "de_lfc_spearman" + key in med:
            vals = [s["de_lfc_spearman" + key] for s in per_seed]
            lines.append(
                f"| DE lfc_mean Spearman, scivae vs scvi-tools, {genes} | "
                + f"**{np.median(vals):.3f}** ({', '.join(f'{v:.3f}' for v in vals)})"
                + " |" * (len(tools) - 1)
                + " |"
            )
        seeds_row = [med.get("de_lfc_spearman_between_seeds" + key, {}).get(t) for t in tools]
        if all(v is not None for v in seeds_row):
            lines.append(
                f"| DE lfc_mean Spearman between seeds, same tool, {genes} (median of pairs) | "
                + " | ".join(f"{v:.3f}" for v in seeds_row)
                + " |"
            )
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    ap.add_argument("--reference-epochs", type=int, default=100)
    ap.add_argument("--query-epochs", type=int, default=100)
    ap.add_argument("--scanvi-epochs", type=int, default=10, help="scvi-tools: SCANVI's share of the reference epochs")
    ap.add_argument("--delta", type=float, default=0.25)
    ap.add_argument("--de-samples", type=int, default=5000)
    ap.add_argument("--k", type=int, default=15, help="neighbours of the mixing score")
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--scvi-python", default=SCVI_PYTHON)
    ap.add_argument("--out-dir", type=Path, default=DATA_DIR / "mapping")
    ap.add_argument("--json", type=Path, default=None, help="default: benchmarks/cells/results/mapping_vs_scvi.json")
    ap.add_argument("--smoke", action="store_true", help="200 + 200 cells, 2 epochs, one seed, scivae only")
    args = ap.parse_args(argv)
    if args.smoke:
        args.seeds, args.reference_epochs, args.query_epochs, args.scanvi_epochs = [0], 2, 2, 1
        args.de_samples, args.scvi_python = 200, ""
    json_path = args.json or (args.out_dir / "smoke.json" if args.smoke else RESULTS_DIR / "mapping_vs_scvi.json")

    t_start = time.perf_counter()
    load_start = os.getloadavg()
    data = args.out_dir / ("ifnb_mapping_smoke.h5ad" if args.smoke else "ifnb_mapping.h5ad")
    summary = prepare(data, n_cells_per_condition=200 if args.smoke else None)
    import anndata as ad

    obs = ad.read_h5ad(data, backed="r").obs
    truth = obs.loc[obs[BATCH_KEY].astype(str) == QUERY, TRUTH_KEY].astype(str).to_numpy()

    pseudobulk = pseudobulk_lfc(data)
    seen = seen_genes(data)
    summary["n_seen_genes"] = len(seen)
    summary["pseudobulk_isg_lfc_rank"] = {
        g: int(r) for g, r in pseudobulk["lfc_mean"].rank(ascending=False, method="min").items() if g in ISGS
    }
    pythons = {"scivae": sys.executable}
    scvi = None
    if args.scvi_python:
        if Path(args.scvi_python).exists():
            scvi = args.scvi_python
        else:
            print(f"scvi-tools venv missing ({args.scvi_python}): scivae only (benchmarks/cells/setup_scvi_venv.sh)")
    else:
        print("scivae only (smoke)")
    if scvi:
        pythons["scvi"] = scvi
    tools = [t for t in TOOLS if t in pythons]

    per_seed = []
    for i, seed in enumerate(args.seeds):
        order = tools if i % 2 == 0 else tools[::-1]
        folders, walls = {}, {}
        for tool in order:
            folders[tool] = args.out_dir / tool / f"seed{seed}"
            walls[tool] = run_tool(tool, pythons[tool], data, folders[tool], seed, args)
        figures = seed_figures({t: folders[t] for t in tools}, truth, args.k, pseudobulk, seen)
        figures.update(seed=seed, order=order, process_wall_s=walls, loadavg=os.getloadavg())
        per_seed.append(figures)

    med = medians(per_seed, tools)
    reproducibility = {t: between_seeds({s: args.out_dir / t / f"seed{s}" for s in args.seeds}, seen) for t in tools}
    for key in ("", "_seen_genes"):
        med["de_lfc_spearman_between_seeds" + key] = {t: v["median" + key] for t, v in reproducibility.items()}
    command = "python -m benchmarks.cells.mapping_vs_scvi " + shlex.join(argv if argv is not None else sys.argv[1:])
    result = {
        "command": command.strip(),
        "machine": machine(),
        "niceness": os.nice(0),
        "loadavg_start": load_start,
        "data": summary,
        "settings": {k: (str(v) if isinstance(v, Path) else v) for k, v in vars(args).items()},
        "isgs": ISGS,
        "top_rank": TOP_RANK,
        "per_seed": per_seed,
        "de_lfc_spearman_between_seeds": reproducibility,
        "medians": med,
        "targets": targets(med, per_seed),
        "versions": {t: per_seed[0]["tools"][t]["versions"] for t in tools},
    }
    result["wall_s"] = time.perf_counter() - t_start
    result["loadavg_end"] = os.getloadavg()
    json_path.parent.mkdir(parents=True, exist_ok=True)
    save_json(result, json_path)
    print()
    print(table(med, per_seed, args.seeds))
    print()
    print("targets: " + ", ".join(f"{k} {'met' if v else 'NOT met'}" for k, v in result["targets"].items()))
    print(
        f"wall {result['wall_s']:.0f}s; load average {load_start[0]:.2f} -> {result['loadavg_end'][0]:.2f}; "
        f"raw figures: {json_path}"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
