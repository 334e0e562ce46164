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
from scivae_cli.fit_output import FitOutput, check_writable, fit_and_publish

#: Defaults of ``scivae fit`` on molecules (None on the command line means "use these"); ``check_samples``
#: prior samples are drawn after the fit for the report's validity figure. Everything else is
#: :class:`~scivae.MolVAE`'s default.
FIT_DEFAULTS: dict[str, Any] = {"max_epochs": 50, "batch_size": 128, "check_samples": 1000}
#: Extra :class:`~scivae.MolVAE` arguments of ``scivae fit`` (empty: the model's defaults; tests shrink it).
MODEL_OVERRIDES: dict[str, Any] = {}
#: The prior samples drawn after the fit (``smiles``, ``valid``), written beside the model and the report.
SAMPLES_FILE = "samples.csv"


def _echo(msg: str) -> None:
    typer.echo(msg, err=True)


def default_out(data: Path) -> Path:
    """``mols.smi`` -> ``mols.scivae/`` beside the input (``.csv.gz`` counts as one suffix)."""
    name = data.name
    for suf in (".csv.gz", ".smi.gz", ".txt.gz", ".csv", ".smi", ".txt"):
        if name.lower().endswith(suf):
            name = name[: -len(suf)]
            break
    return data.parent / f"{name}.scivae"


def fit_molecules(
    data: Path,
    *,
    out: Path | None = None,
    alphabet: str | None = None,
    column: str | None = None,
    max_length: int | None = None,
    architecture: str = "auto",
    prior: str | None = None,
    n_latent: int | None = None,
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
    seed: int = 0,
    resume: bool = False,
    force: bool = False,
    checkpoint_dir: Path | None = None,
    checkpoint_every: float = 10.0,
    settings: dict[str, Any] | None = None,
) -> None:
    """Train a molecule VAE on a SMILES file; write ``OUT/model/``, ``OUT/samples.csv`` and the fit report.

    ``None`` arguments take :class:`~scivae.MolVAE`'s defaults (architecture sized for the device, 50 epochs
    with early stopping or ``max_time`` minutes, batch 128, cosine learning rate, linear KL warm-up). The three
    outputs appear together, as one folder swapped into place (see :mod:`scivae_cli.fit_output` for
    ``resume``, ``force`` and checkpoints).
    """
    from scivae.checks import positive_int
    from scivae.core import make_schedule, write_fit_report
    from scivae.molecules import MolVAE, read_smiles_file
    from scivae.molecules.tokenizer import check_alphabet
    from scivae.molecules.vae import DEFAULT_PRIOR

    data = Path(data)
    alphabet = check_alphabet(alphabet or MolVAE.DEFAULT_ALPHABET)
    out = Path(out) if out is not None else default_out(data)
    epochs = positive_int(max_epochs if max_epochs is not None else FIT_DEFAULTS["max_epochs"], "max_epochs")
    bs = positive_int(batch_size if batch_size is not None else FIT_DEFAULTS["batch_size"], "batch_size")
    options: dict[str, Any] = {"lr": lr, "lr_schedule": lr_schedule, "kl_warmup": kl_warmup, "max_time": max_time}
    if kl_schedule is not None:
        options["kl_schedule"] = make_schedule(kl_schedule, warmup=kl_warmup)
    output = FitOutput(out, data, settings=settings, resume=resume, force=force, checkpoint_dir=checkpoint_dir)
    output.check()

    molecules = read_smiles_file(data, column=column, max_length=max_length)
    _echo(f"read {molecules.summary()}")
    kwargs: dict[str, Any] = {"architecture": architecture, **MODEL_OVERRIDES, "alphabet": alphabet, "seed": seed}
    if n_latent is not None:
        kwargs["n_latent"] = n_latent
    if free_bits is not None:
        kwargs["free_bits"] = free_bits
    if beta is not None:
        kwargs["beta"] = beta
    vae = MolVAE(molecules, **kwargs)
    _echo(f"{vae!r}; vocabulary of {len(vae.vocab)} tokens, longest molecule {vae.vocab.max_tokens} tokens")
    if resume:
        _echo(f"resuming from {output.checkpoint}")

    def fit(checkpointing: dict[str, Any]) -> Any:
        vae.fit(
            max_epochs=epochs,
            batch_size=bs,
            accelerator=accelerator,
            devices=devices,
            strategy=strategy,
            num_nodes=num_nodes,
            early_stopping=early_stopping,
            patience=patience,
            seed=seed,
            prior=None if prior == "standard" else (prior or DEFAULT_PRIOR),
            **{k: v for k, v in options.items() if v is not None},
            **checkpointing,
        )
        return vae.fit_result

    n_check = int(FIT_DEFAULTS["check_samples"])
    samples: dict[str, Any] = {}

    def write(folder: Path, result: Any) -> None:
        check = vae.sample(n_check, seed=seed)
        valid = check.loc[check["valid"], "smiles"]
        samples.update(
            n=n_check,
            valid=float(check["valid"].mean()),
            unique_valid=int(valid.nunique()),
            novel_valid=int(len(set(valid) - set(vae.training_smiles))),
            seed=seed,
            prior="learned" if vae.learned_prior is not None else "standard",
        )
        extra = {
            "data": {
                "path": str(data),
                "alphabet": alphabet,
                "n_molecules": len(vae.training_smiles),
                "summary": vae.data_summary,
            },
            "prior_samples": dict(samples),
        }
        vae.save(folder / "model")
        check.to_csv(folder / SAMPLES_FILE, index=False)
        write_fit_report(folder, result, extra=extra)

    result = fit_and_publish(output, fit, write, checkpoint_every=checkpoint_every)
    if not result.is_global_zero:  # the other DDP processes only trained
        return
    m = result.metrics
    _echo(
        f"trained {m.get('epochs_trained')} epochs in {m.get('time_s', 0):.0f} s; validation ELBO "
        f"{m.get('elbo_validation', float('nan')):.2f} nats/molecule, KL {m.get('kl_validation', float('nan')):.2f}, "
        f"{m.get('active_units')}/{vae.n_latent} active units; {n_check} prior samples ({samples['prior']} prior): "
        f"{samples['valid']:.3f} valid"
    )
    _echo(f"model: {out / 'model'}  samples: {out / SAMPLES_FILE}  report: {out / 'metrics.json'}")


def _device(name: str) -> str:
    """Check a ``--device`` name: ``auto``, ``cpu``, or an available CUDA device."""
    import torch

    try:
        device = torch.device("cuda" if name == "auto" and torch.cuda.is_available() else name.replace("auto", "cpu"))
    except RuntimeError:
        raise ScivaeInputError(f"--device {name!r}: use auto, cpu, cuda or cuda:N") from None
    if device.type == "cuda" and not torch.cuda.is_available():
        raise ScivaeInputError(f"--device {name}: no CUDA device is available here; use --device cpu")
    if device.type not in ("cpu", "cuda"):
        raise ScivaeInputError(f"--device {name!r}: use auto, cpu, cuda or cuda:N")
    return str(device)


def _load(model_dir: Path) -> Any:
    from scivae.molecules import MolVAE

    return MolVAE.load(model_dir)


MODEL_HELP = "Output folder of `scivae fit` (OUT) or its model folder (OUT/model)."


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
    device: Annotated[str, typer.Option(help="auto (a GPU when there is one), cpu, cuda or cuda:N.")] = "auto",
) -> None:
    """Sample molecules from a trained molecule VAE's prior; print SMILES or write them to a file.

    Every one of the n decoded strings is written, invalid ones included (an empty line where nothing was
    decoded), so that `scivae evaluate` gives MOSES's figures over all generated strings.
    """
    from scivae.checks import positive_float, positive_int

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
    vae = _load(model_dir)
    df = vae.sample(
        n,
        temperature=temperature,
        greedy=not sample_tokens,
        batch_size=batch_size,
        seed=seed,
        syntax=syntax,
        device=_device(device),
        prior=prior,
    )
    n_valid = int(df["valid"].sum())
    n_distinct = int(df.loc[df["valid"], "smiles"].nunique())
    used = "learned" if prior != "standard" and vae.learned_prior is not None else "standard"
    _echo(f"sampled {n} from the {used} prior: {n_valid} valid ({n_valid / n:.3f}), {n_distinct} distinct valid")
    if valid_only:
        df = df[df["valid"]]
    if unique:
        df = df[df["valid"]].drop_duplicates("smiles")
    if valid_only or unique:
        _echo(
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
    _echo(f"wrote {len(df)} strings to {output}")


def interpolate(
    model_dir: Annotated[Path, typer.Argument(help=MODEL_HELP)],
    smiles_a: Annotated[str, typer.Argument(help="Start molecule (SMILES).")],
    smiles_b: Annotated[str, typer.Argument(help="End molecule (SMILES).")],
    steps: Annotated[int, typer.Option(help="Points on the path, end points included.")] = 10,
    method: Annotated[str, typer.Option(help="slerp or linear.")] = "slerp",
    json_out: Annotated[bool, typer.Option("--json", help="Print JSON records instead of a table.")] = False,
) -> None:
    """Decode molecules along the latent path between two molecules (greedy decoding).

    A warning line says when an end molecule does not decode to itself (the path then starts or ends elsewhere).
    """
    import warnings

    vae = _load(model_dir)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        df = vae.interpolate(smiles_a, smiles_b, steps=steps, method=method)
    for w in caught:
        if issubclass(w.category, UserWarning):
            _echo(f"warning: {w.message}")
    if json_out:
        typer.echo(df.to_json(orient="records"))  # NaN similarities as null
        return
    for row in df.itertuples(index=False):
        end = " (= a)" if row.same_as_a else " (= b)" if row.same_as_b else ""
        typer.echo(f"{row.t:.3f}\t{row.smiles}\t{'valid' if row.valid else 'invalid'}{end}")
