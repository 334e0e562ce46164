"""Evaluate the latents and likelihoods written by run_scvi.py / run_scivae.py, side by side.

Runs in scivae's venv (scanpy, leidenalg, scikit-learn)::

    .venv/bin/python benchmarks/cells/evaluate.py --root benchmarks/out/cells --tools scvi scivae

Per data set and tool (plus a PCA reference computed here from the same genes and cells):

- test ELBO and importance-sampled log p(x): per-cell means over the held-out test cells (nats, higher is
  better) with standard errors, and the paired per-cell difference scivae - scvi;
- Leiden on the latent (kNN graph with ``sc.pp.neighbors(use_rep=...)``, fixed resolutions and seed) against
  the marker labels from prepare_data.py; ARI and NMI on cells with a label (``"unassigned"`` excluded);
- cell-type ASW as in scib: ``(silhouette(latent, label) + 1) / 2`` on labelled cells;
- with a batch key: batch ASW as in scib (per label, ``mean(1 - |silhouette_i(latent, batch)|)``, then mean
  over labels), and kNN iLISI / cLISI (inverse Simpson index of batch / label proportions among each
  cell's k nearest neighbours, uniform weights; iLISI scaled to [0, 1] as ``(LISI - 1) / (B - 1)``,
  cLISI as ``(C - LISI) / (C - 1)``; 1 is best for both).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path

import anndata as ad
import numpy as np
import pandas as pd
import scanpy as sc
from sklearn.metrics import adjusted_rand_score, normalized_mutual_info_score, silhouette_samples
from sklearn.neighbors import NearestNeighbors

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _common import save_json  # noqa: E402

RESOLUTIONS = (0.5, 1.0)
PRIMARY_RESOLUTION = 0.5
N_NEIGHBORS = 15
LISI_K = 30
SEED = 0
BATCH_KEYS = {"pbmc3k": None, "ifnb": "condition"}
UNASSIGNED = "unassigned"


def leiden_scores(latent: np.ndarray, labels: np.ndarray) -> tuple[dict, np.ndarray]:
    """Leiden clusters on a kNN graph of ``latent``; ARI/NMI against labels on labelled cells."""
    a = ad.AnnData(X=np.zeros((latent.shape[0], 1), dtype=np.float32))
    a.obsm["X_lat"] = latent
    sc.pp.neighbors(a, n_neighbors=N_NEIGHBORS, use_rep="X_lat", random_state=SEED)
    keep = labels != UNASSIGNED
    out: dict = {}
    primary = None
    for r in RESOLUTIONS:
        sc.tl.leiden(
            a, resolution=r, random_state=SEED, key_added="cl", flavor="igraph", n_iterations=2, directed=False
        )
        cl = a.obs["cl"].to_numpy()
        out[f"res{r}"] = {
            "n_clusters": int(pd.unique(cl).size),
            "ari": float(adjusted_rand_score(labels[keep], cl[keep])),
            "nmi": float(normalized_mutual_info_score(labels[keep], cl[keep])),
        }
        if r == PRIMARY_RESOLUTION:
            primary = cl
    return out, primary


def celltype_asw(latent: np.ndarray, labels: np.ndarray) -> float:
    keep = labels != UNASSIGNED
    s = silhouette_samples(latent[keep], labels[keep])
    return float((s.mean() + 1) / 2)


def batch_asw(latent: np.ndarray, batch: np.ndarray, labels: np.ndarray) -> float:
    """scib-style batch ASW: per label, mean of 1 - |silhouette on batch|; averaged over labels."""
    per_label = []
    for lab in pd.unique(labels):
        if lab == UNASSIGNED:
            continue
        m = labels == lab
        if m.sum() < 10 or pd.unique(batch[m]).size < 2:
            continue
        s = silhouette_samples(latent[m], batch[m])
        per_label.append(np.mean(1 - np.abs(s)))
    return float(np.mean(per_label))


def knn_lisi(latent: np.ndarray, groups: np.ndarray, k: int = LISI_K) -> np.ndarray:
    """Per-cell inverse Simpson index of ``groups`` among the k nearest neighbours (self excluded)."""
    nn = NearestNeighbors(n_neighbors=k + 1).fit(latent)
    idx = nn.kneighbors(latent, return_distance=False)[:, 1:]
    codes, _ = pd.factorize(groups)
    g = codes[idx]
    counts = np.stack([(g == c).sum(axis=1) for c in range(codes.max() + 1)], axis=1) / k
    return 1.0 / (counts**2).sum(axis=1)


def integration_scores(latent: np.ndarray, batch: np.ndarray, labels: np.ndarray) -> dict:
    n_b = pd.unique(batch).size
    keep = labels != UNASSIGNED
    n_c = pd.unique(labels[keep]).size
    ilisi = knn_lisi(latent, batch)
    clisi = knn_lisi(latent[keep], labels[keep])
    return {
        "batch_asw": batch_asw(latent, batch, labels),
        "ilisi_median": float(np.median(ilisi)),
        "ilisi_scaled": float((np.median(ilisi) - 1) / (n_b - 1)),
        "clisi_median": float(np.median(clisi)),
        "clisi_scaled": float((n_c - np.median(clisi)) / (n_c - 1)),
    }


def pca_reference(adata: ad.AnnData) -> np.ndarray:
    """50-PC PCA of log-normalised, scaled expression of the same HVGs (context, not a competitor)."""
    a = adata.copy()
    sc.pp.normalize_total(a, target_sum=1e4)
    sc.pp.log1p(a)
    sc.pp.scale(a, max_value=10)
    sc.tl.pca(a, n_comps=50, random_state=SEED)
    return np.asarray(a.obsm["X_pca"], dtype=np.float32)


def _mean_se(x: np.ndarray) -> dict:
    return {"mean": float(np.mean(x)), "se": float(np.std(x, ddof=1) / np.sqrt(len(x))), "n": int(len(x))}


def evaluate_dataset(root: Path, name: str, tools: list[str], fig_dir: Path | None) -> dict:
    adata = ad.read_h5ad(root / f"{name}.h5ad")
    labels = adata.obs["label"].astype(str).to_numpy()
    batch_key = BATCH_KEYS[name]
    batch = adata.obs[batch_key].astype(str).to_numpy() if batch_key else None
    latents: dict[str, np.ndarray] = {"PCA (reference)": pca_reference(adata)}
    res: dict = {"n_cells": int(adata.n_obs), "n_labelled": int((labels != UNASSIGNED).sum()), "tools": {}}
    per_cell: dict[str, dict[str, np.ndarray]] = {}
    for tool in tools:
        d = root / tool / name
        if not (d / "latent.npy").exists():
            res["tools"][tool] = {"status": f"not run ({d / 'latent.npy'} missing)"}
            continue
        lat = np.load(d / "latent.npy")
        if lat.shape[0] != adata.n_obs:
            raise SystemExit(f"{d}/latent.npy has {lat.shape[0]} rows, expected {adata.n_obs}")
        latents[tool] = lat
        run = json.loads((d / "run.json").read_text())
        elbo = np.load(d / "elbo_test.npy")
        mll = np.load(d / "marginal_ll_test.npy")
        per_cell[tool] = {"elbo": elbo, "mll": mll}
        res["tools"][tool] = {
            "test_elbo": _mean_se(elbo),
            "test_marginal_ll": _mean_se(mll),
            "train_elbo": run.get("train", {}).get("elbo_mean"),
            "fit_s": run.get("fit_s"),
            "epochs_run": run.get("epochs_run"),
            "throughput": run.get("throughput"),
            "versions": run.get("versions"),
            "settings": run.get("settings"),
            "machine": run.get("machine"),
        }
    # Paired per-cell differences (same test cells): every scivae run against every scvi-tools run.
    res["paired"] = {}
    for a in (t for t in per_cell if t.startswith("scivae")):
        for b in (t for t in per_cell if t.startswith("scvi") and not t.startswith("scivae")):
            res["paired"][f"{a} - {b}"] = {
                "elbo": _mean_se(per_cell[a]["elbo"] - per_cell[b]["elbo"]),
                "marginal_ll": _mean_se(per_cell[a]["mll"] - per_cell[b]["mll"]),
            }
    if "scvi" in per_cell and "scivae" in per_cell:
        a, b = res["tools"]["scivae"]["throughput"], res["tools"]["scvi"]["throughput"]
        if a and b and a.get("median_cells_per_s") and b.get("median_cells_per_s"):
            res["throughput_ratio_scivae_over_scvi"] = a["median_cells_per_s"] / b["median_cells_per_s"]

    clusters = {}
    for tool, lat in latents.items():
        scores, cl = leiden_scores(lat, labels)
        clusters[tool] = cl
        entry = res["tools"].setdefault(tool, {})
        entry["leiden"] = scores
        entry["celltype_asw"] = celltype_asw(lat, labels)
        if batch is not None:
            entry |= integration_scores(lat, batch, labels)
    if fig_dir is not None:
        _umap_figure(name, latents, labels, batch, fig_dir)
    return res


def _umap_figure(name: str, latents: dict, labels: np.ndarray, batch: np.ndarray | None, fig_dir: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    cats = sorted(pd.unique(labels), key=lambda s: (s == UNASSIGNED, s))
    cmap = plt.get_cmap("tab10")
    colours = {c: ("lightgrey" if c == UNASSIGNED else cmap(i % 10)) for i, c in enumerate(cats)}
    rows = 2 if batch is not None else 1
    fig, axes = plt.subplots(rows, len(latents), figsize=(4.2 * len(latents), 4.0 * rows), squeeze=False)
    for j, (tool, lat) in enumerate(latents.items()):
        a = ad.AnnData(X=np.zeros((lat.shape[0], 1), dtype=np.float32))
        a.obsm["X_lat"] = lat
        sc.pp.neighbors(a, n_neighbors=N_NEIGHBORS, use_rep="X_lat", random_state=SEED)
        sc.tl.umap(a, random_state=SEED)
        u = a.obsm["X_umap"]
        ax = axes[0, j]
        for c in cats:
            m = labels == c
            ax.scatter(u[m, 0], u[m, 1], s=2, c=[colours[c]], label=c, rasterized=True)
        ax.set_title(f"{name}: {tool}")
        ax.set_xticks([])
        ax.set_yticks([])
        if batch is not None:
            ax = axes[1, j]
            for k, bname in enumerate(sorted(pd.unique(batch))):
                m = batch == bname
                ax.scatter(u[m, 0], u[m, 1], s=2, c=[cmap(k)], label=bname, alpha=0.5, rasterized=True)
            ax.set_xticks([])
            ax.set_yticks([])
    axes[0, -1].legend(markerscale=4, fontsize=7, loc="center left", bbox_to_anchor=(1, 0.5))
    if batch is not None:
        axes[1, -1].legend(markerscale=4, fontsize=7, loc="center left", bbox_to_anchor=(1, 0.5))
    fig.tight_layout()
    fig_dir.mkdir(parents=True, exist_ok=True)
    tmp = fig_dir / f".{name}_umap.tmp.png"
    fig.savefig(tmp, dpi=80)
    plt.close(fig)
    os.replace(tmp, fig_dir / f"{name}_umap.png")


def _fmt(x, spec=".3f") -> str:
    return "-" if x is None else format(x, spec)


def table(results: dict) -> str:
    lines = []
    for name, res in results.items():
        tools = list(res["tools"])
        lines.append(f"\n### {name} ({res['n_cells']} cells, {res['n_labelled']} with a marker label)\n")
        lines.append("| metric | " + " | ".join(tools) + " |")
        lines.append("|---|" + "---|" * len(tools))

        def row(label, get, tools=tools, res=res):
            vals = []
            for t in tools:
                try:
                    vals.append(get(res["tools"][t]))
                except (KeyError, TypeError):
                    vals.append("-")
            lines.append(f"| {label} | " + " | ".join(vals) + " |")

        row(
            "test ELBO / cell (nats, higher better)",
            lambda e: f"{e['test_elbo']['mean']:.2f} ± {e['test_elbo']['se']:.2f}",
        )
        row(
            "test log p(x) / cell (IS, nats)",
            lambda e: f"{e['test_marginal_ll']['mean']:.2f} ± {e['test_marginal_ll']['se']:.2f}",
        )
        row("train ELBO / cell", lambda e: _fmt(e["train_elbo"], ".2f"))
        for r in RESOLUTIONS:
            row(
                f"Leiden ARI (res {r})",
                lambda e, r=r: f"{e['leiden'][f'res{r}']['ari']:.3f} ({e['leiden'][f'res{r}']['n_clusters']} cl.)",
            )
            row(f"Leiden NMI (res {r})", lambda e, r=r: f"{e['leiden'][f'res{r}']['nmi']:.3f}")
        row("cell-type ASW", lambda e: f"{e['celltype_asw']:.3f}")
        if "batch_asw" in next(iter(res["tools"].values())):
            row("batch ASW (scib, 1 = mixed)", lambda e: f"{e['batch_asw']:.3f}")
            row(f"iLISI median (k={LISI_K}, of 2)", lambda e: f"{e['ilisi_median']:.3f}")
            row("iLISI scaled (1 = mixed)", lambda e: f"{e['ilisi_scaled']:.3f}")
            row("cLISI scaled (1 = separate)", lambda e: f"{e['clisi_scaled']:.3f}")
        row("fit wall time (s)", lambda e: f"{e['fit_s']:.1f}")
        row("epochs run", lambda e: f"{e['epochs_run']}")
        row("median cells/s per epoch", lambda e: f"{e['throughput']['median_cells_per_s']:.0f}")
        if res.get("paired"):
            lines.append("")
        for pair, p in res.get("paired", {}).items():
            lines.append(
                f"Paired per-cell difference {pair} on the {p['elbo']['n']} test cells: "
                f"ELBO {p['elbo']['mean']:+.2f} ± {p['elbo']['se']:.2f}, "
                f"log p(x) {p['marginal_ll']['mean']:+.2f} ± {p['marginal_ll']['se']:.2f} nats.  "
            )
        if "throughput_ratio_scivae_over_scvi" in res:
            lines.append(
                f"Training throughput ratio scivae / scvi (median cells/s per epoch): "
                f"{res['throughput_ratio_scivae_over_scvi']:.2f}."
            )
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description="Side-by-side metrics for the cells benchmark.")
    ap.add_argument("--root", type=Path, default=Path("benchmarks/out/cells"))
    ap.add_argument("--tools", nargs="+", default=["scvi", "scivae"])
    ap.add_argument("--datasets", nargs="+", default=["pbmc3k", "ifnb"])
    ap.add_argument("--figures", type=Path, default=None, help="folder for UMAP figures (skipped if omitted)")
    args = ap.parse_args(argv)
    sc.settings.verbosity = 0
    results = {name: evaluate_dataset(args.root, name, args.tools, args.figures) for name in args.datasets}
    save_json(results, args.root / "results.json")
    md = table(results)
    tmp = args.root / "results.md.tmp"
    tmp.write_text(md + "\n")
    os.replace(tmp, args.root / "results.md")
    print(md)
    return 0


if __name__ == "__main__":
    sys.exit(main())
