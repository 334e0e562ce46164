# ---
# jupyter:
#   jupytext:
#     formats: py:percent
#     text_representation:
#       extension: .py
#       format_name: percent
# ---

# %% [markdown]
# # PBMC 3k: a count VAE inside a scanpy workflow
#
# `scivae.tl.embed` behaves like any `sc.tl` function: it fits a negative-binomial VAE on the raw counts
# and writes the latent means to `adata.obsm["X_scivae"]`, so neighbours, Leiden and UMAP follow directly.
# This script is a jupytext notebook (`jupytext --to ipynb pbmc3k_scanpy.py`) and also runs as plain
# Python; set `SCIVAE_TUTORIAL_EPOCHS` for a shorter run.

# %%
import os

import matplotlib

matplotlib.use("Agg")
import numpy as np
import scanpy as sc
import torch

import scivae

torch.set_num_threads(1)
EPOCHS = int(os.environ.get("SCIVAE_TUTORIAL_EPOCHS", "60"))
OUT = os.environ.get("SCIVAE_TUTORIAL_OUT", "tutorial_output")
os.makedirs(OUT, exist_ok=True)

# %% [markdown]
# The bundled data: 2,700 PBMCs, raw UMI counts (10x Genomics, CC BY 4.0).

# %%
adata = scivae.datasets.pbmc3k()
print(adata)

# %% [markdown]
# Fit on the 2,000 most variable genes (seurat_v3 on counts). The fit stops early on the validation ELBO
# and keeps the best epoch; `uns["scivae"]` records parameters and final metrics, including the number of
# active latent units: a collapsed posterior would show up here.

# %%
scivae.tl.embed(adata, n_latent=10, n_top_genes=2000, max_epochs=EPOCHS, seed=0, progress_bar=False)
metrics = adata.uns["scivae"]["metrics"]
print({k: metrics[k] for k in ("elbo_validation", "kl_validation", "active_units", "epochs_trained")})

# %% [markdown]
# Everything downstream is plain scanpy.

# %%
sc.pp.neighbors(adata, use_rep="X_scivae", random_state=0)
sc.tl.leiden(adata, resolution=0.5, random_state=0, flavor="igraph", n_iterations=2, directed=False)
sc.tl.umap(adata, random_state=0)

# %% [markdown]
# Check the clusters against well-known markers (normalised, log-transformed expression for display only).

# %%
markers = {
    "CD4 T": "IL7R",
    "CD8 T": "CD8A",
    "NK": "GNLY",
    "B": "MS4A1",
    "CD14 mono": "LYZ",
    "FCGR3A mono": "FCGR3A",
    "DC": "FCER1A",
    "Megakaryocyte": "PPBP",
}
expr = adata.copy()
sc.pp.normalize_total(expr, target_sum=1e4)
sc.pp.log1p(expr)
for population, gene in markers.items():
    values = np.asarray(expr[:, gene].X.todense()).ravel()
    by_cluster = {c: values[adata.obs["leiden"] == c].mean() for c in adata.obs["leiden"].cat.categories}
    top = max(by_cluster, key=by_cluster.get)
    print(f"{population:>14}: {gene:<7} highest in Leiden cluster {top} (mean log-expression {by_cluster[top]:.2f})")

# %%
adata.obs["LYZ (log-normalised)"] = np.asarray(expr[:, "LYZ"].X.todense()).ravel()
sc.pl.umap(adata, color=["leiden", "LYZ (log-normalised)"], show=False)
matplotlib.pyplot.savefig(os.path.join(OUT, "pbmc3k_umap.png"), dpi=80, bbox_inches="tight")
print("wrote", os.path.join(OUT, "pbmc3k_umap.png"))
