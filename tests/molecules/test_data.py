"""Reading SMILES files: formats, canonicalisation, counts of dropped entries, clear errors."""

from __future__ import annotations

import gzip
import hashlib

import pytest

from scivae.errors import ScivaeInputError
from scivae.molecules.data import canonicalize_many, clean_smiles, read_smiles_file


def _sha(path):
    return hashlib.sha256(path.read_bytes()).hexdigest()


def test_smi_canonicalises_and_counts_drops(tmp_path):
    p = tmp_path / "mols.smi"
    # benzene written two ways, an invalid ring, an empty line, a name column, an unparsable valence
    p.write_text("SMILES\nC1=CC=CC=C1\nc1ccccc1 benzene\nC1CC\n\nCCO ethanol\nC(C)(C)(C)(C)C\n")
    before = _sha(p)
    ms = read_smiles_file(p)
    assert ms.smiles == ["c1ccccc1", "c1ccccc1", "CCO"]
    assert (ms.n_input, ms.n_empty, ms.n_invalid) == (6, 1, 2)
    assert "3 valid molecules of 6" in ms.summary() and "2 invalid" in ms.summary()
    assert _sha(p) == before  # input untouched


def test_max_length_drops_with_count(tmp_path):
    p = tmp_path / "mols.txt"
    p.write_text("CCO\nCCCCCCCCCCCC\nCC\n")
    ms = read_smiles_file(p, max_length=5)
    assert ms.smiles == ["CCO", "CC"] and ms.n_too_long == 1
    with pytest.raises(ScivaeInputError, match="longer than max_length=1: raise it"):
        read_smiles_file(p, max_length=1)


@pytest.mark.parametrize("gz", [False, True])
def test_csv_and_csv_gz_column(tmp_path, gz):
    text = "id,smiles,y\n1,OCC,0.5\n2,,1\n3,c1ccncc1,2\n"
    p = tmp_path / ("m.csv.gz" if gz else "m.csv")
    if gz:
        with gzip.open(p, "wt") as fh:
            fh.write(text)
    else:
        p.write_text(text)
    ms = read_smiles_file(p)
    assert ms.smiles == ["CCO", "c1ccncc1"] and ms.n_empty == 1
    p2 = tmp_path / "named.csv"
    p2.write_text("mol,y\nCCN,1\n")
    assert read_smiles_file(p2, column="mol").smiles == ["CCN"]


def test_no_such_column(tmp_path):
    p = tmp_path / "m.csv"
    p.write_text("id,structure\n1,CCO\n")
    with pytest.raises(ScivaeInputError, match="name it with column=NAME") as e:
        read_smiles_file(p)
    assert "\n" not in str(e.value)
    with pytest.raises(ScivaeInputError, match="no column 'mol'"):
        read_smiles_file(p, column="mol")


def test_no_valid_molecule(tmp_path):
    p = tmp_path / "bad.smi"
    p.write_text("not_a_molecule\nC1CC\n\n")
    with pytest.raises(ScivaeInputError, match="no valid molecule") as e:
        read_smiles_file(p)
    assert "\n" not in str(e.value)
    with pytest.raises(ScivaeInputError, match="no valid molecule"):
        clean_smiles(["xyz", None])


def test_missing_file_and_bad_suffix(tmp_path):
    with pytest.raises(ScivaeInputError, match="does not exist"):
        read_smiles_file(tmp_path / "nope.smi")
    p = tmp_path / "m.sdf"
    p.write_text("CCO\n")
    with pytest.raises(ScivaeInputError, match="unsupported file type"):
        read_smiles_file(p)
    empty = tmp_path / "empty.smi"
    empty.write_text("")
    with pytest.raises(ScivaeInputError, match="no molecules"):
        read_smiles_file(empty)


def test_text_checks_let_real_files_through(tmp_path):
    gz = tmp_path / "m.smi.gz"
    gz.write_bytes(gzip.compress("SMILES\nCCO éthanol\nc1ccccc1 benzène\n".encode()))
    assert read_smiles_file(gz).smiles == ["CCO", "c1ccccc1"]
    bom = tmp_path / "m.csv"
    bom.write_bytes("\ufeffsmiles\nCCN\n".encode())  # Excel's UTF-8 with a byte-order mark
    assert read_smiles_file(bom).smiles == ["CCN"]


def test_rdkit_never_sees_a_string_over_the_character_limit(tmp_path, monkeypatch):
    from rdkit import Chem

    from scivae.molecules.data import MAX_SMILES_CHARACTERS

    parse = Chem.MolFromSmiles

    def guarded(s, *args, **kwargs):
        assert len(s) <= MAX_SMILES_CHARACTERS, "RDKit was given an over-long string"
        return parse(s, *args, **kwargs)

    monkeypatch.setattr(Chem, "MolFromSmiles", guarded)
    long = tmp_path / "m.smi"
    long.write_text("CCO\n" + "C" * (MAX_SMILES_CHARACTERS + 1) + "\n")
    with pytest.raises(ScivaeInputError, match=rf"^line 2 of .*m\.smi has {MAX_SMILES_CHARACTERS + 1} characters"):
        read_smiles_file(long)
    with pytest.raises(ScivaeInputError, match="5000-character limit"):
        canonicalize_many(["C" * 30_000])
    # at the limit the string is parsed (and refused by the token limit instead)
    with pytest.raises(ScivaeInputError, match="500-token limit"):
        clean_smiles(["C" * MAX_SMILES_CHARACTERS])
