"""``scivae de MODEL DATA --groupby COL --group1 A [--group2 B]``: differential expression with a trained cell model.

Writes one CSV row per gene (the table of :meth:`scivae.CellVAE.differential_expression`, most likely
differentially expressed first) and prints the top genes. Bad input (a missing column or group, a wrong path)
is one ``error:`` line and exit code 2, as for ``scivae fit``.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Annotated

import typer

from scivae.errors import ScivaeInputError
from scivae_cli.common import Accelerator, Seed, Threads, echo, set_threads
from scivae_cli.fit_output import check_writable

#: Genes listed on the terminal after the table is written.
TOP_SHOWN = 10


def default_out(data: Path) -> Path:
    """``DATA.de.csv`` beside the input (``ifnb.h5ad`` -> ``ifnb.de.csv``)."""
    name = data.name[: -len(data.suffix)] if data.suffix else data.name
    return data.parent / f"{name}.de.csv"


def de(
    model_dir: Annotated[Path, typer.Argument(help="Model folder (OUT/model from `scivae fit`, or OUT itself).")],
    data: Annotated[Path, typer.Argument(help="Cells (.h5ad/.zarr/10x) with the model's genes and the groups in obs.")],
    groupby: Annotated[str, typer.Option("--groupby", help="obs column of the groups (e.g. cell_type, condition).")],
    group1: Annotated[
        list[str], typer.Option("--group1", help="Group tested (a value of the column; repeat to pool several).")
    ],
    group2: Annotated[
        list[str] | None,
        typer.Option("--group2", help="Group compared against (repeatable; default: every other cell)."),
    ] = None,
    out: Annotated[
        Path | None, typer.Option("--out", "-o", help="Output CSV (default: DATA.de.csv beside it).")
    ] = None,
    mode: Annotated[str, typer.Option(help="change (|log2 fold change| > delta) or vanilla (P(scale1 > scale2)).")] = (
        "change"
    ),
    delta: Annotated[float, typer.Option(help="Smallest |log2 fold change| that counts as a change.")] = 0.25,
    batch_correction: Annotated[
        bool,
        typer.Option("--batch-correction", help="Decode every cell under every training batch and average."),
    ] = False,
    n_samples: Annotated[int, typer.Option(help="Posterior draws of the expression of each group.")] = 5000,
    fdr_target: Annotated[float, typer.Option(help="Posterior expected FDR of the is_de_fdr_* calls.")] = 0.05,
    layer: Annotated[str | None, typer.Option(help="Layer of DATA holding raw counts (default: the model's).")] = None,
    seed: Seed = 0,
    accelerator: Accelerator = "auto",
    threads: Threads = 0,
) -> None:
    """Differential expression between two groups of cells, from a trained cell model (scvi-tools' change mode):
    per gene the posterior log2 fold change, P(DE), the Bayes factor and the calls at a target FDR."""
    from scivae.core.options import check_device

    data = Path(data)
    out = Path(out) if out is not None else default_out(data)
    if out.exists() and data.exists() and os.path.samefile(out, data):
        raise ScivaeInputError(f"-o {out} is the input file: pass another output path (inputs are never modified)")
    if out.is_dir():
        raise ScivaeInputError(f"-o {out} is a folder: pass the path of a CSV file")
    check_writable(out.parent, "-o")
    set_threads(threads)
    device = check_device(accelerator, "accelerator")
    from scivae._atomic import write_text_atomic
    from scivae.cells import CellVAE, read_anndata

    model = CellVAE.load(model_dir)
    model.module.to(device)
    adata = read_anndata(data)
    table = model.differential_expression(
        adata,
        groupby=groupby,
        group1=group1[0] if len(group1) == 1 else group1,
        group2=None if not group2 else (group2[0] if len(group2) == 1 else group2),
        mode=mode,
        delta=delta,
        batch_correction=batch_correction,
        n_samples=n_samples,
        fdr_target=fdr_target,
        seed=0 if seed is None else seed,
        layer=layer,
    )
    write_text_atomic(out, table.to_csv(index_label="gene"))
    comparison = table["comparison"].iloc[0]
    calls = f"is_de_fdr_{fdr_target}"
    if calls in table:
        echo(f"{comparison}: {int(table[calls].sum())} of {len(table)} genes DE at expected FDR <= {fdr_target}")
    for gene, row in table.head(TOP_SHOWN).iterrows():
        proba = row["proba_de"] if "proba_de" in row else row["proba_m1"]
        echo(f"  {gene:<14} log2 FC {row['lfc_mean']:+6.2f}   P {proba:.3f}   Bayes factor {row['bayes_factor']:6.2f}")
    echo(f"wrote {out}")
