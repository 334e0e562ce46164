"""MOSES metrics for generated molecules, computed with RDKit and ``fcd_torch``.

The definitions follow MOSES (Polykovskiy et al. 2020, ``molsets==0.3.1``, ``moses.get_all_metrics``) so
that figures can be compared with published tables; ``benchmarks/molecules/metrics_vs_moses.py`` checks the
agreement with MOSES's own code on the same samples.

* ``valid``: fraction of generated strings that RDKit parses (an empty string is invalid).
* ``unique@k``: among the first ``k`` valid molecules (canonical SMILES), the fraction that are distinct.
  With fewer than ``k`` valid molecules all of them are used and a warning is issued (as MOSES does).
* ``Novelty``: fraction of the distinct valid generated molecules that are not in the training set.
* ``IntDiv`` / ``IntDiv2``: ``1 - mean_i (mean_j T(i, j)^p)^(1/p)`` over all pairs of valid generated
  molecules (self-pairs and duplicates included), ``T`` the Tanimoto similarity of Morgan fingerprints
  (radius 2, 1024 bits), ``p = 1`` and ``p = 2``.
* ``Filters``: fraction of valid molecules with no ring of 8 or more atoms, no formal charge, only the atoms
  C, N, S, O, F, Cl, Br, H, and no match of the MCF and PAINS structural alerts (``data/``).
* ``FCD/Test``: Frechet ChemNet Distance between generated and test molecules.
* ``SNN/Test``: mean over generated molecules of the Tanimoto similarity to their nearest test molecule.
* ``Frag/Test`` / ``Scaf/Test``: cosine similarity of the BRICS-fragment (resp. Bemis-Murcko scaffold with at
  least two rings) count vectors of the generated and test sets.

Every metric except ``valid`` is computed on the valid generated molecules, duplicates included (as MOSES).
Test-side statistics can be computed once (:func:`compute_reference_stats`), saved and reused.
"""

from __future__ import annotations

import functools
import math
import os
import warnings
from collections import Counter
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from scivae._atomic import atomic_path
from scivae.errors import ScivaeInputError

__all__ = [
    "MOSES_KEYS",
    "ReferenceStats",
    "canonical_train_set",
    "compute_metrics",
    "compute_reference_stats",
    "cos_similarity",
    "fcd",
    "fraction_passes_filters",
    "fraction_unique",
    "fraction_valid",
    "frag_similarity",
    "fragments",
    "get_mol",
    "internal_diversity",
    "mol_passes_filters",
    "morgan_fingerprints",
    "novelty",
    "remove_invalid",
    "scaffold",
    "scaffold_similarity",
    "snn",
    "tanimoto_aggregate",
]

#: Key names of :func:`compute_metrics`'s result, in MOSES's spelling and order of the report.
MOSES_KEYS: tuple[str, ...] = (
    "valid",
    "unique@1000",
    "unique@10000",
    "Novelty",
    "IntDiv",
    "IntDiv2",
    "Filters",
    "FCD/Test",
    "SNN/Test",
    "Frag/Test",
    "Scaf/Test",
)

FP_RADIUS = 2
FP_BITS = 1024
ALLOWED_ATOMS = frozenset({"C", "N", "S", "O", "F", "Cl", "Br", "H"})
_DATA_DIR = Path(__file__).resolve().parent / "filters"
_STATS_FORMAT = "scivae-moses-reference-stats-v1"
_CHUNK = 512


# ----------------------------------------------------------------------------------------------------------
# Per-molecule chemistry (RDKit)
# ----------------------------------------------------------------------------------------------------------


def get_mol(smiles: Any) -> Any:
    """Parse a SMILES string with RDKit; return ``None`` for an empty or invalid string.

    An RDKit ``Mol`` passed in is returned unchanged.
    """
    from rdkit import Chem

    if not isinstance(smiles, str):
        return smiles
    if len(smiles) == 0:
        return None
    return Chem.MolFromSmiles(smiles)


@functools.lru_cache(maxsize=1)
def _morgan_generator() -> Any:
    from rdkit.Chem import rdFingerprintGenerator

    return rdFingerprintGenerator.GetMorganGenerator(radius=FP_RADIUS, fpSize=FP_BITS)


def _fingerprint(mol: Any) -> np.ndarray:
    return _morgan_generator().GetFingerprintAsNumPy(mol).astype(np.uint8, copy=False)


@functools.lru_cache(maxsize=1)
def _alert_patterns() -> tuple[Any, ...]:
    import csv

    from rdkit import Chem

    smarts: list[str] = []
    with open(_DATA_DIR / "mcf.csv", newline="") as fh:
        smarts += [row["smarts"] for row in csv.DictReader(fh)]
    with open(_DATA_DIR / "wehi_pains.csv", newline="") as fh:
        smarts += [row[0] for row in csv.reader(fh) if row]
    patterns = tuple(Chem.MolFromSmarts(s) for s in smarts)
    if any(p is None for p in patterns):  # would mean an RDKit regression; fail loudly, not silently pass
        raise RuntimeError("RDKit could not parse a MCF/PAINS SMARTS pattern in scivae/molecules/filters")
    return patterns


def mol_passes_filters(mol: Any, allowed: Iterable[str] | None = None) -> bool:
    """Whether a molecule passes MOSES's filters.

    Parameters
    ----------
    mol
        SMILES string or RDKit ``Mol``.
    allowed
        Allowed element symbols (default C, N, S, O, F, Cl, Br, H).

    Returns
    -------
    bool
        ``False`` for an invalid molecule, a ring of 8 or more atoms, a charged atom, a disallowed element
        or a match of any MCF or PAINS structural alert.
    """
    from rdkit import Chem

    allowed_set = ALLOWED_ATOMS if allowed is None else frozenset(allowed)
    mol = get_mol(mol)
    if mol is None:
        return False
    if any(len(ring) >= 8 for ring in mol.GetRingInfo().AtomRings()):
        return False
    atoms = mol.GetAtoms()
    if any(a.GetFormalCharge() != 0 for a in atoms):
        return False
    if any(a.GetSymbol() not in allowed_set for a in atoms):
        return False
    with_h = Chem.AddHs(mol)  # the PAINS SMARTS match explicit hydrogens
    if any(with_h.HasSubstructMatch(p) for p in _alert_patterns()):
        return False
    flat = Chem.MolToSmiles(mol, isomericSmiles=False)
    return bool(flat) and Chem.MolFromSmiles(flat) is not None


def fragments(mol: Any) -> list[str]:
    """SMILES of the BRICS fragments of a molecule (with their dummy attachment atoms), one per fragment."""
    from rdkit import Chem

    broken = Chem.FragmentOnBRICSBonds(get_mol(mol))
    return Chem.MolToSmiles(broken).split(".")


def scaffold(mol: Any, min_rings: int = 2) -> str | None:
    """Canonical SMILES of the Bemis-Murcko scaffold; ``None`` when it has fewer than ``min_rings`` rings."""
    from rdkit import Chem
    from rdkit.Chem.Scaffolds import MurckoScaffold

    try:
        scaf = MurckoScaffold.GetScaffoldForMol(get_mol(mol))
    except Exception:  # RDKit raises several types on odd molecules; MOSES treats all as "no scaffold"
        return None
    smi = Chem.MolToSmiles(scaf)
    if smi == "" or scaf.GetRingInfo().NumRings() < min_rings:
        return None
    return smi


# Work on chunks of SMILES in one process (or worker): parse once, compute everything needed.
_WANT_FP, _WANT_FRAG, _WANT_SCAF, _WANT_FILTERS = 1, 2, 4, 8


def _featurize_chunk(args: tuple[Sequence[str], int]) -> list[tuple | None]:
    from rdkit import Chem
    from rdkit.rdBase import BlockLogs

    smiles, want = args
    out: list[tuple | None] = []
    block = BlockLogs()  # noqa: F841 - silences RDKit's per-molecule messages while alive
    for s in smiles:
        mol = get_mol(s)
        if mol is None:
            out.append(None)
            continue
        can = Chem.MolToSmiles(mol)
        # MOSES computes everything from the canonical SMILES; re-parse it so atom order matches.
        reparsed = Chem.MolFromSmiles(can)
        if reparsed is not None:
            mol = reparsed
        out.append(
            (
                can,
                _fingerprint(mol) if want & _WANT_FP else None,
                fragments(mol) if want & _WANT_FRAG else None,
                scaffold(mol) if want & _WANT_SCAF else None,
                mol_passes_filters(mol) if want & _WANT_FILTERS else None,
            )
        )
    del block
    return out


def _resolve_jobs(n_jobs: int) -> int:
    if n_jobs is None or n_jobs == 0:
        return 1
    if n_jobs < 0:
        return max(1, os.cpu_count() or 1)
    return int(n_jobs)


def _map_chunks(func: Callable[[Any], list], items: Sequence[Any], want: int, n_jobs: int) -> list:
    chunks = [(items[i : i + _CHUNK], want) for i in range(0, len(items), _CHUNK)]
    n_jobs = _resolve_jobs(n_jobs)
    if n_jobs == 1 or len(chunks) <= 1:
        results = [func(c) for c in chunks]
    else:
        import multiprocessing

        with multiprocessing.get_context().Pool(min(n_jobs, len(chunks))) as pool:
            results = pool.map(func, chunks)
    return [r for chunk in results for r in chunk]


def _featurize(smiles: Sequence[str], want: int, n_jobs: int) -> list[tuple | None]:
    return _map_chunks(_featurize_chunk, list(smiles), want, n_jobs)


def _canonical_chunk(args: tuple[Sequence[str], int]) -> list[str | None]:
    from rdkit import Chem
    from rdkit.rdBase import BlockLogs

    block = BlockLogs()  # noqa: F841
    out = []
    for s in args[0]:
        mol = get_mol(s)
        out.append(None if mol is None else Chem.MolToSmiles(mol))
    del block
    return out


def _canonicalize(smiles: Sequence[str], n_jobs: int = 1) -> list[str | None]:
    return _map_chunks(_canonical_chunk, list(smiles), 0, n_jobs)


# ----------------------------------------------------------------------------------------------------------
# Set-level metrics
# ----------------------------------------------------------------------------------------------------------


def fraction_valid(gen: Sequence[str], n_jobs: int = 1) -> float:
    """Fraction of ``gen`` that RDKit parses into a molecule (empty strings are invalid)."""
    if len(gen) == 0:
        raise ScivaeInputError("no generated SMILES given: pass a non-empty list or file")
    can = _canonicalize(gen, n_jobs)
    return 1.0 - sum(c is None for c in can) / len(can)


def remove_invalid(gen: Sequence[str], n_jobs: int = 1) -> list[str]:
    """Canonical SMILES of the valid molecules of ``gen``, in order, duplicates kept."""
    return [c for c in _canonicalize(gen, n_jobs) if c is not None]


def fraction_unique(gen: Sequence[str], k: int | None = None, n_jobs: int = 1) -> float:
    """Fraction of distinct molecules among the first ``k`` of ``gen`` (unique@k).

    Parameters
    ----------
    gen
        Valid SMILES (call :func:`remove_invalid` first); any form, they are canonicalised.
    k
        Number of leading molecules to consider; ``None`` uses all. With fewer than ``k`` molecules all are
        used and a ``UserWarning`` says so (MOSES's behaviour).

    Raises
    ------
    ScivaeInputError
        When ``gen`` is empty or holds an invalid SMILES.
    """
    gen = list(gen[:k]) if k is not None else list(gen)
    can = _canonicalize(gen, n_jobs)
    if any(c is None for c in can):
        raise ScivaeInputError("invalid SMILES passed to fraction_unique: filter with remove_invalid first")
    return _unique_fraction(can, None if k is None else k)  # type: ignore[arg-type]


def _unique_fraction(canonical: Sequence[str], k: int | None) -> float:
    if k is not None and len(canonical) < k:
        warnings.warn(
            f"unique@{k}: only {len(canonical)} valid molecules, computed on all of them",
            UserWarning,
            stacklevel=3,
        )
    head = canonical[:k] if k is not None else canonical
    if len(head) == 0:
        raise ScivaeInputError("no valid generated molecule: unique@k needs at least one valid SMILES")
    return len(set(head)) / len(head)


def canonical_train_set(train: Iterable[str], n_jobs: int = 1, *, is_canonical: bool = False) -> frozenset[str]:
    """The set of canonical SMILES of the valid training molecules, for :func:`novelty`.

    Parameters
    ----------
    train
        Training SMILES.
    n_jobs
        Worker processes for canonicalisation.
    is_canonical
        Trust that ``train`` already holds RDKit canonical SMILES and skip re-canonicalising them (fast, and
        what MOSES does; a string written by another RDKit version may then be missed).

    Raises
    ------
    ScivaeInputError
        When ``train`` holds no valid molecule.
    """
    unique = list(dict.fromkeys(s for s in train if isinstance(s, str) and s))
    if is_canonical:
        if not unique or not any(get_mol(s) is not None for s in _first_parseable(unique)):
            raise ScivaeInputError("no valid molecule in the training set: give a file of valid SMILES")
        return frozenset(unique)
    can = {c for c in _canonicalize(unique, n_jobs) if c is not None}
    if not can:
        raise ScivaeInputError("no valid molecule in the training set: give a file of valid SMILES")
    return frozenset(can)


def _first_parseable(smiles: list[str]) -> Iterable[str]:
    # Stop at the first valid molecule: checking a whole 1.6M-line file would cost minutes.
    from rdkit.rdBase import BlockLogs

    block = BlockLogs()  # noqa: F841
    for s in smiles:
        if get_mol(s) is not None:
            yield s
            return


def novelty(
    gen: Sequence[str],
    train: Iterable[str] | frozenset[str],
    n_jobs: int = 1,
    *,
    train_is_canonical: bool = False,
) -> float:
    """Fraction of the distinct valid generated molecules that are not in the training set.

    Parameters
    ----------
    gen
        Generated SMILES (invalid ones are ignored).
    train
        Training SMILES, or the result of :func:`canonical_train_set` (a ``frozenset``, used as is).
    train_is_canonical
        See :func:`canonical_train_set`.
    """
    train_set = (
        train if isinstance(train, frozenset) else canonical_train_set(train, n_jobs, is_canonical=train_is_canonical)
    )
    gen_set = {c for c in _canonicalize(gen, n_jobs) if c is not None}
    if not gen_set:
        return math.nan
    return len(gen_set - train_set) / len(gen_set)


def morgan_fingerprints(mols: Sequence[Any], n_jobs: int = 1) -> np.ndarray:
    """Morgan fingerprints (radius 2, 1024 bits) as a ``uint8`` array ``[n, 1024]``.

    Raises
    ------
    ScivaeInputError
        On an invalid SMILES.
    """
    if mols and all(isinstance(m, str) for m in mols):
        feats = _featurize(mols, _WANT_FP, n_jobs)
        if any(f is None for f in feats):
            raise ScivaeInputError("invalid SMILES passed to morgan_fingerprints: filter with remove_invalid first")
        rows = [f[1] for f in feats]  # type: ignore[index]
    else:
        rows = []
        for m in mols:
            mol = get_mol(m)
            if mol is None:
                raise ScivaeInputError("invalid molecule passed to morgan_fingerprints")
            rows.append(_fingerprint(mol))
    if not rows:
        return np.zeros((0, FP_BITS), dtype=np.uint8)
    return np.vstack(rows)


def tanimoto_to(query: str, smiles: Sequence[str]) -> np.ndarray:
    """Tanimoto similarity of each molecule to ``query`` (Morgan radius 2, 1024 bits, as MOSES's SNN).

    Returns
    -------
    numpy.ndarray
        One float per entry of ``smiles``; NaN where a string is not a valid molecule.

    Raises
    ------
    ScivaeInputError
        When ``query`` is not a valid molecule.
    """
    from scivae.molecules.data import rdkit_quiet

    with rdkit_quiet():
        q = get_mol(query) if query else None
        if q is None:
            raise ScivaeInputError(f"{query!r} is not a valid SMILES: fix the query molecule")
        qf = _fingerprint(q).astype(bool)
        out = np.full(len(smiles), np.nan)
        for i, s in enumerate(smiles):
            mol = get_mol(s) if s else None
            if mol is None:
                continue
            f = _fingerprint(mol).astype(bool)
            union = int((qf | f).sum())
            out[i] = float((qf & f).sum()) / union if union else 1.0
    return out


def tanimoto_aggregate(
    ref_fps: np.ndarray,
    gen_fps: np.ndarray,
    agg: str = "max",
    p: float = 1,
    device: str = "cpu",
    batch_size: int = 5000,
) -> float:
    """Mean over generated molecules of their max (or power mean) Tanimoto similarity to the reference set.

    For each generated fingerprint ``g``: ``max_r T(r, g)`` (``agg="max"``) or ``(mean_r T(r, g)^p)^(1/p)``
    (``agg="mean"``); two all-zero fingerprints have similarity 1. Computed in blocks on ``device``.
    """
    import torch

    if agg not in ("max", "mean"):
        raise ValueError(f"agg must be 'max' or 'mean', got {agg!r}")
    n_gen = gen_fps.shape[0]
    if n_gen == 0 or ref_fps.shape[0] == 0:
        return math.nan
    acc = np.zeros(n_gen, dtype=np.float64)
    for i in range(0, n_gen, batch_size):
        y = torch.as_tensor(gen_fps[i : i + batch_size], device=device).float()
        y_sum = y.sum(1)
        for j in range(0, ref_fps.shape[0], batch_size):
            x = torch.as_tensor(ref_fps[j : j + batch_size], device=device).float()
            inter = x @ y.T
            sim = inter / (x.sum(1, keepdim=True) + y_sum[None, :] - inter)
            sim = torch.nan_to_num(sim, nan=1.0)
            if p != 1:
                sim = sim**p
            if agg == "max":
                acc[i : i + y.shape[0]] = np.maximum(acc[i : i + y.shape[0]], sim.max(0).values.cpu().numpy())
            else:
                acc[i : i + y.shape[0]] += sim.sum(0).double().cpu().numpy()
    if agg == "mean":
        acc /= ref_fps.shape[0]
    if p != 1:
        acc = acc ** (1.0 / p)
    return float(acc.mean())


def internal_diversity(gen: Sequence[Any] | np.ndarray, p: float = 1, device: str = "cpu", n_jobs: int = 1) -> float:
    """Internal diversity ``1 - mean_i (mean_j T(i, j)^p)^(1/p)`` over all pairs (IntDiv: p=1, IntDiv2: p=2).

    ``gen`` is a list of valid SMILES / molecules or a fingerprint array from :func:`morgan_fingerprints`.
    """
    fps = gen if isinstance(gen, np.ndarray) else morgan_fingerprints(list(gen), n_jobs)
    return 1.0 - tanimoto_aggregate(fps, fps, agg="mean", p=p, device=device)


def fraction_passes_filters(gen: Sequence[Any], n_jobs: int = 1) -> float:
    """Fraction of molecules that pass :func:`mol_passes_filters` (an invalid molecule fails)."""
    if len(gen) == 0:
        return math.nan
    if all(isinstance(m, str) for m in gen):
        feats = _featurize(gen, _WANT_FILTERS, n_jobs)
        return float(np.mean([f is not None and f[4] for f in feats]))
    return float(np.mean([mol_passes_filters(m) for m in gen]))


def cos_similarity(ref_counts: Mapping[str, int], gen_counts: Mapping[str, int]) -> float:
    """Cosine similarity of two count dictionaries (missing keys count 0); NaN if either is empty."""
    if not ref_counts or not gen_counts:
        return math.nan
    keys = sorted(set(ref_counts) | set(gen_counts))
    r = np.array([ref_counts.get(k, 0) for k in keys], dtype=np.float64)
    g = np.array([gen_counts.get(k, 0) for k in keys], dtype=np.float64)
    return float(r @ g / (np.linalg.norm(r) * np.linalg.norm(g)))


# ----------------------------------------------------------------------------------------------------------
# Reference (test-set) statistics and the metrics that use them
# ----------------------------------------------------------------------------------------------------------


@dataclass
class ReferenceStats:
    """Statistics of a reference (test) set, computed once by :func:`compute_reference_stats`.

    Attributes
    ----------
    n_molecules
        Number of valid reference molecules (duplicates kept).
    fcd_mu, fcd_sigma
        Mean and covariance of ChemNet activations (``None`` with fewer than 2 molecules).
    fingerprints
        Morgan fingerprints ``uint8 [n, 1024]``.
    fragments, scaffolds
        BRICS fragment and Murcko scaffold counts.
    """

    n_molecules: int
    fcd_mu: np.ndarray | None
    fcd_sigma: np.ndarray | None
    fingerprints: np.ndarray
    fragments: Counter
    scaffolds: Counter

    def save(self, path: str | os.PathLike[str]) -> None:
        """Write the statistics to an ``.npz`` file atomically (no pickled objects)."""
        arrays: dict[str, np.ndarray] = {
            "format": np.array(_STATS_FORMAT),
            "n_molecules": np.array(self.n_molecules, dtype=np.int64),
            "fingerprints": np.packbits(self.fingerprints, axis=1),
            "frag_keys": np.array(list(self.fragments), dtype=str),
            "frag_counts": np.array(list(self.fragments.values()), dtype=np.int64),
            "scaf_keys": np.array(list(self.scaffolds), dtype=str),
            "scaf_counts": np.array(list(self.scaffolds.values()), dtype=np.int64),
        }
        if self.fcd_mu is not None and self.fcd_sigma is not None:
            arrays["fcd_mu"] = self.fcd_mu
            arrays["fcd_sigma"] = self.fcd_sigma
        with atomic_path(path) as tmp:
            with open(tmp, "wb") as fh:
                np.savez_compressed(fh, **arrays)

    @classmethod
    def load(cls, path: str | os.PathLike[str]) -> ReferenceStats:
        """Read statistics written by :meth:`save`.

        Raises
        ------
        ScivaeInputError
            Missing file or not a scivae reference-statistics file.
        """
        path = Path(path)
        if not path.is_file():
            raise ScivaeInputError(
                f"{path} does not exist: compute the statistics of the test molecules first (compute_reference_stats"
                "(test).save(path), or scivae evaluate with {test} and {test_stats})",
                "test",
                "test_stats",
            )
        try:
            with np.load(path, allow_pickle=False) as z:
                if "format" not in z.files or str(z["format"]) != _STATS_FORMAT:
                    raise ScivaeInputError(
                        f"{path} is not a scivae test-statistics file: compute it again from the test molecules "
                        "({test} with {test_stats})",
                        "test",
                        "test_stats",
                    )
                fps = np.unpackbits(z["fingerprints"], axis=1)[:, :FP_BITS].astype(np.uint8)
                return cls(
                    n_molecules=int(z["n_molecules"]),
                    fcd_mu=z["fcd_mu"] if "fcd_mu" in z.files else None,
                    fcd_sigma=z["fcd_sigma"] if "fcd_sigma" in z.files else None,
                    fingerprints=fps,
                    fragments=Counter(dict(zip(z["frag_keys"].tolist(), z["frag_counts"].tolist(), strict=True))),
                    scaffolds=Counter(dict(zip(z["scaf_keys"].tolist(), z["scaf_counts"].tolist(), strict=True))),
                )
        except (OSError, ValueError, KeyError) as exc:
            if isinstance(exc, ScivaeInputError):
                raise
            raise ScivaeInputError(
                f"cannot read {path} ({type(exc).__name__}): compute it again from the test molecules "
                "({test} with {test_stats})",
                "test",
                "test_stats",
            ) from exc


@functools.lru_cache(maxsize=1)
def _fcd_model() -> Any:
    # fcd_torch ships the ChemNet weights in its wheel: nothing is downloaded.
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        from fcd_torch import FCD

        return FCD(device="cpu", n_jobs=1)


def _chemnet_stats(smiles: Sequence[str], device: str, batch_size: int) -> tuple[np.ndarray, np.ndarray] | None:
    if len(smiles) < 2:
        warnings.warn(f"FCD needs at least 2 molecules ({len(smiles)} given): reported as NaN", stacklevel=3)
        return None
    model = _fcd_model()
    model.device, model.batch_size, model.n_jobs = device, batch_size, 0
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        act = model.get_predictions(list(smiles))
    return act.mean(0), np.cov(act.T)


def _frechet(mu1: np.ndarray, sigma1: np.ndarray, mu2: np.ndarray, sigma2: np.ndarray) -> float:
    from fcd_torch.utils import calculate_frechet_distance

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return float(calculate_frechet_distance(mu1, sigma1, mu2, sigma2))


def _check_test(test: Sequence[str]) -> None:
    if len(test) == 0:
        raise ScivaeInputError("the test set is empty: give a file with one valid SMILES per line")


def compute_reference_stats(
    test: Sequence[str], n_jobs: int = 1, device: str = "cpu", batch_size: int = 512, *, fcd: bool = True
) -> ReferenceStats:
    """Compute the test-side statistics used by FCD, SNN, Frag and Scaf (once; reuse them across models).

    Invalid test SMILES are dropped with a warning.

    Raises
    ------
    ScivaeInputError
        When ``test`` holds no valid molecule.
    """
    _check_test(test)
    feats = [f for f in _featurize(test, _WANT_FP | _WANT_FRAG | _WANT_SCAF, n_jobs) if f is not None]
    if not feats:
        raise ScivaeInputError("no valid molecule in the test set: give a file of valid SMILES")
    if len(feats) < len(test):
        warnings.warn(f"{len(test) - len(feats)} invalid test SMILES ignored", UserWarning, stacklevel=2)
    return _stats_from_features(feats, device, batch_size, fcd=fcd)


def _stats_from_features(feats: list[tuple], device: str, batch_size: int, *, fcd: bool = True) -> ReferenceStats:
    frag: Counter = Counter()
    for f in feats:
        frag.update(f[2])
    scaf = Counter(f[3] for f in feats if f[3] is not None)
    chem = _chemnet_stats([f[0] for f in feats], device, batch_size) if fcd else None
    return ReferenceStats(
        n_molecules=len(feats),
        fcd_mu=None if chem is None else chem[0],
        fcd_sigma=None if chem is None else chem[1],
        fingerprints=np.vstack([f[1] for f in feats]).astype(np.uint8),
        fragments=frag,
        scaffolds=scaf,
    )


def _reference(
    ref: Sequence[str] | ReferenceStats, n_jobs: int, device: str, batch_size: int, *, fcd: bool = True
) -> ReferenceStats:
    if isinstance(ref, ReferenceStats):
        return ref
    return compute_reference_stats(ref, n_jobs, device, batch_size, fcd=fcd)


def _gen_stats(gen: Sequence[str], n_jobs: int, device: str, batch_size: int, fcd: bool) -> ReferenceStats:
    feats = [f for f in _featurize(gen, _WANT_FP | _WANT_FRAG | _WANT_SCAF, n_jobs) if f is not None]
    if not feats:
        raise ScivaeInputError("no valid generated molecule: nothing to compare with the test set")
    return _stats_from_features(feats, device, batch_size, fcd=fcd)


def fcd(
    gen: Sequence[str],
    test: Sequence[str] | ReferenceStats,
    device: str = "cpu",
    batch_size: int = 512,
    n_jobs: int = 1,
) -> float:
    """Frechet ChemNet Distance between the valid molecules of ``gen`` and ``test`` (or its statistics)."""
    ref = _reference(test, n_jobs, device, batch_size)
    valid = remove_invalid(gen, n_jobs)
    chem = _chemnet_stats(valid, device, batch_size)
    if chem is None or ref.fcd_mu is None or ref.fcd_sigma is None:
        return math.nan
    return _frechet(ref.fcd_mu, ref.fcd_sigma, chem[0], chem[1])


def snn(gen: Sequence[str], test: Sequence[str] | ReferenceStats, device: str = "cpu", n_jobs: int = 1) -> float:
    """Mean Tanimoto similarity of each valid generated molecule to its nearest test molecule (SNN/Test)."""
    ref = _reference(test, n_jobs, device, 512, fcd=False)
    g = _gen_stats(gen, n_jobs, device, 512, fcd=False)
    return tanimoto_aggregate(ref.fingerprints, g.fingerprints, agg="max", device=device)


def frag_similarity(gen: Sequence[str], test: Sequence[str] | ReferenceStats, n_jobs: int = 1) -> float:
    """Cosine similarity of BRICS fragment counts of ``gen`` (valid molecules) and ``test`` (Frag/Test)."""
    ref = _reference(test, n_jobs, "cpu", 512, fcd=False)
    return cos_similarity(ref.fragments, _gen_stats(gen, n_jobs, "cpu", 512, fcd=False).fragments)


def scaffold_similarity(gen: Sequence[str], test: Sequence[str] | ReferenceStats, n_jobs: int = 1) -> float:
    """Cosine similarity of Murcko scaffold counts of ``gen`` (valid molecules) and ``test`` (Scaf/Test)."""
    ref = _reference(test, n_jobs, "cpu", 512, fcd=False)
    return cos_similarity(ref.scaffolds, _gen_stats(gen, n_jobs, "cpu", 512, fcd=False).scaffolds)


# ----------------------------------------------------------------------------------------------------------
# Everything at once
# ----------------------------------------------------------------------------------------------------------


def compute_metrics(
    gen: Sequence[str],
    train: Sequence[str] | frozenset[str] | None = None,
    test: Sequence[str] | ReferenceStats | None = None,
    n_jobs: int = 1,
    device: str = "cpu",
    batch_size: int = 512,
    *,
    k: Sequence[int] = (1000, 10000),
    train_is_canonical: bool = False,
) -> dict[str, float]:
    """All MOSES metrics of a generated set, keyed by MOSES's names (see :data:`MOSES_KEYS`).

    Parameters
    ----------
    gen
        Generated SMILES, invalid and empty strings included (they count against ``valid``).
    train
        Training SMILES (or :func:`canonical_train_set`); ``None`` leaves out ``Novelty``.
    test
        Test SMILES or :class:`ReferenceStats` from :func:`compute_reference_stats`; ``None`` leaves out
        ``FCD/Test``, ``SNN/Test``, ``Frag/Test`` and ``Scaf/Test``.
    n_jobs
        Worker processes for the RDKit work (``-1``: all cores).
    device
        Torch device for ChemNet (FCD) and the Tanimoto matrices, e.g. ``"cpu"`` or ``"cuda:0"``.
    batch_size
        ChemNet batch size.
    k
        Values for ``unique@k``.
    train_is_canonical
        Trust the training SMILES to be RDKit canonical (skip canonicalising them; MOSES's behaviour).

    Returns
    -------
    dict
        Metric name to value (``float``; NaN where undefined, e.g. no valid molecule).

    Raises
    ------
    ScivaeInputError
        Empty ``gen``, or no valid molecule in ``train`` / ``test``.
    """
    if len(gen) == 0:
        raise ScivaeInputError("no generated SMILES given: pass a non-empty list or file")
    want = _WANT_FP | _WANT_FILTERS | ((_WANT_FRAG | _WANT_SCAF) if test is not None else 0)
    feats_all = _featurize(gen, want, n_jobs)
    feats = [f for f in feats_all if f is not None]
    out: dict[str, float] = {"valid": 1.0 - (len(feats_all) - len(feats)) / len(feats_all)}
    # Check the reference sets before the slow gen-side work, so bad input fails fast.
    ref = _reference(test, n_jobs, device, batch_size) if test is not None else None
    train_set = None
    if train is not None:
        train_set = (
            train
            if isinstance(train, frozenset)
            else canonical_train_set(train, n_jobs, is_canonical=train_is_canonical)
        )
    canonical = [f[0] for f in feats]
    for kk in k:
        if canonical:
            out[f"unique@{kk}"] = _unique_fraction(canonical, kk)
        else:
            out[f"unique@{kk}"] = math.nan
    if train_set is not None:
        distinct = set(canonical)
        out["Novelty"] = len(distinct - train_set) / len(distinct) if distinct else math.nan
    if feats:
        g = _stats_from_features(feats, device, batch_size, fcd=ref is not None)
        out["IntDiv"] = 1.0 - tanimoto_aggregate(g.fingerprints, g.fingerprints, agg="mean", p=1, device=device)
        out["IntDiv2"] = 1.0 - tanimoto_aggregate(g.fingerprints, g.fingerprints, agg="mean", p=2, device=device)
        out["Filters"] = float(np.mean([f[4] for f in feats]))
    else:
        warnings.warn("no valid generated molecule: only 'valid' is defined", UserWarning, stacklevel=2)
        g = None
        out.update({"IntDiv": math.nan, "IntDiv2": math.nan, "Filters": math.nan})
    if ref is not None:
        if g is None:
            out.update({"FCD/Test": math.nan, "SNN/Test": math.nan, "Frag/Test": math.nan, "Scaf/Test": math.nan})
        else:
            if g.fcd_mu is None or ref.fcd_mu is None or ref.fcd_sigma is None or g.fcd_sigma is None:
                out["FCD/Test"] = math.nan
            else:
                out["FCD/Test"] = _frechet(ref.fcd_mu, ref.fcd_sigma, g.fcd_mu, g.fcd_sigma)
            out["SNN/Test"] = tanimoto_aggregate(ref.fingerprints, g.fingerprints, agg="max", device=device)
            out["Frag/Test"] = cos_similarity(ref.fragments, g.fragments)
            out["Scaf/Test"] = cos_similarity(ref.scaffolds, g.scaffolds)
    order = {key: i for i, key in enumerate(MOSES_KEYS)}
    return dict(sorted(out.items(), key=lambda kv: order.get(kv[0], len(order))))
