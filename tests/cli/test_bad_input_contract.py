"""The bad-input contract: every case of the corpus exits with code 2 and one line, inputs intact, no output.

The Python API raises the typed :mod:`scivae.errors` exception with the same message.
"""

from __future__ import annotations

from pathlib import Path

import pytest
from typer.testing import CliRunner

from scivae.errors import ModelFormatError, OptionError, ScivaeInputError
from scivae_cli.main import app
from tests.cli.bad_input_corpus import Case, build_corpus, fingerprint, leftovers

runner = CliRunner()


@pytest.fixture(scope="module")
def corpus(tmp_path_factory) -> tuple[Path, dict[str, Case]]:
    root = tmp_path_factory.mktemp("corpus")
    return root, {c.name: c for c in build_corpus(root)}


def _run(case: Case) -> tuple[int, str, list[str]]:
    """Exit code, output, and what broke the contract."""
    before = {p: fingerprint(p) for p in case.inputs}
    r = runner.invoke(app, case.args)
    text = r.output.strip()
    problems = []
    if r.exit_code != 2:
        problems.append(f"exit code {r.exit_code}")
    if len(text.splitlines()) != 1 or not text.startswith("error: ") or "Traceback" in text:
        problems.append("not one 'error:' line")
    if case.expect not in text:
        problems.append(f"message lacks {case.expect!r}")
    problems += [f"input changed: {p.name}" for p, sha in before.items() if fingerprint(p) != sha]
    for p in case.absent:
        if p.exists() or p.is_symlink():
            problems.append(f"output left: {p.name}")
        if leftovers(p):
            problems.append(f"temporary left: {leftovers(p)}")
    return r.exit_code, text, problems


def test_every_bad_input_exits_2_with_one_line_and_leaves_nothing(corpus) -> None:
    root, cases = corpus
    assert len(cases) >= 50 and {c.group for c in cases.values()} == {
        "files", "counts", "keys", "smiles", "model", "options",
    }  # fmt: skip
    failures = []
    for case in cases.values():
        _, text, problems = _run(case)
        if problems:
            failures.append(f"{case.group}/{case.name}: {'; '.join(problems)}\n    {text[:300]}")
    assert not failures, "\n".join(failures)
    assert not (root / "out").exists() or not any((root / "out").iterdir())


def _cli_message(case: Case) -> str:
    _, text, problems = _run(case)
    assert not problems, (problems, text)
    return text.removeprefix("error: ")


def test_the_python_api_raises_typed_errors_with_the_same_messages(corpus) -> None:
    # the same message, naming Python arguments where the CLI names its flags
    import anndata as ad

    from scivae import CellVAE, MolVAE
    from scivae.cells import read_anndata
    from scivae.core.options import check_accelerator
    from scivae.molecules import read_smiles_file
    from scivae_cli.common import flag

    root, cases = corpus
    with pytest.raises(ScivaeInputError) as e:
        read_anndata(root / "truncated.h5ad")
    assert e.value.render(flag) == _cli_message(cases["truncated_h5ad"])
    with pytest.raises(ScivaeInputError) as e:
        CellVAE(ad.read_h5ad(root / "lognorm.h5ad"))
    assert e.value.render(flag) == _cli_message(cases["log_normalised"])
    with pytest.raises(ScivaeInputError) as e:
        CellVAE(ad.read_h5ad(root / "one_cell.h5ad"))
    assert e.value.render(flag) == _cli_message(cases["single_cell"])
    with pytest.raises(ScivaeInputError) as e:
        read_smiles_file(root / "long.smi")
    assert e.value.render(flag) == _cli_message(cases["smiles_3000_characters"])
    with pytest.raises(ModelFormatError) as e:
        CellVAE.load(root / "broken_models" / "huge")
    assert e.value.render(flag) == _cli_message(cases["config_absurd_size_cells"])
    with pytest.raises(ModelFormatError) as e:
        MolVAE.load(root / "broken_models" / "torch_file")
    assert e.value.render(flag) == _cli_message(cases["torch_save_in_folder"])
    model = CellVAE(ad.read_h5ad(root / "cells.h5ad"), n_latent=3)
    with pytest.raises(OptionError) as e:
        model.fit(batch_size=0)
    assert e.value.render(flag) == _cli_message(cases["zero_batch_size"])
    with pytest.raises(OptionError) as e:
        check_accelerator("auto", "two")
    assert e.value.render(flag) == _cli_message(cases["bad_devices"])
