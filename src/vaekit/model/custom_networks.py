"""Your own encoder and decoder: ``torch.nn.Module`` classes named by import path.

``ModelConfig(encoder_module="package.module:ClassName", decoder_module=...)`` replaces vaekit's
encoder or decoder with yours. A run records only that path (in ``config.json``) and the
weights (in ``model.safetensors``, under ``encoder.`` / ``decoder.``); loading it imports the
module again and builds the class, so nothing is pickled. The interface (see
``docs/custom-networks.md``):

- the constructor takes the run's :class:`~vaekit.config.settings.ModelConfig` (``Class(config)``)
and
  creates every parameter (vaekit seeds torch's generator first, so weights follow the seed);
- an encoder's ``forward(x)`` takes x, float32 (N, D) with D = ``config.input_dim`` (reshape to
  ``config.input_shape`` yourself), and returns ``(mu, logvar)``, each (N, ``latent_dim``): the
  mean and the natural log of the variance of the Gaussian q(z|x);
- a decoder's ``forward(z)`` takes z (N, ``latent_dim``) and returns (N, D): Bernoulli logits
  (log-odds, nats) or the Gaussian mean, in the units of the scaled inputs;
- the state dict holds floating-point tensors only (safetensors of floats is the checkpoint);
- ``log_sigma`` is not a decoder attribute of yours: with ``learn_sigma`` vaekit adds the
  learned log σ there (``decoder.log_sigma``), outside your forward.

Every failure (a module that does not import, no such class, not a module, a constructor or a
forward that raises, wrong output shapes) is one :class:`~vaekit.errors.ConfigError` line.
torch is imported only here, when a custom network is asked for.

Importing a module runs its code, so a path that comes from a file (a run's ``config.json``, a
settings file) is imported only with consent (:func:`check_consent`): ``--trust-code`` on the
command line, ``trust_code=True`` in Python, or the module already imported by your own code.
"""

from __future__ import annotations

import importlib
import math
import sys
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from vaekit.errors import ConfigError

if TYPE_CHECKING:
    from torch import nn

    from vaekit.config.settings import ModelConfig

PARTS = ("encoder", "decoder")
#: The name vaekit keeps on a decoder for the learned log σ of a Gaussian likelihood.
LOG_SIGMA = "log_sigma"
#: Rows of the zero input that :func:`build` checks a network's output shapes with.
CHECK_ROWS = 2


def sigma_parameter(config: ModelConfig, shape: tuple[int, ...]):
    """The decoder's log σ (a ``torch.nn.Parameter``), initialised to log ``config.sigma``:
    learned by gradient, or (``calibrated``) set by each training step, outside the optimizer's
    reach."""
    torch = _torch()
    learned = config.learn_sigma != "calibrated"
    return torch.nn.Parameter(torch.full(shape, math.log(config.sigma)), requires_grad=learned)


def check_consent(model: Mapping[str, Any], source: str, trust_code: bool) -> None:
    """The networks that the model settings ``model`` (read from the file ``source``) name by
    import path: with ``trust_code``, imported now (so that every later read of the same file
    finds them imported); without it, refused in one line naming the first whose module is not
    imported yet, since importing it would run code that came with the file. A module your own
    code has imported already runs nothing new."""
    for part in PARTS:
        path = model.get(_field(part))
        if not isinstance(path, str):
            continue  # none, or a value the config's own check refuses
        module = path.partition(":")[0]
        if trust_code:
            load_class(path, _field(part))
        elif module not in sys.modules:
            raise ConfigError(
                f"{source} names {_field(part)} {path}: opening it would import {module} and "
                "run its code, which vaekit does only with your consent; if you trust where it "
                "came from, pass --trust-code (trust_code=True in Python)"
            )


def _field(part: str) -> str:
    if part not in PARTS:
        raise ValueError(f"part must be one of {PARTS}, not {part!r}")
    return f"{part}_module"


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    return f"{type(exc).__name__}: {text[0]}" if text else type(exc).__name__


def _torch() -> Any:
    try:
        import torch
    except ImportError:
        raise ConfigError("your own encoder_module or decoder_module needs PyTorch") from None
    return torch


def load_class(path: str, field: str = "network") -> type[nn.Module]:
    """The class at ``path`` ("package.module:ClassName", nested classes dotted), imported;
    ``field`` names the setting in messages. No such module, no such attribute, a module that
    raises while importing, or an object that is no ``torch.nn.Module`` subclass: ConfigError."""
    torch = _torch()
    module_name, _, name = path.partition(":")
    if not module_name or not name:
        raise ConfigError(
            f"{field} must be an import path 'package.module:ClassName', got {path!r}"
        )
    try:
        module = importlib.import_module(module_name)
    except Exception as exc:  # not found, or the module's own code raised while importing
        missing = exc.name if isinstance(exc, ModuleNotFoundError) else None
        if missing and (module_name + ".").startswith(missing + "."):
            raise ConfigError(
                f"{field} {path}: no module named {missing!r}; the module must be importable "
                "(installed, or its folder on PYTHONPATH)"
            ) from None
        raise ConfigError(
            f"{field} {path}: importing {module_name} failed ({_first_line(exc)})"
        ) from exc
    found: Any = module
    for attribute in name.split("."):
        found = getattr(found, attribute, None)
        if found is None:
            raise ConfigError(f"{field} {path}: module {module_name} has no attribute {name!r}")
    if not (isinstance(found, type) and issubclass(found, torch.nn.Module)):
        kind = "a class" if isinstance(found, type) else f"a {type(found).__name__}"
        raise ConfigError(f"{field} {path}: {name} is {kind}, not a torch.nn.Module subclass")
    return found


def import_path(network: Any, field: str) -> Any:
    """``network`` as ``ModelConfig`` records it: a class becomes "module:QualifiedName", which
    must import back as that very class (so a class defined in ``__main__`` or inside a function
    is refused: a saved model could not rebuild it); anything else is returned as it is, for the
    config to validate."""
    if not isinstance(network, type):
        return network
    module, name = network.__module__, network.__qualname__
    if module == "__main__" or "<locals>" in name:
        where = "__main__" if module == "__main__" else "a function"
        raise ConfigError(
            f"{field} {network.__name__} is defined in {where}, so a saved model could not "
            "import it again; define it in a module that can be imported (installed, or its "
            "folder on PYTHONPATH)"
        )
    path = f"{module}:{name}"
    if load_class(path, field) is not network:
        raise ConfigError(f"{field} {path} imports as another class than the one given")
    return path


def _construct(cls: type[nn.Module], config: ModelConfig, label: str) -> nn.Module:
    """``cls(config)``; an exception of the constructor becomes a ConfigError (chained)."""
    try:
        return cls(config)
    except Exception as exc:
        raise ConfigError(f"{label}: {cls.__name__}(config) failed ({_first_line(exc)})") from exc


def _state_shapes(module: nn.Module, part: str, label: str) -> dict[str, tuple[int, ...]]:
    """Name → shape of ``module``'s state dict, prefixed "``part``."; every tensor must be
    floating point, and a decoder must leave the name ``log_sigma`` to vaekit."""
    if part == "decoder" and hasattr(module, LOG_SIGMA):
        raise ConfigError(
            f"{label} defines {LOG_SIGMA}, the name vaekit keeps for the learned σ of a "
            "Gaussian likelihood (learn_sigma); rename it"
        )
    shapes: dict[str, tuple[int, ...]] = {}
    for name, tensor in module.state_dict().items():
        if not tensor.is_floating_point():
            raise ConfigError(
                f"{label}: its state dict holds {name} of dtype {tensor.dtype}, but checkpoints "
                "hold floating-point tensors only (register such a buffer with "
                "persistent=False)"
            )
        shapes[f"{part}.{name}"] = tuple(tensor.shape)
    return shapes


def module_shapes(config: ModelConfig, part: str) -> dict[str, tuple[int, ...]]:
    """Name → shape of the state dict of ``config``'s own ``part`` ("encoder" or "decoder"),
    the names prefixed "``part``.": the class built on torch's "meta" device, which allocates no
    memory and leaves torch's random generator as it was."""
    field = _field(part)
    path = getattr(config, field)
    label = f"{field} {path}"
    cls = load_class(path, field)
    torch = _torch()
    with torch.random.fork_rng(devices=[]), torch.device("meta"):
        module = _construct(cls, config, label)
    return _state_shapes(module, part, label)


def build(config: ModelConfig, part: str) -> nn.Module:
    """``config``'s own ``part`` ("encoder" or "decoder"): the class at its import path built
    as ``Class(config)`` on the CPU, its state dict checked, a decoder given the learned
    ``log_sigma`` (initialised to log ``config.sigma``) when ``config.learn_sigma`` asks, and
    its output shapes checked once on a zero input of ``CHECK_ROWS`` rows."""
    field = _field(part)
    path = getattr(config, field)
    label = f"{field} {path}"
    module = _construct(load_class(path, field), config, label)
    _state_shapes(module, part, label)
    if part == "decoder" and config.learn_sigma != "fixed":
        module.register_parameter(LOG_SIGMA, sigma_parameter(config, config.log_sigma_shape))
    _check_outputs(module, config, part, label)
    return module


def _check_outputs(module: nn.Module, config: ModelConfig, part: str, label: str) -> None:
    """One forward on zeros (N = ``CHECK_ROWS``), in eval mode, without gradients and with
    torch's generator restored: an encoder must return (mu, logvar), each (N, latent_dim), a
    decoder (N, input_dim)."""
    torch = _torch()
    n, k, d = CHECK_ROWS, config.latent_dim, config.input_dim
    width = d if part == "encoder" else k
    training = module.training
    try:
        with torch.no_grad(), torch.random.fork_rng(devices=[]):
            out = module.eval()(torch.zeros(n, width))
    except Exception as exc:
        raise ConfigError(
            f"{label}: its forward on a ({n}, {width}) float32 input failed ({_first_line(exc)})"
        ) from exc
    finally:
        module.train(training)
    if part == "encoder":
        parts = out if isinstance(out, tuple | list) else (out,)
        if len(parts) == 2 and all(_shape(t) == (n, k) for t in parts):
            return
        got = " and ".join(_describe(t) for t in parts)
        want = f"(mu, logvar), each of shape (N, latent_dim) = ({n}, {k})"
    else:
        if _shape(out) == (n, d):
            return
        got, want = _describe(out), f"one tensor of shape (N, input_dim) = ({n}, {d})"
    raise ConfigError(f"{label} returned {got} for {n} inputs; it must return {want}")


def _shape(value: Any) -> tuple[int, ...] | None:
    shape = getattr(value, "shape", None)
    return None if shape is None else tuple(shape)


def _describe(value: Any) -> str:
    shape = _shape(value)
    return type(value).__name__ if shape is None else f"shape {shape}"
