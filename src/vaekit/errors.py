"""Errors that vaekit raises for people to read.

Every error a user can cause is a :class:`VaekitError`. Its message is one sentence that says
what was wrong and what to do about it; the command line prints it on one line and exits with 2.
:class:`DataError` and :class:`ConfigError` are also ValueErrors, as scikit-learn and Python
code expect of a bad argument value.
"""

from __future__ import annotations


class VaekitError(Exception):
    """Base class of every error vaekit raises on purpose."""


class DataError(VaekitError, ValueError):
    """A data set or data file is missing, malformed or unusable (names the file and position)."""


class ConfigError(VaekitError, ValueError):
    """A model or training setting is invalid (names the setting and the allowed values)."""


class CheckpointError(VaekitError):
    """A run directory or checkpoint is missing, damaged or does not match its config."""


class TrainingDiverged(VaekitError):
    """The loss became NaN or infinite; the last good checkpoint is kept."""


class MissingExtra(VaekitError):
    """A feature needs an optional extra that is not installed (names the feature and the extra).

    ``MissingExtra("vaekit export --format onnx", "onnx")`` reads: vaekit export --format onnx
    needs the onnx extra: pip install 'vaekit[onnx]'.
    """

    def __init__(self, feature: str, extra: str) -> None:
        super().__init__(f"{feature} needs the {extra} extra: pip install 'vaekit[{extra}]'")
        self.feature = feature
        self.extra = extra
