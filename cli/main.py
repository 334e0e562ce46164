"""``scivae``: fit, embed, generate, interpolate and evaluate from the shell.

Every command reports bad input as one ``error: ...`` line on stderr that names the fix, and exits with
code 2 without a traceback. A fit that diverges exits with code 3 (after writing its last good weights), one
that runs out of memory or disk with code 1, an interrupted one with 130 (Ctrl-C) or 143 (SIGTERM) and one
``interrupted`` line.
"""

from __future__ import annotations

import csv
import functools
import importlib
import sys
import time
import warnings
from collections.abc import Callable
from pathlib import Path
from typing import Annotated, Any

import typer

from scivae import __version__
from scivae.errors import DivergenceError, ScivaeInputError
from scivae_cli.common import flag
from scivae_cli.interrupts import Interrupted, interruptible

app = typer.Typer(
    name="scivae",
    help="Variational autoencoders for single-cell counts (.h5ad) and molecules (SMILES).",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
    rich_markup_mode=None,  # plain help: flags without <bool> metavars, and no rich import at start-up
)


def fail(message: str) -> None:
    """Print a one-line error and exit with code 2."""
    typer.echo(f"error: {message}", err=True)
    raise typer.Exit(code=2)


def _first_line(e: BaseException) -> str:
    return _first_line_of(str(e)) if str(e).strip() else type(e).__name__


def _first_line_of(text: str) -> str:
    text = text.strip()
    return text.splitlines()[0] if text else "error"


def user_errors(fn: Callable[..., Any]) -> Callable[..., Any]:
    """Turn :class:`ScivaeInputError` (and unusable paths) into a one-line error and exit code 2; a diverged fit
    into exit code 3; running out of memory or disk into exit code 1, all without a traceback."""

    @functools.wraps(fn)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            with interruptible():  # Ctrl-C and SIGTERM raise Interrupted (Lightning would exit 1 or 0)
                return fn(*args, **kwargs)
        except Interrupted as e:
            typer.echo(e.line(), err=True)
            raise typer.Exit(code=e.exit_code) from None
        except ScivaeInputError as e:
            fail(_first_line_of(e.render(flag)))
        except DivergenceError as e:
            typer.echo(f"error: {_first_line_of(e.render(flag))}", err=True)
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
        except RuntimeError as e:
            if not any(s in str(e) for s in ("can't allocate memory", "out of memory", "Cannot allocate memory")):
                raise
            # torch reports a failed allocation as a RuntimeError (CPU and CUDA)
            typer.echo(
                "error: out of memory: use a machine with more memory, smaller sizes (--n-latent, --batch-size) "
                "or fewer cells/genes/molecules",
                err=True,
            )
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


def _register(name: str, module: str, attr: str) -> None:
    """Register an adapter command; adapter CLI modules import their heavy stacks inside the commands."""
    app.command(name)(user_errors(getattr(importlib.import_module(module), attr)))


_register("fit", "scivae_cli.fit", "fit")
_register("embed", "scivae_cli.cells", "embed")
_register("generate", "scivae_cli.molecules", "generate")
_register("interpolate", "scivae_cli.molecules", "interpolate")
_register("evaluate", "scivae_cli.evaluate", "evaluate")
_register("plot", "scivae_cli.plot", "plot")
_register("map", "scivae_cli.mapping", "map_query")
_register("de", "scivae_cli.differential", "de")


def run() -> None:
    """Console entry point."""
    app()


if __name__ == "__main__":
    sys.exit(app())
