"""`scivae de MODEL DATA --groupby ... --group1 ...`: the table written atomically, one-line errors with exit 2."""

from __future__ import annotations

import hashlib
import warnings
from pathlib import Path

import pandas as pd
import pytest
import torch
from typer.testing import CliRunner

from scivae.cells import CellVAE
from scivae_cli.differential import default_out
from scivae_cli.main import app
from tests.cells.test_differential import CORE_ISGS, ifnb_cells

runner = CliRunner()


@pytest.fixture(scope="module")
def fitted(tmp_path_factory) -> tuple[Path, Path]:
    """The IFN-beta cells (.h5ad, with obs cell_type) and a model fitted on them (its folder)."""
    torch.set_num_threads(1)
    tmp = tmp_path_factory.mktemp("de")
    cells = ifnb_cells()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        model = CellVAE(cells, n_latent=10, n_hidden=64, seed=0).fit(max_epochs=30, progress_bar=False)
    data = tmp / "ifnb.h5ad"
    cells.write_h5ad(data)
    return model.save(tmp / "fit" / "model"), data


def _one_line_error(r, expected: str) -> str:
    assert r.exit_code == 2, r.output
    text = r.output.strip()
    assert text.startswith("error: ") and expected in text and "Traceback" not in text, text
    assert len(text.splitlines()) == 1, text
    return text


def test_de_writes_the_table(fitted, tmp_path: Path) -> None:
    model_dir, data = fitted
    sha = hashlib.sha256(data.read_bytes()).hexdigest()
    out = tmp_path / "de.csv"
    args = ["de", str(model_dir.parent), str(data), "--groupby", "condition", "--group1", "stim", "--group2", "ctrl"]
    r = runner.invoke(app, [*args, "-o", str(out), "--n-samples", "2000"])
    assert r.exit_code == 0, r.output
    assert hashlib.sha256(data.read_bytes()).hexdigest() == sha  # the input is only read
    table = pd.read_csv(out, index_col="gene")
    assert len(table) == 400 and {"lfc_mean", "proba_de", "bayes_factor", "is_de_fdr_0.05"} <= set(table.columns)
    assert (table["comparison"] == "stim vs ctrl").all()
    # all cells, stimulated against control: the interferon response first (measured: the top ten all ISGs)
    assert set(CORE_ISGS) <= set(table.index[:30]), list(table.index[:30])
    assert "ISG15" in r.output and "genes DE at expected FDR <= 0.05" in r.output and f"wrote {out}" in r.output
    # the model folder itself, pooled groups, the default output path beside the data
    r = runner.invoke(
        app,
        ["de", str(model_dir), str(data), "--groupby", "cell_type", "--group1", "CD14 Mono", "--n-samples", "500"],
    )
    assert r.exit_code == 0, r.output
    assert default_out(data) == data.parent / "ifnb.de.csv" and default_out(data).is_file()
    assert not list(tmp_path.glob(".*.tmp")) and not list(data.parent.glob(".*.tmp"))  # nothing half-written


def test_de_bad_input_is_one_line(fitted, tmp_path: Path) -> None:
    model_dir, data = fitted
    base = ["de", str(model_dir), str(data), "-o", str(tmp_path / "x.csv")]
    text = _one_line_error(runner.invoke(app, [*base, "--groupby", "cell_typo", "--group1", "a"]), "--groupby")
    assert "is not an obs column" in text and "condition" in text and "cell_type" in text
    text = _one_line_error(runner.invoke(app, [*base, "--groupby", "condition", "--group1", "STIM"]), "--group1=STIM")
    assert "ctrl" in text and "stim" in text
    _one_line_error(
        runner.invoke(app, [*base, "--groupby", "condition", "--group1", "stim", "--batch-correction"]),
        "--batch-correction needs a model trained with a batch key",
    )
    _one_line_error(
        runner.invoke(app, [*base, "--groupby", "condition", "--group1", "stim", "--delta", "-1"]), "--delta"
    )
    _one_line_error(
        runner.invoke(
            app, ["de", str(model_dir), str(data), "--groupby", "condition", "--group1", "stim", "-o", str(data)]
        ),
        "is the input file",
    )
    _one_line_error(
        runner.invoke(app, ["de", str(tmp_path), str(data), "--groupby", "condition", "--group1", "stim"]), "error"
    )
    assert not (tmp_path / "x.csv").exists()
