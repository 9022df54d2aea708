"""Errors that vaekit raises for people to read.

Every error a user can cause is a :class:`VaekitError`. Its message is one sentence that says
what was wrong and what to do about it; the command line prints it on one line and exits with 2.
"""

from __future__ import annotations


class VaekitError(Exception):
    """Base class of every error vaekit raises on purpose."""


class DataError(VaekitError):
    """A data set or data file is missing, malformed or unusable (names the file and position)."""


class ConfigError(VaekitError):
    """A model or training setting is invalid (names the setting and the allowed values)."""


class CheckpointError(VaekitError):
    """A run directory or checkpoint is missing, damaged or does not match its config."""


class TrainingDiverged(VaekitError):
    """The loss became NaN or infinite; the last good checkpoint is kept."""
