"""User-facing errors.

Every problem caused by the user's input is raised as :class:`ScivaeInputError` (or a subclass) with a one-line
message that names the fix. The CLI turns it into ``error: <message>`` on stderr and exit code 2, without a
traceback. A fit that diverges raises :class:`DivergenceError` (exit code 3).
"""

from __future__ import annotations

from typing import Any


class ScivaeInputError(ValueError):
    """Bad input (wrong file, missing key, non-count data, invalid SMILES...). The message names the fix."""


class ModelFormatError(ScivaeInputError):
    """A model directory is missing a file, has an unknown format version or is not a scivae model."""


class OptionError(ScivaeInputError):
    """An option is out of range or unknown (a batch size of 0, an unknown likelihood, no GPU for ``gpu``...)."""


class OutputError(ScivaeInputError):
    """An output path cannot be used: unwritable, a finished output without ``--force``, or busy."""


class OutputLockedError(OutputError):
    """Another fit is writing to the same output folder."""


class CheckpointError(ScivaeInputError):
    """No checkpoint to resume from, or one written by a fit with other settings."""


class DivergenceError(RuntimeError):
    """Training stopped after too many steps with a non-finite loss or gradient.

    Attributes
    ----------
    fit_result
        What the fit produced up to the stop (history, metrics with ``skipped_steps``), when known; the
        module then holds the last good weights.
    """

    def __init__(self, message: str, fit_result: Any = None) -> None:
        super().__init__(message)
        self.fit_result = fit_result


class CollapseWarning(UserWarning):
    """The posterior collapsed: too few active latent units or a near-zero KL."""
