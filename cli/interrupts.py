"""Ctrl-C and ``kill``: every command stops with one ``interrupted`` line and exit code 130 (SIGINT) or 143 (SIGTERM).

Lightning catches ``KeyboardInterrupt`` itself and calls ``sys.exit(1)``, and turns SIGTERM into a quiet
``SystemExit`` (exit code 0, as if the fit had finished). While a command runs, both signals instead raise
:class:`Interrupted`, which no library catches on the way up (Lightning re-raises any other exception after its
teardown), so the output folder's clean-up runs and :func:`scivae_cli.main.user_errors` prints the line. The
previous handlers come back when the command ends (the test suite runs commands in-process).

Kept light (standard library only): ``scivae --help`` imports it.
"""

from __future__ import annotations

import contextlib
import signal
import threading
from collections.abc import Iterator
from types import FrameType

#: Exit codes of a command stopped by a signal: 128 + the signal's number, as a shell reports it.
EXIT_CODES = {signal.SIGINT: 130, signal.SIGTERM: 143}


class Interrupted(BaseException):  # noqa: N818 (it is no error: the user stopped the command)
    """A command stopped by SIGINT (Ctrl-C) or SIGTERM.

    Attributes
    ----------
    signum
        The signal.
    hint
        What to do next (set on the way up, e.g. by the fit's output folder: resume from its checkpoint).
    """

    def __init__(self, signum: int) -> None:
        super().__init__(signal.Signals(signum).name)
        self.signum = int(signum)
        self.hint = ""

    @property
    def exit_code(self) -> int:
        return EXIT_CODES.get(signal.Signals(self.signum), 128 + self.signum)

    def line(self) -> str:
        """The one line the command ends with."""
        name = signal.Signals(self.signum).name
        return f"interrupted ({name})" + (f": {self.hint}" if self.hint else "")


def _raise(signum: int, frame: FrameType | None) -> None:
    raise Interrupted(signum)


@contextlib.contextmanager
def interruptible() -> Iterator[None]:
    """Within the block, SIGINT and SIGTERM raise :class:`Interrupted`; the previous handlers come back after it.

    Off the main thread (where Python cannot set handlers) the block runs unchanged.
    """
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    previous = {s: signal.getsignal(s) for s in EXIT_CODES}
    for s in EXIT_CODES:
        signal.signal(s, _raise)
    try:
        yield
    finally:
        for s, handler in previous.items():
            signal.signal(s, handler if handler is not None else signal.SIG_DFL)
