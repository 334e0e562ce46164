"""The wheel: built from this checkout, installed with its core dependencies only into a fresh venv (torch
pinned by constraints.txt), it runs ``scivae demo-1d`` and loads a shipped data set from package data."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


def _run(args: list[str], cwd: Path, timeout: int = 900) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "VIRTUAL_ENV")}
    run = subprocess.run(args, cwd=cwd, env=env, capture_output=True, text=True, timeout=timeout)
    assert run.returncode == 0, f"{' '.join(args)}\n{run.stdout[-2000:]}\n{run.stderr[-3000:]}"
    return run


@pytest.fixture(scope="module")
def wheel(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("wheel")
    # built from a copy of the sources, so that no build/ or egg-info is left in the checkout
    src = out / "src"
    ignore = shutil.ignore_patterns("__pycache__", "*.pyc", "*.egg-info")
    for name in ("scivae", "cli", "datasets"):
        shutil.copytree(ROOT / name, src / name, ignore=ignore)
    for name in ("pyproject.toml", "README.md"):
        shutil.copy2(ROOT / name, src / name)
    _run([sys.executable, "-m", "pip", "wheel", str(src), "--no-deps", "--no-build-isolation", "-w", str(out)], out)
    (path,) = out.glob("scivae-*.whl")
    return path


def test_wheel_ships_the_data_and_declares_the_extras(wheel) -> None:
    with zipfile.ZipFile(wheel) as zf:
        names = set(zf.namelist())
        meta = zf.read(next(n for n in names if n.endswith(".dist-info/METADATA"))).decode()
        entry_points = zf.read(next(n for n in names if n.endswith(".dist-info/entry_points.txt"))).decode()
    for data in ("pbmc3k/pbmc3k_raw.h5ad", "moses/train.csv.gz", "moses/test.csv.gz", "ifnb/ifnb_pbmc.h5ad"):
        assert f"scivae/datasets/files/{data}" in names, data
    assert not any(n.endswith("build.py") or n.endswith("make_subset.py") for n in names)
    assert "scivae_cli/main.py" in names and "scivae/pl/__init__.py" in names
    core = [line for line in meta.splitlines() if line.startswith("Requires-Dist:") and "extra ==" not in line]
    assert core and not any(pkg in line for line in core for pkg in ("scanpy", "anndata", "rdkit"))
    assert "Provides-Extra: cells" in meta and "Provides-Extra: molecules" in meta and "Provides-Extra: all" in meta
    assert "[scivae.adapters]" in entry_points and "cell = scivae.cells:CellVAE" in entry_points


def test_wheel_installs_and_runs_in_a_fresh_venv(wheel, tmp_path) -> None:
    venv = tmp_path / "venv"
    _run([sys.executable, "-m", "venv", str(venv)], tmp_path)
    py = venv / "bin" / "python"
    pip = [str(py), "-m", "pip", "install", "-q", "--no-compile", "--disable-pip-version-check"]
    _run([*pip, "-c", str(ROOT / "constraints.txt"), str(wheel)], tmp_path)
    demo = _run([str(venv / "bin" / "scivae"), "demo-1d"], tmp_path)
    assert "mean KL                  = 0.597" in demo.stdout
    check = (
        "import scivae, torch; from scivae.datasets._files import data_file; "
        "smiles = scivae.datasets.moses('test', n=25, seed=1); "
        "assert len(smiles) == 25 and all(smiles); "
        "print(torch.__version__, scivae.__file__, data_file('moses', 'test.csv.gz'), sep='\\n')"
    )
    lines = _run([str(py), "-c", check], tmp_path).stdout.split()
    assert lines[0] == __import__("torch").__version__  # constraints.txt kept the local torch build
    assert str(venv) in lines[1] and str(venv) in lines[2]  # the installed package and its data, not the checkout
