"""BaseModel: adapters found through entry points only, one seeding scheme, one config layout, and a core that
runs without the domain stacks (scanpy, anndata, RDKit)."""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest
import torch

import scivae
from scivae.core.model.base import ADAPTER_ENTRY_POINTS, BaseModel, model_class
from scivae.dense import GaussianVAE
from scivae.errors import ModelFormatError

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def gaussian_dir(digits, tmp_path_factory) -> Path:
    model = GaussianVAE(64, n_latent=3, n_hidden=16, seed=4).fit(digits[:300], max_epochs=1, progress_bar=False)
    return model.save(tmp_path_factory.mktemp("gauss") / "model")


def test_the_built_in_adapters_are_entry_points() -> None:
    from importlib.metadata import entry_points

    declared = {ep.name: ep.value for ep in entry_points(group=ADAPTER_ENTRY_POINTS)}
    assert declared == {
        "cell": "scivae.cells:CellVAE",
        "molecule": "scivae.molecules:MolVAE",
        "gaussian": "scivae.dense:GaussianVAE",
    }
    assert model_class("gaussian") is GaussianVAE
    assert model_class("nope") is None and model_class({"x": 1}) is None


def test_core_source_names_no_adapter_and_no_cli_flag() -> None:
    import re

    for path in (ROOT / "scivae" / "core").glob("*.py"):
        text = path.read_text()
        for name in ("scivae.cells", "scivae.molecules", "scivae.dense", "scivae_cli"):
            assert f'"{name}' not in text and f"import {name}" not in text, (path.name, name)
        assert not re.search(r"[\"'`]--[a-z]", text), f"{path.name} names a command-line flag"


def test_a_tampered_model_type_imports_nothing(gaussian_dir, tmp_path) -> None:
    canary = tmp_path / "scivae_canary.py"
    canary.write_text("raise SystemExit('imported')\n")
    sys.path.insert(0, str(tmp_path))
    try:
        for model_type in ("scivae_canary", "scivae_canary:Model", "os", "scivae.core.model.base"):
            meta = json.loads((gaussian_dir / "config.json").read_text())
            meta["model_type"] = model_type
            bad = tmp_path / f"bad_{len(model_type)}"
            bad.mkdir()
            (bad / "config.json").write_text(json.dumps(meta))
            (bad / "model.safetensors").write_bytes((gaussian_dir / "model.safetensors").read_bytes())
            with pytest.raises(ModelFormatError, match="unknown model type"):
                scivae.load(bad)
        assert "scivae_canary" not in sys.modules
    finally:
        sys.path.remove(str(tmp_path))


def test_load_accepts_the_fit_folder(gaussian_dir) -> None:
    model = scivae.load(gaussian_dir.parent)
    assert isinstance(model, GaussianVAE) and model.seed == 4


def test_one_config_layout_and_old_cell_folders_still_load(cell_model, mol_model, gaussian_dir, tmp_path) -> None:
    from scivae.cells import CellVAE

    folders = {"cell": cell_model.save(tmp_path / "cell"), "molecule": mol_model.save(tmp_path / "mol")}
    folders["gaussian"] = gaussian_dir
    for kind, folder in folders.items():
        config = json.loads((folder / "config.json").read_text())["config"]
        assert {"kl", "seed"} <= set(config), kind
        assert set(config["kl"]) >= {"beta", "free_bits", "capacity"}, kind
    # a cell folder written before the layout was unified: KL settings under "kl_config", no seed
    old = folders["cell"]
    meta = json.loads((old / "config.json").read_text())
    meta["config"]["kl_config"] = meta["config"].pop("kl")
    del meta["config"]["seed"]
    (old / "config.json").write_text(json.dumps(meta))
    loaded = CellVAE.load(old, adata=cell_model.adata)
    np.testing.assert_array_equal(loaded.get_latent(), cell_model.get_latent())
    assert loaded.module.kl_config == cell_model.module.kl_config


def test_one_seeding_scheme(digits, pbmc_like) -> None:
    from scivae.cells import CellVAE
    from scivae.molecules import MolVAE

    builders = {
        "gaussian": lambda seed: GaussianVAE(64, n_latent=3, seed=seed),
        "cell": lambda seed: CellVAE(pbmc_like, n_latent=3, n_hidden=16, seed=seed),
        "molecule": lambda seed: MolVAE(["CCO", "c1ccccc1", "CCN"], architecture="cpu", seed=seed),
    }
    for kind, build in builders.items():
        torch.manual_seed(123)
        state = torch.get_rng_state()
        a, b, c = build(1), build(1), build(2)
        assert torch.equal(torch.get_rng_state(), state), f"{kind}: building a model moved the global RNG"
        wa, wb, wc = (torch.cat([p.detach().flatten() for p in m.module.parameters()]) for m in (a, b, c))
        assert torch.equal(wa, wb) and not torch.equal(wa, wc), kind
        assert a.seed == 1 and isinstance(a, BaseModel)


@pytest.fixture()
def pbmc_like():
    from tests.cells.conftest import pbmc_subset

    return pbmc_subset(60, 30, seed=2)


def test_the_core_works_without_scanpy_anndata_and_rdkit(tmp_path) -> None:
    script = textwrap.dedent(
        """
        import importlib.abc, sys

        BLOCKED = ("scanpy", "anndata", "rdkit", "selfies", "fcd_torch", "leidenalg", "igraph", "skmisc")

        class Block(importlib.abc.MetaPathFinder):
            def find_spec(self, name, path=None, target=None):
                if name.split(".")[0] in BLOCKED:
                    raise ModuleNotFoundError(f"No module named {name!r}", name=name)

        sys.meta_path.insert(0, Block())
        import numpy as np
        import scivae, scivae.core, scivae.dense, scivae.latent, scivae.pl, scivae_cli.main
        from typer.testing import CliRunner

        x = np.random.default_rng(0).random((200, 8)).astype("float32")
        model = scivae.GaussianVAE(8, n_latent=2, n_hidden=8).fit(x, max_epochs=1, progress_bar=False)
        path = model.save(sys.argv[1] + "/m")
        assert type(scivae.load(path)).__name__ == "GaussianVAE"
        assert len(scivae.latent.nearest_neighbors(model, 0, k=3)) == 3
        scivae.pl.training_curves(model, save=sys.argv[1] + "/c.png")
        assert len(scivae.datasets.moses("test", n=5)) == 5
        r = CliRunner().invoke(scivae_cli.main.app, ["demo-1d"])
        assert r.exit_code == 0 and "mean KL                  = 0.597" in r.output, r.output
        for name, extra in (("CellVAE", "cells"), ("MolVAE", "molecules")):
            try:
                getattr(scivae, name)
            except ModuleNotFoundError as e:
                assert f"scivae[{extra}]" in str(e), e
            else:
                raise AssertionError(name + " imported without its stack")
        assert not any(m.split(".")[0] in BLOCKED for m in sys.modules)
        print("core ok")
        """
    )
    run = subprocess.run(
        [sys.executable, "-c", script, str(tmp_path)], capture_output=True, text=True, timeout=600, cwd=ROOT
    )
    assert run.returncode == 0 and "core ok" in run.stdout, run.stderr[-3000:]


def test_get_posterior_gives_the_latent_means_and_the_encoder_spread(digits) -> None:
    model = GaussianVAE(64, n_latent=3, n_hidden=16, seed=4).fit(digits[:300], max_epochs=2, progress_bar=False)
    mu, logvar = model.get_posterior(digits[:50])
    assert mu.shape == logvar.shape == (50, 3)
    np.testing.assert_allclose(mu, model.get_latent(digits[:50]), rtol=1e-6, atol=1e-6)
    # the encoder's variances differ between items and from the prior's (a real posterior, not a constant)
    assert np.isfinite(logvar).all() and logvar.std() > 1e-3 and not np.allclose(logvar, 0.0)
    assert model.module.training is False  # inference leaves the model in eval mode
