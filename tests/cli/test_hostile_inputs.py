"""The hostile-input contract (:mod:`tests.cli.hostile_corpus`): no crash, no traceback, one line, nothing lost.

Every command case exits with its documented code (2 for bad input, 1 for a full disk) and ends with one
``error:`` line holding the expected words, its inputs (and any foreign files in an output folder) byte-identical
and its outputs absent. Every Python case raises the typed error, with a message that names no command-line flag.
A seeded fuzz pass (:mod:`benchmarks.reliability.fuzzing`) overwrites bytes of, or truncates, a small ``.h5ad``, a
``.smi`` and a file of a model folder, in a child process (a segmentation fault or a hang there fails the test
instead of killing the test run).
"""

from __future__ import annotations

import json
import os
import signal

import pytest
from typer.testing import CliRunner

from benchmarks.reliability.fuzzing import KINDS, MODES, FuzzAssets, findings, run_cases
from scivae_cli.main import app
from tests.cli.bad_input_corpus import fingerprint, leftovers
from tests.cli.hostile_corpus import CASES, FIT, Assets, Hostile, build_assets

runner = CliRunner()


@pytest.fixture(scope="module")
def assets(tmp_path_factory) -> Assets:
    return build_assets(tmp_path_factory.mktemp("hostile_assets"))


def test_the_corpus_is_large_and_covers_every_group() -> None:
    groups = {name.split("/")[0] for name in CASES}
    assert len(CASES) >= 150, len(CASES)
    assert groups == {
        "sparse",
        "smiles_file",
        "smiles_string",
        "model",
        "seed",
        "size",
        "output",
        "disk_full",
        "memory",
    }


def _problems_of_command(h: Hostile, monkeypatch) -> tuple[list[str], str]:
    before = {p: fingerprint(p) for p in h.inputs}
    if h.patch is not None:
        h.patch(monkeypatch)
    r = runner.invoke(app, h.args)
    monkeypatch.undo()
    text = r.output.strip()
    lines = text.splitlines()
    problems = []
    if r.exit_code != h.code:
        problems.append(f"exit code {r.exit_code}, expected {h.code}")
    if "Traceback" in text or r.exception is not None and not isinstance(r.exception, SystemExit):
        problems.append(f"traceback ({type(r.exception).__name__})")
    last = lines[-1] if lines else ""
    if not last.startswith("error: "):
        problems.append("no 'error:' line at the end")
    if h.code == 2 and len(lines) != 1:
        problems.append(f"{len(lines)} lines, not one")
    if not any(e in last for e in h.expect):
        problems.append(f"message lacks {h.expect}")
    problems += [f"input changed: {p.name}" for p, sha in before.items() if not p.exists() or fingerprint(p) != sha]
    for p in h.absent:
        if p.exists() or p.is_symlink():
            problems.append(f"output left: {p.name}")
        if leftovers(p):
            problems.append(f"temporary left: {leftovers(p)}")
    return problems, text


def _problems_of_call(h: Hostile) -> tuple[list[str], str]:
    before = {p: fingerprint(p) for p in h.inputs}
    problems = []
    try:
        h.call()
    except BaseException as e:  # noqa: BLE001 (what was raised is the test)
        text = str(e)
        if h.raises is not None and not isinstance(e, h.raises):
            problems.append(f"raised {type(e).__name__}, expected {h.raises.__name__}")
    else:
        text = ""
        problems.append("nothing raised")
    if text and not any(e in text for e in h.expect):
        problems.append(f"message lacks {h.expect}")
    if "\n" in text.strip() or " --" in text:  # one line, naming Python arguments, never a flag
        problems.append("not one line free of flags")
    problems += [f"input changed: {p.name}" for p, sha in before.items() if fingerprint(p) != sha]
    return problems, text


@pytest.mark.parametrize("name", list(CASES))
def test_hostile_input(name, assets, tmp_path, monkeypatch) -> None:
    h = CASES[name](assets, tmp_path)
    problems, text = _problems_of_call(h) if h.args is None else _problems_of_command(h, monkeypatch)
    assert not problems, f"{name}: {'; '.join(problems)}\n{text[-600:]}"


# -- the rest of the reliability issue: extras, interruptions ----------------------------------------------
def test_a_failing_umap_is_a_warning_after_the_model_is_written(assets, tmp_path, monkeypatch) -> None:
    import scivae_cli.plot

    def broken_umap(*args, **kwargs):
        raise ValueError("n_neighbors must be greater than 1")  # what one cell per batch gave

    monkeypatch.setattr(scivae_cli.plot, "cell_umap_png", broken_umap)
    out = tmp_path / "out"
    r = runner.invoke(app, ["fit", str(assets.cells), *FIT, "--out", str(out), "--batch-key", "sample"])
    assert r.exit_code == 0, r.output
    assert "warning: latent_umap.png was not drawn (ValueError: n_neighbors" in r.output
    assert (out / "model" / "model.safetensors").is_file() and (out / "embedded.h5ad").is_file()
    assert not (out / "latent_umap.png").exists() and (out / "metrics.json").is_file()


def _sigterm_at_step(at: int):
    from scivae.cells.module import CellVAEModule

    original = CellVAEModule.loss

    def loss(self, batch, *args, **kwargs):
        if self.training and kwargs.get("step") == at:
            os.kill(os.getpid(), signal.SIGTERM)  # the handler raises at the next bytecode
        return original(self, batch, *args, **kwargs)

    return loss


def test_sigterm_stops_a_fit_with_143_one_line_and_a_checkpoint_to_resume(assets, tmp_path, monkeypatch) -> None:
    from scivae.cells.module import CellVAEModule

    monkeypatch.setattr(CellVAEModule, "loss", _sigterm_at_step(5))  # 3 steps per epoch: after epoch 0's checkpoint
    out = tmp_path / "out"
    args = ["fit", str(assets.cells), *FIT, "--max-epochs", "3", "--out", str(out), "--checkpoint-every", "0"]
    previous = signal.getsignal(signal.SIGTERM)
    r = runner.invoke(app, args)
    assert signal.getsignal(signal.SIGTERM) == previous  # the command's handler is gone again
    assert r.exit_code == 143, r.output
    last = r.output.strip().splitlines()[-1]
    assert last.startswith("interrupted (SIGTERM): the last checkpoint is kept in") and last.endswith("--resume")
    assert "Traceback" not in r.output and (out / "checkpoints" / "last.ckpt").is_file()
    monkeypatch.undo()
    r = runner.invoke(app, [*args, "--resume"])
    assert r.exit_code == 0, r.output
    assert json.loads((out / "metrics.json").read_text())["resumes"] == 1


def test_sigterm_before_the_first_checkpoint_leaves_no_output_folder(assets, tmp_path, monkeypatch) -> None:
    from scivae.cells.module import CellVAEModule

    monkeypatch.setattr(CellVAEModule, "loss", _sigterm_at_step(1))
    out = tmp_path / "out"
    r = runner.invoke(app, ["fit", str(assets.cells), *FIT, "--out", str(out), "--checkpoint-every", "0"])
    assert r.exit_code == 143, r.output
    assert r.output.strip().splitlines()[-1].startswith("interrupted (SIGTERM): no epoch had finished")
    assert not out.exists() and not leftovers(out)


def test_a_custom_checkpoint_folder_is_left_as_found(assets, tmp_path) -> None:
    ckpt = tmp_path / "ckpts"
    ckpt.mkdir()
    (ckpt / "notes.txt").write_text("mine")
    out = tmp_path / "out"
    r = runner.invoke(app, ["fit", str(assets.cells), *FIT, "--out", str(out), "--checkpoint-dir", str(ckpt)])
    assert r.exit_code == 0, r.output
    assert [p.name for p in ckpt.iterdir()] == ["notes.txt"] and (ckpt / "notes.txt").read_text() == "mine"


def test_ctrl_c_in_any_command_exits_130_with_one_line(assets, monkeypatch) -> None:
    import scivae_cli.molecules

    def interrupted_load(*args, **kwargs):
        os.kill(os.getpid(), signal.SIGINT)

    monkeypatch.setattr(scivae_cli.molecules, "_load", interrupted_load)
    r = runner.invoke(app, ["generate", str(assets.mol_model), "-n", "3", "--threads", "1"])
    assert r.exit_code == 130 and r.output.strip() == "interrupted (SIGINT)"


def test_folders_written_by_scivae_carry_the_marker_and_stay_replaceable(assets, tmp_path) -> None:
    from scivae_cli.fit_output import MARKER_FILE

    out = tmp_path / "out"
    args = ["fit", str(assets.cells), *FIT, "--out", str(out)]
    assert runner.invoke(app, args).exit_code == 0
    assert json.loads((out / MARKER_FILE).read_text())["written_by"] == "scivae"
    r = runner.invoke(app, [*args, "--force", "--seed", "3"])
    assert r.exit_code == 0, r.output
    assert json.loads((out / "metrics.json").read_text())["params"]["seed"] == 3


# -- seeded fuzz (benchmarks/reliability/fuzzing.py, which runs many more seeds): bytes overwritten or the file
# -- truncated, in a .h5ad (in memory and --backed), a .smi and a model folder, in a child process ---------------
FUZZ_SEEDS = 10  # per kind and mode: 20 per kind; the benchmark runs hundreds


def test_fuzzed_inputs_never_crash(assets, tmp_path) -> None:
    fuzz = FuzzAssets(assets.cells, assets.smiles, assets.mol_model)
    before = {kind: fingerprint(fuzz.source(kind)) for kind in KINDS}
    cases = [(kind, mode, seed) for kind in KINDS for mode in MODES for seed in range(FUZZ_SEEDS)]
    results = run_cases(fuzz, cases, tmp_path, case_timeout=120)  # one child (restarted after a crash or hang)
    assert [(r["kind"], r["mode"], r["seed"]) for r in results] == cases
    bad = findings(results)  # a crash, a hang, a traceback, another exit code or an untyped load error
    assert not bad, bad
    for kind in ("h5ad", "backed"):  # most corruptions are seen and refused
        assert sum(r["code"] == 2 for r in results if r["kind"] == kind) >= FUZZ_SEEDS
    assert {kind: fingerprint(fuzz.source(kind)) for kind in KINDS} == before  # only their copies were read
