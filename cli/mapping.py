"""``scivae map REFERENCE QUERY``: map query cells onto a trained reference (scArches surgery) and transfer labels.

Outputs (each written atomically; the inputs are only read)::

    OUT (-o, default QUERY.mapped.h5ad)   the query plus obsm["X_scivae"] (latent means, one row per query cell),
                                          and, when the reference was trained with labels, obs["scivae_prediction"]
                                          and obs["scivae_prediction_probability"] (the winning label's probability)
    MODEL_OUT (default OUT without .h5ad + .model/)   the query model folder (safetensors + JSON): the reference
                                          with the query's batches, usable with `scivae embed`

See :meth:`scivae.CellVAE.load_query_data` for what is trained and what stays frozen.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Annotated, Any

import typer

from scivae.errors import OutputError, ScivaeInputError
from scivae_cli.common import Accelerator, BatchSize, Threads, echo, set_threads
from scivae_cli.fit_output import check_writable

KEY = "X_scivae"
PREDICTION = "scivae_prediction"
PROBABILITY = "scivae_prediction_probability"


def add_predictions(adata: Any, model: Any) -> None:
    """``obs[PREDICTION]`` and ``obs[PROBABILITY]`` of a labelled model's cells (its own data), in ``obs`` order."""
    probs = model.predict(soft=True)
    adata.obs[PREDICTION] = probs.idxmax(axis=1).to_numpy()
    adata.obs[PROBABILITY] = probs.max(axis=1).to_numpy()


def default_out(query: Path) -> Path:
    """``QUERY.mapped.h5ad`` beside the query: ``stim.h5ad`` -> ``stim.mapped.h5ad``."""
    name = query.name[: -len(query.suffix)] if query.suffix else query.name
    return query.parent / f"{name}.mapped.h5ad"


def default_model_out(out: Path) -> Path:
    """The query model folder beside the output: ``mapped.h5ad`` -> ``mapped.model/``."""
    return out.parent / f"{out.name[: -len(out.suffix)] if out.suffix else out.name}.model"


def _check_outputs(query: Path, reference: Path, out: Path, model_out: Path) -> None:
    """Refuse outputs that would replace an input or a folder that is not a scivae model; writes nothing."""
    if out.suffix.lower() != ".h5ad":
        raise OutputError(f"-o {out}: the output is written as .h5ad; pass a path ending in .h5ad")
    if out.is_dir():
        raise OutputError(f"-o {out} is a folder: pass the path of a file to write")
    if out.resolve() == model_out.resolve():
        raise OutputError(f"--model-out {model_out} is the -o file: pass another folder")
    for path, what in ((out, "-o"), (model_out, "--model-out")):
        for source in (query, reference):
            if path.exists() and source.exists() and os.path.samefile(path, source):
                raise OutputError(f"{what} {path} is an input: pass another output path (inputs are never modified)")
    ref_r, model_r = reference.resolve(), model_out.resolve()
    if model_r == ref_r or ref_r in model_r.parents or model_r in ref_r.parents:
        raise OutputError(f"--model-out {model_out} would replace or sit inside the reference: pass another folder")
    if model_out.exists():
        if not model_out.is_dir():
            raise OutputError(f"--model-out {model_out} is an existing file: pass a folder path")
        if any(model_out.iterdir()) and not (model_out / "config.json").is_file():
            raise OutputError(
                f"--model-out {model_out} exists and is not a scivae model folder (it would be replaced): pass a new "
                "folder"
            )
    check_writable(out.parent, "-o")
    check_writable(model_out, "--model-out")


def map_query(
    reference: Annotated[
        Path,
        typer.Argument(help="Reference model folder (OUT/model of `scivae fit`, or OUT itself), with a batch key."),
    ],
    query: Annotated[Path, typer.Argument(help="Query cells: .h5ad/.zarr/10x .h5 or folder, raw counts.")],
    out: Annotated[
        Path | None, typer.Option("--out", "-o", help="Output .h5ad (default: QUERY.mapped.h5ad beside it).")
    ] = None,
    model_out: Annotated[
        Path | None, typer.Option(help="Query model folder (default: OUT without .h5ad, plus .model).")
    ] = None,
    batch_key: Annotated[
        str | None, typer.Option(help="obs column of the query's batch (default: the reference's batch key).")
    ] = None,
    layer: Annotated[
        str | None, typer.Option(help="Layer of the query holding raw counts (default: the reference's).")
    ] = None,
    max_epochs: Annotated[
        int | None, typer.Option(help="Maximum epochs of the query fit (default: the epoch rule of `scivae fit`).")
    ] = None,
    batch_size: BatchSize = None,
    seed: Annotated[int, typer.Option(help="Random seed of the query fit: the same seed gives the same result.")] = 0,
    accelerator: Accelerator = "auto",
    threads: Threads = 0,
) -> None:
    """Map query cells onto a trained reference: train only the query's new batch weights (everything else
    frozen), write the query with its latent (and transferred labels) and the query model."""
    from scivae.core.options import TrainingOptions, check_device, positive_int

    reference, query = Path(reference), Path(query)
    if not reference.exists():
        raise ScivaeInputError(f"{reference}: no such model folder; pass the folder written by `scivae fit`")
    if not query.exists():
        raise ScivaeInputError(f"{query}: no such file or folder; check the path")
    out = Path(out) if out is not None else default_out(query)
    model_out = Path(model_out) if model_out is not None else default_model_out(out)
    if max_epochs is not None:
        positive_int(max_epochs, "max_epochs")
    training: dict[str, Any] = {"seed": seed, "max_epochs": max_epochs, "accelerator": accelerator}
    if batch_size is not None:
        training["batch_size"] = batch_size
    TrainingOptions().replace(**training)  # bad values are refused before anything is read
    check_device(accelerator, "accelerator")
    _check_outputs(query, reference, out, model_out)
    set_threads(threads)

    from scivae._atomic import atomic_path
    from scivae.cells import CellVAE, read_anndata
    from scivae_cli.cells import _uns_safe

    ref_model = CellVAE.load(reference)
    adata = read_anndata(query)
    model = CellVAE.load_query_data(adata, ref_model, batch_key=batch_key, layer=layer)
    s = model.data_summary
    echo(
        f"query: {s['n_cells_input']} cells, new batches {', '.join(s['query_batches'])}; "
        f"{s['n_genes_zero_padded']} of the reference's {s['n_genes']} genes zero-padded"
    )
    model.fit(**training)
    assert model.fit_result is not None
    m = model.fit_result.metrics
    latent = model.get_latent()
    adata.obsm[KEY] = latent
    if model.labels is not None:
        add_predictions(adata, model)
    adata.uns["scivae"] = _uns_safe(
        {
            "key_added": KEY,
            "reference": str(reference),
            "model": str(model_out),
            "query_batches": s["query_batches"],
            "n_genes_zero_padded": s["n_genes_zero_padded"],
            "metrics": {k: v for k, v in m.items() if not isinstance(v, list)},
        }
    )
    from scivae_cli.write_errors import writing

    # a full disk or an unusable path is said in terms of the output named (see scivae_cli.write_errors)
    with writing(model_out, "--model-out"):
        model.save(model_out)
    with writing(out, "-o"), atomic_path(out) as tmp:
        adata.write_h5ad(tmp, compression="gzip")
    echo(
        f"trained {m.get('epochs_trained')} epochs (validation ELBO {m.get('elbo_validation', float('nan')):.2f}); "
        f"wrote {out} (obsm['{KEY}']" + (f", obs['{PREDICTION}']" if model.labels is not None else "") + ") and "
        f"{model_out}/"
    )
