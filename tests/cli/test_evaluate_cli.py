"""``scivae evaluate``: figures, JSON keys, reuse of test statistics and exit code 2 on bad input."""

import json
import math

import pytest
from typer.testing import CliRunner

from scivae.molecules.data import read_smiles_entries
from scivae.molecules.metrics import MOSES_KEYS
from scivae_cli.main import app

runner = CliRunner()

TEST = [
    "CC(=O)Nc1ccc(-c2ccccc2)cc1",
    "c1ccc2[nH]ccc2c1",
    "O=C(Nc1ccccc1)c1ccncc1",
    "Cc1ccc(Cn2ccnc2)cc1",
    "O=C1CCc2ccccc2N1",
    "Cc1nc2ccccc2s1",
    "CN1CCN(c2ccc(F)cc2)CC1",
    "c1ccc(Oc2ccccc2)cc1",
]
TRAIN = ["CCO", "CCCN", "c1ccccc1", "CC(C)O"]


@pytest.fixture()
def files(tmp_path):
    # 10 entries: 2 invalid ("C1CC", an empty line), 1 training copy written differently (OCC), 1 duplicate.
    gen = tmp_path / "gen.smi"
    lines = ["SMILES", "OCC", "C1CC", "", "c1ccc2[nH]ccc2c1 indole", "Cc1nc2ccccc2s1", "Cc1nc2ccccc2s1"]
    gen.write_text("\n".join([*lines, "CCCCl", "CCN", "CCS", "COC"]) + "\n")
    train = tmp_path / "train.smi"
    train.write_text("\n".join(TRAIN) + "\n")
    test = tmp_path / "test.csv"
    test.write_text("id,SMILES\n" + "".join(f"{i},{s}\n" for i, s in enumerate(TEST)))
    return gen, train, test


def test_reader_keeps_invalid_and_empty_entries(files):
    gen, _, test = files
    assert read_smiles_entries(gen) == [
        "OCC", "C1CC", "", "c1ccc2[nH]ccc2c1", "Cc1nc2ccccc2s1", "Cc1nc2ccccc2s1", "CCCCl", "CCN", "CCS", "COC",
    ]  # fmt: skip
    assert read_smiles_entries(test) == TEST


def test_evaluate_writes_moses_keys_and_known_figures(files, tmp_path):
    gen, train, test = files
    out = tmp_path / "metrics.json"
    r = runner.invoke(app, ["evaluate", str(gen), "--train", str(train), "--test", str(test), "--json", str(out)])
    assert r.exit_code == 0, r.output
    res = json.loads(out.read_text())
    assert list(res) == list(MOSES_KEYS)
    assert res["valid"] == pytest.approx(8 / 10)
    assert res["unique@1000"] == pytest.approx(7 / 8)
    assert res["Novelty"] == pytest.approx(6 / 7)  # ethanol is in the training set
    assert 0 < res["IntDiv"] < 1 and 0 < res["SNN/Test"] < 1 and res["FCD/Test"] > 0
    assert "FCD/Test" in r.output and "Novelty" in r.output  # the table
    assert "unique@10000" in r.output and "warning" in r.output  # fewer than 10,000 molecules


def test_evaluate_reuses_saved_test_statistics(files, tmp_path):
    gen, _, test = files
    stats, a, b = tmp_path / "test_stats.npz", tmp_path / "a.json", tmp_path / "b.json"
    r = runner.invoke(app, ["evaluate", str(gen), "--test", str(test), "--test-stats", str(stats), "--json", str(a)])
    assert r.exit_code == 0, r.output
    assert stats.exists()
    r = runner.invoke(app, ["evaluate", str(gen), "--test-stats", str(stats), "--json", str(b)])
    assert r.exit_code == 0, r.output
    ra, rb = json.loads(a.read_text()), json.loads(b.read_text())
    assert "Novelty" not in ra and set(ra) == set(rb)
    for key in ra:
        assert rb[key] == pytest.approx(ra[key], abs=1e-9)


def test_no_valid_generated_molecule_writes_null_not_nan(tmp_path):
    gen = tmp_path / "gen.smi"
    gen.write_text("xx\nC1CC\n")
    out = tmp_path / "m.json"
    r = runner.invoke(app, ["evaluate", str(gen), "--json", str(out)])
    assert r.exit_code == 0, r.output
    res = json.loads(out.read_text())  # strict JSON: no NaN token
    assert res["valid"] == 0.0 and res["IntDiv"] is None
    assert not any(isinstance(v, float) and math.isnan(v) for v in res.values())


@pytest.mark.parametrize(
    ("make_args", "message"),
    [
        (lambda d, g: [str(d / "missing.smi")], "does not exist"),
        (lambda d, g: [str(g), "--test", str(d / "bad_test.smi")], "no valid molecule in the test set"),
        (lambda d, g: [str(g), "--train", str(d / "bad_test.smi")], "no valid molecule in the training set"),
        (lambda d, g: [str(d / "gen.sdf")], "unsupported file type"),
        (lambda d, g: [str(d / "empty.smi")], "no molecules in generated file"),
        (lambda d, g: [str(g), "--test-stats", str(d / "gen.sdf")], "(--test with --test-stats)"),
        (lambda d, g: [str(d / "two_cols.csv")], "--column"),
    ],
)
def test_bad_input_exits_2_with_one_line(tmp_path, make_args, message):
    g = tmp_path / "gen.smi"
    g.write_text("CCO\nCCN\n")
    (tmp_path / "bad_test.smi").write_text("xx\nC1CC\n")
    (tmp_path / "gen.sdf").write_text("CCO\n")
    (tmp_path / "empty.smi").write_text("\n\n")
    (tmp_path / "two_cols.csv").write_text("a,b\nCCO,1\n")
    out = tmp_path / "never.json"
    r = runner.invoke(app, ["evaluate", *make_args(tmp_path, g), "--json", str(out)])
    assert r.exit_code == 2, r.output
    errors = [ln for ln in r.output.splitlines() if ln.startswith("error:")]
    assert len(errors) == 1 and message in errors[0], r.output
    assert "Traceback" not in r.output
    assert not out.exists()
