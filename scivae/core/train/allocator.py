"""glibc malloc settings for training on the CPU: keep batch-sized buffers mapped between steps.

A training step allocates and frees several arrays the size of a batch (1,024 cells x 2,000 genes: 8 MB
each). With glibc's default, dynamic thresholds such arrays can be handed back to the kernel when freed
(``munmap`` or a trim of the heap top) and mapped again, zero-filled page by page, at the next step. Whether
that happens depends on the order of allocations; where it does, the page faults cost a measurable share of a
CPU fit (``benchmarks/cells/RESULTS.md``).

The settings are process-wide (glibc has no per-library setting), so the library never makes them by itself:
``scivae fit`` calls :func:`tune_allocator` once before training, and a Python user may call it (opt-in):
``M_MMAP_THRESHOLD`` = 32 MiB (smaller blocks come from the heap and are reused) and ``M_TRIM_THRESHOLD`` =
64 MiB (free memory at the heap top is kept up to that much instead of being returned). Nothing is changed when
``SCIVAE_MALLOPT=0``, when any ``MALLOC_*`` environment variable is set (the user tuned malloc already), or when
the C library is not glibc.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import os
import sys

M_TRIM_THRESHOLD = -1
M_MMAP_THRESHOLD = -3
MMAP_THRESHOLD_BYTES = 32 << 20
TRIM_THRESHOLD_BYTES = 64 << 20
_ENV_USER_SETTINGS = ("MALLOC_MMAP_THRESHOLD_", "MALLOC_TRIM_THRESHOLD_", "MALLOC_TOP_PAD_", "MALLOC_MMAP_MAX_")

_state: dict[str, object] = {}


def tune_allocator() -> str:
    """Set glibc's mmap and trim thresholds for this process once; return what was done.

    Returns
    -------
    str
        ``"tuned"`` (set now or by an earlier call), ``"off"`` (``SCIVAE_MALLOPT=0``), ``"user"`` (a ``MALLOC_*``
        variable is set) or ``"unavailable"`` (not Linux with glibc, or ``mallopt`` refused a setting).
    """
    if "result" in _state:
        return str(_state["result"])
    if os.environ.get("SCIVAE_MALLOPT", "1") == "0":
        result = "off"
    elif any(os.environ.get(k) for k in _ENV_USER_SETTINGS):
        result = "user"
    else:
        result = "tuned" if sys.platform.startswith("linux") and _set_glibc_thresholds() else "unavailable"
    _state["result"] = result
    return result


def allocator_state() -> str:
    """What :func:`tune_allocator` did in this process so far: its result, or ``"default"`` if it never ran."""
    return str(_state.get("result", "default"))


def _set_glibc_thresholds() -> bool:
    """Both ``mallopt`` calls, when the C library is glibc; whether both were accepted."""
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
    except OSError:
        return False
    # glibc only (gnu_get_libc_version): musl, for one, has a mallopt that does nothing
    if not (hasattr(libc, "mallopt") and hasattr(libc, "gnu_get_libc_version")):
        return False
    mallopt = libc.mallopt
    mallopt.argtypes, mallopt.restype = [ctypes.c_int, ctypes.c_int], ctypes.c_int
    return mallopt(M_MMAP_THRESHOLD, MMAP_THRESHOLD_BYTES) == 1 and mallopt(M_TRIM_THRESHOLD, TRIM_THRESHOLD_BYTES) == 1
