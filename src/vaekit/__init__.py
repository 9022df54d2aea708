"""vaekit: variational autoencoders you can read, train and trust."""

from importlib.metadata import version

from vaekit.config.settings import ModelConfig, TrainConfig
from vaekit.engines import build_engine
from vaekit.errors import CheckpointError, ConfigError, DataError, TrainingDiverged, VaekitError

__version__ = version("vaekit")  # pyproject.toml's, as installed

__all__ = [
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
