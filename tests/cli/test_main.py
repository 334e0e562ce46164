import re

from typer.testing import CliRunner

from scivae import __version__
from scivae_cli.main import app

runner = CliRunner()


def _value(out: str, label: str) -> float:
    return float(re.search(rf"{label}\s*=\s*(-?[0-9.]+)", out).group(1))


def test_version_and_help():
    r = runner.invoke(app, ["--version"])
    assert r.exit_code == 0 and __version__ in r.output
    r = runner.invoke(app, ["--help"])
    assert r.exit_code == 0 and "demo-1d" in r.output and "fit" in r.output


def test_demo_1d_primer_figures():
    r = runner.invoke(app, ["demo-1d"])
    assert r.exit_code == 0, r.output
    out = r.output
    assert _value(out, "mean") == 2.49 and _value(out, r"SD \(population\)") == 1.316
    assert _value(out, "mean KL") == 0.597 and _value(out, r"ELBO = -\(recon \+ KL\)") == -0.597
    row = next(line for line in out.splitlines() if line.strip().startswith("4.500"))
    x, z_mean, z_var, x_hat, recon, kl = map(float, row.split())
    assert (z_mean, z_var, x_hat, recon) == (1.527, 0.5, 4.5, 0.0)
    assert abs(kl - 0.5 * (0.5 + 1.5268954697**2 - 1 + 0.6931471806)) < 1e-3


def test_demo_1d_from_file_with_animation(tmp_path):
    f = tmp_path / "in.csv"
    f.write_text("input_value\n0\n2\n")  # mean 1, SD 1 -> z = -1, 1; KL = 0.5 * (0.5 + 1 - 1 + ln 2) each
    r = runner.invoke(app, ["demo-1d", str(f), "--animate"])
    assert r.exit_code == 0, r.output
    assert r.output.count("after ") == 2
    assert abs(_value(r.output, "mean KL") - 0.5 * (0.5 + 0.6931472)) < 1e-3


def test_demo_1d_bad_input_is_one_line_exit_2(tmp_path):
    for content, expected in [
        ("value\n1\n", "no column 'input_value'"),
        ("input_value\n1\nabc\n", "not a number"),
        ("input_value\n3\n3\n", "all input values are equal"),
    ]:
        f = tmp_path / "bad.csv"
        f.write_text(content)
        r = runner.invoke(app, ["demo-1d", str(f)])
        assert r.exit_code == 2
        assert expected in r.output and "Traceback" not in r.output
        assert len(r.output.strip().splitlines()) == 1
    r = runner.invoke(app, ["demo-1d", str(tmp_path / "missing.csv")])
    assert r.exit_code == 2 and "no such file" in r.output


def test_fit_rejects_unknown_file_types(tmp_path):
    f = tmp_path / "data.xlsx"
    f.write_text("x")
    r = runner.invoke(app, ["fit", str(f)])
    assert r.exit_code == 2 and "unknown data type" in r.output
    r = runner.invoke(app, ["fit", str(tmp_path / "nope.h5ad")])
    assert r.exit_code == 2 and "no such file" in r.output
