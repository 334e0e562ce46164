"""The hostile-input corpus: damaged, disguised, oversized and malicious inputs, each built in the test.

Where :mod:`tests.cli.bad_input_corpus` holds ordinary mistakes, these are inputs that used to crash scivae
(segmentation faults inside scipy or RDKit), hang it, train on junk, or delete files it did not write: sparse
matrices whose ``indptr``/``indices`` point outside their data, SMILES lines of millions of characters, binary
files named ``.smi``, model folders with NaN weights or absurdly nested JSON, seeds and sizes out of range, and
output folders holding someone else's files.

Every case is a *builder*: ``build(assets, tmp)`` writes its tiny files into ``tmp`` and returns a
:class:`Hostile` (a command line or a Python call, what must happen, and the files that must stay as they are).
The builders are registered at import, so ``tests/cli/test_hostile_inputs.py`` parametrises over their names.
"""

from __future__ import annotations

import bz2
import gzip
import json
import lzma
import shutil
import zipfile
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

#: Options that keep every fit tiny (nearly every case fails before training).
FIT = ["--max-epochs", "1", "--batch-size", "32", "--n-latent", "3", "--accelerator", "cpu", "--threads", "1"]
DAMAGED = ("damaged sparse structure", "cannot read")


@dataclass
class Assets:
    """Inputs shared by the cases (read only: a case that changes one copies it first)."""

    root: Path
    cells: Path  # 120 PBMC cells x 50 genes, obs["sample"]
    smiles: Path  # 60 MOSES molecules, one per line
    cell_model: Path
    mol_model: Path


@dataclass
class Hostile:
    """One hostile input and what must happen.

    Attributes
    ----------
    args
        ``scivae`` arguments; ``None`` for a Python API case (``call``).
    expect
        Fragments of the one-line message; one of them must appear.
    code
        The exit code (2 bad input, 1 no disk space; 0 for a run that must succeed despite a failing extra).
    inputs
        Files or folders that must be byte-identical afterwards (inputs, and foreign files in an output folder).
    absent
        Outputs that must not exist afterwards (nor their temporary siblings).
    call
        The Python call of an API case; it must raise ``raises``.
    patch
        Applied to pytest's ``monkeypatch`` before the command runs (a full disk, a failing UMAP...).
    """

    args: list[str] | None
    expect: tuple[str, ...]
    code: int = 2
    inputs: list[Path] = field(default_factory=list)
    absent: list[Path] = field(default_factory=list)
    call: Callable[[], Any] | None = None
    raises: type[BaseException] | None = None
    patch: Callable[[Any], None] | None = None


Builder = Callable[[Assets, Path], Hostile]
#: name -> builder, in registration order (``group/name``).
CASES: dict[str, Builder] = {}


def case(name: str) -> Callable[[Builder], Builder]:
    def register(fn: Builder) -> Builder:
        assert name not in CASES, name
        CASES[name] = fn
        return fn

    return register


def _expect(expect: str | tuple[str, ...]) -> tuple[str, ...]:
    return (expect,) if isinstance(expect, str) else tuple(expect)


# -- shared assets -----------------------------------------------------------------------------------------
def build_assets(root: Path) -> Assets:
    """Write the shared inputs and train the two tiny models (a few seconds): the fuzz pass's inputs and molecule
    model (:func:`benchmarks.reliability.fuzzing.build_assets`), plus a cell model on the same cells."""
    import anndata as ad
    import torch

    from benchmarks.reliability.fuzzing import build_assets as build_fuzz_assets
    from scivae import CellVAE

    fuzz = build_fuzz_assets(root)
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        cell = CellVAE(ad.read_h5ad(fuzz.cells), batch_key="sample", n_latent=3, n_hidden=16)
        cell.fit(max_epochs=1, batch_size=64, progress_bar=False, accelerator="cpu")
        cell_dir = Path(cell.save(root / "cell_model"))
    finally:
        torch.set_num_threads(threads)
    return Assets(root, fuzz.cells, fuzz.smiles, cell_dir, fuzz.mol_model)


def copy_tree(src: Path, dst: Path) -> Path:
    shutil.copytree(src, dst)
    return dst


# -- 1. sparse matrices whose structure points outside their data ------------------------------------------
def _damage(edit: Callable[[Any], None]) -> Callable[[Path, Path], Path]:
    """A function writing a copy of an .h5ad whose ``X`` group was changed by ``edit(X)`` (h5py)."""

    def make(src: Path, dst: Path) -> Path:
        import h5py

        shutil.copyfile(src, dst)
        with h5py.File(dst, "r+") as f:
            edit(f["X"])
        return dst

    return make


def _set(group: Any, key: str, change: Callable[[np.ndarray], np.ndarray]) -> None:
    values = change(group[key][:].copy())
    del group[key]
    group.create_dataset(key, data=values)


def _bytes_damage(offset_fraction: float, n: int = 256, seed: int = 0) -> Callable[[Path, Path], Path]:
    def make(src: Path, dst: Path) -> Path:
        raw = bytearray(src.read_bytes())
        at = int(len(raw) * offset_fraction)
        raw[at : at + n] = np.random.default_rng(seed).bytes(n)
        dst.write_bytes(bytes(raw))
        return dst

    return make


def _indptr_past_end(ip: np.ndarray) -> np.ndarray:
    ip[-1] += 1000
    return ip


def _indptr_middle_past(ip: np.ndarray) -> np.ndarray:
    ip[len(ip) // 2] = ip[-1] + 10**6
    return ip


def _indptr_swapped(ip: np.ndarray) -> np.ndarray:
    ip[5], ip[40] = ip[40], ip[5]
    return ip


def _indptr_first(ip: np.ndarray) -> np.ndarray:
    ip[0] = 7
    return ip


def _indptr_huge(ip: np.ndarray) -> np.ndarray:
    ip = ip.astype(np.int64)
    ip[1:] += 2**40
    return ip


def _at(i: int, value: int) -> Callable[[np.ndarray], np.ndarray]:
    def change(a: np.ndarray) -> np.ndarray:
        a = a.astype(np.int64)
        a[i] = value
        return a

    return change


SPARSE_DAMAGE: dict[str, Callable[[Path, Path], Path]] = {
    "indptr_past_end": _damage(lambda x: _set(x, "indptr", _indptr_past_end)),
    "indptr_middle_past_data": _damage(lambda x: _set(x, "indptr", _indptr_middle_past)),
    "indptr_decreasing": _damage(lambda x: _set(x, "indptr", _indptr_swapped)),
    "indptr_not_from_0": _damage(lambda x: _set(x, "indptr", _indptr_first)),
    "indptr_short": _damage(lambda x: _set(x, "indptr", lambda ip: ip[:-5])),
    "indptr_2_pow_40": _damage(lambda x: _set(x, "indptr", _indptr_huge)),
    "indices_negative": _damage(lambda x: _set(x, "indices", _at(3, -1))),
    "indices_n_genes": _damage(lambda x: _set(x, "indices", _at(3, 50))),
    "indices_int32_max": _damage(lambda x: _set(x, "indices", _at(7, 2**31 - 1))),
    "data_shorter_than_indices": _damage(lambda x: _set(x, "data", lambda d: d[:-3])),
    "shape_fewer_genes": _damage(lambda x: x.attrs.__setitem__("shape", np.array([120, 10]))),
    "256_random_bytes_mid_file": _bytes_damage(0.5),
    "256_random_bytes_at_3_quarters": _bytes_damage(0.75, seed=1),
}


def _sparse_cli(kind: str, damage: Callable[[Path, Path], Path], verb: str) -> Builder:
    def build(a: Assets, tmp: Path) -> Hostile:
        bad = damage(a.cells, tmp / f"{kind}.h5ad")
        backed = ["--backed"] if verb.endswith("backed") else []
        if verb.startswith("fit"):
            out = tmp / "out"
            return Hostile(["fit", str(bad), *FIT, "--out", str(out), *backed], DAMAGED, inputs=[bad], absent=[out])
        out = tmp / "e.h5ad"
        args = ["embed", str(a.cell_model), str(bad), "-o", str(out), "--threads", "1", *backed]
        return Hostile(args, DAMAGED, inputs=[bad, a.cell_model], absent=[out])

    return build


for _kind, _damage_fn in SPARSE_DAMAGE.items():
    for _verb in ("fit", "fit_backed", "embed", "embed_backed"):
        case(f"sparse/{_kind}/{_verb}")(_sparse_cli(_kind, _damage_fn, _verb))


def _sparse_api(kind: str, damage: Callable[[Path, Path], Path], backed: bool) -> Builder:
    def build(a: Assets, tmp: Path) -> Hostile:
        from scivae import CellVAE
        from scivae.cells import read_anndata
        from scivae.errors import ScivaeInputError

        bad = damage(a.cells, tmp / f"{kind}.h5ad")
        call = (lambda: CellVAE(bad, backed=True)) if backed else (lambda: CellVAE(read_anndata(bad)))
        return Hostile(None, DAMAGED, inputs=[bad], call=call, raises=ScivaeInputError)

    return build


for _kind, _damage_fn in SPARSE_DAMAGE.items():
    case(f"sparse/{_kind}/api_backed")(_sparse_api(_kind, _damage_fn, True))
for _kind in ("indptr_middle_past_data", "indptr_decreasing", "indices_negative", "indices_n_genes"):
    case(f"sparse/{_kind}/api_in_memory")(_sparse_api(_kind, SPARSE_DAMAGE[_kind], False))


@case("sparse/in_memory_matrix_built_by_hand/api")
def _hand_built(a: Assets, tmp: Path) -> Hostile:
    import anndata as ad
    import scipy.sparse as sp

    from scivae import CellVAE
    from scivae.errors import ScivaeInputError

    x = sp.random(30, 12, density=0.4, format="csr", random_state=0, dtype=np.float32)
    x.data[:] = 3
    x.indices[2] = 99  # scipy's constructor does not look (check_format(full_check=False))
    return Hostile(None, ("damaged sparse structure",), call=lambda: CellVAE(ad.AnnData(x)), raises=ScivaeInputError)


# -- 2. SMILES files that are not SMILES text, or whose lines RDKit cannot survive --------------------------
def _good_lines(a: Assets, n: int = 20) -> str:
    return "\n".join(a.smiles.read_text().splitlines()[:n]) + "\n"


def _zip_bytes(text: str) -> bytes:
    import io

    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as zf:
        zf.writestr("mols.smi", text)
    return buf.getvalue()


SMILES_FILES: dict[str, tuple[str, Callable[[Assets], bytes], tuple[str, ...]]] = {
    # name: (file name, content, expected fragments)
    "line_of_6000_characters": ("m.smi", lambda a: (_good_lines(a) + "C" * 6000 + "\n").encode(),
                                ("line 21 of", "5000-character limit")),
    "line_of_30000_characters": ("m.smi", lambda a: ("C" * 30_000 + "\n").encode(), ("line 1 of",)),
    "line_of_2000000_characters": ("m.smi", lambda a: ("C" * 2_000_000).encode(), ("2000000 characters",)),
    "long_line_after_header": ("m.smi", lambda a: ("SMILES\nCCO\n" + "C" * 30_000 + "\n").encode(), ("line 3 of",)),
    "long_line_with_a_name": ("m.txt", lambda a: ("C" * 30_000 + " name\n").encode(), ("5000-character limit",)),
    "long_nested_branches": ("m.smi", lambda a: ("C(" * 4000 + "C" + ")" * 4000 + "\n").encode(),
                             ("5000-character limit",)),
    "long_csv_value": ("m.csv", lambda a: ("id,smiles\n1,CCO\n2," + "C" * 30_000 + "\n").encode(), ("row 3 of",)),
    "random_bytes": ("m.smi", lambda a: np.random.default_rng(0).bytes(4096), ("not SMILES text",)),
    "nul_bytes_in_text": ("m.smi", lambda a: b"CCO\nCC\x00N\nc1ccccc1\n", ("NUL bytes",)),
    "utf16_text": ("m.smi", lambda a: _good_lines(a).encode("utf-16"), ("not SMILES text",)),
    "latin1_text": ("m.smi", lambda a: "CCO\nC\xe9C\n".encode("latin-1"), ("not UTF-8 text",)),
    "h5ad_named_smi": ("m.smi", lambda a: a.cells.read_bytes(), ("HDF5 file",)),
    "h5ad_named_txt": ("m.txt", lambda a: a.cells.read_bytes(), ("HDF5 file",)),
    "h5ad_named_csv": ("m.csv", lambda a: a.cells.read_bytes(), ("HDF5 file",)),
    "gzip_named_smi": ("m.smi", lambda a: gzip.compress(_good_lines(a).encode()), ("gzip-compressed", "m.smi.gz")),
    "gzip_named_txt": ("m.txt", lambda a: gzip.compress(_good_lines(a).encode()), ("gzip-compressed",)),
    "gzip_named_csv": ("m.csv", lambda a: gzip.compress(b"smiles\nCCO\n"), ("gzip-compressed",)),
    "zip_named_smi": ("m.smi", lambda a: _zip_bytes(_good_lines(a)), ("zip data",)),
    "bzip2_named_smi": ("m.smi", lambda a: bz2.compress(_good_lines(a).encode()), ("bzip2 data",)),
    "xz_named_smi": ("m.smi", lambda a: lzma.compress(_good_lines(a).encode()), ("xz data",)),
    "png_named_smi": ("m.smi", lambda a: b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR" + bytes(64), ("NUL bytes",)),
    "plain_text_named_smi_gz": ("m.smi.gz", lambda a: _good_lines(a).encode(), ("holds no gzip data",)),
    "plain_text_named_csv_gz": ("m.csv.gz", lambda a: b"smiles\nCCO\n", ("holds no gzip data",)),
    "gzip_of_random_bytes": ("m.smi.gz", lambda a: gzip.compress(np.random.default_rng(1).bytes(2048)),
                             ("not SMILES text",)),
    "gzip_of_an_h5ad": ("m.smi.gz", lambda a: gzip.compress(a.cells.read_bytes()), ("not SMILES text",)),
    "gzip_cut_in_half": ("m.smi.gz", lambda a: gzip.compress(_good_lines(a).encode() * 50)[:200], ("cannot read",)),
    "gzip_of_a_long_line": ("m.smi.gz", lambda a: gzip.compress(("C" * 30_000).encode()), ("5000-character limit",)),
    "one_molecule": ("m.smi", lambda a: b"CCO\n", ("1 valid molecule(s)", "at least 10")),
    "nine_molecules": ("m.smi", lambda a: _good_lines(a, 9).encode(), ("9 valid molecule(s)",)),
    "one_valid_among_junk": ("m.smi", lambda a: b"CCO\nxx(\n)))\nQ\n", ("1 valid molecule(s)",)),
}  # fmt: skip


def _smiles_fit(fname: str, content: Callable[[Assets], bytes], expect: tuple[str, ...]) -> Builder:
    def build(a: Assets, tmp: Path) -> Hostile:
        data = tmp / fname
        data.write_bytes(content(a))
        out = tmp / "out"
        return Hostile(["fit", str(data), *FIT, "--out", str(out)], expect, inputs=[data], absent=[out])

    return build


for _name, (_fname, _content, _expect_) in SMILES_FILES.items():
    case(f"smiles_file/{_name}/fit")(_smiles_fit(_fname, _content, _expect_))

#: The same files as generated molecules given to ``scivae evaluate`` (not those only a fit refuses).
for _name in ("line_of_30000_characters", "line_of_2000000_characters", "random_bytes", "nul_bytes_in_text",
              "utf16_text", "h5ad_named_smi", "gzip_named_smi", "zip_named_smi", "plain_text_named_smi_gz",
              "gzip_of_random_bytes"):  # fmt: skip
    _fname, _content, _expect_ = SMILES_FILES[_name]

    def _evaluate(a: Assets, tmp: Path, _f=_fname, _c=_content, _e=_expect_) -> Hostile:
        gen = tmp / _f
        gen.write_bytes(_c(a))
        out = tmp / "metrics.json"
        args = ["evaluate", str(gen), "--json", str(out), "--threads", "1", "--accelerator", "cpu"]
        return Hostile(args, _e, inputs=[gen], absent=[out])

    case(f"smiles_file/{_name}/evaluate")(_evaluate)


@case("smiles_file/training_file_of_evaluate_is_an_h5ad")
def _evaluate_train(a: Assets, tmp: Path) -> Hostile:
    gen, train = tmp / "gen.smi", tmp / "train.smi"
    gen.write_text(_good_lines(a))
    train.write_bytes(a.cells.read_bytes())
    return Hostile(["evaluate", str(gen), "--train", str(train), "--threads", "1", "--accelerator", "cpu"],
                   ("HDF5 file",), inputs=[gen, train])  # fmt: skip


# -- 3. SMILES strings given to a trained model ------------------------------------------------------------
for _label, _smiles in (("6000", "C" * 6000), ("30000", "C" * 30_000), ("2000000", "C" * 2_000_000)):

    def _interpolate_a(a: Assets, tmp: Path, _s=_smiles) -> Hostile:
        return Hostile(["interpolate", str(a.mol_model), _s, "CCO", "--threads", "1"], ("5000-character limit",),
                       inputs=[a.mol_model])  # fmt: skip

    def _interpolate_b(a: Assets, tmp: Path, _s=_smiles) -> Hostile:
        return Hostile(["interpolate", str(a.mol_model), "CCO", _s, "--threads", "1"], ("5000-character limit",),
                       inputs=[a.mol_model])  # fmt: skip

    case(f"smiles_string/interpolate_start_of_{_label}_characters")(_interpolate_a)
    case(f"smiles_string/interpolate_end_of_{_label}_characters")(_interpolate_b)

_API_SMILES = {
    "encode": lambda m, s: m.encode(s),
    "reconstruct": lambda m, s: m.reconstruct([s]),
    "neighbors": lambda m, s: m.neighbors(s, n=2),
    "interpolate": lambda m, s: m.interpolate(s, "CCO", steps=3),
    "token_accuracy": lambda m, s: m.token_accuracy([s]),
    "elbo": lambda m, s: m.elbo([s]),
}
for _name, _fn in _API_SMILES.items():

    def _api_smiles(a: Assets, tmp: Path, _f=_fn) -> Hostile:
        from scivae import MolVAE
        from scivae.errors import ScivaeInputError

        model = MolVAE.load(a.mol_model)
        return Hostile(None, ("5000-character limit",), inputs=[a.mol_model],
                       call=lambda: _f(model, "C" * 30_000), raises=ScivaeInputError)  # fmt: skip

    case(f"smiles_string/api_{_name}_of_30000_characters")(_api_smiles)


@case("smiles_string/api_training_list_with_a_30000_character_entry")
def _api_train_long(a: Assets, tmp: Path) -> Hostile:
    from scivae import MolVAE
    from scivae.errors import ScivaeInputError

    smiles = a.smiles.read_text().split()[:20] + ["C" * 30_000]
    return Hostile(None, ("entry 21 of", "5000-character limit"), call=lambda: MolVAE(smiles), raises=ScivaeInputError)


@case("smiles_string/api_fit_on_one_molecule")
def _api_one_molecule(a: Assets, tmp: Path) -> Hostile:
    from scivae import MolVAE
    from scivae.errors import ScivaeInputError

    return Hostile(None, ("at least 10",), call=lambda: MolVAE(["CCO"]).fit(max_epochs=1, accelerator="cpu"),
                   raises=ScivaeInputError)  # fmt: skip


@case("smiles_string/api_from_file_of_an_h5ad_renamed")
def _api_from_file(a: Assets, tmp: Path) -> Hostile:
    from scivae import MolVAE
    from scivae.errors import ScivaeInputError

    bad = tmp / "m.smi"
    bad.write_bytes(a.cells.read_bytes())
    return Hostile(None, ("HDF5 file",), inputs=[bad], call=lambda: MolVAE.from_file(bad), raises=ScivaeInputError)


# -- 4. model folders: wrong types, deep nesting, non-finite weights --------------------------------------
def _edit_config(edit: Callable[[dict], None]) -> Callable[[Path], None]:
    def change(model: Path) -> None:
        meta = json.loads((model / "config.json").read_text())
        edit(meta)
        (model / "config.json").write_text(json.dumps(meta))

    return change


def _write_config(text: str | bytes) -> Callable[[Path], None]:
    def change(model: Path) -> None:
        (model / "config.json").write_bytes(text.encode() if isinstance(text, str) else text)

    return change


def _weights(fill: float, file: str = "model.safetensors") -> Callable[[Path], None]:
    def change(model: Path) -> None:
        from safetensors.torch import load_file, save_file

        w = load_file(str(model / file))
        key = next(k for k, v in w.items() if v.is_floating_point() and v.numel() > 1)
        w[key] = w[key].clone()
        w[key].view(-1)[0] = fill
        save_file(w, str(model / file))

    return change


def _truncate(file: str, keep: int | None) -> Callable[[Path], None]:
    def change(model: Path) -> None:
        raw = (model / file).read_bytes()
        (model / file).write_bytes(raw[: len(raw) // 2] if keep is None else raw[:keep])

    return change


DEEP = "[" * 200_000 + "]" * 200_000
COMMON_MODEL_DAMAGE: dict[str, tuple[Callable[[Path], None], tuple[str, ...]]] = {
    "format_version_string": (_edit_config(lambda m: m.update(format_version="1")), ("not an integer",)),
    "format_version_true": (_edit_config(lambda m: m.update(format_version=True)), ("not an integer",)),
    "format_version_float": (_edit_config(lambda m: m.update(format_version=1.0)), ("not an integer",)),
    "format_version_null": (_edit_config(lambda m: m.update(format_version=None)), ("not an integer",)),
    "config_nested_200000_deep": (_write_config('{"format_version": 1, "config": ' + DEEP + "}"),
                                  ("nested too deeply",)),
    "adapter_state_nested_200000_deep": (
        _write_config('{"format_version": 1, "model_type": "x", "config": {}, "adapter_state": ' + DEEP + "}"),
        ("nested too deeply",)),
    "config_is_a_list": (_write_config("[1, 2, 3]"), ("does not hold a JSON object",)),
    "config_is_binary": (_write_config(np.random.default_rng(2).bytes(300)), ("not valid JSON",)),
    "config_empty_file": (_write_config(""), ("not valid JSON",)),
    "config_null": (_edit_config(lambda m: m.update(config=None)), ("has no 'config' object",)),
    "nan_weight": (_weights(float("nan")), ("not finite",)),
    "inf_weight": (_weights(float("inf")), ("not finite",)),
    "weights_cut_in_half": (_truncate("model.safetensors", None), ("not a readable safetensors file",)),
    "weights_of_8_bytes": (_truncate("model.safetensors", 8), ("not a readable safetensors file",)),
}  # fmt: skip


def _cell_genes(fill: Any) -> Callable[[Path], None]:
    def edit(meta: dict) -> None:
        genes = meta["adapter_state"]["genes"]
        meta["adapter_state"]["genes"] = fill(genes)

    return _edit_config(edit)


CELL_MODEL_DAMAGE = {
    **COMMON_MODEL_DAMAGE,
    "genes_with_nulls": (_cell_genes(lambda g: [None] * len(g)), ("a gene that is not a name (None)",)),
    "genes_a_number": (_cell_genes(lambda g: 5), ("lists no genes",)),
    "genes_a_dict": (_cell_genes(lambda g: {"a": 1}), ("lists no genes",)),
    "n_latent_a_string": (_edit_config(lambda m: m["config"].update(n_latent="3")), ("config.json",)),
    "n_hidden_null": (_edit_config(lambda m: m["config"].update(n_hidden=None)), ("config.json",)),
}


def _vocab(fill: Any) -> Callable[[Path], None]:
    def edit(meta: dict) -> None:
        vocab = meta["adapter_state"]["vocabulary"]
        key = next(k for k, v in vocab.items() if isinstance(v, list))
        vocab[key] = fill(vocab[key])

    return _edit_config(edit)


MOL_MODEL_DAMAGE = {
    **COMMON_MODEL_DAMAGE,
    "vocabulary_tokens_null": (_vocab(lambda t: [None] * len(t)), ("damaged vocabulary",)),
    "vocabulary_tokens_a_number": (_vocab(lambda t: 7), ("damaged vocabulary",)),
    "prior_nan_weight": (_weights(float("nan"), "prior.safetensors"), ("not finite",)),
    # found by the fuzz pass: a history.csv that is not UTF-8 (pandas raised UnicodeDecodeError, a traceback)
    "history_not_utf8": (
        lambda m: (m / "history.csv").write_bytes(b"epoch,loss\n0,\x95\xff\n"),
        ("history.csv cannot be read",),
    ),
}


def _model_case(kind: str, damage: Callable[[Path], None], expect: tuple[str, ...]) -> Builder:
    def build(a: Assets, tmp: Path) -> Hostile:
        model = copy_tree(a.cell_model if kind == "embed" else a.mol_model, tmp / "model")
        damage(model)
        if kind == "embed":
            out = tmp / "e.h5ad"
            args = ["embed", str(model), str(a.cells), "-o", str(out), "--threads", "1"]
            return Hostile(args, expect, inputs=[model, a.cells], absent=[out])
        if kind == "generate":
            out = tmp / "g.smi"
            return Hostile(["generate", str(model), "-n", "5", "-o", str(out), "--threads", "1"], expect,
                           inputs=[model], absent=[out])  # fmt: skip
        return Hostile(["interpolate", str(model), "CCO", "CCN", "--steps", "3", "--threads", "1"], expect,
                       inputs=[model])  # fmt: skip

    return build


for _name, (_fn, _e) in CELL_MODEL_DAMAGE.items():
    case(f"model/cell_{_name}/embed")(_model_case("embed", _fn, _e))
for _name, (_fn, _e) in MOL_MODEL_DAMAGE.items():
    case(f"model/molecule_{_name}/generate")(_model_case("generate", _fn, _e))
for _name in ("format_version_string", "nan_weight", "config_nested_200000_deep"):
    case(f"model/molecule_{_name}/interpolate")(_model_case("interpolate", *MOL_MODEL_DAMAGE[_name]))


@case("model/api_load_of_nan_weights")
def _api_nan(a: Assets, tmp: Path) -> Hostile:
    import scivae
    from scivae.errors import ModelFormatError

    model = copy_tree(a.mol_model, tmp / "model")
    _weights(float("nan"))(model)
    return Hostile(None, ("not finite",), inputs=[model], call=lambda: scivae.load(model), raises=ModelFormatError)


# -- 5. seeds, counts and batch sizes out of range ---------------------------------------------------------
SEEDS = ("-1", "4294967296", "99999999999999999999")
for _seed in SEEDS:

    def _fit_cells_seed(a: Assets, tmp: Path, _s=_seed) -> Hostile:
        out = tmp / "out"
        return Hostile(["fit", str(a.cells), *FIT, "--out", str(out), "--seed", _s], (f"--seed={_s} is not",),
                       inputs=[a.cells], absent=[out])  # fmt: skip

    def _fit_mols_seed(a: Assets, tmp: Path, _s=_seed) -> Hostile:
        out = tmp / "out"
        return Hostile(["fit", str(a.smiles), *FIT, "--out", str(out), "--seed", _s], (f"--seed={_s} is not",),
                       inputs=[a.smiles], absent=[out])  # fmt: skip

    def _generate_seed(a: Assets, tmp: Path, _s=_seed) -> Hostile:
        out = tmp / "g.smi"
        return Hostile(["generate", str(a.mol_model), "-n", "3", "-o", str(out), "--seed", _s, "--threads", "1"],
                       (f"--seed={_s} is not",), inputs=[a.mol_model], absent=[out])  # fmt: skip

    def _plot_seed(a: Assets, tmp: Path, _s=_seed) -> Hostile:
        fit_dir = tmp / "fit"
        fit_dir.mkdir()
        (fit_dir / "history.csv").write_text("epoch\n0\n")
        return Hostile(["plot", str(fit_dir), "--seed", _s, "--threads", "1"], (f"--seed={_s} is not",),
                       inputs=[fit_dir])  # fmt: skip

    case(f"seed/fit_cells_seed_{_seed}")(_fit_cells_seed)
    case(f"seed/fit_molecules_seed_{_seed}")(_fit_mols_seed)
    case(f"seed/generate_seed_{_seed}")(_generate_seed)
    case(f"seed/plot_seed_{_seed}")(_plot_seed)

_API_SEEDS: dict[str, Callable[[Assets], Callable[[], Any]]] = {
    "gaussian_vae_seed_minus_5": lambda a: lambda: __import__("scivae").GaussianVAE(4, n_latent=2, seed=-5),
    "mol_vae_seed_2_pow_32": lambda a: lambda: __import__("scivae").MolVAE(["CCO", "CCN"], seed=2**32),
    "cell_vae_seed_minus_1": lambda a: lambda: __import__("scivae").CellVAE(_read(a.cells), seed=-1),
    "sample_seed_minus_1": lambda a: lambda: _load(a.mol_model).sample(3, seed=-1),
    "get_latent_seed_2_pow_40": lambda a: lambda: _load(a.cell_model).get_latent(_read(a.cells), seed=2**40),
    "fit_seed_minus_1": lambda a: (
        lambda: __import__("scivae").GaussianVAE(4, n_latent=2).fit(np.ones((20, 4), np.float32), seed=-1)
    ),
}


def _read(path: Path) -> Any:
    import anndata as ad

    return ad.read_h5ad(path)


def _load(path: Path) -> Any:
    import scivae

    return scivae.load(path)


for _name, _make in _API_SEEDS.items():

    def _api_seed(a: Assets, tmp: Path, _m=_make) -> Hostile:
        from scivae.errors import OptionError

        return Hostile(None, ("is not an integer between 0 and 4294967295",), call=_m(a), raises=OptionError)

    case(f"seed/api_{_name}")(_api_seed)

for _n, _expect_n in (("1000000001", "over the limit of 1000000000"), ("99999999999999", "over the limit"),
                      ("0", "-n must be >= 1"), ("-5", "-n must be >= 1")):  # fmt: skip

    def _generate_n(a: Assets, tmp: Path, _n=_n, _e=_expect_n) -> Hostile:
        out = tmp / "g.smi"
        return Hostile(["generate", str(a.mol_model), "-n", _n, "-o", str(out), "--threads", "1"], (_e,),
                       inputs=[a.mol_model], absent=[out])  # fmt: skip

    case(f"size/generate_n_{_n}")(_generate_n)


@case("size/api_sample_a_billion")
def _api_sample(a: Assets, tmp: Path) -> Hostile:
    from scivae.errors import OptionError

    return Hostile(None, ("n=1000000000 is over the limit",), call=lambda: _load(a.mol_model).sample(10**9),
                   raises=OptionError)  # fmt: skip


for _bs, _expect_bs in (("0", "is not an integer >= 1"), ("-3", "is not an integer >= 1"),
                        ("1000000000000", "over the limit of 1048576")):  # fmt: skip

    def _fit_bs(a: Assets, tmp: Path, _b=_bs, _e=_expect_bs) -> Hostile:
        out = tmp / "out"
        return Hostile(["fit", str(a.cells), *FIT, "--out", str(out), "--batch-size", _b], (f"--batch-size={_b}",
                       _e), inputs=[a.cells], absent=[out])  # fmt: skip

    def _fit_mol_bs(a: Assets, tmp: Path, _b=_bs, _e=_expect_bs) -> Hostile:
        out = tmp / "out"
        return Hostile(["fit", str(a.smiles), *FIT, "--out", str(out), "--batch-size", _b], (_e,),
                       inputs=[a.smiles], absent=[out])  # fmt: skip

    def _embed_bs(a: Assets, tmp: Path, _b=_bs, _e=_expect_bs) -> Hostile:
        out = tmp / "e.h5ad"
        return Hostile(["embed", str(a.cell_model), str(a.cells), "-o", str(out), "--batch-size", _b], (_e,),
                       inputs=[a.cells, a.cell_model], absent=[out])  # fmt: skip

    def _generate_bs(a: Assets, tmp: Path, _b=_bs, _e=_expect_bs) -> Hostile:
        out = tmp / "g.smi"
        return Hostile(["generate", str(a.mol_model), "-n", "3", "-o", str(out), "--batch-size", _b], (_e,),
                       inputs=[a.mol_model], absent=[out])  # fmt: skip

    case(f"size/fit_cells_batch_size_{_bs}")(_fit_bs)
    case(f"size/fit_molecules_batch_size_{_bs}")(_fit_mol_bs)
    case(f"size/embed_batch_size_{_bs}")(_embed_bs)
    case(f"size/generate_batch_size_{_bs}")(_generate_bs)


# -- 6. output folders holding someone else's files --------------------------------------------------------
def _foreign(files: dict[str, str]) -> Callable[[Path], Path]:
    def make(folder: Path) -> Path:
        for name, text in files.items():
            (folder / name).parent.mkdir(parents=True, exist_ok=True)
            (folder / name).write_text(text)
        return folder

    return make


FOREIGN_FOLDERS = {
    "checkpoints_subfolder": _foreign(
        {"checkpoints/notes.txt": "mine", "checkpoints/run.json": "{}", "thesis.tex": "keep"}
    ),  # fmt: skip
    "lightning_checkpoint": _foreign({"checkpoints/last.ckpt": "not scivae's", "data.csv": "a,b\n"}),
    "metrics_and_results": _foreign({"metrics.json": "{}", "results.csv": "x\n1\n"}),
    "a_model_config_that_is_not_scivae": _foreign({"model/config.json": '{"layers": 3}', "weights.bin": "w"}),
}
for _name, _make_folder in FOREIGN_FOLDERS.items():
    for _flags in ((), ("--force",), ("--resume",), ("--resume", "--force")):

        def _foreign_case(a: Assets, tmp: Path, _mk=_make_folder, _f=_flags) -> Hostile:
            out = tmp / "results"
            out.mkdir()
            _mk(out)
            expect = ("is not a scivae output folder",)
            return Hostile(["fit", str(a.cells), *FIT, "--out", str(out), *_f], expect, inputs=[a.cells, out])

        case(f"output/{_name}/fit{''.join('_' + f.strip('-') for f in _flags)}")(_foreign_case)


@case("output/checkpoint_dir_with_a_foreign_last_ckpt/fit_force")
def _foreign_ckpt_dir(a: Assets, tmp: Path) -> Hostile:
    ckpt = tmp / "ckpts"
    ckpt.mkdir()
    (ckpt / "last.ckpt").write_text("someone else's")
    out = tmp / "out"
    args = ["fit", str(a.cells), *FIT, "--out", str(out), "--checkpoint-dir", str(ckpt), "--force"]
    return Hostile(args, ("that scivae did not write",), inputs=[a.cells, ckpt], absent=[out])


@case("output/embed_onto_a_folder_named_h5ad")
def _embed_dir(a: Assets, tmp: Path) -> Hostile:
    out = tmp / "e.h5ad"
    out.mkdir()
    (out / "keep.txt").write_text("keep")
    return Hostile(["embed", str(a.cell_model), str(a.cells), "-o", str(out), "--threads", "1"], ("is a folder",),
                   inputs=[a.cells, out])  # fmt: skip


@case("output/generate_onto_a_folder_named_smi")
def _generate_dir(a: Assets, tmp: Path) -> Hostile:
    out = tmp / "g.smi"
    out.mkdir()
    (out / "keep.txt").write_text("keep")
    return Hostile(["generate", str(a.mol_model), "-n", "3", "-o", str(out), "--threads", "1"], ("is a folder",),
                   inputs=[a.mol_model, out])  # fmt: skip


# -- 7. a full disk (simulated: the writer raises ENOSPC) ---------------------------------------------------
def _enospc(*args: Any, **kwargs: Any) -> None:
    import errno

    raise OSError(errno.ENOSPC, "No space left on device", "/tmp/.e.h5ad.x1y2z3.tmp")


@case("disk_full/embed_writer")
def _embed_full(a: Assets, tmp: Path) -> Hostile:
    out = tmp / "e.h5ad"

    def patch(mp: Any) -> None:
        import scivae_cli.cells

        mp.setattr(scivae_cli.cells, "_write_embedded", _enospc)

    return Hostile(["embed", str(a.cell_model), str(a.cells), "-o", str(out), "--threads", "1"],
                   (f"-o {out}: No space left on device",), code=1, inputs=[a.cells], absent=[out],
                   patch=patch)  # fmt: skip


@case("disk_full/embed_no_room_before_writing")
def _embed_no_room(a: Assets, tmp: Path) -> Hostile:
    out = tmp / "e.h5ad"

    def patch(mp: Any) -> None:
        import collections

        import scivae_cli.write_errors

        usage = collections.namedtuple("usage", "total used free")
        mp.setattr(scivae_cli.write_errors.shutil, "disk_usage", lambda p: usage(10, 10, 0))

    return Hostile(["embed", str(a.cell_model), str(a.cells), "-o", str(out), "--threads", "1"],
                   (f"-o {out}: No space left on device",), code=1, inputs=[a.cells], absent=[out],
                   patch=patch)  # fmt: skip


@case("disk_full/generate_writer")
def _generate_full(a: Assets, tmp: Path) -> Hostile:
    out = tmp / "g.smi"

    def patch(mp: Any) -> None:
        import contextlib

        import scivae_cli.molecules

        real = scivae_cli.molecules.atomic_path

        @contextlib.contextmanager
        def full(path: Path) -> Any:
            with real(path) as tmp_file:  # the chunks are written to the temporary file, then the disk is full
                yield tmp_file
                _enospc()

        mp.setattr(scivae_cli.molecules, "atomic_path", full)

    return Hostile(["generate", str(a.mol_model), "-n", "3", "-o", str(out), "--threads", "1"],
                   (f"-o {out}: No space left on device",), code=1, inputs=[a.mol_model], absent=[out],
                   patch=patch)  # fmt: skip


@case("disk_full/fit_report_writer")
def _fit_full(a: Assets, tmp: Path) -> Hostile:
    out = tmp / "out"

    def patch(mp: Any) -> None:
        import scivae.pl.report

        mp.setattr(scivae.pl.report, "write_fit_report", _enospc)

    # the fit trains (one tiny epoch), then cannot write: its checkpoint is kept for --resume (a second line)
    return Hostile(["fit", str(a.cells), *FIT, "--out", str(out), "--checkpoint-every", "0"],
                   (f"--out {out}: No space left on device",), code=1, inputs=[a.cells], patch=patch)  # fmt: skip


@case("disk_full/fit_torch_checkpoint_writer")
def _fit_torch_full(a: Assets, tmp: Path) -> Hostile:
    out = tmp / "out"

    def patch(mp: Any) -> None:
        import scivae.pl.report

        def fail(*args: Any, **kwargs: Any) -> None:
            raise RuntimeError("[enforce fail at inline_container.cc:603] . PytorchStreamWriter failed writing file "
                               "data/3: file write failed")  # fmt: skip

        mp.setattr(scivae.pl.report, "write_fit_report", fail)

    return Hostile(["fit", str(a.cells), *FIT, "--out", str(out), "--checkpoint-every", "0"],
                   (f"--out {out}: No space left on device",), code=1, inputs=[a.cells], patch=patch)  # fmt: skip


def n_cases() -> int:
    return len(CASES)


# -- 8. sizes that would ask for more memory than a machine has --------------------------------------------
@case("size/interpolate_steps_1000000000")
def _steps(a: Assets, tmp: Path) -> Hostile:
    args = ["interpolate", str(a.mol_model), "CCO", "CCN", "--steps", "1000000000", "--threads", "1"]
    return Hostile(args, ("--steps=1000000000 is over the limit",), inputs=[a.mol_model])


@case("size/plot_n_molecules_1000000000")
def _plot_n(a: Assets, tmp: Path) -> Hostile:
    fit_dir = tmp / "fit"
    fit_dir.mkdir()
    (fit_dir / "history.csv").write_text("epoch\n0\n")
    args = ["plot", str(fit_dir), "--n-molecules", "1000000000", "--threads", "1"]
    return Hostile(args, ("--n-molecules must be between 1 and 1000",), inputs=[fit_dir])


@case("size/api_sample_two_million_cells")
def _api_cells_sample(a: Assets, tmp: Path) -> Hostile:
    from scivae import latent
    from scivae.errors import OptionError

    return Hostile(None, ("n=2000000 is over the limit",), call=lambda: latent.sample(_load(a.cell_model), 2_000_000),
                   raises=OptionError)  # fmt: skip


@case("size/api_sample_around_two_million")
def _api_around(a: Assets, tmp: Path) -> Hostile:
    from scivae import latent
    from scivae.errors import OptionError

    model = _load(a.mol_model)
    call = lambda: latent.sample_around(model, "CCO", 2_000_000)  # noqa: E731
    return Hostile(None, ("n=2000000 is over the limit",), call=call, raises=OptionError)


@case("memory/fit_allocation_fails")
def _fit_oom(a: Assets, tmp: Path) -> Hostile:
    out = tmp / "out"

    def patch(mp: Any) -> None:
        import scivae_cli.cells

        def build(*args: Any, **kwargs: Any) -> None:
            raise RuntimeError("[enforce fail at alloc_cpu.cpp:127] DefaultCPUAllocator: can't allocate memory")

        mp.setattr(scivae_cli.cells, "build", build)

    return Hostile(["fit", str(a.cells), *FIT, "--out", str(out), "--n-latent", "1000000000"], ("out of memory",),
                   code=1, inputs=[a.cells], absent=[out], patch=patch)  # fmt: skip


@case("disk_full/fit_no_room_before_writing")
def _fit_no_room(a: Assets, tmp: Path) -> Hostile:
    out = tmp / "out"

    def patch(mp: Any) -> None:
        import collections

        import scivae_cli.write_errors

        usage = collections.namedtuple("usage", "total used free")
        mp.setattr(scivae_cli.write_errors.shutil, "disk_usage", lambda p: usage(10, 10, 0))

    return Hostile(["fit", str(a.cells), *FIT, "--out", str(out), "--checkpoint-every", "0"],
                   (f"--out {out}: No space left on device",), code=1, inputs=[a.cells], patch=patch)  # fmt: skip
