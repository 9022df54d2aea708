"""Gated dense layers (``activation="gated"``): h ← (h·Wᵀ + b) ⊙ sigmoid(h·Vᵀ + c) in every MLP
hidden layer of the torch engine.

The layer against a hand computation and its gradients against finite differences, the
parameters it adds (and none for the other activations), the model it builds training, and the
command line and the estimator end to end, where it cannot apply refused in one line."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from cli_runner import resume_matches_whole, run_cli, sample_and_evaluate, user_error
from vaekit.api.estimator import VAE
from vaekit.config.settings import ModelConfig
from vaekit.engines import build_engine
from vaekit.engines.torch.dense import GatedDense, HiddenLayers
from vaekit.errors import ConfigError
from vaekit.measure.evaluation import evaluate_elbo
from vaekit.model import parameters
from vaekit.runs import config_file
from vaekit.runs.metrics import read_metrics

#: The command line's small two-layer VampPrior model with gated layers everywhere.
GATED_HVAE = [
    "--activation", "gated", "--hidden", "32", "--latent-dims", "8", "4", "--top-hidden", "16",
    "--prior", "vamp", "--prior-components", "20", "--batch-size", "100",
]  # fmt: skip


def sigmoid(a: np.ndarray) -> np.ndarray:
    return 1.0 / (1.0 + np.exp(-a))


def test_a_gated_layer_is_its_linear_part_times_the_sigmoid_of_its_gate():
    layer = GatedDense(3, 2)
    w, b = np.array([[1.0, -2.0, 0.5], [0.0, 3.0, -1.0]]), np.array([0.1, -0.2])
    v, c = np.array([[-1.0, 0.5, 2.0], [1.5, 0.0, -0.5]]), np.array([0.3, 0.0])
    with torch.no_grad():
        for param, value in zip(
            (layer.weight, layer.bias, layer.gate.weight, layer.gate.bias),
            (w, b, v, c),
            strict=True,
        ):
            param.copy_(torch.from_numpy(value))
    h = np.array([[0.2, -1.0, 3.0], [1.0, 0.5, -0.5], [0.0, 0.0, 0.0], [-2.0, 1.0, 1.0]])
    want = (h @ w.T + b) * sigmoid(h @ v.T + c)
    got = layer(torch.from_numpy(h).float()).detach().numpy()
    np.testing.assert_allclose(got, want, rtol=1e-6, atol=1e-6)
    assert [name for name, _ in layer.named_parameters()] == [
        "weight", "bias", "gate.weight", "gate.bias"
    ]  # fmt: skip


def test_gated_hidden_layers_gradients_equal_finite_differences():
    """Of the input and of every parameter of a two-layer gated stack, in float64."""
    torch.manual_seed(0)
    layers = HiddenLayers([4, 5, 3], "gated").double()
    names = [name for name, _ in layers.named_parameters()]
    values = [p.detach().clone().requires_grad_(True) for p in layers.parameters()]

    def stack(h: torch.Tensor, *params: torch.Tensor) -> torch.Tensor:
        return torch.func.functional_call(layers, dict(zip(names, params, strict=True)), (h,))

    h = torch.randn(6, 4, dtype=torch.float64, requires_grad=True)
    assert torch.autograd.gradcheck(stack, (h, *values))
    assert len(names) == 8  # two layers, each W, b, V, c


def test_pointwise_hidden_layers_apply_the_activation_after_each_dense_layer():
    torch.manual_seed(0)
    layers = HiddenLayers([4, 5, 3], "tanh")
    h = torch.randn(6, 4)
    want = torch.tanh(layers[1](torch.tanh(layers[0](h))))
    torch.testing.assert_close(layers(h), want)
    assert [name for name, _ in layers.named_parameters()] == [
        "0.weight", "0.bias", "1.weight", "1.bias"
    ]  # fmt: skip


def test_a_gated_model_adds_one_gate_per_hidden_layer_and_nothing_else():
    """Every MLP hidden layer (encoder, decoder, both networks between the layers) has a gate of
    its own shapes; the heads, the prior and the other activations' names are unchanged."""
    fields = dict(
        input_shape=(12,), hidden=(7, 6), latent_dim=3, top_latent_dim=2, top_hidden=(5,),
        prior="vamp", prior_components=4,
    )  # fmt: skip
    plain = parameters.shapes(ModelConfig(**fields, activation="relu"))
    gated = parameters.shapes(ModelConfig(**fields, activation="gated"))
    gates = {name: shape for name, shape in gated.items() if ".gate." in name}
    assert {name.replace(".gate.", ".") for name in gates} == {
        name for name in plain if ".hidden." in name
    }
    assert all(plain[name.replace(".gate.", ".")] == shape for name, shape in gates.items())
    assert {name: gated[name] for name in plain} == plain and len(gated) == len(plain) + len(gates)
    # W and V of every hidden layer: encoder 12→7→6, decoder 3→6→7, top 3→5 and 2→5
    products = 12 * 7 + 7 * 6 + 3 * 6 + 6 * 7 + 3 * 5 + 2 * 5
    assert parameters.count(ModelConfig(**fields, activation="gated")) - parameters.count(
        ModelConfig(**fields, activation="relu")
    ) == products + (7 + 6 + 6 + 7 + 5 + 5)
    engine = build_engine(ModelConfig(**fields, activation="gated"), "torch", seed=0)
    assert {k: tuple(v.shape) for k, v in engine.model.state_dict().items()} == gated


def test_the_default_model_keeps_its_parameter_names():
    """Checkpoints of models without gates load as before: the same names, nothing added."""
    assert list(parameters.shapes(ModelConfig())) == [
        "encoder.hidden.0.weight", "encoder.hidden.0.bias", "encoder.mu.weight",
        "encoder.mu.bias", "encoder.logvar.weight", "encoder.logvar.bias",
        "decoder.hidden.0.weight", "decoder.hidden.0.bias", "decoder.out.weight",
        "decoder.out.bias",
    ]  # fmt: skip


def test_a_gated_model_trains(mnist_small):
    """A one-layer gated VAE's test −ELBO falls over a few Adam steps."""
    config = ModelConfig(hidden=(64,), latent_dim=8, activation="gated")
    engine = build_engine(config, "torch", seed=0, lr=3e-3)
    train, test = mnist_small[0].x[:1000], mnist_small[1].x[:200]
    before = evaluate_elbo(engine, test, seed=0).loss
    for start in range(0, 1000, 100):
        engine.train_step(train[start : start + 100], 1.0)
    assert evaluate_elbo(engine, test, seed=0).loss < before - 20


@pytest.mark.parametrize(
    ("fields", "says"),
    [
        (dict(arch="conv", conv_channels=(4,), input_shape=(1, 8, 8)), "MLP architecture"),
        (dict(activation="swish"), "activation must be one of"),
    ],
)
def test_gated_layers_where_they_cannot_apply_are_refused(fields, says):
    with pytest.raises(ConfigError, match=says):
        ModelConfig(**{"activation": "gated", **fields})


def test_the_numpy_engine_refuses_gated_layers_in_one_line(capsys, tmp_path):
    line = user_error(
        capsys, "train", "--data", "mnist-small", "--out", tmp_path / "r", "--epochs", "1",
        "--activation", "gated", "--engine", "numpy",
    )  # fmt: skip
    assert "gated dense layers" in line and "--engine torch" in line
    assert not (tmp_path / "r").exists()


def test_cli_trains_samples_evaluates_and_resumes_a_gated_model_bit_exactly(capsys, tmp_path):
    whole, cut = tmp_path / "whole", tmp_path / "cut"
    train = ["train", "--data", "mnist-small", "--quiet", *GATED_HVAE]
    assert run_cli(capsys, *train, "--epochs", "2", "--out", whole)[0] == 0
    assert run_cli(capsys, *train, "--epochs", "1", "--out", cut)[0] == 0
    weights = resume_matches_whole(capsys, cut, whole)
    config, _, _ = config_file.read_config(cut)
    assert config.activation == "gated" and config.prior == "vamp"
    assert {"encoder.hidden.0.gate.weight", "top.decoder.hidden.0.gate.bias"} <= set(weights)
    losses = [r["loss"] for r in read_metrics(whole)]
    assert losses[1] < losses[0]
    sample_and_evaluate(capsys, cut, tmp_path / "s.npy")


def test_estimator_fits_samples_and_scores_a_gated_model(mnist_small):
    images = (mnist_small[0].x[:600] * 255).astype(np.uint8)
    vae = VAE(activation="gated", hidden=(32,), latent_dim=4, epochs=1, batch_size=100)
    vae.fit(images)
    assert vae.model_config_.activation == "gated"
    assert vae.sample(3, seed=1).shape == (3, 1, 28, 28)
    scores = vae.score_samples(images[:5], k=4)
    assert scores.shape == (5,) and np.isfinite(scores).all()
