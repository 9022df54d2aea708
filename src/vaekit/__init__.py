"""vaekit: variational autoencoders you can read, train and trust.

``from vaekit import VAE`` is the scikit-learn estimator (:class:`vaekit.api.estimator.VAE`,
the ``sklearn`` extra), imported on first use so that ``import vaekit`` and the command line
stay quick and need no scikit-learn.
"""

from importlib.metadata import version
from typing import Any

from vaekit.config.settings import ModelConfig, TrainConfig
from vaekit.engines import build_engine
from vaekit.errors import CheckpointError, ConfigError, DataError, TrainingDiverged, VaekitError

__version__ = version("vaekit")  # pyproject.toml's, as installed

__all__ = [
    "VAE",
    "CheckpointError",
    "ConfigError",
    "DataError",
    "ModelConfig",
    "TrainConfig",
    "TrainingDiverged",
    "VaekitError",
    "__version__",
    "build_engine",
]


def __getattr__(name: str) -> Any:
    if name == "VAE":
        from vaekit.api.estimator import VAE

        return VAE
    raise AttributeError(f"module 'vaekit' has no attribute {name!r}")
