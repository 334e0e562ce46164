"""Molecule commands: ``scivae fit mols.smi``, ``scivae generate`` and ``scivae interpolate``.

Bad input raises :class:`~scivae.errors.ScivaeInputError`; ``scivae_cli.main`` turns it into one ``error:``
line and exit code 2. Outputs are written atomically and inputs are never modified.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Annotated, Any

import typer

from scivae._atomic import atomic_path
from scivae.errors import ScivaeInputError
from scivae_cli.common import MODEL_HELP, Accelerator, Threads, echo, set_threads
from scivae_cli.fit_output import check_writable

#: Extra :class:`~scivae.MolVAE` arguments of ``scivae fit`` (empty: the model's defaults; tests shrink it).
MODEL_OVERRIDES: dict[str, Any] = {}
#: The prior samples drawn after the fit (``smiles``, ``valid``), written beside the model and the report.
SAMPLES_FILE = "samples.csv"


def default_out(data: Path) -> Path:
    """``mols.smi`` -> ``mols.scivae/`` beside the input (``.csv.gz`` counts as one suffix)."""
    name = data.name
    for suf in (".csv.gz", ".smi.gz", ".txt.gz", ".csv", ".smi", ".txt"):
        if name.lower().endswith(suf):
            name = name[: -len(suf)]
            break
    return data.parent / f"{name}.scivae"


#: The command-line adapter's kind, and the ``scivae fit`` options only it takes (besides n_latent, beta,
#: free_bits and seed).
KIND = "molecules"
OPTIONS = ("alphabet", "column", "max_length", "architecture", "prior")
#: Prior samples drawn after the fit for the report's validity figure (tests shrink it).
CHECK_SAMPLES = 1000


def build(data: Path, options: dict[str, Any]) -> tuple[Any, None]:
    """Read the SMILES file and make the :class:`~scivae.MolVAE` of ``scivae fit``."""
    from scivae.molecules import MolVAE, read_smiles_file
    from scivae.molecules.tokenizer import check_alphabet

    prior = options.get("prior")
    if prior is not None and prior not in ("midpoints", "flow", "gmm", "standard"):
        raise ScivaeInputError(f"{{prior}}={prior!r}: use midpoints, flow, gmm or standard", "prior")
    alphabet = check_alphabet(options.get("alphabet") or MolVAE.DEFAULT_ALPHABET)
    molecules = read_smiles_file(data, column=options.get("column"), max_length=options.get("max_length"))
    from scivae.molecules.data import check_enough_molecules

    check_enough_molecules(len(molecules.smiles), str(data))  # before any line is printed
    echo(f"read {molecules.summary()}")
    given = {k: options[k] for k in ("n_latent", "beta", "free_bits", "seed") if k in options}
    vae = MolVAE(molecules, architecture=options.get("architecture") or "auto", **MODEL_OVERRIDES, alphabet=alphabet,
                 **given)  # fmt: skip
    echo(f"{vae!r}; vocabulary of {len(vae.vocab)} tokens, longest molecule {vae.vocab.max_tokens} tokens")
    return vae, None


def fit_arguments(options: dict[str, Any]) -> dict[str, Any]:
    """Arguments of ``MolVAE.fit`` beyond the training options: the prior fitted after training."""
    from scivae.molecules.model import DEFAULT_PRIOR

    prior = options.get("prior")
    return {"prior": None if prior == "standard" else (prior or DEFAULT_PRIOR)}


def write(
    folder: Path, model: Any, result: Any, *, source: Any, data: Path, model_options: dict[str, Any], options: Any
) -> None:
    """``model/``, ``samples.csv`` (prior samples behind the report's validity) and the fit report."""
    from scivae.pl.report import write_fit_report

    seed = int(model_options.get("seed", 0))
    check = model.sample(CHECK_SAMPLES, seed=seed)
    valid = check.loc[check["valid"], "smiles"]
    samples = {
        "n": CHECK_SAMPLES,
        "valid": float(check["valid"].mean()),
        "unique_valid": int(valid.nunique()),
        "novel_valid": int(len(set(valid) - set(model.training_smiles))),
        "seed": seed,
        "prior": "learned" if model.learned_prior is not None else "standard",
    }
    extra = {
        "data": {
            "path": str(data),
            "alphabet": model.alphabet,
            "n_molecules": len(model.training_smiles),
            "summary": model.data_summary,
        },
        "prior_samples": samples,
        "params": {**model_options, "training": options.to_dict()},
    }
    model.save(folder / "model")
    check.to_csv(folder / SAMPLES_FILE, index=False)
    write_fit_report(folder, result, extra=extra)


def summary(model: Any, result: Any, out: Path) -> list[str]:
    """The lines ``scivae fit`` ends with."""
    m = result.metrics
    prior = "learned" if model.learned_prior is not None else "standard"
    return [
        f"trained {m.get('epochs_trained')} epochs in {m.get('time_s', 0):.0f} s; validation ELBO "
        f"{m.get('elbo_validation', float('nan')):.2f} nats/molecule, KL {m.get('kl_validation', float('nan')):.2f}, "
        f"{m.get('active_units')}/{model.n_latent} active units; prior: {prior}",
        f"model: {out / 'model'}  samples: {out / SAMPLES_FILE}  report: {out / 'metrics.json'}",
    ]


def _device(accelerator: str) -> str:
    """The torch device of ``--accelerator`` (auto, cpu, gpu, cuda, cuda:N), checked."""
    from scivae.core.options import check_device

    return str(check_device(accelerator, "accelerator"))


def _load(model_dir: Path) -> Any:
    from scivae.molecules import MolVAE

    return MolVAE.load(model_dir)


#: Molecules ``scivae generate`` samples and writes at a time: its memory depends on this, not on -n (tests
#: shrink it).
GENERATE_CHUNK = 50_000
#: Most molecules one ``scivae generate`` writes. Memory no longer bounds it (the output streams in chunks);
#: the limit refuses a mistyped -n: a billion SMILES is some 50 GB of text and days of decoding.
MAX_GENERATE = 1_000_000_000
#: Up to this -n the summary line counts the distinct valid molecules (a set of them is kept); above it only
#: --unique keeps one.
COUNT_DISTINCT_UP_TO = 1_000_000


def chunk_seed(seed: int, index: int) -> int:
    """The seed of chunk ``index`` (from 0) of ``scivae generate --seed seed``.

    The first chunk uses ``seed`` itself, so that an output of one chunk equals ``MolVAE.sample(n, seed=seed)``;
    each later chunk gets ``numpy.random.SeedSequence([seed, index]).generate_state(1)[0]``. Hashing (rather than
    ``seed + index``) keeps the chunks' random streams apart: ``MolVAE.sample`` also uses ``seed + 1`` for its
    token sampling.

    Parameters
    ----------
    seed
        The command's seed (drawn once when none is given).
    index
        The chunk's position.

    Returns
    -------
    int
        A seed in [0, 2^32).
    """
    if index == 0:
        return int(seed)
    import numpy as np

    return int(np.random.SeedSequence([int(seed), int(index)]).generate_state(1)[0])


#: Exit code of ``generate`` when the reader of its standard output stops (128 + SIGPIPE, as Unix tools exit).
EXIT_BROKEN_PIPE = 141


def _silence_stdout() -> None:
    """Point standard output at /dev/null, so that Python's flush at exit finds no closed pipe to complain of."""
    try:
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
    except (OSError, ValueError, AttributeError):  # no file descriptor (a test runner's stream): nothing to do
        pass


def _sampled_text(
    vae: Any, n: int, seed: int, *, csv: bool, unique: bool, valid_only: bool, stats: dict[str, Any], **sample: Any
) -> Iterator[str]:
    """The output of ``generate``, one chunk of :data:`GENERATE_CHUNK` molecules at a time.

    ``stats`` gets ``valid`` (valid strings sampled), ``written`` (rows written) and ``distinct`` (distinct valid
    molecules, ``None`` when -n is over :data:`COUNT_DISTINCT_UP_TO` without --unique).
    """
    # --unique needs every distinct string seen so far; the summary counts them while -n is small enough
    seen: set[str] | None = set() if unique or n <= COUNT_DISTINCT_UP_TO else None
    stats.update(valid=0, written=0, distinct=None)
    for index, start in enumerate(range(0, n, GENERATE_CHUNK)):
        df = vae.sample(min(GENERATE_CHUNK, n - start), seed=chunk_seed(seed, index), **sample)
        valid = df.loc[df["valid"], "smiles"]
        stats["valid"] += len(valid)
        if unique:
            df = df[df["valid"]].drop_duplicates("smiles")
            df = df[~df["smiles"].isin(seen)]
        elif valid_only:
            df = df[df["valid"]]
        if seen is not None:
            seen.update(valid)
            stats["distinct"] = len(seen)
        stats["written"] += len(df)
        if csv:
            yield df[["smiles", "valid"]].to_csv(index=False, header=index == 0)
        else:
            yield "".join(f"{s}\n" for s in df["smiles"].where(df["valid"], df["smiles"].fillna("")))


def generate(
    model_dir: Annotated[Path, typer.Argument(help=MODEL_HELP)],
    n: Annotated[
        int,
        typer.Option(
            "-n",
            "--n",
            help=f"Number of molecules to sample (at most {MAX_GENERATE:,}; written in chunks of "
            f"{GENERATE_CHUNK:,}, so memory does not grow with it).",
        ),
    ],
    output: Annotated[
        Path | None, typer.Option("-o", "--output", help="Write SMILES here (.smi; .csv adds a valid column).")
    ] = None,
    temperature: Annotated[
        float, typer.Option(help="Token sampling temperature, with --sample-tokens (< 1: more conservative).")
    ] = 1.0,
    sample_tokens: Annotated[
        bool,
        typer.Option(
            "--sample-tokens/--greedy",
            help="Decode each prior z greedily (default: the latent carries the molecule) or sample every token.",
        ),
    ] = False,
    prior: Annotated[
        str | None,
        typer.Option(help="learned (the prior fitted after training; the default when the model has one) or standard."),
    ] = None,
    unique: Annotated[
        bool,
        typer.Option(
            "--unique",
            help="Keep only distinct valid molecules (the file is then no MOSES sample; the distinct strings are "
            "held in memory).",
        ),
    ] = False,
    valid_only: Annotated[
        bool,
        typer.Option(
            "--valid-only/--keep-invalid",
            help="Drop invalid strings (the file is then no MOSES sample). Default: all n strings, as MOSES counts.",
        ),
    ] = False,
    batch_size: Annotated[int, typer.Option(help="Molecules decoded at once.")] = 1024,
    seed: Annotated[int | None, typer.Option(help="Random seed (same seed, same molecules).")] = None,
    syntax: Annotated[
        bool,
        typer.Option(
            "--syntax/--raw", help="SMILES models: mask tokens that break SMILES syntax (--raw: the model's own)."
        ),
    ] = True,
    accelerator: Accelerator = "auto",
    threads: Threads = 0,
) -> None:
    """Sample molecules from a trained molecule VAE's prior; print SMILES or write them to a file.

    Every one of the n decoded strings is written, invalid ones included (an empty line where nothing was
    decoded), so that `scivae evaluate` gives MOSES's figures over all generated strings.

    Molecules are sampled and written 50,000 at a time, so a large n never holds its whole output in memory;
    a file appears only once complete. The same command with the same --seed gives the same output every time
    on one device. Up to 50,000 molecules it equals MolVAE.sample(n, seed=SEED); beyond, each further chunk
    draws with its own seed derived from --seed (scivae_cli.molecules.chunk_seed), so it differs from one
    in-memory sample of n. --unique keeps the distinct molecules seen so far in memory.
    """
    from scivae.core.options import check_batch_size, positive_float
    from scivae.core.seeding import resolve_seed

    if n < 1:
        raise ScivaeInputError(f"-n must be >= 1, got {n}")
    if n > MAX_GENERATE:
        raise ScivaeInputError(
            f"-n={n} is over the limit of {MAX_GENERATE} molecules per command: run generate several times with "
            "other --seed values and join the files"
        )
    positive_float(temperature, "temperature")
    check_batch_size(batch_size)
    first = resolve_seed(seed)  # checked before the model loads; drawn once when not given, then one per chunk
    if prior is not None and prior not in ("learned", "standard"):
        raise ScivaeInputError(f"--prior {prior!r}: use learned or standard")
    if output is not None and output.suffix.lower() not in (".smi", ".txt", ".csv"):
        raise ScivaeInputError(f"{output.name}: write to a .smi, .txt or .csv file")
    if output is not None:
        if output.is_dir():
            raise ScivaeInputError(f"-o {output} is a folder: pass the path of a file to write")
        check_writable(output.parent, "-o")
    set_threads(threads)
    vae = _load(model_dir)
    device = _device(accelerator)
    if valid_only or unique:
        echo(
            "warning: the output holds only the valid"
            + (" distinct" if unique else "")
            + " molecules: `scivae evaluate` on it overstates validity and uniqueness (MOSES counts all n generated "
            "strings); generate without --valid-only/--unique for a MOSES sample"
        )
    stats: dict[str, Any] = {}
    pieces = _sampled_text(
        vae, n, first, csv=output is not None and output.suffix.lower() == ".csv", unique=unique,
        valid_only=valid_only, stats=stats, temperature=temperature, greedy=not sample_tokens,
        batch_size=batch_size, device=device, syntax=syntax, prior=prior,
    )  # fmt: skip
    if output is None:
        try:
            for piece in pieces:
                sys.stdout.write(piece)
                sys.stdout.flush()  # each chunk reaches the reader (a pipe) as it is sampled
        except BrokenPipeError:
            # the reader stopped (`| head`): stop sampling quietly with SIGPIPE's exit code, as Unix tools do
            _silence_stdout()
            raise typer.Exit(code=EXIT_BROKEN_PIPE) from None
    else:
        from scivae_cli.write_errors import writing

        # a temporary file beside the target, renamed onto it at the end: an error or an interruption removes it
        with writing(output, "-o"), atomic_path(output) as tmp, tmp.open("w") as f:
            for piece in pieces:
                f.write(piece)
    used = "learned" if prior != "standard" and vae.learned_prior is not None else "standard"
    n_valid = stats["valid"]
    distinct = (
        f"{stats['distinct']} distinct valid"
        if stats["distinct"] is not None
        else f"distinct valid not counted (over {COUNT_DISTINCT_UP_TO}: `scivae evaluate` counts them)"
    )
    echo(f"sampled {n} from the {used} prior: {n_valid} valid ({n_valid / n:.3f}), {distinct}")
    if output is not None:
        echo(f"wrote {stats['written']} strings to {output}")


def interpolate(
    model_dir: Annotated[Path, typer.Argument(help=MODEL_HELP)],
    smiles_a: Annotated[str, typer.Argument(help="Start molecule (SMILES).")],
    smiles_b: Annotated[str, typer.Argument(help="End molecule (SMILES).")],
    steps: Annotated[int, typer.Option(help="Points on the path, end points included.")] = 10,
    method: Annotated[str, typer.Option(help="slerp or linear.")] = "slerp",
    json_out: Annotated[bool, typer.Option("--json", help="Print JSON records instead of a table.")] = False,
    threads: Threads = 0,
) -> None:
    """Decode molecules along the latent path between two molecules (greedy decoding).

    A warning line says when an end molecule does not decode to itself (the path then starts or ends elsewhere).
    """
    import warnings

    set_threads(threads)
    vae = _load(model_dir)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        df = vae.interpolate(smiles_a, smiles_b, steps=steps, method=method)
    for w in caught:
        if issubclass(w.category, UserWarning):
            echo(f"warning: {w.message}")
    if json_out:
        typer.echo(df.to_json(orient="records"))  # NaN similarities as null
        return
    for row in df.itertuples(index=False):
        end = " (= a)" if row.same_as_a else " (= b)" if row.same_as_b else ""
        typer.echo(f"{row.t:.3f}\t{row.smiles}\t{'valid' if row.valid else 'invalid'}{end}")
