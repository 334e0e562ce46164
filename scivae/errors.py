"""User-facing errors.

Every problem caused by the user's input is raised as :class:`ScivaeInputError` with a one-line message that
names the fix. The CLI turns it into ``error: <message>`` on stderr and exit code 2, without a traceback.
"""

from __future__ import annotations


class ScivaeInputError(ValueError):
    """Bad input (wrong file, missing key, non-count data, invalid SMILES...). The message names the fix."""


class ModelFormatError(ScivaeInputError):
    """A model directory is missing a file, has an unknown format version or is not a scivae model."""


class CollapseWarning(UserWarning):
    """The posterior collapsed: too few active latent units or a near-zero KL."""
