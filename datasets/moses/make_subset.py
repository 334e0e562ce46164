"""Rebuild the committed MOSES subsets from the original files (kept for provenance, not run by tests).

Usage::

    python datasets/moses/make_subset.py /path/to/moses/dataset/data

where the folder holds ``train.csv.gz`` and ``test.csv.gz`` from ``molsets==0.3.1``
(``pip download --no-deps molsets==0.3.1`` and unzip the wheel). The MOSES files are ordered (similar
molecules are adjacent), so the subsets are uniform random samples drawn with a fixed seed, written in the
original file order, byte-reproducibly (gzip mtime 0).
"""

from __future__ import annotations

import gzip
import sys
from pathlib import Path

import numpy as np

SIZES = {"train": 50_000, "test": 10_000}
SEED = 20240


def main(src: Path, dst: Path) -> None:
    for split, n in SIZES.items():
        with gzip.open(src / f"{split}.csv.gz", "rt") as fh:
            lines = fh.read().splitlines()
        header, rows = lines[0], lines[1:]
        rng = np.random.default_rng(SEED)
        idx = np.sort(rng.choice(len(rows), size=n, replace=False))
        text = header + "\n" + "\n".join(rows[i] for i in idx) + "\n"
        with (
            open(dst / f"{split}.csv.gz", "wb") as raw,
            gzip.GzipFile(fileobj=raw, mode="wb", mtime=0, compresslevel=9) as gz,
        ):
            gz.write(text.encode())
        print(f"{split}: {n} of {len(rows)} molecules")


if __name__ == "__main__":
    main(Path(sys.argv[1]), Path(__file__).resolve().parent)
