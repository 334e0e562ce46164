"""Reading molecules: SMILES files (.smi, .txt, .csv, .csv.gz) to canonical SMILES with honest counts.

Every molecule is parsed by RDKit and written back as its canonical SMILES, so the same molecule always has
the same string (training set, generated molecules and novelty checks agree). Empty lines, strings RDKit
cannot parse and molecules of more than ``max_length`` SMILES tokens are dropped and counted; only a file
with no valid molecule left is an error.

Before RDKit sees anything, a file that is no text (binary data, NUL bytes, invalid UTF-8, an HDF5 file, gzip data
without a ``.gz`` name, another archive) is refused, and so is any string over :data:`MAX_SMILES_CHARACTERS`
characters (RDKit's recursion crashes the process on chains of some ten thousand atoms and takes minutes over
millions of characters): both are errors that name the file (and the line), never a few molecules of junk.
"""

from __future__ import annotations

import contextlib
import gzip
import io
import os
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

from scivae.errors import ScivaeInputError
from scivae.molecules.tokenizer import tokenize_smiles

SMILES_SUFFIXES = (".smi", ".txt", ".csv", ".csv.gz", ".smi.gz", ".txt.gz")
#: Longest molecule (SMILES tokens) read without an explicit ``max_length``: a longer one is an error, since
#: one very long string would make every padded batch that long (a 10,000-character line is no drug-like molecule).
MAX_TOKENS_DEFAULT = 500
#: Longest string (characters) handed to RDKit, whatever ``max_length``: RDKit recurses over a molecule's atoms,
#: so a chain of some ten thousand atoms overflows its stack (a segmentation fault, not an exception), and a
#: string of millions of characters takes minutes. The longest drug-like SMILES are a few hundred characters.
MAX_SMILES_CHARACTERS = 5000
#: Fewest valid molecules a model is trained on (to learn and to validate on; cells need as many).
MIN_MOLECULES = 10
_GZIP_MAGIC = b"\x1f\x8b"
_HDF5_MAGIC = b"\x89HDF\r\n\x1a\n"
#: Other formats that are no text (zip, bzip2, xz, zstd, 7z).
_BINARY_MAGIC = {b"PK\x03\x04": "zip", b"BZh": "bzip2", b"\xfd7zXZ\x00": "xz", b"\x28\xb5\x2f\xfd": "zstd",
                 b"7z\xbc\xaf\x27\x1c": "7z"}  # fmt: skip
_SNIFF_BYTES = 1 << 20
_COLUMN_CANDIDATES = ("SMILES", "smiles", "Smiles", "canonical_smiles", "CANONICAL_SMILES")


@contextlib.contextmanager
def rdkit_quiet() -> Iterator[None]:
    """Silence RDKit's per-molecule parse errors (they are counted and reported instead)."""
    from rdkit import RDLogger

    RDLogger.DisableLog("rdApp.*")
    try:
        yield
    finally:
        RDLogger.EnableLog("rdApp.*")


def check_smiles_length(smiles: str, where: str = "") -> None:
    """Refuse a string longer than :data:`MAX_SMILES_CHARACTERS` before RDKit sees it (it could crash or hang).

    ``where`` says where the string came from (``"line 7 of mols.smi"``); by default the string's start.
    """
    if len(smiles) > MAX_SMILES_CHARACTERS:
        where = where or f"the SMILES {smiles[:20]!r}..."
        raise ScivaeInputError(
            f"{where} has {len(smiles)} characters, over the {MAX_SMILES_CHARACTERS}-character limit of a SMILES: "
            "remove it (no drug-like molecule is that long)"
        )


def check_enough_molecules(n: int, source: str) -> None:
    """Refuse to train on fewer than :data:`MIN_MOLECULES` valid molecules (the validation split would be empty)."""
    if n < MIN_MOLECULES:
        raise ScivaeInputError(
            f"{source} has {n} valid molecule(s): training needs at least {MIN_MOLECULES} (to learn and to validate "
            "on); pass more molecules"
        )


def canonical_smiles(smiles: str) -> str | None:
    """Return RDKit's canonical SMILES of ``smiles``, or ``None`` when it is empty or not a valid molecule.

    Raises
    ------
    ScivaeInputError
        A string over :data:`MAX_SMILES_CHARACTERS` characters (RDKit would crash or hang on it).
    """
    from rdkit import Chem

    smiles = smiles.strip()
    if not smiles:
        return None
    check_smiles_length(smiles)
    mol = Chem.MolFromSmiles(smiles)
    if mol is None or mol.GetNumAtoms() == 0:
        return None
    return Chem.MolToSmiles(mol)


def canonicalize_many(smiles: Iterable[str]) -> list[str | None]:
    """Canonicalise many SMILES quietly; invalid or empty strings give ``None``."""
    with rdkit_quiet():
        return [canonical_smiles(s) if isinstance(s, str) else None for s in smiles]


@dataclass
class MoleculeSet:
    """Canonical SMILES read from a file or a list, with counts of what was dropped and why.

    Attributes
    ----------
    smiles
        Canonical SMILES of the valid molecules, in input order (duplicates kept).
    n_input
        Number of entries read (lines or rows, header excluded).
    n_empty
        Empty lines or missing values.
    n_invalid
        Non-empty strings that RDKit could not parse.
    n_too_long
        Valid molecules dropped because their canonical SMILES has more than ``max_length`` tokens.
    source
        Where the molecules came from (a path or ``"<list>"``).
    """

    smiles: list[str]
    n_input: int
    n_empty: int = 0
    n_invalid: int = 0
    n_too_long: int = 0
    source: str = "<list>"
    invalid_examples: list[str] = field(default_factory=list)

    def summary(self) -> str:
        """One line: how many molecules were kept and how many were dropped for which reason."""
        parts = [f"{len(self.smiles)} valid molecules of {self.n_input} entries in {self.source}"]
        dropped = []
        if self.n_empty:
            dropped.append(f"{self.n_empty} empty")
        if self.n_invalid:
            ex = f" (e.g. {self.invalid_examples[0]!r})" if self.invalid_examples else ""
            dropped.append(f"{self.n_invalid} invalid SMILES{ex}")
        if self.n_too_long:
            dropped.append(f"{self.n_too_long} longer than max_length")
        if dropped:
            parts.append("dropped " + ", ".join(dropped))
        return "; ".join(parts)


def clean_smiles(smiles: Iterable[str | None], *, max_length: int | None = None, source: str = "<list>") -> MoleculeSet:
    """Canonicalise a sequence of SMILES, dropping (and counting) empty, invalid and too long entries.

    Parameters
    ----------
    smiles
        Input SMILES strings (``None`` or NaN counts as empty).
    max_length
        Drop molecules whose canonical SMILES has more than this many tokens (``Cl``, ``[nH]``... count
        as one).
    source
        Name used in messages.

    Raises
    ------
    ScivaeInputError
        When no valid molecule is left.
    """
    if max_length is not None and max_length < 1:
        raise ScivaeInputError(f"{{max_length}}={max_length!r} is not a positive number of tokens")
    out: list[str] = []
    n_input = n_empty = n_invalid = n_long = 0
    examples: list[str] = []
    from rdkit import Chem

    with rdkit_quiet():
        for s in smiles:
            n_input += 1
            if not isinstance(s, str) or not s.strip():
                n_empty += 1
                continue
            check_smiles_length(s.strip(), f"entry {n_input} of {source}")
            mol = Chem.MolFromSmiles(s.strip())
            if mol is None or mol.GetNumAtoms() == 0:
                n_invalid += 1
                if len(examples) < 3:
                    examples.append(s.strip()[:60])
                continue
            can = Chem.MolToSmiles(mol)
            n_tokens = len(tokenize_smiles(can))
            if max_length is not None and n_tokens > max_length:
                n_long += 1
                continue
            if max_length is None and n_tokens > MAX_TOKENS_DEFAULT:
                raise ScivaeInputError(
                    f"entry {n_input} of {source} is a molecule of {n_tokens} SMILES tokens ({len(s.strip())} "
                    f"characters), over the {MAX_TOKENS_DEFAULT}-token limit: remove it, or pass {{max_length}}=N to "
                    "drop longer molecules",
                    "max_length",
                )
            out.append(can)
    result = MoleculeSet(out, n_input, n_empty, n_invalid, n_long, source, examples)
    if not out:
        if n_input == 0:
            raise ScivaeInputError(f"no molecules in {source}: give a file with one SMILES per line")
        if n_long:
            raise ScivaeInputError(
                f"all {n_long} valid molecules in {source} are longer than {{max_length}}={max_length}: raise it",
                "max_length",
            )
        raise ScivaeInputError(
            f"no valid molecule in {source} ({n_invalid} invalid, {n_empty} empty of {n_input}): "
            "give one valid SMILES per line (or name the SMILES column with {column})",
            "column",
        )
    return result


_LINE_SUFFIXES = (".smi", ".txt", ".smi.gz", ".txt.gz")
_CSV_SUFFIXES = (".csv", ".csv.gz")


def _suffix(path: Path) -> str:
    name = path.name.lower()
    for suf in (".csv.gz", ".smi.gz", ".txt.gz"):
        if name.endswith(suf):
            return suf
    return path.suffix.lower()


def _open_text(path: Path) -> io.TextIOBase:
    # strict decoding: binary data is refused (see _check_text), never read as a few "molecules" of junk
    if path.name.lower().endswith(".gz"):
        return gzip.open(path, "rt", encoding="utf-8")  # type: ignore[return-value]
    return open(path, encoding="utf-8")  # noqa: SIM115


def _not_text(path: Path, what: str) -> ScivaeInputError:
    return ScivaeInputError(
        f"{path} {what}, not SMILES text: pass a text file with one SMILES per line (.smi, .txt) or a .csv"
    )


def _check_text(path: Path) -> None:
    """Refuse a file that is no text before it is parsed: HDF5 (an .h5ad renamed), gzip data without a ``.gz``
    name, other archives, NUL bytes or invalid UTF-8 in its first MiB (of the decompressed content for ``.gz``).

    gzip data named ``.smi`` is refused rather than decompressed: the name says how the file is read, so the fix
    is the name (``.smi.gz``), which scivae then reads.
    """
    try:
        with open(path, "rb") as fh:
            head = fh.read(8)
        if head.startswith(_HDF5_MAGIC):
            raise _not_text(path, "is an HDF5 file (an .h5ad?)")
        gz = path.name.lower().endswith(".gz")
        if head.startswith(_GZIP_MAGIC) and not gz:
            raise ScivaeInputError(
                f"{path} holds gzip-compressed data: name it {path.name}.gz (scivae reads .smi.gz, .txt.gz and "
                ".csv.gz) or decompress it"
            )
        for magic, kind in _BINARY_MAGIC.items():
            if head.startswith(magic):
                raise _not_text(path, f"is {kind} data")
        if gz and not head.startswith(_GZIP_MAGIC):
            raise _not_text(path, "is named .gz but holds no gzip data")
        opener = gzip.open if gz else open
        with opener(path, "rb") as fh:  # type: ignore[operator]
            sample = fh.read(_SNIFF_BYTES)
    except (OSError, EOFError) as exc:
        raise ScivaeInputError(f"cannot read {path} ({type(exc).__name__}): check the file format") from None
    nul = sample.find(b"\x00")
    if nul >= 0:
        raise _not_text(path, f"holds NUL bytes (byte {nul}): binary data")
    try:
        sample.decode("utf-8")
    except UnicodeDecodeError as exc:
        if exc.start < len(sample) - 4:  # not merely a character cut at the end of the sample
            raise _not_text(path, f"is not UTF-8 text (byte {exc.start}): binary data") from None


def _read_lines(path: Path) -> list[str]:
    # One molecule per line; the SMILES is the first whitespace-separated field (a name may follow).
    try:
        with _open_text(path) as fh:
            lines = fh.read().splitlines()
    except UnicodeDecodeError as exc:
        raise _not_text(path, f"is not UTF-8 text (byte {exc.start} of its text): binary data") from None
    except (OSError, EOFError) as exc:
        raise ScivaeInputError(f"cannot read {path} ({type(exc).__name__}): check the file format") from exc
    if any("\x00" in ln for ln in lines):
        raise _not_text(path, "holds NUL bytes: binary data")
    while lines and not lines[-1].strip():  # blank lines at the end of a file are not entries
        lines.pop()
    first = lines[0].split()[:1] if lines else []
    start = 1
    if first and first[0].lower() in ("smiles", "canonical_smiles"):
        lines, start = lines[1:], 2
    entries = [ln.split()[0] if ln.strip() else "" for ln in lines]
    for number, entry in enumerate(entries, start=start):
        check_smiles_length(entry, f"line {number} of {path}")
    return entries


def _read_csv(path: Path, column: str | None) -> list[str]:
    import pandas as pd

    try:
        df = pd.read_csv(path, dtype=str, keep_default_na=False)
    except pd.errors.EmptyDataError as exc:
        raise ScivaeInputError(f"{path} is empty: give a CSV file with a header and a SMILES column") from exc
    except (pd.errors.ParserError, UnicodeDecodeError, OSError, EOFError) as exc:
        raise ScivaeInputError(f"cannot read {path} as CSV ({type(exc).__name__}): check the file format") from exc
    cols = ", ".join(map(str, df.columns[:8]))
    if column is None:
        found = [c for c in _COLUMN_CANDIDATES if c in df.columns]
        if found:
            column = found[0]
        elif len(df.columns) == 1:  # a single column is unambiguous whatever its name
            column = str(df.columns[0])
        else:
            raise ScivaeInputError(
                f"{path.name} has no SMILES column (columns: {cols}): name it with {{column}}=NAME", "column"
            )
    elif column not in df.columns:
        raise ScivaeInputError(
            f"{path.name} has no column {column!r} (columns: {cols}): pass one of those as {{column}}", "column"
        )
    values = [v.strip() for v in df[column].tolist()]
    for number, value in enumerate(values, start=2):  # line 1 is the header
        check_smiles_length(value, f"row {number} of {path}")
    return values


def read_smiles_entries(
    path: str | os.PathLike[str], column: str | None = None, *, what: str = "SMILES", strict_column: bool = True
) -> list[str]:
    """Read every entry of a SMILES file as written, without parsing: one string per line or CSV row.

    ``.smi``/``.txt`` (optionally gzipped): the SMILES is the first whitespace-separated field (a name may
    follow), a first line ``SMILES`` is a header, an empty line is an empty entry (blank lines at the end of
    the file are ignored). ``.csv``/``.csv.gz``: the column ``column`` (default ``SMILES``/``smiles``, or the
    only column); a missing value is an empty entry.

    Parameters
    ----------
    path
        Input file; it is only read, never modified.
    column
        CSV column holding the SMILES.
    what
        Names the file in messages (``"training"``, ``"generated"``...).
    strict_column
        Reject ``column`` for a one-per-line file (``False``: ignore it there, for commands that read
        several files of mixed types with one ``--column``).

    Raises
    ------
    ScivaeInputError
        Missing file, directory, unsupported suffix, missing column, or no entry at all.
    """
    path = Path(path)
    if not path.exists():
        raise ScivaeInputError(f"{what} file {path} does not exist: check the path")
    if path.is_dir():
        raise ScivaeInputError(f"{what} file {path} is a directory: give a .smi, .txt, .csv or .csv.gz file")
    suf = _suffix(path)
    if suf in _CSV_SUFFIXES or suf in _LINE_SUFFIXES:
        _check_text(path)
    if suf in _CSV_SUFFIXES:
        entries = _read_csv(path, column)
    elif suf in _LINE_SUFFIXES:
        if column is not None and strict_column:
            raise ScivaeInputError(
                f"{{column}} only applies to .csv files; {path.name} has one SMILES per line", "column"
            )
        entries = _read_lines(path)
    else:
        raise ScivaeInputError(
            f"{path.name}: unsupported file type {suf or '(none)'}; give a .smi, .txt, .csv or .csv.gz file"
        )
    if not entries:
        raise ScivaeInputError(f"no molecules in {what} file {path}: give a file with one SMILES per line")
    return entries


def read_smiles_file(
    path: str | os.PathLike[str], *, column: str | None = None, max_length: int | None = None
) -> MoleculeSet:
    """Read molecules from a ``.smi``/``.txt`` (one SMILES per line) or ``.csv``/``.csv.gz`` file.

    Entries are read by :func:`read_smiles_entries`, then canonicalised by :func:`clean_smiles`.

    Parameters
    ----------
    path
        Input file; it is only read, never modified.
    column
        CSV column holding the SMILES (default: ``SMILES`` or ``smiles``, or the only column).
    max_length
        Drop molecules whose canonical SMILES has more tokens than this (counted in the summary).

    Returns
    -------
    MoleculeSet
        Canonical SMILES and counts of dropped entries.

    Raises
    ------
    ScivaeInputError
        Missing file, unsupported suffix, missing column, or no valid molecule.
    """
    raw = read_smiles_entries(path, column)
    return clean_smiles(raw, max_length=max_length, source=str(path))
