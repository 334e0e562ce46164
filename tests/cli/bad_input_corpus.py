"""The bad-input corpus: every kind of bad input the CLI must refuse with exit code 2 and one line.

:func:`build_corpus` writes small inputs into a folder (a PBMC 3k subset, MOSES SMILES, two tiny trained models
and broken variants of all of them) and returns one :class:`Case` per bad input: the command line, the files
that must stay byte-identical, the paths that must not exist afterwards, and a fragment of the expected message.
``tests/cli/test_bad_input_contract.py`` runs it in-process.
"""

from __future__ import annotations

import hashlib
import json
import os
import pickle
from dataclasses import dataclass, field
from pathlib import Path

import anndata as ad
import numpy as np
import pandas as pd
import scipy.sparse as sp
import torch

#: Options that keep every fit in the corpus tiny (each case fails before training anyway).
FIT = ["--max-epochs", "1", "--batch-size", "64", "--n-latent", "3", "--accelerator", "cpu"]


@dataclass
class Case:
    """One bad input and what must happen.

    Attributes
    ----------
    group, name
        Which part of the contract (files, counts, keys, SMILES, model folders, options) and a short id.
    args
        ``scivae`` arguments.
    expect
        A fragment of the one-line error message.
    inputs
        Files (or folders) whose content must not change.
    absent
        Paths that must not exist after the command (the output it was asked to write).
    """

    group: str
    name: str
    args: list[str]
    expect: str
    inputs: list[Path] = field(default_factory=list)
    absent: list[Path] = field(default_factory=list)


def fingerprint(path: Path) -> str:
    """sha256 of a file, or of every file (name and content) of a folder."""
    h = hashlib.sha256()
    files = [path] if path.is_file() else sorted(p for p in path.rglob("*") if p.is_file())
    for f in files:
        h.update(str(f.relative_to(path.parent)).encode())
        h.update(f.read_bytes())
    return h.hexdigest()


def leftovers(path: Path) -> list[str]:
    """Temporary siblings (``.NAME.*``) an interrupted atomic write would leave beside ``path``."""
    return sorted(p.name for p in path.parent.glob(f".{path.name}.*"))


def _cells(n_obs: int = 300, n_genes: int = 120, seed: int = 3) -> ad.AnnData:
    from tests.cells.conftest import pbmc_subset

    adata = pbmc_subset(n_obs, n_genes, seed=seed)
    adata.obs["sample"] = pd.Categorical(np.where(np.arange(n_obs) % 2 == 0, "ctrl", "stim"))
    return adata


def _write(adata: ad.AnnData, path: Path) -> Path:
    adata.write_h5ad(path)
    return path


def _with_x(adata: ad.AnnData, x) -> ad.AnnData:
    out = adata.copy()
    out.X = x
    return out


def _train_models(root: Path, adata: ad.AnnData, smiles: list[str]) -> tuple[Path, Path]:
    from scivae import CellVAE, MolVAE

    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        cell = CellVAE(adata, batch_key="sample", n_latent=3, n_hidden=16)
        cell.fit(max_epochs=1, batch_size=64, progress_bar=False, accelerator="cpu")
        cell_dir = cell.save(root / "cell_model")
        mol = MolVAE(smiles, n_latent=4, embedding_dim=8, encoder_hidden=16, decoder_hidden=16, decoder_layers=1)
        mol.fit(max_epochs=1, batch_size=64, progress_bar=False, accelerator="cpu")
        mol_dir = mol.save(root / "mol_model")
    finally:
        torch.set_num_threads(threads)
    return Path(cell_dir), Path(mol_dir)


def _copy_model(src: Path, dst: Path) -> Path:
    dst.mkdir()
    for f in src.iterdir():
        (dst / f.name).write_bytes(f.read_bytes())
    return dst


def _edit_config(model: Path, edit) -> Path:
    meta = json.loads((model / "config.json").read_text())
    edit(meta)
    (model / "config.json").write_text(json.dumps(meta))
    return model


def build_corpus(root: Path) -> list[Case]:
    """Write the corpus into ``root`` (created) and return its cases."""
    from scivae.datasets._moses import moses

    root.mkdir(parents=True, exist_ok=True)
    adata = _cells()
    good = _write(adata, root / "cells.h5ad")
    smiles = moses("train", n=200, seed=5)
    good_smi = root / "mols.smi"
    good_smi.write_text("\n".join(smiles) + "\n")
    cell_model, mol_model = _train_models(root / "models", adata, smiles)

    def out(name: str) -> Path:
        return root / "out" / name

    cases: list[Case] = []

    def fit(group: str, name: str, data: Path, expect: str, *extra: str) -> None:
        o = out(name)
        cases.append(Case(group, name, ["fit", str(data), *FIT, "--out", str(o), *extra], expect, [data], [o]))

    # -- files ------------------------------------------------------------------------------------------------
    raw = good.read_bytes()
    truncated = root / "truncated.h5ad"
    truncated.write_bytes(raw[: len(raw) // 2])
    fit("files", "truncated_h5ad", truncated, "cannot read")
    corrupt = root / "corrupt.h5ad"
    corrupt.write_bytes(raw[:512] + np.random.default_rng(0).bytes(len(raw) - 512))
    fit("files", "corrupt_h5ad", corrupt, "cannot read")
    text = root / "text.h5ad"
    text.write_text("gene,cell,count\nCD3E,AAAC,3\n")
    fit("files", "text_named_h5ad", text, "cannot read")
    empty = root / "empty.h5ad"
    empty.write_bytes(b"")
    fit("files", "empty_h5ad", empty, "is empty")
    empty_smi = root / "empty.smi"
    empty_smi.write_bytes(b"")
    fit("files", "empty_smi", empty_smi, "no molecules in")
    folder = root / "folder.h5ad"
    folder.mkdir()
    fit("files", "directory_as_h5ad", folder, "is a directory")
    cases.append(
        Case("files", "directory_as_embed_input", ["embed", str(cell_model), str(folder), "-o", str(out("e.h5ad"))],
             "is a directory", [folder], [out("e.h5ad")])
    )  # fmt: skip
    fit("files", "out_under_proc", good, "cannot be written", "--out", "/proc/scivae-test/out")
    a_file = root / "a_file.txt"
    a_file.write_text("not a folder\n")
    cases.append(
        Case("files", "out_under_a_file", ["fit", str(good), *FIT, "--out", str(a_file / "out")],
             "is a file, not a folder", [good, a_file], [])
    )  # fmt: skip
    cases.append(
        Case("files", "embed_out_unwritable",
             ["embed", str(cell_model), str(good), "-o", "/proc/scivae-test/e.h5ad"], "cannot be written",
             [good, cell_model], [])
    )  # fmt: skip

    # -- counts -----------------------------------------------------------------------------------------------
    x = adata.X.toarray()
    lognorm = np.log1p(x / np.maximum(x.sum(1, keepdims=True), 1) * 1e4)
    fit("counts", "log_normalised", _write(_with_x(adata, sp.csr_matrix(lognorm)), root / "lognorm.h5ad"),
        "looks log-normalised")  # fmt: skip
    fit("counts", "fractional", _write(_with_x(adata, sp.csr_matrix(x * 7.5 + 0.5 * (x > 0))), root / "frac.h5ad"),
        "non-integer values")  # fmt: skip
    neg = x.copy()
    neg[0, 0] = -2
    fit("counts", "negative", _write(_with_x(adata, sp.csr_matrix(neg)), root / "negative.h5ad"), "negative values")
    nan = x.copy()
    nan[1, 2] = np.nan
    fit("counts", "nan", _write(_with_x(adata, nan), root / "nan.h5ad"), "NaN or infinite")
    inf = x.copy()
    inf[3, 1] = np.inf
    fit("counts", "inf", _write(_with_x(adata, inf), root / "inf.h5ad"), "NaN or infinite")
    fit("counts", "all_zero", _write(_with_x(adata, sp.csr_matrix(x.shape, dtype=np.float32)), root / "zero.h5ad"),
        "no non-zero count")  # fmt: skip
    fit("counts", "single_cell", _write(adata[:1].copy(), root / "one_cell.h5ad"), "training needs at least 10")
    fit("counts", "single_gene", _write(adata[:, :1].copy(), root / "one_gene.h5ad"), "at least 2 genes")

    # -- keys -------------------------------------------------------------------------------------------------
    fit("keys", "missing_layer", good, "layer 'counts' is not in", "--layer", "counts")
    fit("keys", "missing_batch_key", good, "batch key 'donor' is not a column", "--batch-key", "donor")
    csv = root / "mols.csv"
    csv.write_text("id,structure\n" + "\n".join(f"{i},{s}" for i, s in enumerate(smiles[:20])) + "\n")
    fit("keys", "csv_missing_column", csv, "no column 'smiles'", "--column", "smiles")
    fewer = _write(adata[:, 30:].copy(), root / "fewer_genes.h5ad")
    cases.append(
        Case("keys", "embed_genes_missing", ["embed", str(cell_model), str(fewer), "-o", str(out("f.h5ad"))],
             "90 overlap", [fewer, cell_model], [out("f.h5ad")])
    )  # fmt: skip
    unseen = adata.copy()
    unseen.obs["sample"] = pd.Categorical(["ctrl", "other"] * (unseen.n_obs // 2))
    unseen = _write(unseen, root / "unseen_batch.h5ad")
    cases.append(
        Case("keys", "embed_unseen_batch", ["embed", str(cell_model), str(unseen), "-o", str(out("u.h5ad"))],
             "categories not seen in training", [unseen, cell_model], [out("u.h5ad")])
    )  # fmt: skip

    # -- SMILES -----------------------------------------------------------------------------------------------
    invalid = root / "invalid.smi"
    invalid.write_text("not_a_molecule\nC1CC\nXyz(\n")
    fit("smiles", "only_invalid", invalid, "no valid molecule")
    blank = root / "blank.smi"
    blank.write_text("\n\n   \n\n")
    fit("smiles", "only_empty_lines", blank, "no molecules in")
    long = root / "long.smi"
    long.write_text("\n".join(smiles[:20]) + "\n" + "C" * 3_000 + "\n")  # under the character limit
    fit("smiles", "smiles_3000_characters", long, "over the 500-token limit")
    cases.append(
        Case("smiles", "unknown_token_for_vocabulary", ["interpolate", str(mol_model), "CCO", "c1cc[se]c1"],
             "in 'c1cc[se]c1' is not in this model", [mol_model], [])
    )  # fmt: skip
    nocol = root / "no_smiles_column.csv"
    nocol.write_text("id,structure,weight\n1,CCO,46\n2,CCN,45\n")
    fit("smiles", "csv_without_smiles_column", nocol, "has no SMILES column")

    # -- model folders ----------------------------------------------------------------------------------------
    models = root / "broken_models"
    models.mkdir()

    def embed_case(name: str, model: Path, expect: str) -> None:
        o = out(f"{name}.h5ad")
        cases.append(Case("model", name, ["embed", str(model), str(good), "-o", str(o)], expect, [model, good], [o]))

    def generate_case(name: str, model: Path, expect: str) -> None:
        o = out(f"{name}.smi")
        cases.append(Case("model", name, ["generate", str(model), "-n", "5", "-o", str(o)], expect, [model], [o]))

    no_config = _copy_model(cell_model, models / "no_config")
    (no_config / "config.json").unlink()
    embed_case("missing_config", no_config, "has no config.json")
    no_weights = _copy_model(mol_model, models / "no_weights")
    (no_weights / "model.safetensors").unlink()
    generate_case("missing_weights", no_weights, "has no model.safetensors")
    version = _edit_config(_copy_model(cell_model, models / "version"), lambda m: m.update(format_version=99))
    embed_case("wrong_format_version", version, "format version 99")
    unknown = _edit_config(_copy_model(cell_model, models / "unknown_key"), lambda m: m["config"].update(act="gelu"))
    embed_case("config_unknown_key", unknown, "unknown config keys ('act')")
    top = _edit_config(_copy_model(mol_model, models / "unknown_top_key"), lambda m: m.update(loader="pickle"))
    generate_case("config_unknown_top_level_key", top, "unknown keys ('loader')")
    huge = _edit_config(_copy_model(cell_model, models / "huge"), lambda m: m["config"].update(n_hidden=10**12))
    embed_case("config_absurd_size_cells", huge, "the weights do not match config.json")
    huge_mol = _edit_config(
        _copy_model(mol_model, models / "huge_mol"), lambda m: m["config"].update(decoder_hidden=10**10)
    )
    generate_case("config_absurd_size_molecules", huge_mol, "config.json does not describe a model")
    vocab = _edit_config(
        _copy_model(mol_model, models / "huge_vocab"),
        lambda m: m["adapter_state"]["vocabulary"].update(max_tokens=10**12),
    )
    generate_case("config_absurd_generation_length", vocab, "max_tokens 1000000000000")
    path_key = _edit_config(
        _copy_model(mol_model, models / "path_key"), lambda m: m["config"].update(weights="../../etc/passwd")
    )
    generate_case("config_path_outside_folder", path_key, "unknown config keys ('weights')")
    outside = root / "outside_weights.safetensors"
    outside.write_bytes((cell_model / "model.safetensors").read_bytes())
    linked = _copy_model(cell_model, models / "linked")
    (linked / "model.safetensors").unlink()
    os.symlink(outside, linked / "model.safetensors")
    embed_case("weights_link_outside_folder", linked, "points outside the model folder")
    pickled = _copy_model(cell_model, models / "pickle")
    (pickled / "extra.bin").write_bytes(pickle.dumps({"payload": list(range(3))}))
    embed_case("pickle_in_folder", pickled, "a pickle")
    torch_file = _copy_model(mol_model, models / "torch_file")
    torch.save({"w": torch.zeros(2)}, torch_file / "weights_backup")
    generate_case("torch_save_in_folder", torch_file, "a pickle")
    shapes = _copy_model(cell_model, models / "shapes")
    from safetensors.torch import load_file, save_file

    weights = load_file(str(shapes / "model.safetensors"))
    key = next(k for k, v in weights.items() if v.ndim == 2)
    weights[key] = torch.zeros(weights[key].shape[0] + 1, weights[key].shape[1])
    save_file(weights, str(shapes / "model.safetensors"))
    embed_case("weight_shape_mismatch", shapes, "of another shape")
    cases.append(
        Case("model", "fit_output_folder_given_to_generate", ["generate", str(root), "-n", "3"],
             "not a complete scivae model directory", [root / "cells.h5ad"], [])
    )  # fmt: skip

    # -- options ----------------------------------------------------------------------------------------------
    fit("options", "zero_epochs", good, "--max-epochs=0 is not an integer >= 1", "--max-epochs", "0")
    fit("options", "negative_epochs", good, "--max-epochs=-3 is not an integer >= 1", "--max-epochs", "-3")
    fit("options", "zero_batch_size", good, "--batch-size=0 is not an integer >= 1", "--batch-size", "0")
    fit("options", "zero_latent_size", good, "--n-latent=0 is not an integer >= 1", "--n-latent", "0")
    fit("options", "zero_batch_size_molecules", good_smi, "--batch-size=0 is not an integer >= 1", "--batch-size", "0")
    fit("options", "negative_latent_molecules", good_smi, "--n-latent=-1 is not an integer >= 1", "--n-latent", "-1")
    embed_out = out("embed_bs.h5ad")
    cases.append(
        Case("options", "embed_zero_batch_size",
             ["embed", str(cell_model), str(good), "-o", str(embed_out), "--batch-size", "0"],
             "--batch-size=0 is not an integer >= 1", [good, cell_model], [embed_out])
    )  # fmt: skip
    fit("options", "unknown_likelihood", good, "unknown likelihood 'gauss'", "--likelihood", "gauss")
    fit("options", "unknown_alphabet", good_smi, "unknown alphabet 'inchi'", "--alphabet", "inchi")
    fit("options", "unknown_kl_schedule", good, "--kl-schedule='step' is unknown", "--kl-schedule", "step")
    if not torch.cuda.is_available():
        fit("options", "gpu_without_gpu", good, "no CUDA GPU is available", "--accelerator", "gpu")
        cases.append(
            Case("options", "evaluate_cuda_without_gpu", ["evaluate", str(good_smi), "--accelerator", "cuda"],
                 "no CUDA GPU is available", [good_smi], [])
        )  # fmt: skip
    fit("options", "bad_devices", good, "--devices='two'", "--devices", "two")
    gen_out = out("t0.smi")
    cases.append(
        Case("options", "temperature_zero", ["generate", str(mol_model), "-n", "5", "--temperature", "0", "-o",
             str(gen_out)], "--temperature=0.0 is not a finite number > 0", [mol_model], [gen_out])
    )  # fmt: skip
    return cases
