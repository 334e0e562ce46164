"""Fuzz benchmark: corrupted copies of a valid ``.h5ad``, ``.smi`` and model folder through the real commands.

From the repository root, in scivae's venv::

    python -m benchmarks.reliability.fuzz --seeds 200          # 200 seeds per kind and mode
    python -m benchmarks.reliability.fuzz --seeds 5 --results /tmp/fuzz   # a quick look

For each kind (``h5ad``: ``scivae fit`` in memory; ``backed``: ``scivae fit --backed``; ``smi``: ``scivae fit`` of
a SMILES file; ``model``: one file of a trained molecule model folder, then ``scivae generate`` and
``scivae.load``) and each mode (``overwrite``: 1-5 runs of random bytes; ``truncate``: the file cut at a random
length), seeds 0 to N-1 are run in one child process (:func:`benchmarks.reliability.fuzzing.run_cases`:
restarted after a crash, killed after ``--case-timeout`` seconds of one case). The contract: no crash, no hang, no
traceback, exit code 0, 1 or 2, and ``scivae.load`` raises only :class:`~scivae.errors.ScivaeInputError`.

Writes ``results/fuzz.json`` (``--results DIR``): counts per kind and mode, every finding, the machine, the
command and the seconds taken.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from pathlib import Path

from benchmarks.cells._common import machine, save_json
from benchmarks.reliability.fuzzing import KINDS, MODES, build_assets, findings, run_cases, tally

RESULTS = Path(__file__).resolve().parent / "results"


def main(argv: list[str] | None = None) -> None:
    """Run the fuzz pass and write ``fuzz.json``."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--seeds", type=int, default=200, help="seeds per kind and mode")
    parser.add_argument("--kinds", nargs="+", default=list(KINDS), choices=KINDS)
    parser.add_argument("--modes", nargs="+", default=list(MODES), choices=MODES)
    parser.add_argument("--case-timeout", type=float, default=120.0, help="seconds one case may take")
    parser.add_argument("--results", type=Path, default=RESULTS)
    args = parser.parse_args(argv)
    start = time.perf_counter()
    counts: dict[str, dict[str, dict[str, int]]] = {}
    found: list[dict] = []
    with tempfile.TemporaryDirectory(prefix="scivae_fuzz_") as tmp:
        assets = build_assets(Path(tmp) / "assets")
        for kind in args.kinds:
            for mode in args.modes:
                work = Path(tmp) / f"{kind}_{mode}"
                work.mkdir()
                t = time.perf_counter()
                cases = [(kind, mode, seed) for seed in range(args.seeds)]
                results = run_cases(assets, cases, work, case_timeout=args.case_timeout)
                counts.setdefault(kind, {})[mode] = tally(results)
                found += [{"kind": kind, "mode": mode, **r} for r in findings(results)]
                print(f"{kind:8s} {mode:9s} {counts[kind][mode]} ({time.perf_counter() - t:.0f} s)", flush=True)
    total = {key: sum(c[key] for by_mode in counts.values() for c in by_mode.values()) for key in tally([])}
    out = {
        "counts": counts,
        "total": total,
        "findings": found,
        "seeds_per_kind_and_mode": args.seeds,
        "case_timeout_s": args.case_timeout,
        "machine": {**machine(), "load_average_at_end": list(os.getloadavg())},
        "command": "python -m benchmarks.reliability.fuzz " + " ".join(sys.argv[1:] if argv is None else argv),
        "seconds": round(time.perf_counter() - start, 1),
    }
    args.results.mkdir(parents=True, exist_ok=True)
    save_json(out, args.results / "fuzz.json")
    print(json.dumps(total))
    print(f"{len(found)} findings; wrote {args.results / 'fuzz.json'} in {out['seconds']:.0f} s")


if __name__ == "__main__":
    main()
