"""``scivae fit CELLS`` and ``scivae embed``: the single-cell commands.

Outputs of ``fit`` (one folder, written atomically: complete or absent)::

    OUT/model/           the trained model (model.safetensors + config.json)
    OUT/embedded.h5ad    the input plus obsm["X_scivae"] (one row per input cell) and uns["scivae"]
    OUT/metrics.json     final train/validation ELBO, reconstruction, KL, active units, time, data summary
    OUT/history.csv      one row per epoch
    OUT/training_curves.png, OUT/kl_per_dim.png, OUT/rate_distortion.png
    OUT/latent_umap.png  UMAP of the latent, coloured by its Leiden clusters (and the batch)

The input file is only read.
"""

from __future__ import annotations

import json
import os
from datetime import timedelta
from pathlib import Path
from typing import Annotated, Any

import typer

from scivae._atomic import atomic_dir, atomic_path
from scivae.errors import ScivaeInputError

KEY = "X_scivae"


def _echo(message: str) -> None:
    typer.echo(message, err=True)


def default_out(data: Path) -> Path:
    """``DATA.scivae`` beside the input: ``pbmc.h5ad`` -> ``pbmc.scivae/``, a 10x folder -> ``folder.scivae/``."""
    data = Path(data)
    name = data.name[: -len(data.suffix)] if data.suffix else data.name
    return data.parent / f"{name}.scivae"


def _check_out(out: Path, data: Path) -> None:
    """Refuse an output folder that holds the input or unrelated files (it is replaced as a whole)."""
    out_r, data_r = out.resolve(), data.resolve()
    if out_r == data_r or out_r in data_r.parents:
        raise ScivaeInputError(f"--out {out} would contain or replace the input {data}: pass another folder")
    if out.exists():
        if not out.is_dir():
            raise ScivaeInputError(f"--out {out} is an existing file: pass a folder path")
        ours = (out / "model" / "config.json").exists() or (out / "metrics.json").exists()
        if any(out.iterdir()) and not ours:
            raise ScivaeInputError(
                f"--out {out} exists and is not a scivae output folder (it would be replaced): pass a new folder"
            )


def _uns_safe(d: dict[str, Any]) -> dict[str, Any]:
    from scivae.tl import _jsonable

    return _jsonable(json.loads(json.dumps(d, default=str)))


def fit_cells(
    data: Path,
    *,
    out: Path | None = None,
    layer: str | None = None,
    batch_key: str | None = None,
    likelihood: str = "nb",
    n_latent: int | None = None,
    n_top_genes: int | None = None,
    max_epochs: int | None = None,
    max_time: float | None = None,
    batch_size: int | None = None,
    kl_schedule: str | None = None,
    kl_warmup: int | None = None,
    lr: float | None = None,
    lr_schedule: str | None = None,
    free_bits: float | None = None,
    beta: float | None = None,
    accelerator: str = "auto",
    devices: str = "auto",
    seed: int = 0,
) -> None:
    """Fit a :class:`~scivae.CellVAE` on a single-cell file and write model, embedding and report.

    ``None`` means the model's default. Bad input raises :class:`ScivaeInputError` (exit code 2 in the CLI).
    """
    from scivae.cells import CellVAE, read_anndata
    from scivae.core import write_fit_report

    data = Path(data)
    out = Path(out) if out is not None else default_out(data)
    _check_out(out, data)
    adata = read_anndata(data)
    model = CellVAE(
        adata,
        layer=layer,
        batch_key=batch_key,
        likelihood=likelihood,
        n_latent=n_latent if n_latent is not None else 10,
        n_top_genes=n_top_genes,
        beta=beta if beta is not None else 1.0,
        free_bits=free_bits if free_bits is not None else 0.0,
        seed=seed,
    )
    s = model.data_summary
    _echo(
        f"counts from {s['counts_source']}: {s['n_cells_input']} cells x {s['n_genes_input']} genes; "
        f"dropped {s['n_genes_undetected_dropped']} never-detected genes"
        + (f", kept {s['n_highly_variable_genes']} highly variable genes" if s["n_highly_variable_genes"] else "")
        + f"; {s['n_cells_empty']} empty cells left out of training (still embedded); "
        f"training on {s['n_cells_trained']} cells x {s['n_genes']} genes"
    )
    model.fit(
        max_epochs=max_epochs,
        batch_size=batch_size if batch_size is not None else 128,
        accelerator=accelerator,
        devices=devices,
        kl_schedule=kl_schedule,
        kl_warmup=kl_warmup,
        seed=seed,
        lr_schedule=lr_schedule or "constant",
        max_time=timedelta(minutes=max_time) if max_time is not None else None,
        **({} if lr is None else {"lr": lr}),
    )
    result = model.fit_result
    assert result is not None
    params = {
        "data": str(data),
        "layer": layer,
        "batch_key": batch_key,
        "likelihood": likelihood,
        "n_latent": model.module.n_latent,
        "n_top_genes": n_top_genes,
        "max_epochs": result.metrics.get("max_epochs"),
        "batch_size": batch_size if batch_size is not None else 128,
        "kl_schedule": kl_schedule or "linear",
        "kl_warmup": kl_warmup,
        "free_bits": model.module.kl_config.free_bits,
        "beta": model.module.kl_config.beta,
        "seed": seed,
    }
    adata.obsm[KEY] = model.get_latent()
    adata.uns["scivae"] = _uns_safe(
        {
            "key_added": KEY,
            "params": params,
            "metrics": {k: v for k, v in result.metrics.items() if not isinstance(v, list)},
            "data": s,
            "genes": model.genes,
        }
    )
    with atomic_dir(out) as tmp:
        model.save(tmp / "model")
        adata.write_h5ad(tmp / "embedded.h5ad", compression="gzip")
        write_fit_report(tmp, result, extra={"params": params, "data": s})
        _write_umap(tmp, adata, seed)
    m = result.metrics
    _echo(
        f"trained {m.get('epochs_trained')} epochs in {m.get('time_s')} s "
        f"(best epoch {m.get('best_epoch')}): "
        f"validation ELBO {m.get('elbo_validation', float('nan')):.2f}, "
        f"KL {m.get('kl_validation', float('nan')):.2f} nats, "
        f"{m.get('active_units')}/{model.module.n_latent} active units"
    )
    _echo(f"wrote {out}/ (model/, embedded.h5ad with obsm['{KEY}'], metrics.json, history.csv, plots)")


def _write_umap(folder: Path, adata: Any, seed: int) -> None:
    """The fit's ``latent_umap.png`` (see ``scivae plot``)."""
    from scivae_cli.plot import UMAP_FILE, cell_umap_png

    cell_umap_png(folder / UMAP_FILE, adata, seed=seed)


def _use_inputs(model: Any, layer: str | None, batch_key: str | None) -> None:
    """Read the new cells' counts from ``layer`` and their batch from ``batch_key`` (names in the new file)."""
    import dataclasses

    if layer is not None:
        model.layer = layer
    if batch_key is not None:
        if model.encoder.batch_key is None:
            raise ScivaeInputError("--batch-key: the model was trained without a batch key; leave the option out")
        model.encoder = dataclasses.replace(model.encoder, batch_key=batch_key)


def embed(
    model_dir: Annotated[Path, typer.Argument(help="Model folder (OUT/model from `scivae fit`, or OUT itself).")],
    data: Annotated[
        Path, typer.Argument(help="Cells to embed: .h5ad/.zarr/10x .h5 or folder, with the model's genes.")
    ],
    out: Annotated[
        Path | None, typer.Option("--out", "-o", help="Output .h5ad (default: DATA.embedded.h5ad beside it).")
    ] = None,
    key_added: Annotated[str, typer.Option(help="obsm key of the embedding.")] = KEY,
    batch_size: Annotated[int, typer.Option(help="Cells per forward pass.")] = 1024,
    layer: Annotated[
        str | None, typer.Option(help="Layer of the new file holding raw counts (default: the model's).")
    ] = None,
    batch_key: Annotated[
        str | None,
        typer.Option(help="obs column of the new file holding the batch, if not named as in training."),
    ] = None,
) -> None:
    """Embed new cells with a trained model: writes the input plus obsm["X_scivae"] (latent means) to a new .h5ad."""
    from scivae.cells import CellVAE, read_anndata

    data = Path(data)
    if out is None:
        name = data.name[: -len(data.suffix)] if data.suffix else data.name
        out = data.parent / f"{name}.embedded.h5ad"
    out = Path(out)
    if out.suffix.lower() != ".h5ad":
        raise ScivaeInputError(f"-o {out}: the output is written as .h5ad; pass a path ending in .h5ad")
    if out.exists() and data.exists() and os.path.samefile(out, data):
        raise ScivaeInputError(f"-o {out} is the input file: pass another output path (inputs are never modified)")
    model = CellVAE.load(Path(model_dir))
    _use_inputs(model, layer, batch_key)
    adata = read_anndata(data)
    latent = model.get_latent(adata, batch_size=batch_size)
    adata.obsm[key_added] = latent
    adata.uns["scivae"] = _uns_safe({"key_added": key_added, "model": str(model_dir), "genes": model.genes})
    with atomic_path(out) as tmp:
        adata.write_h5ad(tmp, compression="gzip")
    _echo(f"wrote {out}: {adata.n_obs} cells, obsm['{key_added}'] of width {latent.shape[1]}")
