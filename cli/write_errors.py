"""Failures while a command writes its output, said in terms of the output the user named (``--out``, ``-o``).

A full disk surfaces deep inside a writer, as an ``OSError`` naming a temporary sibling (``.OUT.x1y2.tmp``),
as a ``RuntimeError`` of torch's checkpoint writer or as an HDF5 error message carrying ``errno = 28``. Inside
:func:`writing` each becomes one line that names the output and the fix: a full disk or quota stays exit code 1
(the input is fine), an output path that cannot be a file (a folder, no permission, a read-only file system) is
bad input, exit code 2.

Kept light (standard library only): ``scivae --help`` imports the verbs' modules.
"""

from __future__ import annotations

import contextlib
import errno
import os
import re
import shutil
from collections.abc import Iterator
from pathlib import Path

from scivae.errors import OutputError

#: errno values of a file system with no room left.
NO_SPACE = (errno.ENOSPC, errno.EDQUOT, errno.EFBIG)
#: errno values of an output path that cannot be written as asked.
UNUSABLE = (errno.EISDIR, errno.ENOTDIR, errno.EACCES, errno.EPERM, errno.EROFS)
_ERRNO_IN_TEXT = re.compile(r"errno\s*=\s*(\d+)")
#: What torch's zip writer says when a write fails (it drops the errno).
_TORCH_WRITE_FAILED = ("file write failed", "PytorchStreamWriter failed writing")


def errno_of(e: BaseException) -> int | None:
    """The errno of a failed write: the exception's own, one in an HDF5 message, or ENOSPC for torch's writer."""
    number = getattr(e, "errno", None)
    if isinstance(number, int):
        return number
    found = _ERRNO_IN_TEXT.search(str(e))  # h5py: "... (file write failed: ..., errno = 28, ...)"
    if found:
        return int(found.group(1))
    if isinstance(e, RuntimeError) and any(s in str(e) for s in _TORCH_WRITE_FAILED):
        return errno.ENOSPC  # nearly always a full disk; torch keeps no errno
    return None


def no_space(flag: str, path: Path, number: int) -> OSError:
    """The error for a full disk or quota: ``scivae_cli.main`` prints its text and exits with code 1."""
    # filename left out on purpose: the message names the output, not the temporary file the writer used
    return OSError(number, f"{flag} {path}: {os.strerror(number)}")


def check_free_space(path: str | os.PathLike[str], flag: str, needed: int) -> None:
    """Refuse to write about ``needed`` bytes at ``path`` when its file system has less room (exit code 1)."""
    path = Path(path)
    try:
        free = shutil.disk_usage(path.parent if path.parent.exists() else Path(".")).free
    except OSError:
        return  # unknown: the write itself will tell
    if free < needed:
        raise no_space(flag, path, errno.ENOSPC)


@contextlib.contextmanager
def writing(path: str | os.PathLike[str], flag: str, *, unusable: bool = True) -> Iterator[None]:
    """Turn a failed write in the block into one line naming ``flag`` and ``path``.

    Parameters
    ----------
    path
        The output as the user named it.
    flag
        Its option (``--out``, ``-o``, ``--json``).
    unusable
        Also turn a path that cannot be written (a folder where a file goes, no permission...) into an
        :class:`~scivae.errors.OutputError`; ``False`` where the block also reads inputs whose errors must
        keep their own message.
    """
    path = Path(path)
    try:
        yield
    except (OSError, RuntimeError) as e:
        number = errno_of(e)
        if number in NO_SPACE:
            raise no_space(flag, path, number) from None
        if unusable and isinstance(e, OSError) and number in UNUSABLE:
            if number == errno.EISDIR or path.is_dir():
                raise OutputError(f"{flag} {path} is a folder: pass the path of a file to write") from None
            raise OutputError(
                f"{flag} {path} cannot be written ({os.strerror(number).lower()}): choose another path"
            ) from None
        raise
