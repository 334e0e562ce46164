"""scivae.latent on small fitted models of every domain: real PBMC cells, MOSES molecules, digit images."""

from __future__ import annotations

import anndata as ad
import numpy as np
import pandas as pd
import pytest
import scipy.sparse as sp
from sklearn.metrics import adjusted_rand_score

from scivae import latent
from scivae.datasets import moses
from scivae.dense import GaussianVAE
from scivae.errors import ScivaeInputError
from tests.cells.conftest import marker_labels


# -- cells -------------------------------------------------------------------------------------------------
def test_encode_is_the_models_latent_and_samples_are_seeded(cell_model) -> None:
    z = latent.encode(cell_model)
    assert z.shape == (800, 8)
    np.testing.assert_array_equal(z, cell_model.get_latent())
    a = latent.encode(cell_model, give_mean=False, seed=3)
    np.testing.assert_array_equal(a, latent.encode(cell_model, give_mean=False, seed=3))
    assert not np.allclose(a, z)


def test_clusters_follow_marker_populations(cell_model) -> None:
    labels = marker_labels(cell_model.adata)
    keep = labels >= 0
    km = latent.cluster(cell_model, method="kmeans", n_clusters=3)
    assert isinstance(km, pd.Categorical) and len(km) == 800 and list(km.categories) == ["0", "1", "2"]
    counts = pd.Series(km).value_counts()
    assert counts["0"] == counts.max()  # "0" is the largest cluster, as in scanpy's Leiden
    leiden = latent.cluster(cell_model, method="leiden", resolution=0.5)
    assert len(leiden) == 800 and 2 <= len(leiden.categories) <= 20
    # monocytes, T and B cells by raw markers: k-means on the latent recovers them well beyond chance (ARI 0)
    assert adjusted_rand_score(labels[keep], np.asarray(km)[keep]) > 0.3
    assert adjusted_rand_score(labels[keep], np.asarray(leiden)[keep]) > 0.2
    # a latent matrix works as well, and gives the same k-means clusters
    assert list(latent.cluster(latent.encode(cell_model), method="kmeans", n_clusters=3)) == list(km)
    with pytest.raises(ScivaeInputError, match="n_clusters"):
        latent.cluster(cell_model, method="kmeans")
    with pytest.raises(ScivaeInputError, match="unknown clustering method"):
        latent.cluster(cell_model, method="dbscan")


def test_interpolation_ends_at_the_denoised_cells(cell_model) -> None:
    a, b = cell_model.adata.obs_names[[4, 9]]
    path = latent.interpolate(cell_model, a, b, steps=5)
    assert isinstance(path, ad.AnnData) and path.shape == (5, len(cell_model.genes))
    assert list(path.var_names) == cell_model.genes and list(path.obs["t"]) == [0.0, 0.25, 0.5, 0.75, 1.0]
    denoised = cell_model.get_normalized_expression(library_size=1e4).to_numpy()
    np.testing.assert_allclose(path.X[0], denoised[4], rtol=1e-4)
    np.testing.assert_allclose(path.X[-1], denoised[9], rtol=1e-4)
    np.testing.assert_allclose(path.X.sum(1), 1e4, rtol=1e-4)  # expression fractions times the library size
    linear = latent.interpolate(cell_model, 4, 9, steps=5, method="linear")  # cells by position work too
    np.testing.assert_allclose(linear.X[[0, -1]], path.X[[0, -1]], rtol=1e-4)
    assert not np.allclose(linear.X[2], path.X[2])
    with pytest.raises(ScivaeInputError, match="not a cell of the data"):
        latent.interpolate(cell_model, "nope", b)


def test_sampling_around_a_cell_stays_close_to_it(cell_model) -> None:
    query = cell_model.adata.obs_names[0]
    near = latent.sample_around(cell_model, query, n=30, scale=0.5, seed=1)
    far = latent.sample_around(cell_model, query, n=30, scale=2.0, seed=1)
    assert near.shape == (30, len(cell_model.genes)) and {"distance", "log_likelihood"} <= set(near.obs)
    # the same eps at four times the scale: four times the distance
    np.testing.assert_allclose(far.obs["distance"], 4 * near.obs["distance"], rtol=1e-4)
    # points near the cell's code explain its counts better than points further out
    assert near.obs["log_likelihood"].mean() > far.obs["log_likelihood"].mean() + 5
    again = latent.sample_around(cell_model, query, n=30, scale=0.5, seed=1)
    np.testing.assert_array_equal(again.X, near.X)
    other = latent.sample_around(cell_model, query, n=30, scale=0.5, seed=2)
    assert not np.allclose(other.X, near.X)


def test_traversal_of_a_cell_starts_from_its_code(cell_model) -> None:
    dim = 2
    walk = latent.traverse(cell_model, dim, values=np.linspace(-2, 2, 5))
    assert list(walk.obs["value"]) == [-2.0, -1.0, 0.0, 1.0, 2.0] and walk.shape == (5, len(cell_model.genes))
    own = float(latent.encode(cell_model)[0, dim])
    start = latent.traverse(cell_model, dim, item=0, values=[own])
    denoised = cell_model.get_normalized_expression(library_size=1e4).to_numpy()
    np.testing.assert_allclose(start.X[0], denoised[0], rtol=1e-4)
    with pytest.raises(ScivaeInputError, match="dim must be between"):
        latent.traverse(cell_model, 8)


def test_anomaly_scores_rank_a_scrambled_cell_first(cell_model) -> None:
    cells = cell_model.adata
    scores = latent.anomaly_scores(cell_model)
    np.testing.assert_array_equal(scores, -cell_model.get_elbo())
    iwae = latent.anomaly_scores(cell_model, method="iwae", n_samples=20)
    assert iwae.mean() < scores.mean()  # the importance-sampled bound is tighter than the ELBO
    # a real cell's counts shuffled across genes: same library size, no biological programme
    rng = np.random.default_rng(0)
    x = cells.X.toarray()
    odd = x[:1, rng.permutation(x.shape[1])]
    both = ad.AnnData(X=sp.csr_matrix(np.vstack([x, odd])), var=cells.var.copy())
    both.obs_names = [*cells.obs_names, "scrambled"]
    with_odd = latent.anomaly_scores(cell_model, both)
    # the score grows with the counts of a cell: the scrambled one outranks every real cell of similar depth
    depth = x.sum(1)
    similar = np.abs(depth / depth[0] - 1) < 0.2
    assert similar.sum() > 50 and with_odd[-1] > with_odd[:-1][similar].max()
    assert with_odd[-1] > with_odd[0] + 50  # the same counts in their real genes score far better


def test_nearest_neighbours_in_the_latent_space(cell_model) -> None:
    z = latent.encode(cell_model)
    query = cell_model.adata.obs_names[5]
    nn = latent.nearest_neighbors(cell_model, query, k=6)
    assert list(nn.columns) == ["item", "position", "distance"] and len(nn) == 6
    assert query not in set(nn["item"]) and nn["distance"].is_monotonic_increasing
    np.testing.assert_allclose(nn["distance"], np.linalg.norm(z[nn["position"]] - z[5], axis=1), rtol=1e-5)
    # exactly the six closest other cells
    order = np.argsort(np.linalg.norm(z - z[5], axis=1))
    assert list(nn["position"]) == [i for i in order if i != 5][:6]


def test_reconstructions_match_their_own_cells(cell_model) -> None:
    out = latent.reconstruct(cell_model)
    assert out.shape == (800, len(cell_model.genes)) and list(out.obs["input"]) == list(cell_model.adata.obs_names)
    np.testing.assert_allclose(out.X, cell_model.get_normalized_expression(library_size=1e4), rtol=1e-5)
    own = out.obs["log_likelihood"].to_numpy()
    # each cell's counts are explained better at its own code than at another cell's (a derangement; many
    # pairs are cells of one type, so the gap is modest: measured 67% of cells, 15 nats on average with
    # BatchNorm after 12 epochs; 92% and 31 nats with LayerNorm after 20)
    z = latent.encode(cell_model)
    _, arrays = cell_model._labelled_arrays(None)
    other = latent._log_likelihood(cell_model, arrays, z[np.roll(np.arange(800), 1)])
    assert (own > other).mean() > 0.58 and own.mean() > other.mean() + 7


# -- molecules -------------------------------------------------------------------------------------------
QUERY = "CC(=O)Nc1ccc(O)cc1"  # paracetamol


def test_molecules_encode_sample_and_interpolate(mol_model) -> None:
    test = moses("test", n=40, seed=5)
    np.testing.assert_array_equal(latent.encode(mol_model, test), mol_model.encode(test))
    samples = latent.sample(mol_model, 12, seed=4, greedy=False)
    assert list(samples.columns) == ["smiles", "valid"] and len(samples) == 12
    assert samples.equals(latent.sample(mol_model, 12, seed=4, greedy=False))
    assert samples.equals(mol_model.sample(12, seed=4, greedy=False))  # MolVAE.sample is this function
    path = latent.interpolate(mol_model, test[0], test[1], steps=5, method="linear")
    assert list(path.columns) == ["t", "smiles", "valid"] and list(path["t"]) == [0.0, 0.25, 0.5, 0.75, 1.0]
    ends = latent.reconstruct(mol_model, test[:2])
    assert list(path["smiles"].iloc[[0, -1]]) == list(ends["smiles"])  # the path starts and ends at the codes
    with pytest.warns(UserWarning, match="does not reconstruct"):  # this 3-epoch model rebuilds neither end
        linear = mol_model.interpolate(test[0], test[1], steps=5, method="linear")
    assert linear[list(path.columns)].equals(path)  # MolVAE.interpolate adds the end-point columns
    walk = latent.traverse(mol_model, 0, values=[-2.0, 0.0, 2.0], item=QUERY)
    assert list(walk["value"]) == [-2.0, 0.0, 2.0] and walk["valid"].dtype == bool


def test_molecule_neighbourhood_and_nearest_neighbours(mol_model) -> None:
    near = latent.sample_around(mol_model, QUERY, n=16, scale=0.5, seed=3)
    far = latent.sample_around(mol_model, QUERY, n=16, scale=4.0, seed=3)
    assert list(near.columns) == ["smiles", "valid", "distance", "log_likelihood", "similarity", "same"]
    np.testing.assert_allclose(far["distance"], 8 * near["distance"], rtol=1e-4)
    # even after a short fit, points near the query's code give the query a higher likelihood than far ones
    assert near["log_likelihood"].mean() > far["log_likelihood"].mean() + 2
    assert near.equals(mol_model.neighbors(QUERY, n=16, scale=0.5, seed=3))
    assert (near["same"] == (near["smiles"] == QUERY)).all()
    assert near.loc[~near["valid"], "similarity"].isna().all()
    pool = moses("test", n=200, seed=6)
    nn = latent.nearest_neighbors(mol_model, pool[0], pool, k=4)
    z = latent.encode(mol_model, pool)
    dist = np.linalg.norm(z - z[0], axis=1)
    assert pool[0] not in set(nn["item"]) and list(nn["position"]) == list(np.argsort(dist)[1:5])


def test_molecule_reconstruction_and_anomaly_scores(mol_model) -> None:
    test = moses("test", n=60, seed=7)
    rebuilt = latent.reconstruct(mol_model, test)
    assert list(rebuilt.columns) == ["input", "smiles", "valid", "log_likelihood", "similarity", "same"]
    assert (rebuilt["same"] == (rebuilt["smiles"] == rebuilt["input"])).all()
    assert rebuilt.equals(mol_model.reconstruct(test))
    scores = latent.anomaly_scores(mol_model, test)
    np.testing.assert_array_equal(scores, -mol_model.elbo(test))
    assert latent.anomaly_scores(mol_model, test, method="iwae", n_samples=20).mean() < scores.mean()
    # the reconstruction term alone (at the posterior mean) is part of the score: more nats for worse fits
    assert np.corrcoef(scores, -rebuilt["log_likelihood"])[0, 1] > 0.8
    km = latent.cluster(mol_model, test, method="kmeans", n_clusters=4)
    assert len(km) == 60 and list(km.categories) == ["0", "1", "2", "3"]


# -- dense -------------------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def digit_model(digits):
    from sklearn.datasets import load_digits

    model = GaussianVAE(64, n_latent=16, seed=0).fit(digits, max_epochs=15, progress_bar=False)
    return model, load_digits().target


def test_dense_neighbours_and_clusters_follow_digit_labels(digit_model, digits) -> None:
    model, target = digit_model
    hits = [
        (target[latent.nearest_neighbors(model, i, k=5)["position"]] == target[i]).mean() for i in range(0, 1797, 60)
    ]
    assert np.mean(hits) > 0.75  # chance: 0.1
    km = latent.cluster(model, method="kmeans", n_clusters=10)
    assert adjusted_rand_score(target, np.asarray(km)) > 0.3
    path = latent.interpolate(model, 0, 1, steps=4)
    assert list(path.columns[:2]) == ["t", "x0"] and path.shape == (4, 65)
    assert list(latent.reconstruct(model, digits[:50])["input"]) == [str(i) for i in range(50)]
    recon = latent.reconstruct(model, digits[:50]).drop(columns=["log_likelihood"])
    assert np.abs(recon.iloc[:, 1:].to_numpy() - digits[:50]).mean() < np.abs(digits[:50] - digits.mean(0)).mean()


def test_dimensions_that_carry_more_information_change_the_decoded_digit_more(digit_model) -> None:
    from scipy.stats import spearmanr

    model, _ = digit_model
    kl = model.fit_result.collapse.kl_per_dim
    spread = [latent.traverse(model, d, values=np.linspace(-2, 2, 5)).iloc[:, 1:].std(0).mean() for d in range(16)]
    assert spearmanr(kl, spread).statistic > 0.6  # measured 0.94
