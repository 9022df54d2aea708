"""A run's encoder and decoder as ONNX models, for serving without vaekit or PyTorch.

``export_onnx(run, out)`` writes three files into ``out``:

- ``encoder.onnx``: ``x`` (N, *input_shape) float32 [, ``y`` (N,) int64 class labels] →
  ``mu``, ``logvar`` (N, K) float32, the Gaussian q(z|x) = N(mu, diag e^logvar) (with a
  posterior flow, its base q0(z0|x): the flow is not exported, as the manifest's ``posterior``
  says);
- ``decoder.onnx``: ``z`` (N, K) float32 [, ``y`` (N,) int64] → ``x_mean`` (N, *input_shape)
  float32, the mean of p(x|z) (sigmoid of the logits for Bernoulli, f(z) for Gaussian);
- ``vaekit-onnx.json``: those names, shapes (the batch axis N is dynamic) and dtypes, the model
  config, the likelihood and the run's scaling x' = (x − shift) / scale, so that a deployment
  turns raw inputs into the model's inputs itself (and decoded means back with
  x = x' · scale + shift).

The models are the torch engine's own modules (:class:`vaekit.engines.torch.model.VAEModule`),
traced with ``torch.export`` and translated by ``torch.onnx`` (the ``onnx`` extra). Your own
encoder or decoder (:mod:`vaekit.model.custom_networks`) is exported the same way when
``torch.export`` can trace it; one it cannot is refused in one line naming it.
"""

from __future__ import annotations

import contextlib
import importlib.util
import json
import logging
import os
import warnings
from importlib.metadata import version
from pathlib import Path
from typing import TYPE_CHECKING, Any

from vaekit import disk
from vaekit.config.settings import ModelConfig
from vaekit.data.scaling import Scaling
from vaekit.errors import ConfigError, MissingExtra
from vaekit.runs import loading

if TYPE_CHECKING:
    from vaekit.engines.torch.model import VAEModule

ENCODER_FILE = "encoder.onnx"
DECODER_FILE = "decoder.onnx"
MANIFEST_FILE = "vaekit-onnx.json"
EXPORT_FILES = (ENCODER_FILE, DECODER_FILE, MANIFEST_FILE)
MANIFEST_FORMAT = "vaekit-onnx/1"
OPSET = 18
#: The packages that ``torch.onnx``'s exporter imports.
ONNX_PACKAGES = ("onnx", "onnxscript")
FEATURE = "vaekit export --format onnx"
#: What ``auto`` meant for a run written before scalings were stored (see data/scaling.py).
AUTO_RULE = "unit (x' = x / 255) for 8-bit inputs (uint8 arrays, images), none (x' = x) otherwise"


def require_onnx() -> None:
    """Raise :class:`MissingExtra` unless the ``onnx`` extra's exporter packages are installed."""
    if any(importlib.util.find_spec(name) is None for name in ONNX_PACKAGES):
        raise MissingExtra(FEATURE, "onnx")


def export_onnx(
    run_dir: str | Path,
    out_dir: str | Path,
    *,
    which: str | None = None,
    trust_code: bool = False,
) -> Path:
    """Export run ``run_dir``'s ``which`` checkpoint (``last`` or ``best``; None: the run's own
    choice, :func:`vaekit.runs.loading.weights_of`) into ``out_dir``
    (created; a folder holding anything but a previous export is refused) and return
    ``out_dir``. Everything is computed before anything is written; a new or empty ``out_dir``
    then receives the three files at once (see :func:`write_export`). ``trust_code`` as
    :func:`vaekit.runs.checkpoint.open_run`."""
    require_onnx()
    run_dir, out_dir = Path(run_dir), Path(out_dir)
    check_out_dir(out_dir)
    which = loading.weights_of(run_dir, which)
    engine = loading.open_run(run_dir, "torch", "cpu", which, trust_code=trust_code)
    scaling = scaling_record(Scaling.load(run_dir))
    config: ModelConfig = engine.config
    vae = _plain_linears(engine.model.eval())
    signatures = model_signatures(config)
    files = {
        signatures[name]["file"]: _traced(
            module, signatures[name], getattr(config, f"{name}_module")
        )
        for name, module in _wrappers(vae).items()
    }
    manifest = {
        "format": MANIFEST_FORMAT,
        "vaekit_version": version("vaekit"),
        "run": str(run_dir.resolve()),
        "checkpoint": which,
        "opset": OPSET,
        "models": signatures,
        "model": config.to_dict(),
        "likelihood": likelihood_record(config, vae),
        "posterior": posterior_record(config),
        "scaling": scaling,
    }
    # ASCII JSON: a path that is not UTF-8 is kept losslessly as \udcXX escapes
    files[MANIFEST_FILE] = (json.dumps(manifest, indent=2) + "\n").encode()
    write_export(out_dir, files)
    return out_dir


def write_export(out_dir: Path, files: dict[str, bytes]) -> None:
    """Write ``files`` (name → bytes) into ``out_dir`` so that they appear together: a new or
    empty folder is filled as the sibling ``<out_dir>.tmp`` and renamed into place, all or
    nothing. Over a previous export, the new files are written as temporaries first (a failure
    there leaves the previous export as it was), then the old manifest is removed and the files
    are renamed in, the manifest last: a folder that holds the manifest holds a whole export."""
    out_dir = Path(os.path.abspath(out_dir))
    if not out_dir.exists() or not any(out_dir.iterdir()):
        staging = out_dir.with_name(out_dir.name + disk.TMP_SUFFIX)
        _remove_export(staging)
        out_dir.parent.mkdir(parents=True, exist_ok=True)
        staging.mkdir()
        try:
            for name, data in files.items():
                disk.write_atomic(staging / name, data)
            os.replace(staging, out_dir)  # an empty out_dir is replaced too
        except BaseException:
            with contextlib.suppress(OSError):
                _remove_export(staging)
            raise
        disk.fsync_dir(out_dir.parent)
        return
    temporaries = {name: out_dir / (name + disk.TMP_SUFFIX) for name in files}
    try:
        for name, data in files.items():
            disk.write_atomic(temporaries[name], data)
    except BaseException:
        for path in temporaries.values():
            path.unlink(missing_ok=True)
        raise
    (out_dir / MANIFEST_FILE).unlink(missing_ok=True)
    for name in sorted(files, key=lambda name: name == MANIFEST_FILE):
        os.replace(temporaries[name], out_dir / name)
    disk.fsync_dir(out_dir)


def _remove_export(folder: Path) -> None:
    """Remove ``folder``, left by an export that was stopped, when it holds only export files;
    a folder of anything else is refused."""
    if not folder.exists() and not folder.is_symlink():
        return
    check_out_dir(folder)
    for entry in folder.iterdir():
        entry.unlink()
    folder.rmdir()


def check_out_dir(out_dir: Path) -> None:
    """Refuse an ``out_dir`` that is not a folder, or that holds anything besides the files of a
    previous export and their temporaries (regular files of those names), so that no other file
    is overwritten."""
    if out_dir.is_symlink() or (out_dir.exists() and not out_dir.is_dir()):
        raise ConfigError(f"{out_dir} is not a folder; choose a folder for the ONNX export")
    if not out_dir.exists():
        return
    own = {*EXPORT_FILES, *(name + disk.TMP_SUFFIX for name in EXPORT_FILES)}
    for entry in out_dir.iterdir():
        if entry.name not in own or entry.is_symlink() or not entry.is_file():
            raise ConfigError(
                f"{out_dir} holds {entry.name}, which is not part of a vaekit ONNX export; "
                "choose an empty or new folder"
            )


def model_signatures(config: ModelConfig) -> dict[str, dict[str, Any]]:
    """File, inputs and outputs (name, shape with "N" for the batch axis, dtype) of both models;
    a conditional model's models also take ``y``, the class labels."""

    def tensor(name: str, shape: tuple[int, ...], dtype: str = "float32") -> dict[str, Any]:
        return {"name": name, "shape": ["N", *shape], "dtype": dtype}

    labels = [tensor("y", (), "int64")] if config.conditional else []
    latent = (config.latent_dim,)
    return {
        "encoder": {
            "file": ENCODER_FILE,
            "inputs": [tensor("x", config.input_shape), *labels],
            "outputs": [tensor("mu", latent), tensor("logvar", latent)],
        },
        "decoder": {
            "file": DECODER_FILE,
            "inputs": [tensor("z", latent), *labels],
            "outputs": [tensor("x_mean", config.input_shape)],
        },
    }


def likelihood_record(config: ModelConfig, vae: VAEModule) -> dict[str, Any]:
    """The likelihood's name, what ``x_mean`` is, and for a Gaussian its σ (the learned value:
    one number, or one per input value, flattened)."""
    if config.likelihood != "gaussian":
        return {"name": config.likelihood, "x_mean": "sigmoid of the decoder's logits"}
    log_sigma = getattr(vae.decoder, "log_sigma", None)
    sigma = config.sigma if log_sigma is None else log_sigma.detach().exp().tolist()
    return {"name": "gaussian", "x_mean": "the decoder's output f(z)", "sigma": sigma}


def posterior_record(config: ModelConfig) -> dict[str, Any]:
    """What the encoder's ``mu`` and ``logvar`` describe: q(z|x) itself, or with a posterior
    flow only its base distribution q0(z0|x) (z = flow(z0) is not exported)."""
    if config.flow == "none":
        return {"flow": "none", "mu_logvar": "q(z|x) = N(mu, diag e^logvar)"}
    return {
        "flow": config.flow,
        "flow_steps": config.flow_steps,
        "exported": False,
        "mu_logvar": (
            "the flow's base q0(z0|x) = N(mu, diag e^logvar); q(z|x) pushes z0 through the "
            "inverse autoregressive flow, which is not exported"
        ),
    }


def scaling_record(scaling: Scaling | None) -> dict[str, Any]:
    """The run's fitted scaling as ``scaling.json`` stores it (x' = (x − shift) / scale), or,
    for a run written before scalings were stored, ``auto`` and the rule it stands for."""
    if scaling is None:
        return {"method": "auto", "fitted": False, "rule": AUTO_RULE}
    return {**scaling.to_json(), "fitted": True, "formula": "x' = (x - shift) / scale"}


def _plain_linears(vae: VAEModule) -> VAEModule:
    """``vae`` with its :class:`~vaekit.engines.torch.dense.Dense` layers turned into plain
    ``nn.Linear`` (the same parameters and product h·Wᵀ + b), gated ones into ``GatedLinear``:
    Dense calls oneDNN's kernel, which has no ONNX operator."""
    from torch import nn

    from vaekit.engines.torch.dense import Dense, GatedDense, GatedLinear

    for module in vae.modules():  # a gated layer before its gate, a Dense too
        if isinstance(module, Dense):
            module.__class__ = GatedLinear if isinstance(module, GatedDense) else nn.Linear
    return vae


def _wrappers(vae: VAEModule) -> dict[str, Any]:
    """The encoder and decoder of ``vae`` as modules whose inputs and outputs are the
    signatures' (built here: torch is imported only when exporting)."""
    from torch import nn

    class Encoder(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.vae = vae

        def forward(self, x, y=None):
            return self.vae.encode(x.flatten(1), y)

    class Decoder(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.vae = vae

        def forward(self, z, y=None):
            return self.vae.decode(z, y).unflatten(1, self.vae.config.input_shape)

    return {"encoder": Encoder(), "decoder": Decoder()}


def _traced(module, signature: dict[str, Any], own_network: str | None) -> bytes:
    """:func:`_onnx_bytes`; where the network is your own (``own_network``, its import path)
    and cannot be traced, a ConfigError naming it."""
    try:
        return _onnx_bytes(module, signature)
    except Exception as exc:
        if own_network is None:
            raise
        reason = (str(exc).strip().splitlines() or [""])[0]
        raise ConfigError(
            f"torch.export cannot trace your network {own_network} for the ONNX export "
            f"({type(exc).__name__}: {reason})"
        ) from exc


def _onnx_bytes(module, signature: dict[str, Any]) -> bytes:
    """The ONNX model of ``module`` for ``signature``'s inputs, with a dynamic batch axis named
    ``N``: ``torch.export`` (strict, so that sizes read from the input stay symbolic), then
    ``torch.onnx``, with its notices (operators of packages not installed) kept quiet."""
    import torch

    examples = tuple(_example(spec) for spec in signature["inputs"])
    shapes = tuple({0: torch.export.Dim("N", min=1)} for _ in examples)
    registration = logging.getLogger("torch.onnx._internal.exporter._registration")
    level = registration.level
    registration.setLevel(logging.ERROR)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            program = torch.export.export(
                module.eval(), examples, dynamic_shapes=shapes, strict=True
            )
            onnx_program = torch.onnx.export(
                program,
                examples,
                input_names=[spec["name"] for spec in signature["inputs"]],
                output_names=[spec["name"] for spec in signature["outputs"]],
                opset_version=OPSET,
                verbose=False,
            )
    finally:
        registration.setLevel(level)
    proto = onnx_program.model_proto
    _name_batch_axis(proto.graph, proto.graph.input[0].type.tensor_type.shape.dim[0].dim_param)
    return proto.SerializeToString()


def _name_batch_axis(graph, symbol: str) -> None:
    """Rename the exporter's symbol for the batch size (such as ``s27``) to ``N`` throughout
    the graph's declared inputs, outputs and intermediate values."""
    for value in (*graph.input, *graph.output, *graph.value_info):
        for dim in value.type.tensor_type.shape.dim:
            if dim.dim_param == symbol:
                dim.dim_param = "N"


def _example(spec: dict[str, Any]):
    """An example input of batch 2 for tracing (torch.export specialises sizes 0 and 1)."""
    import torch

    shape = (2, *spec["shape"][1:])
    if spec["dtype"] == "int64":
        return torch.zeros(shape, dtype=torch.int64)
    return torch.rand(shape)
