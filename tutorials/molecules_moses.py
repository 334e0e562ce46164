# ---
# jupyter:
#   jupytext:
#     formats: py:percent
#     text_representation:
#       extension: .py
#       format_name: percent
# ---

# %% [markdown]
# # Molecules: fit a VAE on MOSES, generate, evaluate, and move through its latent space
#
# `scivae.MolVAE` encodes SMILES (by default in Kekulé form) with a GRU into a Gaussian latent space and
# decodes them token by token. This tutorial fits one on the bundled MOSES subset, samples new molecules and
# scores them with the MOSES metrics, rebuilds held-out molecules, walks from one drug to another, looks
# around a query molecule, and compares SMILES with SELFIES.
#
# `make tutorials` trains each model for a few minutes on the 50,000 bundled molecules (the "cpu"
# architecture preset, the model's default KL settings). `SCIVAE_FAST=1` (the test suite) trains for seconds
# on a few thousand: the latent space then barely works, and the assertions check only what such a short
# fit achieves. Figures go to `$SCIVAE_TUTORIAL_OUT` (default `tutorial_output/`).

# %%
import os
import warnings

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
import torch

import scivae
from scivae import latent, pl
from scivae.molecules.metrics import compute_metrics, tanimoto_to

FAST = os.environ.get("SCIVAE_FAST") == "1"
OUT = os.environ.get("SCIVAE_TUTORIAL_OUT", "tutorial_output")
os.makedirs(OUT, exist_ok=True)
torch.set_num_threads(int(os.environ.get("SCIVAE_THREADS", "1" if FAST else "2")))
warnings.filterwarnings("ignore", category=UserWarning)  # Lightning's notes on data loader workers
pd.set_option("display.width", 160)
pd.set_option("display.max_columns", 12)
N_TRAIN = 3000 if FAST else 50_000
FIT = dict(max_epochs=6, batch_size=64) if FAST else dict(max_epochs=100, max_time=8.0)  # max_time in minutes
N_SAMPLES = 300 if FAST else 3000


def save(fig, name):
    fig.savefig(os.path.join(OUT, name), dpi=80, bbox_inches="tight")
    plt.close(fig)
    print("wrote", os.path.join(OUT, name))


# %% [markdown]
# Random subsets of the MOSES train and test sets (MIT licence). The files are ordered by similarity, so the
# loader always draws at random (seeded).

# %%
train = scivae.datasets.moses("train", n=N_TRAIN, seed=0)
test = scivae.datasets.moses("test", n=1000, seed=0)
print(len(train), "training molecules, e.g.", train[:3])

# %% [markdown]
# ## Fit
#
# `fit` returns the model; the per-epoch history (ELBO, KL, mutual information, latent gain, held-out
# reconstruction accuracy) is in `fit_result`.

# %%
vae = scivae.MolVAE(train, architecture="cpu", seed=0).fit(progress_bar=False, accelerator="cpu", **FIT)
print(vae)
history = vae.fit_result.history
print(history[["epoch", "elbo_validation", "kl_validation", "mutual_information", "token_accuracy_validation"]])
save(pl.training_curves(vae), "moses_training_curves.png")
save(pl.kl_per_dim(vae), "moses_kl_per_dim.png")
elbo = history["elbo_validation"].to_numpy()
print(f"validation ELBO {elbo[0]:.1f} -> {elbo[-1]:.1f} nats per molecule")
assert elbo[-1] > elbo[0] + (10 if FAST else 30)

# %% [markdown]
# ## Generate and evaluate with the MOSES metrics
#
# Prior samples `z ~ N(0, I)`, decoded token by token. By default a SMILES model's decoder may not emit a
# token that breaks SMILES syntax (an unmatched `)` or ring bond); `syntax=False` gives its raw samples, as
# MOSES samples its models. The metrics are computed as in `molsets` 0.3.1 (validity, uniqueness, novelty,
# FCD, SNN, fragment and scaffold similarity to the test set, internal diversity, filters).

# %%
samples = vae.sample(N_SAMPLES, seed=0)
raw = vae.sample(N_SAMPLES, seed=0, syntax=False)
print(f"valid: {samples['valid'].mean():.3f} with the syntax mask, {raw['valid'].mean():.3f} raw")
metrics = compute_metrics(samples["smiles"].where(samples["valid"], "").tolist(), train=train, test=test)
print(pd.Series(metrics).round(3).to_string())
save(pl.molecules(samples[samples["valid"]].head(15), title="prior samples (valid ones)"), "moses_samples.png")
assert abs(metrics["valid"] - samples["valid"].mean()) < 1e-9
assert samples["valid"].mean() >= raw["valid"].mean()
if not FAST:
    assert metrics["valid"] > 0.5 and metrics["unique@1000"] > 0.9 and metrics["Novelty"] > 0.5

# %% [markdown]
# ## Rebuild held-out molecules
#
# Encode test molecules to their posterior means and decode greedily: how many come back exactly, and how
# similar are the others (Tanimoto on Morgan fingerprints)?

# %%
rebuilt = vae.reconstruct(test[:200])
accuracy = rebuilt["same"].mean()
token_accuracy = vae.token_accuracy(test[:200])
print(f"held-out molecules rebuilt exactly: {accuracy:.1%}; tokens right (teacher forcing): {token_accuracy:.1%}")
print(rebuilt.head())
assert token_accuracy > (0.5 if FAST else 0.8)
if not FAST:
    assert accuracy > 0.1

# %% [markdown]
# ## From paracetamol to ibuprofen
#
# Spherical interpolation between the two latent means, decoded greedily; the grid shows the path with each
# molecule's similarity to the start.

# %%
start, end = "CC(=O)Nc1ccc(O)cc1", "CC(C)Cc1ccc(C(C)C(=O)O)cc1"
path = latent.interpolate(vae, start, end, steps=8)
path["similarity"] = tanimoto_to(start, path["smiles"].where(path["valid"], "").tolist())
print(path)
save(pl.molecules(path, n_cols=4, title="paracetamol -> ibuprofen (slerp)"), "moses_interpolation.png")
assert list(path["t"]) == list(np.linspace(0, 1, 8))

# %% [markdown]
# ## Around a query molecule
#
# Latent points `mu + scale * sigma * eps` around the query's code, with `scale` in units of the encoder's
# own posterior standard deviation. Compare the Tanimoto similarity to the query of these neighbours with
# that of random prior samples.

# %%
query = test[0]
around = vae.neighbors(query, n=20, seed=0)
save(pl.molecules(around, color="similarity", title=f"around {query}"), "moses_neighbours.png")
baseline = tanimoto_to(query, samples["smiles"].where(samples["valid"], "").tolist())
near, far = np.nanmean(around["similarity"]), np.nanmean(baseline)
print(f"Tanimoto to the query: {near:.2f} around it, {far:.2f} for prior samples; {around['valid'].mean():.0%} valid")
print(latent.nearest_neighbors(vae, query, test, k=5))
if not FAST:
    assert near > far + 0.1

# %% [markdown]
# ## SMILES against SELFIES
#
# SELFIES strings decode to a valid molecule whatever the tokens, so every sample is valid; the question is
# what that costs in reconstruction and in how the samples resemble the data. Same data, same budget.

# %%
selfies = scivae.MolVAE(train, alphabet="selfies", architecture="cpu", seed=0)
selfies.fit(progress_bar=False, accelerator="cpu", **FIT)
rows = {}
for name, model in (("kekule SMILES", vae), ("SELFIES", selfies)):
    gen = model.sample(N_SAMPLES, seed=1, syntax=False)
    rows[name] = {
        "valid (raw samples)": gen["valid"].mean(),
        "unique valid": gen.loc[gen["valid"], "smiles"].nunique() / N_SAMPLES,
        "rebuilt exactly": model.reconstruct(test[:200])["same"].mean(),
        "tokens right": model.token_accuracy(test[:200]),
        "validation ELBO": model.fit_result.metrics["elbo_validation"],
    }
comparison = pd.DataFrame(rows).round(3)
print(comparison)
assert rows["SELFIES"]["valid (raw samples)"] == 1.0
