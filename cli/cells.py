"""``scivae fit CELLS`` and ``scivae embed``: the single-cell commands.

Outputs of ``fit`` (one folder, swapped into place when complete; see :mod:`scivae_cli.fit_output`)::

    OUT/model/           the trained model (model.safetensors + config.json)
    OUT/embedded.h5ad    the input plus obsm["X_scivae"] (one row per input cell) and uns["scivae"]; with
                         --labels-key also obs["scivae_prediction"] and obs["scivae_prediction_probability"]
                         (--backed on a .zarr store: OUT/embedded.zarr, a copy of the store plus the same keys)
    OUT/metrics.json     final train/validation ELBO, reconstruction, KL, active units, time, data summary
    OUT/history.csv      one row per epoch
    OUT/training_curves.png, OUT/kl_per_dim.png, OUT/rate_distortion.png
    OUT/latent_umap.png  UMAP of the latent, coloured by its Leiden clusters (and the batch)

The input file is only read.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Annotated, Any

import typer

from scivae._atomic import atomic_path
from scivae.errors import ScivaeInputError
from scivae_cli.common import Accelerator, Threads, echo, set_threads
from scivae_cli.fit_output import check_writable

KEY = "X_scivae"


def default_out(data: Path) -> Path:
    """``DATA.scivae`` beside the input: ``pbmc.h5ad`` -> ``pbmc.scivae/``, a 10x folder -> ``folder.scivae/``."""
    data = Path(data)
    name = data.name[: -len(data.suffix)] if data.suffix else data.name
    return data.parent / f"{name}.scivae"


def _uns_safe(d: dict[str, Any]) -> dict[str, Any]:
    from scivae.tl import _jsonable

    return _jsonable(json.loads(json.dumps(d, default=str)))


#: The command-line adapter's kind, and the ``scivae fit`` options only it takes (besides n_latent, beta,
#: free_bits and seed).
KIND = "cells"
OPTIONS = ("layer", "batch_key", "likelihood", "n_top_genes", "backed", "labels_key", "unlabeled_category")


def _embedded_name(backed: Any) -> str:
    """The embedding's name in the fit folder: ``embedded.zarr`` for a streamed ``.zarr`` store (a copy of the
    store keeps its format, chunks and shards), ``embedded.h5ad`` otherwise."""
    return "embedded.zarr" if backed and Path(backed).is_dir() else "embedded.h5ad"


def build(data: Path, options: dict[str, Any]) -> tuple[Any, Any]:
    """Read the cells (or open them backed) and make the :class:`~scivae.CellVAE` of ``scivae fit``; returns the
    model and what :func:`write` embeds (the AnnData in memory, or the path when backed)."""
    from scivae.cells import CellVAE, read_anndata

    backed = bool(options.get("backed"))
    adata = data if backed else read_anndata(data)
    defaults = {"n_latent": 10, "beta": 1.0, "free_bits": 0.0, "likelihood": "nb"}
    model = CellVAE(adata, **{**defaults, **options})
    s = model.data_summary
    echo(
        f"counts from {s['counts_source']}: {s['n_cells_input']} cells x {s['n_genes_input']} genes; "
        f"dropped {s['n_genes_undetected_dropped']} never-detected genes"
        + (f", kept {s['n_highly_variable_genes']} highly variable genes" if s["n_highly_variable_genes"] else "")
        + f"; {s['n_cells_empty']} empty cells left out of training (still embedded); "
        f"training on {s['n_cells_trained']} cells x {s['n_genes']} genes"
    )
    return model, adata


def fit_arguments(options: dict[str, Any]) -> dict[str, Any]:
    """Arguments of ``CellVAE.fit`` beyond the training options: none."""
    return {}


def write(
    folder: Path, model: Any, result: Any, *, source: Any, data: Path, model_options: dict[str, Any], options: Any
) -> None:
    """``model/``, ``embedded.h5ad`` (the input plus the latent), the fit report and ``latent_umap.png``."""
    from scivae.pl.report import write_fit_report

    s = model.data_summary
    params = {
        "data": str(data),
        **model_options,
        "likelihood": model.module.likelihood,  # the value used, also when the flag was left at its default
        "n_latent": model.module.n_latent,
        "beta": model.module.kl_config.beta,
        "free_bits": model.module.kl_config.free_bits,
        "training": options.to_dict(),
    }
    latent = model.get_latent()
    if getattr(model, "labels", None) is not None:  # a labelled model (labels_key; its cells are in memory)
        from scivae_cli.mapping import add_predictions

        add_predictions(source, model)
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
    _write_embedded(source, folder / _embedded_name(source if isinstance(source, Path) else None), KEY, latent, uns)
    write_fit_report(folder, result, extra={"params": params, "data": s})
    from scivae_cli.write_errors import NO_SPACE, errno_of

    try:
        _write_umap(folder, source, latent, uns, int(model_options.get("seed", 0)))
    except MemoryError:
        raise  # no memory is the run's failure, not the picture's
    except Exception as e:  # an extra: the model, embedding and report above are what the fit is for
        if errno_of(e) in NO_SPACE:
            raise  # so is a full disk
        first = str(e).strip().splitlines()[0][:160] if str(e).strip() else ""
        echo(f"warning: latent_umap.png was not drawn ({type(e).__name__}: {first}); the model, embedding and "
             "report are written")  # fmt: skip


def summary(model: Any, result: Any, out: Path) -> list[str]:
    """The lines ``scivae fit`` ends with."""
    m = result.metrics
    return [
        f"trained {m.get('epochs_trained')} epochs in {m.get('time_s')} s (best epoch {m.get('best_epoch')}): "
        f"validation ELBO {m.get('elbo_validation', float('nan')):.2f}, "
        f"KL {m.get('kl_validation', float('nan')):.2f} nats, "
        f"{m.get('active_units')}/{model.module.n_latent} active units",
        f"wrote {out}/ (model/, {_embedded_name(model.data_summary.get('backed'))} with obsm['{KEY}'], metrics.json, "
        "history.csv, plots)",
    ]


def _write_embedded(source: Any, out: Path, key: str, latent: Any, uns: dict[str, Any]) -> None:
    """The input plus ``obsm[key]`` and ``uns['scivae']``: an in-memory AnnData (written as ``.h5ad``, or as a
    ``.zarr`` store when ``out`` ends in ``.zarr``), or a file or store copied as it is."""
    if isinstance(source, Path):
        from scivae.cells.streaming import write_with_latent

        write_with_latent(source, out, key, latent, uns)
        return
    source.obsm[key] = latent
    source.uns["scivae"] = uns
    if out.suffix.lower() == ".zarr":
        from scivae._atomic import atomic_dir

        with atomic_dir(out) as tmp:
            source.write_zarr(tmp)
        return
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

    if isinstance(source, Path) and source.is_dir():  # a .zarr store: only its obs is read
        import zarr

        obs = ad.io.read_elem(zarr.open_group(source, mode="r")["obs"])
    else:
        obs = ad.read_h5ad(source, backed="r").obs if isinstance(source, Path) else source.obs  # X stays on disk
    cell_umap_png(folder / UMAP_FILE, ad.AnnData(obs=obs.copy(), obsm={KEY: latent}, uns={"scivae": uns}), seed=seed)


def _embed_out(data: Path, out: Path | None, backed: bool) -> Path:
    """``scivae embed``'s output path, checked: ``.h5ad`` or ``.zarr``; streamed (--backed), the input's format (the
    output is a copy of it); never the input or a path inside it."""
    zarr_in = backed and data.is_dir()
    if out is None:
        name = data.name[: -len(data.suffix)] if data.suffix else data.name
        out = data.parent / f"{name}.embedded{'.zarr' if zarr_in else '.h5ad'}"
    out = Path(out)
    suffix = out.suffix.lower()
    if backed and suffix != (want := ".zarr" if zarr_in else ".h5ad"):
        raise ScivaeInputError(
            f"-o {out}: with --backed the output is a copy of {data} plus the latent, so it is written as {want}; "
            f"pass a path ending in {want}, or leave --backed out to read the cells into memory"
        )
    if suffix not in (".h5ad", ".zarr"):
        raise ScivaeInputError(f"-o {out}: the output is written as .h5ad or .zarr; pass a path ending in either")
    if suffix == ".h5ad" and out.is_dir():
        raise ScivaeInputError(f"-o {out} is a folder: pass the path of a file to write")
    if suffix == ".zarr" and out.exists():
        from scivae.cells.streaming import is_zarr_store

        # only a store scivae wrote (it holds uns/scivae) is replaced: never another folder or someone's data
        if not is_zarr_store(out) or not (out / "uns" / "scivae").is_dir():
            raise ScivaeInputError(f"-o {out} exists and was not written by scivae: pass a new path")
    if data.exists() and (
        (out.exists() and os.path.samefile(out, data)) or (data.is_dir() and data.resolve() in out.resolve().parents)
    ):
        raise ScivaeInputError(
            f"-o {out} is the input file (or inside the input store): pass another output path (inputs are never "
            "modified)"
        )
    return out


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
        Path | None,
        typer.Option(
            "--out",
            "-o",
            help="Output .h5ad or .zarr (default: DATA.embedded.h5ad beside it; DATA.embedded.zarr for --backed on "
            "a .zarr store).",
        ),
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
        bool,
        typer.Option(
            "--backed",
            help="Stream the .h5ad or .zarr store from disk: X is never loaded (output: a copy + latent, same format).",
        ),
    ] = False,
    accelerator: Accelerator = "auto",
    threads: Threads = 0,
) -> None:
    """Embed new cells with a trained model: writes the input plus obsm["X_scivae"] (latent means) to a new .h5ad
    (or .zarr)."""
    from scivae.cells import CellVAE, read_anndata
    from scivae.core.options import check_batch_size, check_device

    check_batch_size(batch_size)
    data = Path(data)
    out = _embed_out(data, out, backed)
    check_writable(out.parent, "-o")
    set_threads(threads)
    device = check_device(accelerator, "accelerator")
    model = CellVAE.load(_model_dir(Path(model_dir)))
    model.module.to(device)
    _use_inputs(model, layer, batch_key)
    source: Any = data if backed else read_anndata(data)
    latent = model.get_latent(source, batch_size=batch_size)
    uns = _uns_safe({"key_added": key_added, "model": str(model_dir), "genes": model.genes})
    from scivae_cli.fit_output import input_identity
    from scivae_cli.write_errors import check_free_space, writing

    # HDF5 may crash rather than raise on a full disk: refuse before writing when the room is plainly missing (a
    # backed output copies the input file or store, every file of it)
    check_free_space(out, "-o", latent.nbytes + (input_identity(data)["bytes"] if backed else 1 << 20))
    with writing(out, "-o"):
        _write_embedded(source, out, key_added, latent, uns)
    echo(f"wrote {out}: {latent.shape[0]} cells, obsm['{key_added}'] of width {latent.shape[1]}")
