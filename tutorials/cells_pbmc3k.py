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
# `scivae.tl.embed` behaves like any `sc.tl` function: it fits a negative-binomial VAE on the raw counts and
# writes the latent means to `adata.obsm["X_scivae"]`, so neighbours, Leiden and UMAP follow directly. The
# trained model then answers questions in the latent space (`scivae.latent`) and draws them (`scivae.pl`):
# denoised expression, the most anomalous cells, and whether the latent space is used at all.
#
# This is a jupytext notebook (`jupytext --to ipynb cells_pbmc3k.py`) that also runs as a script
# (`make tutorials`). `SCIVAE_FAST=1` runs a short fit (as the test suite does); the assertions then check
# what that short fit really achieves. Figures go to `$SCIVAE_TUTORIAL_OUT` (default `tutorial_output/`).

# %%
import os

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt
import numpy as np
import scanpy as sc
import scipy.sparse as sp
import torch

import scivae
from scivae import latent, pl

FAST = os.environ.get("SCIVAE_FAST") == "1"
OUT = os.environ.get("SCIVAE_TUTORIAL_OUT", "tutorial_output")
os.makedirs(OUT, exist_ok=True)
torch.set_num_threads(1)  # kind to a shared machine; on an idle one, more threads train faster (benchmarks/cells)


def save(fig, name):
    fig.savefig(os.path.join(OUT, name), dpi=80, bbox_inches="tight")
    plt.close(fig)
    print("wrote", os.path.join(OUT, name))


# %% [markdown]
# The bundled data: 2,700 PBMCs, raw UMI counts (10x Genomics, CC BY 4.0), no cell-type labels.

# %%
adata = scivae.datasets.pbmc3k()
print(adata)

# %% [markdown]
# ## Embed
#
# Fit on the 2,000 most variable genes (seurat_v3 on counts). Without `max_epochs` the fit follows
# scvi-tools' epoch rule, stops early on the validation ELBO and keeps the best epoch. `return_model=True`
# gives the trained `CellVAE` back for the rest of the tutorial.

# %%
model = scivae.tl.embed(
    adata, n_latent=10, n_top_genes=2000, max_epochs=20 if FAST else None, seed=0, progress_bar=False, return_model=True
)
metrics = adata.uns["scivae"]["metrics"]
print({k: round(metrics[k], 3) for k in ("elbo_validation", "kl_validation", "mutual_information", "epochs_trained")})

# %% [markdown]
# Everything downstream is plain scanpy on `X_scivae`.

# %%
sc.pp.neighbors(adata, use_rep="X_scivae", random_state=0)
sc.tl.leiden(adata, resolution=0.5, random_state=0, flavor="igraph", n_iterations=2, directed=False)
sc.tl.umap(adata, random_state=0)
print(adata.obs["leiden"].value_counts().to_dict())

# %% [markdown]
# ## Marker genes per cluster, and population names
#
# Rank genes per Leiden cluster on log-normalised expression (for display only: the model reads raw counts),
# then name each cluster after the population whose well-known marker is highest there.

# %%
expr = adata.copy()
sc.pp.normalize_total(expr, target_sum=1e4)
sc.pp.log1p(expr)
sc.tl.rank_genes_groups(expr, "leiden", method="t-test")
top = {c: list(expr.uns["rank_genes_groups"]["names"][c][:4]) for c in expr.obs["leiden"].cat.categories}
for cluster, genes in top.items():
    print(f"cluster {cluster}: {', '.join(genes)}")

markers = {
    "CD4 T": "IL7R",
    "CD8 T": "CD8A",
    "NK": "GNLY",
    "B": "MS4A1",
    "CD14 mono": "LYZ",
    "FCGR3A mono": "MS4A7",
    "DC": "FCER1A",
    "Megakaryocyte": "PPBP",
}
clusters = adata.obs["leiden"].cat.categories
mean = {g: np.array([expr[adata.obs["leiden"] == c, g].X.mean() for c in clusters]) for g in markers.values()}
zscore = {p: (mean[g] - mean[g].mean()) / (mean[g].std() + 1e-9) for p, g in markers.items()}
names = {c: max(zscore, key=lambda p, i=i: zscore[p][i]) for i, c in enumerate(clusters)}
adata.obs["population"] = adata.obs["leiden"].map(names).astype("category")
home = {p: str(clusters[int(np.argmax(mean[g]))]) for p, g in markers.items()}
for population, gene in markers.items():
    print(f"{population:>14}: {gene:<7} highest in Leiden cluster {home[population]}")

# %% [markdown]
# The main populations must land in different clusters: B cells, CD14 monocytes and T cells (and, after a
# full fit, NK cells too).

# %%
separated = ["B", "CD14 mono", "CD4 T"] + ([] if FAST else ["NK"])
assert len({home[p] for p in separated}) == len(separated), home

# %% [markdown]
# ## Denoised expression
#
# The decoder's expression at each cell's latent mean (`latent.reconstruct`, scaled to 10,000 counts) is a
# denoised version of the sparse counts: LYZ, the CD14 monocyte marker, side by side observed and denoised.

# %%
denoised = latent.reconstruct(model)
adata.obs["LYZ observed (log)"] = np.asarray(expr[:, "LYZ"].X.todense()).ravel()
adata.obs["LYZ denoised (log)"] = np.log1p(denoised[:, "LYZ"].X.ravel())
fig = pl.latent_umap(adata, color=["population", "LYZ observed (log)", "LYZ denoised (log)"])
save(fig, "pbmc3k_umap.png")
mono = (adata.obs["leiden"] == home["CD14 mono"]).to_numpy()
lyz = denoised[:, "LYZ"].X.ravel()
print(f"denoised LYZ: {lyz[mono].mean():.0f} per 10k in the CD14 monocyte cluster, {lyz[~mono].mean():.0f} elsewhere")
assert lyz[mono].mean() > 5 * lyz[~mono].mean()
print(f"log p(counts | own code): median {denoised.obs['log_likelihood'].median():.0f} nats per cell")

# %% [markdown]
# ## The most anomalous cells
#
# The anomaly score is the negative ELBO of a cell (nats): how badly the model explains its counts. It sums
# over the counts, so it grows with a cell's depth: compare cells of similar depth, or look at nats per
# count. To check that it flags what it should, add one artificial cell: a real cell's counts shuffled across
# genes (the same depth, no biological programme). It must rank above every real cell of similar depth.

# %%
x = model.data.arrays["x"]
scrambled = x[0].toarray()[:, np.random.default_rng(0).permutation(x.shape[1])]
probe = sc.AnnData(X=sp.csr_matrix(np.vstack([x.toarray(), scrambled])), var=adata[:, model.genes].var.copy())
scores = latent.anomaly_scores(model, probe)
real, fake = scores[:-1], scores[-1]
depth = np.asarray(x.sum(1)).ravel()
similar = np.abs(depth / depth[0] - 1) < 0.2
print(
    f"scrambled cell: {fake:.0f} nats (the same counts in their genes: {real[0]:.0f}); above "
    f"{np.mean(real[similar] < fake):.0%} of the {similar.sum()} real cells of similar depth"
)
assert fake > real[similar].max() and fake > real[0] + 50
adata.obs["anomaly (nats per count)"] = real / depth
worst = adata.obs.sort_values("anomaly (nats per count)", ascending=False).head(5)
print(worst[["population", "anomaly (nats per count)"]])
save(pl.anomaly_scores(real / depth, top=27), "pbmc3k_anomaly.png")

# %% [markdown]
# ## Is the latent space used? The collapse diagnostics
#
# * **KL per dimension and active units**: what the encoder spends per dimension; a unit is active when its
#   posterior mean varies across cells by more than 0.01.
# * **Mutual information** I(x; z): how many nats the code tells about the cell (at most log N).
# * **Latent gain**: how much the decoder's reconstruction improves with the cell's own z instead of another
#   cell's; a decoder that ignores z gains nothing, whatever the KL says.
#
# The rate-distortion picture shows the same per epoch: a collapsed model sits on the vertical axis.

# %%
collapse = model.fit_result.collapse
print(
    f"{collapse.active_units}/{collapse.n_latent} active units, KL {collapse.kl_total:.2f} nats, "
    f"I(x;z) {collapse.mutual_information:.2f} nats (at most {collapse.mi_upper_bound:.2f}), "
    f"latent gain {collapse.latent_gain:.2f} nats, collapsed: {collapse.collapsed}"
)
assert not collapse.collapsed and collapse.active_units >= (3 if FAST else 6)
save(pl.kl_per_dim(model), "pbmc3k_kl_per_dim.png")
save(pl.rate_distortion(model), "pbmc3k_rate_distortion.png")
save(pl.training_curves(model), "pbmc3k_training_curves.png")
