"""MOSES metrics on hand-made sets whose answers are known (or recomputed independently with RDKit)."""

import math
import warnings

import numpy as np
import pytest
from rdkit import Chem, DataStructs
from rdkit.Chem import rdFingerprintGenerator

from scivae.errors import ScivaeInputError
from scivae.molecules import metrics as M

# Drug-like molecules with at least two rings each (so each has a Murcko scaffold that Scaf counts).
DRUGS = [
    "CC(=O)Nc1ccc(-c2ccccc2)cc1",
    "c1ccc2[nH]ccc2c1",
    "O=C(Nc1ccccc1)c1ccncc1",
    "Cc1ccc(Cn2ccnc2)cc1",
    "COc1ccc2c(c1)CCN2C(C)=O",
    "O=C1CCc2ccccc2N1",
    "Cc1nc2ccccc2s1",
    "CN1CCN(c2ccc(F)cc2)CC1",
    "O=S(=O)(Nc1ccccc1)c1ccccc1",
    "c1ccc(Oc2ccccc2)cc1",
    "CC1=CC(=O)c2ccccc2C1=O",
    "Clc1ccc(-c2nc3ccccc3o2)cc1",
]
# Small acyclic molecules, chemically far from DRUGS.
SMALL = ["CCO", "CCCN", "CC(C)O", "CCOC(C)=O", "CCCCCl", "CC(N)C(=O)O", "CCS", "OCCO", "CCCC=O", "CCNCC"]


def _tanimoto(a: str, b: str) -> float:
    gen = rdFingerprintGenerator.GetMorganGenerator(radius=2, fpSize=1024)
    fa, fb = (gen.GetFingerprint(Chem.MolFromSmiles(s)) for s in (a, b))
    return DataStructs.TanimotoSimilarity(fa, fb)


def test_valid_counts_unparsable_and_empty_strings():
    gen = ["CCO", "c1ccccc1", "C1CC", "", "not a smiles", "CC(=O)O"]
    assert M.fraction_valid(gen) == pytest.approx(0.5)
    assert M.remove_invalid(gen) == ["CCO", "c1ccccc1", "CC(=O)O"]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        assert M.compute_metrics(gen)["valid"] == pytest.approx(0.5)


def test_unique_counts_molecules_not_strings():
    # Three spellings of ethanol and benzene written two ways: 2 distinct molecules among 5.
    gen = ["CCO", "OCC", "C(C)O", "c1ccccc1", "C1=CC=CC=C1"]
    assert M.fraction_unique(gen) == pytest.approx(2 / 5)
    assert M.fraction_unique(gen, k=2) == pytest.approx(1 / 2)  # first 2: both ethanol
    with pytest.warns(UserWarning, match="unique@1000"):
        assert M.fraction_unique(gen, k=1000) == pytest.approx(2 / 5)
    with pytest.raises(ScivaeInputError):
        M.fraction_unique(["CCO", "xx"])


def test_unique_at_k_counts_only_valid_molecules():
    # MOSES: unique@k looks at the first k *valid* molecules.
    gen = ["xx", "CCO", "", "OCC", "CCN", "CCC"]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        res = M.compute_metrics(gen, k=(3,))
    assert res["unique@3"] == pytest.approx(2 / 3)  # CCO, OCC (same), CCN


def test_novelty_training_copies_and_canonicalisation():
    gen = ["CCO", "CCN", "c1ccccc1", "OCC", "invalid("]
    train = ["OCC", "C1=CC=CC=C1"]  # ethanol and a Kekule benzene: not canonical strings
    # distinct valid gen: ethanol, ethylamine, benzene; only ethylamine is new
    assert M.novelty(gen, train) == pytest.approx(1 / 3)
    # Trusting the strings (MOSES's behaviour) misses both copies.
    assert M.novelty(gen, train, train_is_canonical=True) == pytest.approx(1.0)
    assert M.novelty(gen, ["CCO", "c1ccccc1"], train_is_canonical=True) == pytest.approx(1 / 3)
    assert M.novelty(gen, M.canonical_train_set(train)) == pytest.approx(1 / 3)
    with pytest.raises(ScivaeInputError, match="training set"):
        M.canonical_train_set(["xx", "", "C1CC"])


def test_internal_diversity_identical_and_two_molecules():
    assert M.internal_diversity(["c1ccccc1O"] * 5) == pytest.approx(0.0, abs=1e-7)
    assert M.internal_diversity(["c1ccccc1O"] * 5, p=2) == pytest.approx(0.0, abs=1e-7)
    a, b = "CC(=O)Nc1ccc(O)cc1", "CCCCCCCl"
    t = _tanimoto(a, b)
    assert 0 < t < 0.5
    # all ordered pairs, self-pairs included: mean similarity (1 + 1 + 2t) / 4
    assert M.internal_diversity([a, b]) == pytest.approx((1 - t) / 2, abs=1e-6)
    assert M.internal_diversity([a, b], p=2) == pytest.approx(1 - math.sqrt((1 + t * t) / 2), abs=1e-6)


@pytest.mark.parametrize(
    ("smiles", "passes"),
    [
        ("CC(=O)Nc1ccc(O)cc1", True),
        ("C1CCCCCC1", True),  # 7-membered ring is fine
        ("C1CCCCCCC1", False),  # 8-membered ring
        ("C[N+](C)(C)C", False),  # charged
        ("CC(=O)[O-]", False),  # charged
        ("CC[Se]CC", False),  # disallowed atom
        ("CCCCI", False),  # iodine is not allowed
        ("C=CC#N", False),  # MCF1 alert (Michael acceptor nitrile)
        ("not a smiles", False),
    ],
)
def test_mol_passes_filters(smiles, passes):
    assert M.mol_passes_filters(smiles) is passes


def test_fraction_passes_filters():
    gen = ["CC(=O)Nc1ccc(O)cc1", "C1CCCCCCC1", "C[N+](C)(C)C", "c1ccccc1"]
    assert M.fraction_passes_filters(gen) == pytest.approx(0.5)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        assert M.compute_metrics(gen + ["xx"])["Filters"] == pytest.approx(0.5)  # invalid ones are excluded


def test_snn_frag_scaf_are_one_for_identical_sets_and_lower_otherwise():
    assert M.snn(DRUGS, DRUGS) == pytest.approx(1.0)
    assert M.frag_similarity(DRUGS, DRUGS) == pytest.approx(1.0)
    assert M.scaffold_similarity(DRUGS, DRUGS) == pytest.approx(1.0)
    assert M.snn(SMALL, DRUGS) < 0.4
    assert M.frag_similarity(DRUGS[:6], DRUGS[6:]) < 0.9
    assert M.scaffold_similarity(DRUGS[:6], DRUGS[6:]) < 0.5
    assert math.isnan(M.scaffold_similarity(SMALL, DRUGS))  # no ring, no scaffold: undefined as in MOSES


def test_snn_matches_a_direct_rdkit_computation():
    gen, test = DRUGS[:5] + SMALL[:3], DRUGS[5:] + SMALL[3:]
    expected = np.mean([max(_tanimoto(g, t) for t in test) for g in gen])
    assert M.snn(gen, test) == pytest.approx(expected, abs=1e-6)


def test_cos_similarity():
    assert M.cos_similarity({"a": 1, "b": 1}, {"a": 2}) == pytest.approx(1 / math.sqrt(2))
    assert M.cos_similarity({"a": 3}, {"b": 1}) == pytest.approx(0.0)
    assert math.isnan(M.cos_similarity({}, {"a": 1}))


def test_fragments_and_scaffold():
    assert sorted(M.fragments("CCOC(=O)c1ccccc1")) != ["CCOC(=O)c1ccccc1"]  # the ester bond is a BRICS bond
    assert M.scaffold("Cc1ccc(-c2ccccc2)cc1") == "c1ccc(-c2ccccc2)cc1"
    assert M.scaffold("Cc1ccccc1") is None  # one ring: below MOSES's 2-ring minimum


def test_fcd_zero_for_identical_sets_and_positive_for_different_ones():
    assert abs(M.fcd(DRUGS, DRUGS)) < 1e-3
    assert M.fcd(SMALL, DRUGS) > 5.0
    with pytest.warns(UserWarning, match="at least 2"):
        assert math.isnan(M.fcd(["CCO"], DRUGS))


def test_compute_metrics_keys_and_precomputed_test_stats(tmp_path):
    gen = DRUGS[:8] + SMALL[:4] + ["xx", ""]
    test = DRUGS[4:] + SMALL[2:]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        full = M.compute_metrics(gen, train=SMALL, test=test)
        assert list(full) == list(M.MOSES_KEYS)
        assert full["Novelty"] == pytest.approx(8 / 12)
        stats = M.compute_reference_stats(test)
        stats.save(tmp_path / "stats.npz")
        loaded = M.ReferenceStats.load(tmp_path / "stats.npz")
        assert loaded.n_molecules == len(test)
        again = M.compute_metrics(gen, train=SMALL, test=loaded)
        assert again == pytest.approx(full)
        no_test = M.compute_metrics(gen, train=SMALL)
        assert "FCD/Test" not in no_test and "Novelty" in no_test
        assert no_test == pytest.approx({k: v for k, v in full.items() if k in no_test})


def test_bad_input_raises_scivae_input_error(tmp_path):
    with pytest.raises(ScivaeInputError, match="no generated SMILES"):
        M.compute_metrics([])
    with pytest.raises(ScivaeInputError, match="test set"):
        M.compute_metrics(["CCO"], test=["xx", "C1CC"])
    with pytest.raises(ScivaeInputError, match="training set"):
        M.compute_metrics(["CCO"], train=["yy"])
    (tmp_path / "bad.npz").write_bytes(b"not an npz")
    with pytest.raises(ScivaeInputError, match="compute it again from the test molecules"):
        M.ReferenceStats.load(tmp_path / "bad.npz")


def test_no_valid_generated_molecule_gives_nan_not_a_crash():
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        res = M.compute_metrics(["xx", ""], train=SMALL, test=DRUGS)
    assert res["valid"] == 0.0
    assert all(math.isnan(v) for k, v in res.items() if k != "valid")


def test_parallel_workers_give_the_same_result():
    strings = (DRUGS + SMALL + ["xx", "C1CC"]) * 30  # 720 entries: more than one chunk of work
    assert M.fraction_valid(strings, n_jobs=2) == M.fraction_valid(strings, n_jobs=1)
    assert M.remove_invalid(strings, n_jobs=2) == M.remove_invalid(strings)
