"""``scivae fit DATA``: one verb for cells and molecules; the file type picks the adapter.

The flags fall into four groups, each passed down once:

* the adapter's data and model options (``--layer``, ``--alphabet``, ``--n-latent``...): a dict handed to the
  adapter's ``build`` (:mod:`scivae_cli.cells`, :mod:`scivae_cli.molecules`), which makes the model;
* training options (``--max-epochs``, ``--lr``, ``--accelerator``...): the flags named as the fields of
  :class:`scivae.core.options.TrainingOptions` become one options object, made once with the model's defaults
  and passed unchanged to ``model.fit`` and on to the trainer;
* the output folder's options (``--out``, ``--resume``, ``--force``, ``--checkpoint-dir``), see
  :mod:`scivae_cli.fit_output`;
* ``--threads``: torch's threads for this command.

A new training option is a field of ``TrainingOptions``, its use in :mod:`scivae.core.train`, and a flag below of
the same name: nothing in between changes.
"""

from __future__ import annotations

from pathlib import Path
from types import ModuleType
from typing import Annotated, Any

import typer

from scivae.errors import OptionError, ScivaeInputError
from scivae_cli.common import Accelerator, BatchSize, Threads, echo, set_threads

CELL_SUFFIXES = (".h5ad", ".zarr", ".h5")
MOLECULE_SUFFIXES = (".smi", ".txt", ".csv", ".csv.gz", ".smi.gz", ".txt.gz")
#: Model options every adapter takes.
SHARED_MODEL_OPTIONS = ("n_latent", "beta", "free_bits", "seed")
#: Options that do not change the result (they may differ between a fit and its --resume).
NOT_SETTINGS = ("data", "out", "threads", "resume", "force", "checkpoint_dir", "checkpoint_every")


def data_kind(data: Path) -> str:
    """``"cells"`` or ``"molecules"`` from the input's name (or a 10x matrix folder)."""
    name = data.name.lower()
    if name.endswith(MOLECULE_SUFFIXES):
        return "molecules"
    is_10x_dir = data.is_dir() and any((data / f).exists() for f in ("matrix.mtx", "matrix.mtx.gz"))
    if name.endswith(CELL_SUFFIXES) or is_10x_dir:
        return "cells"
    raise ScivaeInputError(
        f"{data.name}: unknown data type; scivae fit reads cells from .h5ad/.zarr/.h5 or a 10x matrix folder and "
        "molecules from .smi/.txt/.csv/.csv.gz"
    )


def adapter_for(kind: str) -> ModuleType:
    """The command-line adapter of a kind of data (imported on use: each pulls in its own stack)."""
    import importlib

    return importlib.import_module(f"scivae_cli.{kind}")


def fit(
    data: Annotated[Path, typer.Argument(help="Cells: .h5ad/.zarr/10x .h5 or folder. Molecules: .smi/.txt/.csv(.gz).")],
    out: Annotated[
        Path | None, typer.Option("--out", "-o", help="Output folder (default: DATA.scivae/ beside it).")
    ] = None,
    # -- cells
    layer: Annotated[str | None, typer.Option(help="[cells] Layer holding raw counts.")] = None,
    batch_key: Annotated[str | None, typer.Option(help="[cells] obs column with the batch.")] = None,
    likelihood: Annotated[str | None, typer.Option(help="[cells] nb (default), zinb or poisson.")] = None,
    n_top_genes: Annotated[int | None, typer.Option(help="[cells] Keep this many highly variable genes.")] = None,
    backed: Annotated[
        bool,
        typer.Option(
            "--backed", help="[cells] Stream the .h5ad or .zarr store from disk in chunks instead of loading it."
        ),
    ] = False,
    labels_key: Annotated[
        str | None,
        typer.Option(help="[cells] obs column of cell labels: a classifier on the latent learns them (scANVI-like)."),
    ] = None,
    unlabeled_category: Annotated[
        str | None, typer.Option(help="[cells] The label of unlabelled cells (default: Unknown).")
    ] = None,
    # -- molecules
    alphabet: Annotated[
        str | None,
        typer.Option(help="[molecules] smiles, kekule (SMILES in Kekulé form) or selfies; default: the model's."),
    ] = None,
    column: Annotated[str | None, typer.Option(help="[molecules] CSV column holding SMILES.")] = None,
    max_length: Annotated[int | None, typer.Option(help="[molecules] Drop longer strings (tokens).")] = None,
    architecture: Annotated[
        str | None,
        typer.Option(help="[molecules] Size preset: auto (gpu with CUDA, else cpu), cpu (small) or gpu (MOSES VAE)."),
    ] = None,
    prior: Annotated[
        str | None,
        typer.Option(
            help="[molecules] Latent prior fitted after training, which generate samples from: midpoints (default), "
            "flow, gmm or standard (N(0, I))."
        ),
    ] = None,
    # -- the model
    n_latent: Annotated[int | None, typer.Option(help="Latent dimensions.")] = None,
    beta: Annotated[float | None, typer.Option(help="KL multiplier (beta-VAE).")] = None,
    free_bits: Annotated[float | None, typer.Option(help="Free bits per latent dimension (nats).")] = None,
    seed: Annotated[int, typer.Option(help="Random seed of the initial weights and of the fit.")] = 0,
    # -- training (names of TrainingOptions fields)
    max_epochs: Annotated[int | None, typer.Option(help="Maximum epochs (early stopping may stop sooner).")] = None,
    max_time: Annotated[
        float | None,
        typer.Option(help="Training budget in minutes (a cosine learning rate then reaches 0 when it is spent)."),
    ] = None,
    batch_size: BatchSize = None,
    kl_schedule: Annotated[str | None, typer.Option(help="constant, linear, cyclical or sigmoid.")] = None,
    kl_warmup: Annotated[int | None, typer.Option(help="Linear KL warm-up length in steps.")] = None,
    lr: Annotated[float | None, typer.Option(help="Adam learning rate (default: the model's).")] = None,
    lr_schedule: Annotated[
        str | None,
        typer.Option(help="constant or cosine (decays to 0 at --max-epochs or --max-time); default: the model's."),
    ] = None,
    gradient_clip_val: Annotated[
        float | None, typer.Option(help="Clip the gradient norm at this value (default: the model's).")
    ] = None,
    accelerator: Accelerator = "auto",
    devices: Annotated[str, typer.Option(help="Devices per node for Lightning ('auto', a count or a list).")] = "auto",
    strategy: Annotated[
        str, typer.Option(help="Lightning strategy: auto, or ddp for several devices or nodes (one process each).")
    ] = "auto",
    num_nodes: Annotated[
        int,
        typer.Option(
            help="Nodes for --strategy ddp: the same command runs on each, started by srun, torchrun, or by hand with "
            "MASTER_ADDR, MASTER_PORT and NODE_RANK set."
        ),
    ] = 1,
    early_stopping: Annotated[
        bool | None,
        typer.Option(
            "--early-stopping/--no-early-stopping", help="Stop when the validation objective stops improving."
        ),
    ] = None,
    patience: Annotated[int | None, typer.Option(help="Epochs without improvement before early stopping.")] = None,
    # -- this command
    threads: Threads = 0,
    resume: Annotated[
        bool, typer.Option("--resume", help="Continue an interrupted fit from its last checkpoint (same options).")
    ] = False,
    force: Annotated[
        bool, typer.Option("--force", help="Replace a finished output, or start an interrupted fit over.")
    ] = False,
    checkpoint_dir: Annotated[
        Path | None, typer.Option(help="Where checkpoints go (default OUT/checkpoints; removed after a finished fit).")
    ] = None,
    checkpoint_every: Annotated[
        float, typer.Option(help="Minutes between checkpoints inside an epoch (0: at epoch ends only).")
    ] = 10.0,
) -> None:
    """Fit a VAE on a count matrix (.h5ad) or a SMILES file, and write the model, embedding and report.

    A checkpoint is kept at every epoch end (and every --checkpoint-every minutes) while the fit runs: after an
    interruption, even kill -9, the same command with --resume continues it and ends with the same model.
    """
    values = dict(locals())  # first: only the command's own arguments
    from scivae.core.options import (
        FIELDS,
        TrainingOptions,
        check_accelerator,
        check_seed,
        positive_float,
        positive_int,
    )

    if not data.exists():
        raise ScivaeInputError(f"{data}: no such file or folder; check the path")
    kind = data_kind(data)
    adapter = adapter_for(kind)
    other = adapter_for("molecules" if kind == "cells" else "cells")
    given_other = [name for name in other.OPTIONS if values[name] not in (None, False)]
    if given_other:
        raise OptionError(
            ", ".join("{" + n + "}" for n in given_other) + f" apply to {other.KIND}, not to {adapter.KIND}",
            *given_other,
        )
    training = {k: v for k, v in values.items() if k in FIELDS and k != "seed" and v is not None}
    training["checkpoint_every_minutes"] = checkpoint_every
    TrainingOptions().replace(**training)  # bad values are refused before anything is read
    check_accelerator(accelerator, devices)
    check_seed(seed)
    for name in ("n_latent", "n_top_genes", "max_length"):
        if values[name] is not None:
            positive_int(values[name], name)
    if beta is not None:
        positive_float(beta, "beta")
    if free_bits is not None:
        positive_float(free_bits, "free_bits", allow_zero=True)
    model_options = {k: values[k] for k in (*adapter.OPTIONS, *SHARED_MODEL_OPTIONS) if values[k] is not None}
    from scivae_cli.fit_output import input_identity

    settings = {k: v for k, v in values.items() if k not in NOT_SETTINGS}
    set_threads(threads)
    run_fit(
        adapter,
        data,
        out=out,
        model_options=model_options,
        training=training,
        settings={**settings, "input": input_identity(data)},
        resume=resume,
        force=force,
        checkpoint_dir=checkpoint_dir,
    )


def run_fit(
    adapter: ModuleType,
    data: Path,
    *,
    out: Path | None,
    model_options: dict[str, Any],
    training: dict[str, Any],
    settings: dict[str, Any],
    resume: bool = False,
    force: bool = False,
    checkpoint_dir: Path | None = None,
) -> Any:
    """Build the adapter's model, train it in the locked, resumable ``OUT`` folder and publish its outputs.

    ``training`` holds the training options given on the command line: with the model's defaults they make the
    one :class:`~scivae.core.options.TrainingOptions` of the fit. Returns the fit result (``None`` when nothing
    was fitted).
    """
    from scivae.core.train.allocator import tune_allocator
    from scivae_cli.fit_output import FitOutput, fit_and_publish

    out = Path(out) if out is not None else adapter.default_out(data)
    output = FitOutput(out, data, settings=settings, resume=resume, force=force, checkpoint_dir=checkpoint_dir)
    output.check()
    tune_allocator()  # process-wide malloc thresholds: set by the command, never by the library
    model, source = adapter.build(data, model_options)
    options = model.training_options(**training)
    if resume:
        echo(f"resuming from {output.checkpoint}")

    def fit(checkpointing: dict[str, Any]) -> Any:
        model.fit(options, **adapter.fit_arguments(model_options), **checkpointing)
        return model.fit_result

    def write(folder: Path, result: Any) -> None:
        from scivae_cli.write_errors import check_free_space

        # HDF5 may crash rather than raise on a full disk: refuse when there is plainly no room (the checkpoint
        # stays, so the fit resumes once space is freed)
        check_free_space(folder / "model", "--out", 1 << 20)
        adapter.write(folder, model, result, source=source, data=data, model_options=model_options, options=options)

    from scivae_cli.write_errors import writing

    with writing(out, "--out", unusable=False):  # a full disk names --out, not a temporary sibling
        result = fit_and_publish(output, fit, write)
    if result.is_global_zero:  # the other DDP processes only trained
        for line in adapter.summary(model, result, out):
            echo(line)
    return result
