"""``scivae evaluate``: MOSES metrics of a file of generated SMILES.

Registered by ``cli/main.py`` as ``scivae evaluate GEN [--train TRAIN] [--test TEST] [--json OUT]``. The
generated file is read as it is, one entry per line (or CSV row): invalid and empty strings are kept so that
they count against ``valid``.
"""

from __future__ import annotations

import json
import math
import warnings
from pathlib import Path

import typer

from scivae._atomic import write_text_atomic
from scivae.errors import ScivaeInputError

_LINE_SUFFIXES = (".smi", ".txt", ".smi.gz", ".txt.gz")
_CSV_SUFFIXES = (".csv", ".csv.gz")
_COLUMNS = ("SMILES", "smiles", "Smiles", "canonical_smiles", "CANONICAL_SMILES")


def _suffix(path: Path) -> str:
    name = path.name.lower()
    for suf in _LINE_SUFFIXES + _CSV_SUFFIXES:
        if name.endswith(suf):
            return suf
    return path.suffix.lower()


def read_smiles_entries(path: Path, column: str | None = None, what: str = "SMILES") -> list[str]:
    """Read every entry of a SMILES file as written (no parsing): one string per line or CSV row.

    ``.smi``/``.txt`` (optionally gzipped): the SMILES is the first whitespace-separated field, a first line
    ``SMILES`` is a header, an empty line is an empty entry (trailing empty lines are ignored).
    ``.csv``/``.csv.gz``: the column ``column`` (default ``SMILES``/``smiles``, or the only column).

    Raises
    ------
    ScivaeInputError
        Missing file, unsupported suffix, missing column or no entry at all.
    """
    path = Path(path)
    if not path.exists():
        raise ScivaeInputError(f"{what} file {path} does not exist: check the path")
    if path.is_dir():
        raise ScivaeInputError(f"{what} file {path} is a directory: give a .smi, .txt, .csv or .csv.gz file")
    suf = _suffix(path)
    if suf in _CSV_SUFFIXES:
        entries = _read_csv(path, column)
    elif suf in _LINE_SUFFIXES:
        entries = _read_lines(path)  # --column only concerns CSV files
    else:
        raise ScivaeInputError(
            f"{path.name}: unsupported file type {suf or '(none)'}; give a .smi, .txt, .csv or .csv.gz file"
        )
    if not entries:
        raise ScivaeInputError(f"{what} file {path} holds no SMILES: give one SMILES per line")
    return entries


def _read_lines(path: Path) -> list[str]:
    import gzip

    try:
        if path.name.lower().endswith(".gz"):
            with gzip.open(path, "rt", encoding="utf-8", errors="replace") as fh:
                lines = fh.read().splitlines()
        else:
            lines = path.read_text(encoding="utf-8", errors="replace").splitlines()
    except (OSError, EOFError) as exc:
        raise ScivaeInputError(f"cannot read {path} ({type(exc).__name__}): check the file") from exc
    while lines and not lines[-1].strip():
        lines.pop()
    if lines and lines[0].strip().lower() in ("smiles", "canonical_smiles"):
        lines = lines[1:]
    return [ln.split()[0] if ln.strip() else "" for ln in lines]


def _read_csv(path: Path, column: str | None) -> list[str]:
    import pandas as pd

    try:
        df = pd.read_csv(path, dtype=str, keep_default_na=False)
    except pd.errors.EmptyDataError as exc:
        raise ScivaeInputError(f"{path} is empty: give a CSV file with a header and a SMILES column") from exc
    except (pd.errors.ParserError, UnicodeDecodeError, OSError, EOFError) as exc:
        raise ScivaeInputError(f"cannot read {path} as CSV ({type(exc).__name__}): check the file") from exc
    if column is None:
        found = [c for c in _COLUMNS if c in df.columns]
        if found:
            column = found[0]
        elif len(df.columns) == 1:
            column = str(df.columns[0])
        else:
            cols = ", ".join(map(str, df.columns[:8]))
            raise ScivaeInputError(f"{path.name} has no SMILES column (columns: {cols}): name it with --column")
    elif column not in df.columns:
        cols = ", ".join(map(str, df.columns[:8]))
        raise ScivaeInputError(f"{path.name} has no column {column!r} (columns: {cols}): fix --column")
    return [v.strip() for v in df[column].tolist()]


def format_table(metrics: dict[str, float]) -> str:
    """A two-column text table of the metrics (NaN shown as ``n/a``)."""
    width = max(len(k) for k in metrics)
    lines = [f"{'metric':<{width}}  value", f"{'-' * width}  ------"]
    for key, value in metrics.items():
        shown = "n/a" if value is None or math.isnan(value) else f"{value:.4f}"
        lines.append(f"{key:<{width}}  {shown}")
    return "\n".join(lines)


def evaluate(
    gen: Path = typer.Argument(..., help="Generated SMILES (.smi/.txt/.csv/.csv.gz); invalid entries count."),
    train: Path = typer.Option(None, "--train", help="Training SMILES, for Novelty."),
    test: Path = typer.Option(None, "--test", help="Test SMILES, for FCD/Test, SNN/Test, Frag/Test, Scaf/Test."),
    json_out: Path = typer.Option(None, "--json", help="Write the figures to this JSON file (MOSES key names)."),
    test_stats: Path = typer.Option(
        None,
        "--test-stats",
        help="With --test: save the test-set statistics here (.npz); without --test: reuse them from here.",
    ),
    column: str = typer.Option(None, "--column", help="CSV column holding the SMILES (default SMILES)."),
    train_is_canonical: bool = typer.Option(
        False,
        "--train-is-canonical",
        help="Trust --train to hold RDKit canonical SMILES (skips canonicalising it; much faster on big sets).",
    ),
    n_jobs: int = typer.Option(1, "--n-jobs", help="Worker processes for RDKit (-1: all cores)."),
    device: str = typer.Option("cpu", "--device", help="Torch device for ChemNet (FCD) and Tanimoto."),
    batch_size: int = typer.Option(512, "--batch-size", help="ChemNet batch size."),
) -> None:
    """MOSES metrics of generated molecules: valid, unique@k, Novelty, IntDiv, Filters, FCD, SNN, Frag, Scaf."""
    from scivae.molecules.metrics import ReferenceStats, compute_metrics, compute_reference_stats

    if batch_size < 1:
        raise ScivaeInputError(f"--batch-size must be a positive integer, got {batch_size}")
    gen_smiles = read_smiles_entries(gen, column, "generated")
    train_smiles = read_smiles_entries(train, column, "training") if train is not None else None
    reference: list[str] | ReferenceStats | None = None
    if test is not None:
        reference = read_smiles_entries(test, column, "test")
    elif test_stats is not None:
        reference = ReferenceStats.load(test_stats)
    typer.echo(f"evaluating {len(gen_smiles)} generated entries from {gen}", err=True)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        if isinstance(reference, list):
            typer.echo(f"computing test-set statistics ({len(reference)} molecules)", err=True)
            reference = compute_reference_stats(reference, n_jobs=n_jobs, device=device, batch_size=batch_size)
            if test_stats is not None:
                reference.save(test_stats)
                typer.echo(f"saved test-set statistics to {test_stats}", err=True)
        result = compute_metrics(
            gen_smiles,
            train_smiles,
            reference,
            n_jobs=n_jobs,
            device=device,
            batch_size=batch_size,
            train_is_canonical=train_is_canonical,
        )
    for w in caught:
        if issubclass(w.category, UserWarning):
            typer.echo(f"warning: {w.message}", err=True)
    typer.echo(format_table(result))
    if json_out is not None:
        clean = {k: (None if math.isnan(v) else float(v)) for k, v in result.items()}
        write_text_atomic(json_out, json.dumps(clean, indent=2) + "\n")
        typer.echo(f"wrote {json_out}", err=True)
