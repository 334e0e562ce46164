"""``scivae``: fit, embed, generate, interpolate and evaluate from the shell.

Every command reports bad input as one ``error: ...`` line on stderr that names the fix, and exits with
code 2 without a traceback. A fit that diverges exits with code 3 (after writing its last good weights), one
that runs out of memory or disk with code 1, an interrupted one with 130.
"""

from __future__ import annotations

import csv
import functools
import importlib
import os
import sys
import time
import warnings
from collections.abc import Callable
from pathlib import Path
from typing import Annotated, Any

import typer

from scivae import __version__
from scivae.errors import DivergenceError, ScivaeInputError

app = typer.Typer(
    name="scivae",
    help="Variational autoencoders for single-cell counts (.h5ad) and molecules (SMILES).",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)

#: fit options that do not change the result (they may differ between a fit and its --resume)
_NOT_SETTINGS = ("data", "out", "threads", "resume", "force", "checkpoint_dir", "checkpoint_every")

CELL_SUFFIXES = (".h5ad", ".zarr", ".h5")
MOLECULE_SUFFIXES = (".smi", ".txt", ".csv", ".csv.gz", ".smi.gz", ".txt.gz")


def fail(message: str) -> None:
    """Print a one-line error and exit with code 2."""
    typer.echo(f"error: {message}", err=True)
    raise typer.Exit(code=2)


def _first_line(e: BaseException) -> str:
    text = str(e).strip()
    return text.splitlines()[0] if text else type(e).__name__


def user_errors(fn: Callable[..., Any]) -> Callable[..., Any]:
    """Turn :class:`ScivaeInputError` (and unusable paths) into a one-line error and exit code 2; a diverged fit
    into exit code 3; running out of memory or disk into exit code 1, all without a traceback."""

    @functools.wraps(fn)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            return fn(*args, **kwargs)
        except ScivaeInputError as e:
            fail(_first_line(e))
        except DivergenceError as e:
            typer.echo(f"error: {_first_line(e)}", err=True)
            raise typer.Exit(code=3) from None
        except FileNotFoundError as e:
            fail(f"{e.filename or e}: no such file; check the path")
        except IsADirectoryError as e:
            fail(f"{e.filename}: is a directory, expected a file")
        except NotADirectoryError as e:
            fail(f"{e.filename}: a part of this path is a file, not a folder; check the path")
        except PermissionError as e:
            fail(f"{e.filename}: permission denied; choose another output path")
        except MemoryError:
            typer.echo("error: out of memory: use a machine with more memory, or fewer cells/genes/molecules", err=True)
            raise typer.Exit(code=1) from None
        except OSError as e:  # a full disk, a lost network file system...
            where = f"{e.filename}: " if e.filename else ""
            typer.echo(f"error: {where}{e.strerror or _first_line(e)}; free space or choose another path", err=True)
            raise typer.Exit(code=1) from None
        except KeyboardInterrupt:
            typer.echo("interrupted", err=True)
            raise typer.Exit(code=130) from None

    return wrapper


def _version_callback(value: bool) -> None:
    if value:
        typer.echo(f"scivae {__version__}")
        raise typer.Exit()


@app.callback()
def main(
    version: Annotated[
        bool, typer.Option("--version", callback=_version_callback, is_eager=True, help="Print the version and exit.")
    ] = False,
) -> None:
    """Variational autoencoders for scientific data: cells (AnnData counts) and molecules (SMILES/SELFIES)."""
    warnings.filterwarnings("ignore", category=DeprecationWarning)


def _read_primer_inputs(path: Path) -> list[float]:
    if not path.exists():
        raise ScivaeInputError(f"{path}: no such file; pass a CSV with a column input_value")
    with path.open(newline="") as fh:
        reader = csv.DictReader(fh)
        if reader.fieldnames is None or "input_value" not in reader.fieldnames:
            raise ScivaeInputError(f"{path} has no column 'input_value': add a header line 'input_value'")
        values = []
        for i, row in enumerate(reader, start=2):
            raw = (row.get("input_value") or "").strip()
            try:
                values.append(float(raw))
            except ValueError:
                raise ScivaeInputError(f"{path} line {i}: {raw!r} is not a number; fix or remove that row") from None
    return values


@app.command("demo-1d")
@user_errors
def demo_1d(
    file: Annotated[
        Path | None, typer.Argument(help="CSV with a column input_value (default: the primer's 10 inputs).")
    ] = None,
    animate: Annotated[bool, typer.Option("--animate", help="Print the running statistics after each row.")] = False,
    delay: Annotated[float, typer.Option(help="Seconds to pause between rows with --animate.")] = 0.0,
) -> None:
    """The VAE primer's 1-D worked example: encode, decode, reconstruction loss, KL and ELBO per row."""
    from scivae.primer import DEFAULT_INPUTS, run_primer

    values = _read_primer_inputs(file) if file is not None else list(DEFAULT_INPUTS)
    try:
        result = run_primer(values)
    except ValueError as e:
        raise ScivaeInputError(str(e)) from None
    typer.echo(f"inputs: n = {len(values)}, mean = {result.mean:.4g}, SD (population) = {result.sd:.4g}")
    typer.echo("encoder: z_mean = (x - mean) / SD, z_var = 0.5; decoder at the mean: x_hat = z * SD + mean\n")
    header = f"{'x':>8} {'z_mean':>8} {'z_var':>6} {'x_hat':>8} {'recon':>8} {'KL':>7}"
    typer.echo(header)
    typer.echo("-" * len(header))
    kl_sum = rec_sum = 0.0
    for i, r in enumerate(result.rows, start=1):
        typer.echo(f"{r.x:8.3f} {r.z_mean:8.3f} {r.z_var:6.2f} {r.x_hat:8.3f} {r.reconstruction:8.3f} {r.kl:7.3f}")
        kl_sum += r.kl
        rec_sum += r.reconstruction
        if animate:
            typer.echo(
                f"    after {i} row(s): mean recon = {rec_sum / i:.3f}, mean KL = {kl_sum / i:.3f}, "
                f"ELBO so far = {-(rec_sum + kl_sum) / i:.3f}"
            )
            if delay > 0:
                time.sleep(delay)
    typer.echo("-" * len(header))
    typer.echo(f"mean reconstruction loss = {result.mean_reconstruction:.3f}")
    typer.echo(f"mean KL                  = {result.mean_kl:.3f}")
    typer.echo(f"ELBO = -(recon + KL)     = {result.elbo:.3f}")


def _usable_cores() -> int:
    """Cores this process may run on (its CPU affinity, which containers and schedulers set)."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not on Linux
        return os.cpu_count() or 1


def _cpu_times() -> tuple[float, float] | None:
    """(idle, total) jiffies of all CPUs from /proc/stat, or None off Linux."""
    try:
        with open("/proc/stat") as fh:
            fields = [float(v) for v in fh.readline().split()[1:]]
    except (OSError, ValueError):
        return None
    return fields[3] + (fields[4] if len(fields) > 4 else 0.0), sum(fields[:8])


def auto_threads(window_s: float = 0.5) -> int:
    """Torch threads for ``--threads 0``: the usable cores that other processes leave idle, at least one.

    Threads that share a core with another busy process make every parallel step wait for the slowest one, so
    a fit on a busy machine runs several times slower with every core than with the idle ones alone
    (benchmarks/molecules/RESULTS.md). The idle share is read over ``window_s`` seconds from /proc/stat.
    """
    usable = _usable_cores()
    first = _cpu_times()
    if first is None:
        return usable
    time.sleep(window_s)
    second = _cpu_times()
    if second is None or second[1] <= first[1]:
        return usable
    idle_share = (second[0] - first[0]) / (second[1] - first[1])
    idle_cores = idle_share * (os.cpu_count() or usable)
    return max(1, min(usable, int(idle_cores + 0.25)))


def _data_kind(data: Path) -> str:
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


@app.command("fit")
@user_errors
def fit(
    data: Annotated[Path, typer.Argument(help="Cells: .h5ad/.zarr/10x .h5 or folder. Molecules: .smi/.txt/.csv(.gz).")],
    out: Annotated[
        Path | None, typer.Option("--out", "-o", help="Output folder (default: DATA.scivae/ beside it).")
    ] = None,
    layer: Annotated[str | None, typer.Option(help="[cells] Layer holding raw counts.")] = None,
    batch_key: Annotated[str | None, typer.Option(help="[cells] obs column with the batch.")] = None,
    likelihood: Annotated[str, typer.Option(help="[cells] nb, zinb or poisson.")] = "nb",
    n_top_genes: Annotated[int | None, typer.Option(help="[cells] Keep this many highly variable genes.")] = None,
    alphabet: Annotated[
        str | None,
        typer.Option(help="[molecules] smiles, kekule (SMILES in Kekulé form) or selfies; default: the model's."),
    ] = None,
    column: Annotated[str | None, typer.Option(help="[molecules] CSV column holding SMILES.")] = None,
    max_length: Annotated[int | None, typer.Option(help="[molecules] Drop longer strings (tokens).")] = None,
    architecture: Annotated[
        str,
        typer.Option(help="[molecules] Size preset: auto (gpu with CUDA, else cpu), cpu (small) or gpu (MOSES VAE)."),
    ] = "auto",
    prior: Annotated[
        str | None,
        typer.Option(
            help="[molecules] Latent prior fitted after training, which generate samples from: midpoints (default), "
            "flow, gmm or standard (N(0, I))."
        ),
    ] = None,
    n_latent: Annotated[int | None, typer.Option(help="Latent dimensions.")] = None,
    max_epochs: Annotated[int | None, typer.Option(help="Maximum epochs (early stopping may stop sooner).")] = None,
    max_time: Annotated[
        float | None,
        typer.Option(help="Training budget in minutes (a cosine learning rate then reaches 0 when it is spent)."),
    ] = None,
    batch_size: Annotated[int | None, typer.Option(help="Minibatch size.")] = None,
    kl_schedule: Annotated[str | None, typer.Option(help="constant, linear, cyclical or sigmoid.")] = None,
    kl_warmup: Annotated[int | None, typer.Option(help="Linear KL warm-up length in steps.")] = None,
    lr: Annotated[float | None, typer.Option(help="Adam learning rate (default: the model's).")] = None,
    lr_schedule: Annotated[
        str | None,
        typer.Option(help="constant or cosine (decays to 0 at --max-epochs or --max-time); default: the model's."),
    ] = None,
    free_bits: Annotated[float | None, typer.Option(help="Free bits per latent dimension (nats).")] = None,
    beta: Annotated[float | None, typer.Option(help="KL multiplier (beta-VAE).")] = None,
    accelerator: Annotated[str, typer.Option(help="auto, cpu or gpu.")] = "auto",
    devices: Annotated[str, typer.Option(help="Devices per node for Lightning ('auto', a count or a list).")] = "auto",
    strategy: Annotated[
        str, typer.Option(help="Lightning strategy: auto, or ddp for several devices or nodes (one process each).")
    ] = "auto",
    num_nodes: Annotated[int, typer.Option(help="Nodes for --strategy ddp (Lightning reads SLURM/torchrun).")] = 1,
    early_stopping: Annotated[
        bool,
        typer.Option("--early-stopping/--no-early-stopping", help="Stop when the validation ELBO stops improving."),
    ] = True,
    patience: Annotated[int, typer.Option(help="Epochs without improvement before early stopping.")] = 20,
    backed: Annotated[
        bool, typer.Option("--backed", help="[cells] Stream the .h5ad from disk in chunks instead of loading it.")
    ] = False,
    seed: Annotated[int, typer.Option(help="Random seed.")] = 0,
    threads: Annotated[
        int,
        typer.Option(
            help="CPU threads for torch; 0: the cores other processes leave idle when the fit starts (at least 1)."
        ),
    ] = 0,
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
    # everything that determines the fit: a --resume must repeat it
    settings = {k: v for k, v in locals().items() if k not in _NOT_SETTINGS}
    from scivae.checks import check_accelerator, positive_float, positive_int
    from scivae.core.schedules import make_schedule
    from scivae_cli.fit_output import input_identity

    if not data.exists():
        raise ScivaeInputError(f"{data}: no such file or folder; check the path")
    positive_int(threads, "threads", minimum=0)
    for name in ("n_latent", "max_epochs", "batch_size", "n_top_genes", "max_length"):
        if locals()[name] is not None:
            positive_int(locals()[name], name)
    positive_int(num_nodes, "num_nodes")
    positive_int(patience, "patience")
    if kl_warmup is not None:
        positive_int(kl_warmup, "kl_warmup", minimum=0)
    if free_bits is not None:
        positive_float(free_bits, "free_bits", allow_zero=True)
    if beta is not None:
        positive_float(beta, "beta")
    positive_float(checkpoint_every, "checkpoint_every", allow_zero=True)
    check_accelerator(accelerator, devices)
    make_schedule(kl_schedule)
    kind = _data_kind(data)
    import torch

    torch.set_num_threads(threads or auto_threads())
    common: dict[str, Any] = dict(
        out=out,
        n_latent=n_latent,
        max_epochs=max_epochs,
        max_time=max_time,
        batch_size=batch_size,
        kl_schedule=kl_schedule,
        kl_warmup=kl_warmup,
        lr=lr,
        lr_schedule=lr_schedule,
        free_bits=free_bits,
        beta=beta,
        accelerator=accelerator,
        devices=devices,
        strategy=strategy,
        num_nodes=num_nodes,
        early_stopping=early_stopping,
        patience=patience,
        seed=seed,
        resume=resume,
        force=force,
        checkpoint_dir=checkpoint_dir,
        checkpoint_every=checkpoint_every,
        settings={**settings, "input": input_identity(data)},
    )
    from scivae.core.training_plan import LR_SCHEDULES

    if lr_schedule is not None and lr_schedule not in LR_SCHEDULES:
        raise ScivaeInputError(f"--lr-schedule {lr_schedule!r}: use one of {', '.join(LR_SCHEDULES)}")
    if lr is not None and not lr > 0:
        raise ScivaeInputError(f"--lr must be > 0, got {lr}")
    if max_time is not None and not max_time > 0:
        raise ScivaeInputError(f"--max-time must be > 0 minutes, got {max_time}")
    if kind == "cells":
        if (
            alphabet is not None
            or column is not None
            or max_length is not None
            or architecture != "auto"
            or prior is not None
        ):
            raise ScivaeInputError(
                "--alphabet, --column, --max-length, --architecture and --prior apply to molecule files, not to cells"
            )
        from scivae.cells.likelihoods import LIKELIHOODS

        if likelihood not in LIKELIHOODS:
            raise ScivaeInputError(f"unknown likelihood {likelihood!r}: use one of {', '.join(LIKELIHOODS)}")
        runner = importlib.import_module("scivae_cli.cells").fit_cells
        runner(
            data,
            layer=layer,
            batch_key=batch_key,
            likelihood=likelihood,
            n_top_genes=n_top_genes,
            backed=backed,
            **common,
        )
    else:
        if layer is not None or batch_key is not None or likelihood != "nb" or n_top_genes is not None or backed:
            raise ScivaeInputError(
                "--layer, --batch-key, --likelihood, --n-top-genes and --backed apply to cells, not to molecules"
            )
        from scivae.molecules.tokenizer import check_alphabet

        if alphabet is not None:
            check_alphabet(alphabet)
        runner = importlib.import_module("scivae_cli.molecules").fit_molecules
        if prior is not None and prior not in ("midpoints", "flow", "gmm", "standard"):
            raise ScivaeInputError(f"--prior {prior!r}: use midpoints, flow, gmm or standard")
        runner(
            data,
            alphabet=alphabet,
            column=column,
            max_length=max_length,
            architecture=architecture,
            prior=prior,
            **common,
        )


def _register(name: str, module: str, attr: str) -> None:
    """Register an adapter command; adapter CLI modules import their heavy stacks inside the commands."""
    app.command(name)(user_errors(getattr(importlib.import_module(module), attr)))


_register("embed", "scivae_cli.cells", "embed")
_register("generate", "scivae_cli.molecules", "generate")
_register("interpolate", "scivae_cli.molecules", "interpolate")
_register("evaluate", "scivae_cli.evaluate", "evaluate")
_register("plot", "scivae_cli.plot", "plot")


def run() -> None:
    """Console entry point."""
    app()


if __name__ == "__main__":
    sys.exit(app())
