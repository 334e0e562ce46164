"""``scivae plot FIT_DIR``: the pictures of a fit, drawn again (or into another folder) with ``scivae.pl``.

From any ``scivae fit`` output folder: ``training_curves.png``, ``kl_per_dim.png`` and ``rate_distortion.png``;
for cells also ``latent_umap.png`` (from ``embedded.h5ad``, or ``embedded.zarr`` after a streamed fit of a
store); for molecules also ``molecules.png`` (a grid of prior samples of the model).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated, Any

import typer

from scivae.errors import ScivaeInputError
from scivae_cli.common import Threads, set_threads

UMAP_FILE = "latent_umap.png"
MOLECULES_FILE = "molecules.png"
#: Cells drawn in the UMAP at most (a seeded random subset beyond): its cost grows with the cells.
MAX_UMAP_CELLS = 50_000


def _echo(message: str) -> None:
    typer.echo(message, err=True)


def cell_umap_png(path: Path, adata: Any, colors: list[str] | None = None, seed: int = 0) -> Path:
    """Write the latent UMAP of an embedded AnnData, coloured by ``colors`` (default: Leiden clusters of the
    latent, and the batch when the fit had one), on at most :data:`MAX_UMAP_CELLS` cells. The AnnData is not
    modified."""
    import anndata as ad
    import matplotlib.pyplot as plt
    import numpy as np

    from scivae import latent, pl

    key = adata.uns.get("scivae", {}).get("key_added", "X_scivae")
    if key not in adata.obsm:
        raise ScivaeInputError(f"the embedded AnnData has no obsm[{key!r}]: re-run `scivae fit`")
    rows = np.arange(adata.n_obs)
    if adata.n_obs > MAX_UMAP_CELLS:
        rows = np.sort(np.random.default_rng(seed).choice(adata.n_obs, MAX_UMAP_CELLS, replace=False))
        _echo(f"latent UMAP of {MAX_UMAP_CELLS} random cells of {adata.n_obs}")
    if colors:  # obs columns or genes of the file
        cells = adata[rows] if len(rows) < adata.n_obs else adata
    else:  # Leiden clusters of the latent (and the batch), on a light copy: obs and the latent only
        cells = ad.AnnData(obs=adata.obs.iloc[rows].copy(), obsm={key: np.asarray(adata.obsm[key])[rows]})
        cells.obs["scivae_leiden"] = latent.cluster(cells.obsm[key], seed=seed)
        batch_key = adata.uns.get("scivae", {}).get("params", {}).get("batch_key")
        colors = ["scivae_leiden"] + ([batch_key] if batch_key in cells.obs else [])
    # genes are coloured by log-normalised counts, read from the layer the model was fitted on when the file has it
    layer = adata.uns.get("scivae", {}).get("params", {}).get("layer")
    layer = layer if isinstance(layer, str) and layer in cells.layers else None
    plt.close(pl.latent_umap(cells, color=colors, use_rep=key, seed=seed, layer=layer, save=path))
    return path


def molecule_grid_png(path: Path, model: Any, n: int, seed: int) -> Path:
    """Write a grid of ``n`` prior samples of a molecule model (seeded)."""
    import matplotlib.pyplot as plt

    from scivae import pl

    samples = model.sample(n, seed=seed, device="cpu")
    valid = float(samples["valid"].mean())
    plt.close(pl.molecules(samples, title=f"{n} prior samples (seed {seed}): {valid:.0%} valid", save=path))
    return path


def plot(
    fit_dir: Annotated[Path, typer.Argument(help="Output folder of `scivae fit` (history.csv, metrics.json, model/).")],
    out: Annotated[
        Path | None, typer.Option("--out", "-o", help="Folder for the PNGs (default: FIT_DIR itself).")
    ] = None,
    color: Annotated[
        list[str] | None,
        typer.Option(
            "--color",
            help="[cells] obs column or gene for the UMAP (repeatable); genes show log-normalised counts "
            "(per 10,000, log1p).",
        ),
    ] = None,
    n_molecules: Annotated[int, typer.Option(help="[molecules] Prior samples in molecules.png.")] = 20,
    seed: Annotated[int, typer.Option(help="Seed of the UMAP layout and the molecule samples.")] = 0,
    threads: Threads = 0,
) -> None:
    """Draw the pictures of a fit: training curves, KL per dimension, rate-distortion, and a latent UMAP
    (cells) or a grid of sampled molecules (molecules)."""
    import matplotlib

    matplotlib.use("Agg")
    from scivae.core.options import check_seed
    from scivae.pl.report import write_fit_plots

    check_seed(seed)
    set_threads(threads)
    if not (fit_dir / "history.csv").is_file():
        raise ScivaeInputError(f"{fit_dir} has no history.csv: pass the output folder of `scivae fit`")
    if n_molecules < 1 or n_molecules > 1000:  # one picture: a grid of more than 1000 would be unreadable
        raise ScivaeInputError(f"--n-molecules must be between 1 and 1000, got {n_molecules}")
    out = out if out is not None else fit_dir
    written = list(write_fit_plots(out, fit_dir).values())
    embedded = [p for p in (fit_dir / "embedded.h5ad", fit_dir / "embedded.zarr") if p.exists()]
    if embedded:  # a streamed fit of a Zarr store writes its latent into a copy of the store
        import anndata as ad

        cells = ad.read_h5ad(embedded[0]) if embedded[0].suffix == ".h5ad" else ad.read_zarr(embedded[0])
        written.append(cell_umap_png(out / UMAP_FILE, cells, color, seed))
    elif _model_type(fit_dir) == "molecule":
        from scivae.molecules import MolVAE

        written.append(molecule_grid_png(out / MOLECULES_FILE, MolVAE.load(fit_dir), n_molecules, seed))
    _echo("wrote " + ", ".join(str(p) for p in written))


def _model_type(fit_dir: Path) -> str | None:
    config = fit_dir / "model" / "config.json"
    try:
        return json.loads(config.read_text()).get("model_type") if config.is_file() else None
    except (json.JSONDecodeError, UnicodeDecodeError, AttributeError):
        return None
