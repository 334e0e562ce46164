"""``scivae fit CELLS`` and ``scivae embed``: the single-cell commands.

Outputs of ``fit`` (one folder, swapped into place when complete; see :mod:`scivae_cli.fit_output`)::

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

from scivae._atomic import atomic_path
from scivae.errors import ScivaeInputError
from scivae_cli.fit_output import FitOutput, check_writable, fit_and_publish

KEY = "X_scivae"


def _echo(message: str) -> None:
    typer.echo(message, err=True)


def default_out(data: Path) -> Path:
    """``DATA.scivae`` beside the input: ``pbmc.h5ad`` -> ``pbmc.scivae/``, a 10x folder -> ``folder.scivae/``."""
    data = Path(data)
    name = data.name[: -len(data.suffix)] if data.suffix else data.name
    return data.parent / f"{name}.scivae"


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
    strategy: str = "auto",
    num_nodes: int = 1,
    early_stopping: bool = True,
    patience: int = 20,
    backed: bool = False,
    seed: int = 0,
    resume: bool = False,
    force: bool = False,
    checkpoint_dir: Path | None = None,
    checkpoint_every: float = 10.0,
    settings: dict[str, Any] | None = None,
) -> None:
    """Fit a :class:`~scivae.CellVAE` on a single-cell file and write model, embedding and report.

    ``None`` means the model's default. Bad input raises :class:`ScivaeInputError` (exit code 2 in the CLI).
    With ``backed`` the ``.h5ad`` is streamed from disk: X is never loaded, and ``embedded.h5ad`` is a copy
    of the input file with the latent added. Under DDP only rank 0 writes the outputs.
    ``resume``, ``force``, ``checkpoint_dir`` and ``checkpoint_every`` are ``scivae fit``'s options, and
    ``settings`` what a ``resume`` must repeat (see :class:`~scivae_cli.fit_output.FitOutput`).
    """
    from scivae.cells import CellVAE, read_anndata
    from scivae.core import write_fit_report

    data = Path(data)
    out = Path(out) if out is not None else default_out(data)
    output = FitOutput(out, data, settings=settings, resume=resume, force=force, checkpoint_dir=checkpoint_dir)
    output.check()
    adata = data if backed else read_anndata(data)
    model = CellVAE(
        adata,
        backed=backed,
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
    if resume:
        _echo(f"resuming from {output.checkpoint}")

    def fit(checkpointing: dict[str, Any]) -> Any:
        model.fit(
            max_epochs=max_epochs,
            batch_size=batch_size if batch_size is not None else 128,
            accelerator=accelerator,
            devices=devices,
            strategy=strategy,
            num_nodes=num_nodes,
            early_stopping=early_stopping,
            patience=patience,
            kl_schedule=kl_schedule,
            kl_warmup=kl_warmup,
            seed=seed,
            lr_schedule=lr_schedule or "constant",
            max_time=timedelta(minutes=max_time) if max_time is not None else None,
            **({} if lr is None else {"lr": lr}),
            **checkpointing,
        )
        return model.fit_result

    def write(folder: Path, result: Any) -> None:
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
            "backed": backed,
            "devices": devices,
            "strategy": strategy,
            "num_nodes": num_nodes,
        }
        latent = model.get_latent()
        uns = _uns_safe(
            {
                "key_added": KEY,
                "params": params,
                "metrics": {k: v for k, v in result.metrics.items() if not isinstance(v, list)},
                "data": s,
                "genes": model.genes,
            }
        )
        model.save(folder / "model")
        # in memory: our copy gets the latent (the input file is only read); backed: the file is copied
        _write_embedded(data if backed else adata, folder / "embedded.h5ad", KEY, latent, uns)
        write_fit_report(folder, result, extra={"params": params, "data": s})
        _write_umap(folder, data if backed else adata, latent, uns, seed)

    result = fit_and_publish(output, fit, write, checkpoint_every=checkpoint_every)
    if not result.is_global_zero:  # the other DDP processes only trained
        return
    m = result.metrics
    _echo(
        f"trained {m.get('epochs_trained')} epochs in {m.get('time_s')} s "
        f"(best epoch {m.get('best_epoch')}): "
        f"validation ELBO {m.get('elbo_validation', float('nan')):.2f}, "
        f"KL {m.get('kl_validation', float('nan')):.2f} nats, "
        f"{m.get('active_units')}/{model.module.n_latent} active units"
    )
    _echo(f"wrote {out}/ (model/, embedded.h5ad with obsm['{KEY}'], metrics.json, history.csv, plots)")


def _write_embedded(source: Any, out: Path, key: str, latent: Any, uns: dict[str, Any]) -> None:
    """The input plus ``obsm[key]`` and ``uns['scivae']``: an in-memory AnnData, or a file copied as it is."""
    if isinstance(source, Path):
        from scivae.cells.streaming import write_with_latent

        write_with_latent(source, out, key, latent, uns)
        return
    source.obsm[key] = latent
    source.uns["scivae"] = uns
    with atomic_path(out) as tmp:
        source.write_h5ad(tmp, compression="gzip")


def _model_dir(path: Path) -> Path:
    """Accept the model folder itself or the ``scivae fit`` output folder that holds ``model/``."""
    if (path / "model" / "config.json").exists() and not (path / "config.json").exists():
        return path / "model"
    return path


def _write_umap(folder: Path, source: Any, latent: Any, uns: dict[str, Any], seed: int) -> None:
    """The fit's ``latent_umap.png`` (see ``scivae plot``), from the cells' obs and latent only."""
    import anndata as ad

    from scivae_cli.plot import UMAP_FILE, cell_umap_png

    obs = ad.read_h5ad(source, backed="r").obs if isinstance(source, Path) else source.obs  # backed: X stays on disk
    cell_umap_png(folder / UMAP_FILE, ad.AnnData(obs=obs.copy(), obsm={KEY: latent}, uns={"scivae": uns}), seed=seed)


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
    backed: Annotated[
        bool, typer.Option("--backed", help="Stream the .h5ad from disk: X is never loaded (output: a copy + latent).")
    ] = False,
) -> None:
    """Embed new cells with a trained model: writes the input plus obsm["X_scivae"] (latent means) to a new .h5ad."""
    from scivae.cells import CellVAE, read_anndata
    from scivae.checks import positive_int

    positive_int(batch_size, "batch_size")
    data = Path(data)
    if out is None:
        name = data.name[: -len(data.suffix)] if data.suffix else data.name
        out = data.parent / f"{name}.embedded.h5ad"
    out = Path(out)
    if out.suffix.lower() != ".h5ad":
        raise ScivaeInputError(f"-o {out}: the output is written as .h5ad; pass a path ending in .h5ad")
    if out.exists() and data.exists() and os.path.samefile(out, data):
        raise ScivaeInputError(f"-o {out} is the input file: pass another output path (inputs are never modified)")
    check_writable(out.parent, "-o")
    model = CellVAE.load(_model_dir(Path(model_dir)))
    _use_inputs(model, layer, batch_key)
    source: Any = data if backed else read_anndata(data)
    latent = model.get_latent(source, batch_size=batch_size)
    uns = _uns_safe({"key_added": key_added, "model": str(model_dir), "genes": model.genes})
    _write_embedded(source, out, key_added, latent, uns)
    _echo(f"wrote {out}: {latent.shape[0]} cells, obsm['{key_added}'] of width {latent.shape[1]}")
