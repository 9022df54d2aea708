"""Shared fixtures: small models and the bundled mnist-small data, so tests run fast offline."""

from __future__ import annotations

import numpy as np
import pytest

from vaekit.config.settings import ModelConfig, TrainConfig
from vaekit.data import load_dataset
from vaekit.data.pipeline import TrainingData


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Tests marked ``cuda`` need a CUDA GPU: skipped where PyTorch sees none (torch is imported
    only when such a test is collected, so the NumPy engine's tests run without it)."""
    needing = [item for item in items if item.get_closest_marker("cuda")]
    if not needing:
        return
    import torch

    if not torch.cuda.is_available():
        for item in needing:
            item.add_marker(pytest.mark.skip(reason="needs a CUDA GPU"))


@pytest.fixture(scope="session")
def mnist_small():
    """(train, test) Datasets of the bundled MNIST subset."""
    return load_dataset("mnist-small", "train"), load_dataset("mnist-small", "test")


@pytest.fixture(scope="session")
def digits_file(tmp_path_factory, mnist_small):
    """500 mnist-small images as a .npy file: quicker epochs for the runs that need several."""
    path = tmp_path_factory.mktemp("digits") / "digits.npy"
    np.save(path, (mnist_small[0].x[:500] * 255).astype(np.uint8))
    return path


@pytest.fixture
def small_model() -> ModelConfig:
    return ModelConfig(hidden=(64,), latent_dim=8)


@pytest.fixture
def small_data(mnist_small) -> TrainingData:
    """1,000 training and 200 test images of mnist-small, grey levels."""
    train, test = mnist_small
    return TrainingData(train=train.x[:1000], test=test.x[:200])


@pytest.fixture
def rng() -> np.random.Generator:
    return np.random.default_rng(1234)


def quick_config(**overrides) -> TrainConfig:
    """A TrainConfig for fast tests: 2 epochs, batch 100, sample grid every epoch."""
    values = dict(epochs=2, batch_size=100, seed=3)
    values.update(overrides)
    return TrainConfig(**values)


def explorer_runs(root, epochs: int, hidden: int) -> dict:
    """For the explorer's tests: a 2-d run and a 4-d conditional run of mnist-small, trained
    through the command line into ``root``."""
    from vaekit.cli import main

    runs = {}
    for name, flags in (
        ("plain", ["--latent-dim", "2"]),
        ("conditional", ["--latent-dim", "4", "--conditional"]),
    ):
        runs[name] = root / name
        argv = ["train", "--data", "mnist-small", "--epochs", str(epochs), "--quiet"]
        argv += ["--hidden", str(hidden), *flags, "--out", str(runs[name])]
        assert main(argv) == 0
    return runs


def class_folder(folder, classes: int, per_class: int, size: int = 32, seed: int = 0, names=None):
    """A folder of ``per_class`` RGB PNGs (``size``×``size``) in each of ``classes`` class
    sub-folders ``c0``, ``c1``, … (or ``names``): a square of one colour per class on black, at a
    random place."""
    from PIL import Image

    rng = np.random.default_rng(seed)
    colours = rng.integers(80, 256, (classes, 3))
    for c in range(classes):
        where = folder / (names[c] if names else f"c{c}")
        where.mkdir(parents=True)
        for i in range(per_class):
            image = np.zeros((size, size, 3), np.uint8)
            top, left = rng.integers(0, size // 2, 2)
            image[top : top + size // 2, left : left + size // 2] = colours[c]
            Image.fromarray(image).save(where / f"{i:03d}.png")
    return folder


def folder_run(root, classes: int = 3, per_class: int = 20, *flags: str, names=None):
    """A 2-d run of a colour :func:`class_folder` in ``root``/run (its classes named ``names``),
    trained for an epoch through the command line (``flags`` added)."""
    from vaekit.cli import main

    data = class_folder(root / "clothes", classes, per_class, names=names)
    run = root / "run"
    argv = ["train", "--data", str(data), "--epochs", "1", "--quiet", "--hidden", "16"]
    assert main([*argv, "--latent-dim", "2", *flags, "--out", str(run)]) == 0
    return run


@pytest.fixture
def without_sklearn(monkeypatch):
    """Imports of scikit-learn fail, as where it is not installed."""
    import builtins

    real_import = builtins.__import__

    def no_sklearn(name, *args, **kwargs):
        if name == "sklearn" or name.startswith("sklearn."):
            raise ImportError(f"No module named {name!r}")
        return real_import(name, *args, **kwargs)

    monkeypatch.setattr(builtins, "__import__", no_sklearn)


def scripted(monkeypatch, losses):
    """Make the held-out −ELBO of successive evaluations follow ``losses`` (then stay at the
    last), whatever the weights: a deterministic case for --keep best and --patience."""
    from vaekit.measure.evaluation import ElboResult
    from vaekit.train import loop

    calls = iter(losses)
    last = [losses[-1]]

    def fake(engine, x, **kwargs):
        last[0] = next(calls, last[0])
        return ElboResult(last[0], last[0], 0.0, len(x))

    monkeypatch.setattr(loop, "evaluate_elbo", fake)
