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
from scivae_cli.common import Accelerator, Threads, set_threads
from scivae_cli.fit_output import check_writable

#: Below this many entries a file of only valid, distinct molecules is unremarkable.
FILTERED_MIN_ENTRIES = 20


def looks_filtered(metrics: dict[str, float], n_entries: int) -> bool:
    """Whether a generated file looks filtered: every entry valid and distinct (MOSES samples of any real model
    hold some invalid or repeated strings, and scivae generate keeps them by default)."""
    unique = metrics.get("unique@1000", math.nan) if n_entries <= 1000 else metrics.get("unique@10000", math.nan)
    return n_entries >= FILTERED_MIN_ENTRIES and metrics.get("valid") == 1.0 and unique == 1.0


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
    accelerator: Accelerator = "cpu",
    batch_size: int = typer.Option(512, "--batch-size", help="ChemNet batch size."),
    threads: Threads = 0,
) -> None:
    """MOSES metrics of generated molecules: valid, unique@k, Novelty, IntDiv, Filters, FCD, SNN, Frag, Scaf."""
    from scivae.core.options import check_device, positive_int
    from scivae.molecules.data import read_smiles_entries
    from scivae.molecules.metrics import ReferenceStats, compute_metrics, compute_reference_stats

    positive_int(batch_size, "batch_size")
    if n_jobs != -1:
        positive_int(n_jobs, "n_jobs")
    device = str(check_device(accelerator, "accelerator"))
    set_threads(threads)
    for target, flag in ((json_out, "--json"), (test_stats if test is not None else None, "--test-stats")):
        if target is not None:
            check_writable(Path(target).parent, flag)
    # one --column for all three files, which may mix .smi and .csv: it is ignored for .smi files
    gen_smiles = read_smiles_entries(gen, column, what="generated", strict_column=False)
    train_smiles = None
    if train is not None:
        train_smiles = read_smiles_entries(train, column, what="training", strict_column=False)
    reference: list[str] | ReferenceStats | None = None
    if test is not None:
        reference = read_smiles_entries(test, column, what="test", strict_column=False)
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
    if looks_filtered(result, len(gen_smiles)):
        typer.echo(
            f"warning: all {len(gen_smiles)} entries are valid and distinct: if the file was filtered (scivae "
            "generate --valid-only/--unique), validity and uniqueness are overstated, since MOSES counts every "
            "generated string; generate without those options for figures that compare with MOSES",
            err=True,
        )
    typer.echo(format_table(result))
    if json_out is not None:
        clean = {k: (None if math.isnan(v) else float(v)) for k, v in result.items()}
        from scivae_cli.write_errors import writing

        with writing(json_out, "--json"):
            write_text_atomic(json_out, json.dumps(clean, indent=2) + "\n")
        typer.echo(f"wrote {json_out}", err=True)
