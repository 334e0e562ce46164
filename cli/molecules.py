"""Molecule commands: ``scivae fit mols.smi``, ``scivae generate`` and ``scivae interpolate``.

Bad input raises :class:`~scivae.errors.ScivaeInputError`; ``scivae_cli.main`` turns it into one ``error:``
line and exit code 2. Outputs are written atomically and inputs are never modified.
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Annotated, Any

import typer

from scivae._atomic import write_text_atomic
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




def generate(
    model_dir: Annotated[Path, typer.Argument(help=MODEL_HELP)],
    n: Annotated[int, typer.Option("-n", "--n", help="Number of molecules to sample.")],
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
        bool, typer.Option("--unique", help="Keep only distinct valid molecules (the file is then no MOSES sample).")
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
    """
    from scivae.core.options import positive_float, positive_int

    if n < 1:
        raise ScivaeInputError(f"-n must be >= 1, got {n}")
    positive_float(temperature, "temperature")
    positive_int(batch_size, "batch_size")
    if prior is not None and prior not in ("learned", "standard"):
        raise ScivaeInputError(f"--prior {prior!r}: use learned or standard")
    if output is not None and output.suffix.lower() not in (".smi", ".txt", ".csv"):
        raise ScivaeInputError(f"{output.name}: write to a .smi, .txt or .csv file")
    if output is not None:
        check_writable(output.parent, "-o")
    set_threads(threads)
    vae = _load(model_dir)
    df = vae.sample(
        n,
        temperature=temperature,
        greedy=not sample_tokens,
        batch_size=batch_size,
        seed=seed,
        syntax=syntax,
        device=_device(accelerator),
        prior=prior,
    )
    n_valid = int(df["valid"].sum())
    n_distinct = int(df.loc[df["valid"], "smiles"].nunique())
    used = "learned" if prior != "standard" and vae.learned_prior is not None else "standard"
    echo(f"sampled {n} from the {used} prior: {n_valid} valid ({n_valid / n:.3f}), {n_distinct} distinct valid")
    if valid_only:
        df = df[df["valid"]]
    if unique:
        df = df[df["valid"]].drop_duplicates("smiles")
    if valid_only or unique:
        echo(
            "warning: the output holds only the valid"
            + (" distinct" if unique else "")
            + " molecules: `scivae evaluate` on it overstates validity and uniqueness (MOSES counts all n generated "
            "strings); generate without --valid-only/--unique for a MOSES sample"
        )
    strings = df["smiles"].where(df["valid"], df["smiles"].fillna(""))
    if output is None:
        sys.stdout.write("".join(f"{s}\n" for s in strings))
        return
    if output.suffix.lower() == ".csv":
        text = df[["smiles", "valid"]].to_csv(index=False)
    else:
        text = "".join(f"{s}\n" for s in strings)
    write_text_atomic(output, text)
    echo(f"wrote {len(df)} strings to {output}")


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
