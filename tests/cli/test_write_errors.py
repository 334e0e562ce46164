"""A failed write said in terms of the output the user named."""

from __future__ import annotations

import errno
from pathlib import Path

import pytest

from scivae.errors import OutputError
from scivae_cli.write_errors import writing


def _raise(e: BaseException):
    def fail() -> None:
        raise e

    return fail


@pytest.mark.parametrize(
    "error",
    [
        OSError(errno.ENOSPC, "No space left on device", "/x/.out.abcd1234.tmp"),
        OSError(errno.EDQUOT, "Disk quota exceeded"),
        OSError("Can't write data (file write failed: time = Mon, errno = 28, error message = 'No space left')"),
        RuntimeError("[enforce fail at inline_container.cc:603] . PytorchStreamWriter failed writing file data/3"),
    ],
)
def test_a_full_disk_names_the_output_not_the_temporary_file(error, tmp_path) -> None:
    out = tmp_path / "res"
    with pytest.raises(OSError) as e, writing(out, "--out"):
        _raise(error)()
    assert e.value.filename is None and e.value.errno in (errno.ENOSPC, errno.EDQUOT)
    assert str(e.value.strerror).startswith(f"--out {out}: ") and ".tmp" not in str(e.value)


def test_an_unusable_path_is_bad_input_and_other_errors_pass(tmp_path) -> None:
    folder = tmp_path / "e.h5ad"
    folder.mkdir()
    with pytest.raises(OutputError, match=r"^-o .*e\.h5ad is a folder"), writing(folder, "-o"):
        _raise(IsADirectoryError(errno.EISDIR, "Is a directory", str(tmp_path / ".e.h5ad.x.tmp")))()
    with pytest.raises(OutputError, match="cannot be written"), writing(tmp_path / "f.smi", "-o"):
        _raise(PermissionError(errno.EACCES, "Permission denied"))()
    with pytest.raises(PermissionError), writing(Path("f.smi"), "-o", unusable=False):
        _raise(PermissionError(errno.EACCES, "Permission denied"))()
    with pytest.raises(ValueError), writing(Path("f.smi"), "-o"):
        _raise(ValueError("not a write error"))()
