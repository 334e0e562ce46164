"""Run MOSES's own ``get_all_metrics`` (molsets 0.3.1) on files; called by ``metrics_vs_moses.py``.

Runs in the separate MOSES venv (``benchmarks/.venv-moses``, see ``metrics_vs_moses.py --help``), never in
scivae's. Two shims make molsets 0.3.1 import on current libraries without changing what it computes:
``rdkit.six`` (removed from RDKit; only ``iteritems`` is used, by the SA scorer) and ``DataFrame.append``
(removed in pandas 2; used once to join the MCF and PAINS tables).

Usage: python metrics_moses_runner.py GEN.txt TEST.txt TRAIN.csv.gz OUT.json N_JOBS
"""

from __future__ import annotations

import json
import sys
import time
import types


def _shims() -> None:
    six = types.ModuleType("rdkit.six")
    six.iteritems = lambda d: iter(d.items())  # type: ignore[attr-defined]
    sys.modules["rdkit.six"] = six
    import pandas as pd

    if not hasattr(pd.DataFrame, "append"):
        pd.DataFrame.append = lambda self, other, sort=False, **kw: pd.concat([self, other], sort=sort)


def _read_lines(path: str) -> list[str]:
    with open(path) as fh:
        return fh.read().split("\n")[:-1]  # one entry per line; empty lines are (invalid) entries


def main() -> None:
    gen_path, test_path, train_path, out_path, n_jobs = sys.argv[1:6]
    _shims()
    import moses
    import moses.metrics.metrics as mm
    import pandas as pd

    # No scaffold-test set: skip MOSES's default TestSF figures (and their pickled statistics).
    orig_get_dataset, orig_get_statistics = mm.get_dataset, mm.get_statistics
    mm.get_dataset = lambda split: None if split == "test_scaffolds" else orig_get_dataset(split)
    mm.get_statistics = lambda split: None if split == "test_scaffolds" else orig_get_statistics(split)

    gen = _read_lines(gen_path)
    test = _read_lines(test_path)
    train = pd.read_csv(train_path)["SMILES"].tolist()
    t0 = time.perf_counter()
    res = moses.get_all_metrics(gen, n_jobs=int(n_jobs), device="cpu", test=test, train=train)
    seconds = time.perf_counter() - t0
    out = {k: float(v) for k, v in res.items()}
    out["_seconds"] = seconds
    out["_moses_version"] = moses.__version__
    with open(out_path, "w") as fh:
        json.dump(out, fh, indent=1)


if __name__ == "__main__":
    main()
