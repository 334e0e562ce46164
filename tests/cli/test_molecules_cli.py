"""``scivae fit mols.smi``, ``scivae generate`` and ``scivae interpolate``: outputs, seeds, exit code 2."""

from __future__ import annotations

import hashlib
import json

import pytest
import torch
from typer.testing import CliRunner

import scivae_cli.molecules as molcli
from scivae.datasets._moses import moses
from scivae_cli.main import app

runner = CliRunner()


def _sha(path):
    return hashlib.sha256(path.read_bytes()).hexdigest()


@pytest.fixture(scope="module")
def fitted(tmp_path_factory):
    # A tiny architecture keeps the CLI test fast; the command's defaults are the MOSES-VAE sizes.
    tmp = tmp_path_factory.mktemp("molcli")
    data = tmp / "mols.smi"
    data.write_text("SMILES\n" + "\n".join(moses("train", n=300, seed=11)) + "\nnot_a_smiles\n\n")
    before = _sha(data)
    mp = pytest.MonkeyPatch()
    mp.setattr(
        molcli, "MODEL_OVERRIDES", dict(embedding_dim=16, encoder_hidden=32, decoder_hidden=64, decoder_layers=1)
    )
    mp.setattr(molcli, "CHECK_SAMPLES", 50)
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    r = runner.invoke(
        app,
        [
            "fit",
            str(data),
            "--max-epochs",
            "2",
            "--batch-size",
            "64",
            "--n-latent",
            "4",
            "--accelerator",
            "cpu",
            "--seed",
            "1",
            "--lr",
            "0.003",
            "--lr-schedule",
            "cosine",
            "--no-early-stopping",
            "--patience",
            "1",
            "--devices",
            "1",
            "--strategy",
            "auto",
            "--num-nodes",
            "1",
        ],
    )
    torch.set_num_threads(threads)
    mp.undo()
    assert r.exit_code == 0, r.output
    assert _sha(data) == before  # input untouched
    return tmp, data, r


def test_fit_writes_model_and_report(fitted):
    tmp, data, r = fitted
    out = tmp / "mols.scivae"  # default: beside the input
    assert (out / "model" / "model.safetensors").exists() and (out / "model" / "config.json").exists()
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["data"]["n_molecules"] == 300 and metrics["n_latent"] == 4
    assert metrics["epochs_trained"] == 2 and metrics["n_obs_train"] == 285  # --no-early-stopping: all epochs
    assert "1 invalid" in metrics["data"]["summary"] and metrics["prior_samples"]["n"] == 50
    assert (out / "history.csv").exists() and (out / "training_curves.png").exists()
    assert "300 valid molecules of 301 entries" in r.output  # header and trailing blank lines are not entries


def test_generate_seeded_and_to_file(fitted):
    tmp, _, _ = fitted
    model = tmp / "mols.scivae" / "model"
    a, b = tmp / "a.smi", tmp / "b.smi"
    for path in (a, b):
        r = runner.invoke(app, ["generate", str(model), "-n", "30", "-o", str(path), "--seed", "3", "--keep-invalid"])
        assert r.exit_code == 0, r.output
    assert a.read_text() == b.read_text() and len(a.read_text().splitlines()) == 30
    r = runner.invoke(app, ["generate", str(model), "-n", "20", "--seed", "3", "--unique"])
    assert r.exit_code == 0, r.output
    lines = [ln for ln in r.stdout.splitlines() if ln]
    assert len(lines) == len(set(lines))
    c = tmp / "c.csv"
    r = runner.invoke(app, ["generate", str(model), "-n", "10", "-o", str(c), "--seed", "3", "--keep-invalid"])
    assert r.exit_code == 0 and c.read_text().startswith("smiles,valid\n")
    # the fit output folder works as well as its model/, and --accelerator picks where sampling runs
    d = tmp / "d.smi"
    args = ["generate", str(model.parent), "-n", "30", "-o", str(d), "--seed", "3", "--keep-invalid"]
    r = runner.invoke(app, [*args, "--accelerator", "cpu"])
    assert r.exit_code == 0, r.output
    assert d.read_text() == a.read_text()


def test_generate_raw_versus_syntax_constrained(fitted):
    from rdkit import Chem, RDLogger

    tmp, _, _ = fitted
    model = tmp / "mols.scivae" / "model"
    parse_rate = {}
    for flag in ("--raw", "--syntax"):
        out = tmp / f"gen{flag}.smi"
        r = runner.invoke(
            app, ["generate", str(model), "-n", "200", "-o", str(out), "--seed", "4", "--keep-invalid", flag]
        )
        assert r.exit_code == 0, r.output
        RDLogger.DisableLog("rdApp.*")
        parses = [Chem.MolFromSmiles(s, sanitize=False) is not None for s in out.read_text().splitlines()]
        RDLogger.EnableLog("rdApp.*")
        parse_rate[flag] = sum(parses) / len(parses)
    # a two-epoch model writes many syntactically broken strings; the mask removes most of them
    assert parse_rate["--syntax"] > parse_rate["--raw"]


def test_generate_then_evaluate_counts_every_string(fitted):
    """The README pipeline: `generate` writes all n decoded strings, so `evaluate` reports MOSES's figures over all
    of them; a file filtered with --valid-only/--unique is flagged at both ends."""
    tmp, _, _ = fitted
    model = tmp / "mols.scivae" / "model"
    gen = tmp / "all.smi"
    r = runner.invoke(app, ["generate", str(model), "-n", "300", "-o", str(gen), "--seed", "5", "--raw"])
    assert r.exit_code == 0, r.output
    lines = gen.read_text().split("\n")[:-1]
    assert len(lines) == 300  # invalid strings (empty ones included) are kept, one per line
    n_valid = int(r.output.split("sampled 300 from the ")[1].split(": ")[1].split(" valid")[0])
    assert 0 < n_valid < 300  # a 2-epoch model writes invalid strings: the test needs some of each
    figures = tmp / "figures.json"
    r = runner.invoke(app, ["evaluate", str(gen), "--json", str(figures)])
    assert r.exit_code == 0, r.output
    assert "evaluating 300 generated entries" in r.output and "filtered" not in r.output
    assert json.loads(figures.read_text())["valid"] == pytest.approx(n_valid / 300)
    kept = tmp / "valid.smi"
    r = runner.invoke(app, ["generate", str(model), "-n", "300", "-o", str(kept), "--seed", "5", "--raw", "--unique"])
    assert r.exit_code == 0 and "overstates validity and uniqueness" in r.output
    n_kept = len(kept.read_text().splitlines())
    assert n_kept >= 20, n_kept  # below 20 entries a file of distinct valid molecules is not flagged
    r = runner.invoke(app, ["evaluate", str(kept), "--json", str(figures)])
    assert r.exit_code == 0 and json.loads(figures.read_text())["valid"] == 1.0
    assert "warning:" in r.output and "filtered" in r.output


@pytest.fixture
def chunk_of_7(monkeypatch):
    """``generate`` in chunks of 7 molecules; the sizes that ``MolVAE.sample`` was asked for, in order."""
    from scivae.molecules import MolVAE

    sizes: list[int] = []
    original = MolVAE.sample

    def counted(self, n, **kwargs):
        sizes.append(n)
        return original(self, n, **kwargs)

    monkeypatch.setattr(molcli, "GENERATE_CHUNK", 7)
    monkeypatch.setattr(MolVAE, "sample", counted)
    return sizes, original


def test_generate_streams_in_chunks_with_the_same_output_every_time(fitted, chunk_of_7):
    from scivae.molecules import MolVAE

    tmp, _, _ = fitted
    sizes, original = chunk_of_7
    model = tmp / "mols.scivae" / "model"
    args = ["generate", str(model), "-n", "30", "--seed", "3", "--sample-tokens", "--keep-invalid"]
    a, b = tmp / "chunked_a.smi", tmp / "chunked_b.smi"
    for path in (a, b):
        r = runner.invoke(app, [*args, "-o", str(path)])
        assert r.exit_code == 0, r.output
    assert sizes == [7, 7, 7, 7, 2] * 2  # sampled and written a chunk at a time
    lines = a.read_text().split("\n")[:-1]
    assert a.read_text() == b.read_text() and len(lines) == 30
    r = runner.invoke(app, args)  # to stdout: the same strings
    assert r.exit_code == 0 and r.stdout == a.read_text()
    # the first chunk is MolVAE.sample with the command's seed; later chunks draw with seeds of their own
    first = original(MolVAE.load(model), 7, seed=3, greedy=False)
    assert lines[:7] == first["smiles"].where(first["valid"], first["smiles"].fillna("")).tolist()
    assert len({molcli.chunk_seed(3, i) for i in range(5)}) == 5 and molcli.chunk_seed(3, 0) == 3
    assert lines[7:14] != lines[:7]
    csv = tmp / "chunked.csv"  # one header, then every chunk's rows
    r = runner.invoke(app, [*args, "-o", str(csv)])
    assert r.exit_code == 0 and csv.read_text().count("smiles,valid") == 1
    assert len(csv.read_text().splitlines()) == 31


def test_generate_unique_and_valid_only_hold_across_chunks(fitted, chunk_of_7):
    tmp, _, _ = fitted
    model = tmp / "mols.scivae" / "model"
    args = ["generate", str(model), "-n", "40", "--seed", "4"]  # greedy: many repeats
    uniq = tmp / "chunked_unique.smi"
    r = runner.invoke(app, [*args, "--unique", "-o", str(uniq)])
    assert r.exit_code == 0, r.output
    kept = uniq.read_text().splitlines()
    distinct = int(r.output.split(" distinct valid")[0].rsplit(" ", 1)[1])
    assert len(kept) == len(set(kept)) == distinct >= 2 and "" not in kept  # distinct across chunks
    valid = tmp / "chunked_valid.smi"
    r = runner.invoke(app, [*args, "--valid-only", "-o", str(valid)])
    assert r.exit_code == 0, r.output
    n_valid = int(r.output.split("sampled 40 from the ")[1].split(": ")[1].split(" valid")[0])
    assert len(valid.read_text().splitlines()) == n_valid and set(valid.read_text().splitlines()) == set(kept)
    assert n_valid > len(kept)  # repeats were dropped


def test_generate_interrupted_between_chunks_leaves_the_previous_file(fitted, monkeypatch):
    from scivae.molecules import MolVAE

    tmp, _, _ = fitted
    model = tmp / "mols.scivae" / "model"
    out = tmp / "interrupted" / "g.smi"
    out.parent.mkdir()
    out.write_text("previous\n")
    original, calls = MolVAE.sample, []

    def second_chunk_interrupted(self, n, **kwargs):
        calls.append(n)
        if len(calls) == 2:
            raise KeyboardInterrupt
        return original(self, n, **kwargs)

    monkeypatch.setattr(molcli, "GENERATE_CHUNK", 5)
    monkeypatch.setattr(MolVAE, "sample", second_chunk_interrupted)
    r = runner.invoke(app, ["generate", str(model), "-n", "20", "--seed", "1", "-o", str(out)])
    assert r.exit_code == 130 and "Traceback" not in r.output, r.output
    assert out.read_text() == "previous\n" and sorted(p.name for p in out.parent.iterdir()) == ["g.smi"]


def test_generate_to_a_reader_that_stops_ends_quietly(fitted, monkeypatch):
    """`scivae generate ... | head`: the closed pipe stops the sampling with exit code 141 and no error line."""
    tmp, _, _ = fitted

    def chunks(*args, **kwargs):
        yield "C\n"
        raise BrokenPipeError(32, "Broken pipe")  # what the next chunk's write raises once the reader is gone

    monkeypatch.setattr(molcli, "_sampled_text", chunks)
    r = runner.invoke(app, ["generate", str(tmp / "mols.scivae" / "model"), "-n", "10", "--seed", "0"])
    assert r.exit_code == molcli.EXIT_BROKEN_PIPE == 141 and "error" not in r.output, r.output


def test_generate_n_limits(fitted, monkeypatch, tmp_path):
    import pandas as pd

    from scivae.molecules import MolVAE
    from scivae.molecules.model import MAX_SAMPLES

    tmp, _, _ = fitted
    model = tmp / "mols.scivae" / "model"
    msg = _one_line_error(runner.invoke(app, ["generate", str(model), "-n", str(molcli.MAX_GENERATE + 1)]))
    assert f"over the limit of {molcli.MAX_GENERATE}" in msg and "--seed" in msg
    # over MolVAE.sample's in-memory limit the command still runs, one chunk at a time (decoding faked: fast)
    sizes: list[int] = []

    def fake(self, n, **kwargs):
        sizes.append(n)
        return pd.DataFrame({"smiles": ["C"] * n, "valid": [True] * n})

    monkeypatch.setattr(MolVAE, "sample", fake)
    out = tmp_path / "many.smi"
    r = runner.invoke(app, ["generate", str(model), "-n", str(MAX_SAMPLES + 1), "-o", str(out), "--seed", "0"])
    assert r.exit_code == 0, r.output
    assert sum(sizes) == MAX_SAMPLES + 1 and max(sizes) == molcli.GENERATE_CHUNK
    assert out.read_text().count("\n") == MAX_SAMPLES + 1 and "distinct valid not counted" in r.output
    monkeypatch.undo()
    # MolVAE.sample holds its molecules in memory: its lower limit points to several calls or the command
    from scivae.errors import OptionError

    with pytest.raises(OptionError, match="call sample several times .* `scivae generate`") as e:
        MolVAE.load(model).sample(MAX_SAMPLES + 1)
    assert "--" not in str(e.value)


def test_interpolate(fitted):
    tmp, _, _ = fitted
    model = tmp / "mols.scivae" / "model"
    r = runner.invoke(app, ["interpolate", str(model), "CCOc1ccccc1", "CC(=O)Nc1ccccc1", "--steps", "4"])
    assert r.exit_code == 0, r.output
    rows = [ln.split("\t") for ln in r.stdout.splitlines() if "\t" in ln]
    assert len(rows) == 4 and rows[0][0] == "0.000" and rows[-1][0] == "1.000"
    # an end molecule that its code does not rebuild (a 2-epoch model rebuilds none) gets a warning line
    missed = (rows[0][1] != "CCOc1ccccc1") + (rows[-1][1] != "CC(=O)Nc1ccccc1")
    assert missed > 0
    assert sum(ln.startswith("warning: end point") for ln in r.output.splitlines()) == missed
    r2 = runner.invoke(app, ["interpolate", str(model.parent), "CCOc1ccccc1", "CC(=O)Nc1ccccc1", "--steps", "4"])
    assert r2.exit_code == 0 and r2.stdout == r.stdout


def test_plot_draws_the_fit_and_a_molecule_grid(fitted, tmp_path):
    tmp, _, _ = fitted
    out = tmp_path / "pictures"
    r = runner.invoke(app, ["plot", str(tmp / "mols.scivae"), "--out", str(out), "--n-molecules", "6"])
    assert r.exit_code == 0, r.output
    for name in ("training_curves.png", "kl_per_dim.png", "rate_distortion.png", "molecules.png"):
        assert (out / name).read_bytes()[:4] == b"\x89PNG", name
    assert "no history.csv" in _one_line_error(runner.invoke(app, ["plot", str(tmp_path)]))


def _one_line_error(r):
    assert r.exit_code == 2, r.output
    err = [ln for ln in r.output.splitlines() if ln.startswith("error:")]
    assert len(err) == 1 and "Traceback" not in r.output
    return err[0]


def test_bad_input_exits_2(fitted, tmp_path):
    tmp, _, _ = fitted
    model = tmp / "mols.scivae" / "model"
    assert "no such file" in _one_line_error(runner.invoke(app, ["fit", str(tmp_path / "none.smi")]))
    bad = tmp_path / "bad.smi"
    bad.write_text("xx\nC1CC\n")
    assert "no valid molecule" in _one_line_error(runner.invoke(app, ["fit", str(bad)]))
    csv = tmp_path / "m.csv"
    csv.write_text("id,structure\n1,CCO\n")
    assert "--column" in _one_line_error(runner.invoke(app, ["fit", str(csv)]))
    assert "no column 'mol'" in _one_line_error(runner.invoke(app, ["fit", str(csv), "--column", "mol"]))
    assert "alphabet" in _one_line_error(runner.invoke(app, ["fit", str(csv), "--alphabet", "inchi"]))
    assert "--lr-schedule='step'" in _one_line_error(runner.invoke(app, ["fit", str(csv), "--lr-schedule", "step"]))
    assert "--lr=0.0 is not a finite number > 0" in _one_line_error(runner.invoke(app, ["fit", str(csv), "--lr", "0"]))
    assert "model directory" in _one_line_error(runner.invoke(app, ["generate", str(tmp_path), "-n", "3"]))
    if not torch.cuda.is_available():
        msg = _one_line_error(runner.invoke(app, ["generate", str(model), "-n", "3", "--accelerator", "cuda"]))
        assert "no CUDA GPU" in msg and "--accelerator=cpu" in msg
    assert "--accelerator='tpu'" in _one_line_error(
        runner.invoke(app, ["generate", str(model), "-n", "3", "--accelerator", "tpu"])
    )
    assert "-n must be" in _one_line_error(runner.invoke(app, ["generate", str(model), "-n", "0"]))
    msg = _one_line_error(runner.invoke(app, ["interpolate", str(model), "CCO", "c1cc[se]c1"]))
    assert "token '[Se]'" in msg  # the default alphabet writes Kekulé SMILES
    assert "not a valid SMILES" in _one_line_error(runner.invoke(app, ["interpolate", str(model), "CCO", "C1CC"]))
