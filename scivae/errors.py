"""User-facing errors.

Every problem caused by the user's input is raised as :class:`ScivaeInputError` (or a subclass) with a one-line
message that names the fix. The CLI turns it into ``error: <message>`` on stderr and exit code 2, without a
traceback. A fit that diverges raises :class:`DivergenceError` (exit code 3).

A message names options by their Python argument, written ``{name}`` in the message's template and listed in
``options``: ``str(error)`` reads ``batch_size=0 ...`` for a Python user, and the CLI prints the same error with
its flag, ``--batch-size=0 ...`` (:meth:`NamesOptions.render`). No message of the library names a flag itself.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from typing import Any

_PLACEHOLDER = re.compile(r"\{([a-z_][a-z0-9_]*)\}")


class NamesOptions:
    """A message template whose ``{option}`` placeholders name options of the Python API."""

    template: str
    options: tuple[str, ...]

    def _set_template(self, message: str, options: tuple[str, ...]) -> str:
        self.template = str(message)
        # without a list, every ``{name}`` of the template is an option (values are already in the text)
        self.options = tuple(options) or tuple(dict.fromkeys(_PLACEHOLDER.findall(self.template)))
        return self.render()

    def append(self, text: str) -> None:
        """Add ``text`` to the end of the message (to its template and to ``args``)."""
        self.template += text
        self.args = (self.render(),)

    def render(self, name_of: Callable[[str], str] | None = None) -> str:
        """The message with each option named by ``name_of(option)`` (default: the Python argument itself)."""
        text = self.template
        for option in self.options:
            text = text.replace("{" + option + "}", name_of(option) if name_of is not None else option)
        return text


class ScivaeInputError(NamesOptions, ValueError):
    """Bad input (wrong file, missing key, non-count data, invalid SMILES...). The message names the fix.

    ``options``: the options the message names as ``{name}`` placeholders (see the module docstring); without
    them, every ``{name}`` in the message is taken as one.
    """

    def __init__(self, message: str = "", *options: str) -> None:
        super().__init__(self._set_template(message, options))


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


class DivergenceError(NamesOptions, RuntimeError):
    """Training stopped after too many steps with a non-finite loss or gradient.

    Attributes
    ----------
    fit_result
        What the fit produced up to the stop (history, metrics with ``skipped_steps``), when known; the
        module then holds the last good weights.
    """

    def __init__(self, message: str, fit_result: Any = None, options: tuple[str, ...] = ()) -> None:
        super().__init__(self._set_template(message, options))
        self.fit_result = fit_result


class CollapseWarning(UserWarning):
    """The posterior collapsed: too few active latent units or a near-zero KL."""
