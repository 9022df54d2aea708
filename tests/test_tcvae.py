"""β-TCVAE: the minibatch-weighted total-correlation estimate (against a brute-force sum and
against what it means), its objective beside the ELBO's, and the run end to end."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
import torch
from tests.cli_runner import resume_matches_whole, run_cli, sample_and_evaluate, user_error

from vaekit.config.settings import ModelConfig
from vaekit.engines import build_engine
from vaekit.errors import ConfigError
from vaekit.model import objectives
from vaekit.runs import config_file

SMALL = ["--hidden", "32", "--latent-dim", "4", "--batch-size", "250", "--quiet"]


def brute_force_tc(z, mu, logvar, n):
    """log q(z_i) − Σ_k log q(z_ik) with q ≈ Σ_j q(·|x_j) / (n·B), one term at a time."""
    batch, dims = mu.shape
    out = []
    for zi in z:
        joint, marginals = 0.0, np.zeros(dims)
        for j in range(batch):
            density = 1.0
            for k in range(dims):
                var = math.exp(logvar[j, k])
                d = math.exp(-((zi[k] - mu[j, k]) ** 2) / (2 * var)) / math.sqrt(2 * math.pi * var)
                density *= d
                marginals[k] += d
            joint += density
        log_joint = math.log(joint / (n * batch))
        out.append(log_joint - sum(math.log(m / (n * batch)) for m in marginals))
    return np.array(out)


def test_total_correlation_equals_the_brute_force_sum(rng):
    mu, logvar = rng.normal(size=(5, 3)), rng.normal(scale=0.5, size=(5, 3))
    z = rng.normal(size=(4, 3))  # rows of one rank: fewer than the batch's posteriors
    expected = brute_force_tc(z, mu, logvar, 1000)
    np.testing.assert_allclose(objectives.total_correlation(z, mu, logvar, 1000), expected)
    tensors = (torch.from_numpy(a) for a in (z, mu, logvar))
    np.testing.assert_allclose(objectives.total_correlation(*tensors, 1000).numpy(), expected)


def test_total_correlation_vanishes_for_factorised_codes_and_not_for_shared_ones(rng):
    """A batch whose posterior means form the grid a × b has an aggregate posterior that is
    exactly q(z1)·q(z2): the estimate is then the MWS formula's constant (K − 1)·log N at every
    draw (its gradient is zero). Codes whose dimensions copy one variable are far from it."""
    grid = np.linspace(-2.0, 2.0, 30)
    a, b = np.meshgrid(grid, grid, indexing="ij")
    mu = np.stack([a.ravel(), b.ravel()], axis=1)  # 900 posteriors
    logvar = np.full_like(mu, 2 * math.log(0.2))
    z = mu + 0.2 * rng.normal(size=mu.shape)
    n = 60_000
    factorised = objectives.total_correlation(z, mu, logvar, n)
    np.testing.assert_allclose(factorised, math.log(n), rtol=1e-9)

    shared = np.repeat(rng.uniform(-2.0, 2.0, size=(900, 1)), 2, axis=1)
    z = shared + 0.2 * rng.normal(size=shared.shape)
    correlated = objectives.total_correlation(z, shared, logvar, n) - math.log(n)
    assert correlated.mean() > 1.0  # nats; the factorised codes' is 0


def tiny_model(**fields) -> ModelConfig:
    return ModelConfig(input_shape=(1, 4, 4), hidden=(8,), latent_dim=3, **fields)


def one_step(config: ModelConfig, beta: float, x: np.ndarray, y: np.ndarray | None = None):
    engine = build_engine(config, "torch", seed=3)
    engine.handwritten = False  # the ELBO by autograd, as tcvae's: bit-for-bit comparable
    engine.set_dataset_size(500)
    before = engine.get_weights()
    metrics = engine.train_step(x, beta, y)
    grads = {name: p.grad.clone() for name, p in engine.model.named_parameters()}
    return metrics, grads, before, engine.get_weights()


@pytest.mark.parametrize("free_bits", [0.0, 0.2])
def test_beta_one_is_exactly_the_elbo_step(rng, free_bits):
    x = (rng.random((20, 16)) > 0.5).astype(np.float32)
    elbo = one_step(tiny_model(free_bits=free_bits), 1.0, x)
    tcvae = one_step(tiny_model(free_bits=free_bits, objective="tcvae"), 1.0, x)
    assert elbo[0] == tcvae[0]
    for name, grad in elbo[1].items():
        torch.testing.assert_close(tcvae[1][name], grad, rtol=0, atol=0)
    for name, weight in elbo[3].items():
        np.testing.assert_array_equal(tcvae[3][name], weight, err_msg=name)


def test_a_conditional_model_at_beta_one_is_exactly_its_elbo_step(rng):
    """q(z|x, y) of a conditional model: β = 1 leaves its ELBO step unchanged; β = 6 differs."""
    x = (rng.random((20, 16)) > 0.5).astype(np.float32)
    y = rng.integers(0, 3, 20)
    fields = {"n_classes": 3, "prior": "standard"}
    elbo = one_step(tiny_model(**fields), 1.0, x, y)
    tcvae = one_step(tiny_model(**fields, objective="tcvae"), 1.0, x, y)
    assert elbo[0] == tcvae[0]
    for name, grad in elbo[1].items():
        torch.testing.assert_close(tcvae[1][name], grad, rtol=0, atol=0)
    six = one_step(tiny_model(**fields, objective="tcvae"), 6.0, x, y)
    assert six[0].recon == elbo[0].recon and six[0].loss != elbo[0].loss


def test_beta_weighs_the_total_correlation(rng):
    x = (rng.random((20, 16)) > 0.5).astype(np.float32)
    one = one_step(tiny_model(objective="tcvae"), 1.0, x)
    six = one_step(tiny_model(objective="tcvae"), 6.0, x)
    assert six[0].recon == one[0].recon and six[0].kl == one[0].kl
    tc = (six[0].loss - one[0].loss) / 5.0  # loss = recon + KL + (β − 1)·TC
    engine = build_engine(tiny_model(objective="tcvae"), "torch", seed=3)
    with torch.no_grad():
        mu, logvar = engine.model.encode(torch.from_numpy(x))
        eps = torch.randn((20, 3), generator=torch.Generator().manual_seed(3))
        z = objectives.reparameterize(mu, logvar, eps)
        expected = objectives.total_correlation(z, mu, logvar, 500).mean().item()
    assert tc == pytest.approx(expected, rel=1e-4, abs=1e-5)
    assert not torch.equal(one[1]["encoder.mu.weight"], six[1]["encoder.mu.weight"])


def test_the_engine_needs_the_data_set_size_before_a_step(rng):
    engine = build_engine(tiny_model(objective="tcvae"), "torch")
    with pytest.raises(ConfigError, match="set_dataset_size"):
        engine.train_step(np.zeros((4, 16), np.float32), 1.0)
    for bad in (0, 2.5, True):
        with pytest.raises(ConfigError, match="data set size"):
            engine.set_dataset_size(bad)


@pytest.mark.parametrize(
    ("fields", "words"),
    [
        ({"iw_samples": 5}, "iw_samples applies to the iwae objective"),
        ({"prior": "mog"}, "needs prior standard"),
        ({"prior": "vamp"}, "needs prior standard"),
        ({"flow": "iaf"}, "no flow"),
        ({"top_latent_dim": 2}, "one stochastic layer"),
    ],
)
def test_config_refuses_what_tcvae_cannot_decompose(fields, words):
    with pytest.raises(ConfigError, match=words):
        tiny_model(objective="tcvae", **fields)


def test_numpy_engine_refuses_tcvae_naming_torch():
    with pytest.raises(ConfigError, match="not the tcvae objective; use --engine torch$"):
        build_engine(tiny_model(objective="tcvae"), "numpy")


@pytest.mark.parametrize(
    ("flags", "words"),
    [
        (["--k", "4"], "iw_samples applies to the iwae objective"),
        (["--prior", "mog"], "needs prior standard"),
        (["--flow", "iaf"], "no flow"),
        (["--engine", "numpy"], "--engine torch"),
    ],
)
def test_cli_refusals_are_one_line(flags, words, tmp_path, capsys):
    out = tmp_path / "run"
    argv = ["train", "--data", "mnist-small", *SMALL, "--objective", "tcvae", *flags]
    assert words in user_error(capsys, *argv, "--out", out)
    assert not out.exists()


def test_cli_trains_evaluates_samples_and_resumes_bit_exactly(tmp_path, capsys):
    whole, cut = tmp_path / "whole", tmp_path / "cut"
    train = ["train", "--data", "mnist-small", *SMALL, "--objective", "tcvae", "--beta", "6"]
    assert run_cli(capsys, *train, "--epochs", "2", "--kl-warmup", "1", "--out", whole)[0] == 0
    assert run_cli(capsys, *train, "--epochs", "1", "--kl-warmup", "1", "--out", cut)[0] == 0
    config, _, _ = config_file.read_config(cut)
    assert config.objective == "tcvae" and config.beta == 6.0
    resume_matches_whole(capsys, cut, whole)
    lines = [json.loads(line) for line in (cut / "metrics.jsonl").read_text().splitlines()]
    assert [r["epoch"] for r in lines] == [1, 2] and all(np.isfinite(r["loss"]) for r in lines)

    sample_and_evaluate(capsys, cut, tmp_path / "s.npy")


def test_cli_conditional_tcvae_trains_samples_the_label_and_evaluates(tmp_path, capsys):
    run = tmp_path / "run"
    train = ["train", "--data", "mnist-small", *SMALL, "--conditional", "--prior", "standard"]
    code, _, err = run_cli(
        capsys, *train, "--objective", "tcvae", "--beta", "6", "--epochs", "1", "--out", run
    )
    assert code == 0, err
    sample_and_evaluate(capsys, run, tmp_path / "s.npy", "--label", "7")


def test_estimator_fits_with_the_tcvae_objective(mnist_small):
    from vaekit.api.estimator import VAE

    x = (mnist_small[0].x[:300] * 255).astype(np.uint8)
    model = VAE(hidden=(32,), latent_dim=3, epochs=1, objective="tcvae", beta=6.0, seed=1)
    model.fit(x)
    assert model.model_config_.objective == "tcvae"
    assert np.isfinite(model.history_[-1]["loss"])
    assert model.transform(x[:5]).shape == (5, 3)


def test_two_processes_follow_the_one_process_run(tmp_path):
    """Under torchrun each rank gathers the whole batch's posteriors (shares of 49 and 50 rows):
    the same path as one process with the same global batch."""
    from tests.test_distributed import losses, torchrun, vaekit, weights

    train = ["train", "--data", "mnist-small", *SMALL[:4], "--batch-size", "99", "--seed", "2"]
    train += ["--objective", "tcvae", "--beta", "6", "--epochs", "1", "--sample-every", "1000"]
    one = vaekit(*train, "--out", str(tmp_path / "one"))
    two = torchrun(2, *train, "--out", str(tmp_path / "two"))
    assert one.returncode == 0 and two.returncode == 0, (one.stderr[-2000:], two.stderr[-2000:])
    np.testing.assert_allclose(losses(tmp_path / "two"), losses(tmp_path / "one"), rtol=1e-5)
    w1, w2 = weights(tmp_path / "one"), weights(tmp_path / "two")
    for name in w1:
        np.testing.assert_allclose(w2[name], w1[name], rtol=0, atol=1e-5, err_msg=name)


def test_a_config_file_names_the_objective(tmp_path, capsys):
    settings = tmp_path / "tcvae.toml"
    settings.write_text('[model]\nobjective = "tcvae"\nbeta = 6.0\nlatent_dim = 3\nhidden = [16]\n')
    out = tmp_path / "run"
    argv = ["train", "--config", settings, "--data", "mnist-small", "--epochs", "1", "--quiet"]
    code, _, err = run_cli(capsys, *argv, "--batch-size", "500", "--out", out)
    assert code == 0, err
    config, _, _ = config_file.read_config(out)
    assert (config.objective, config.beta, config.latent_dim) == ("tcvae", 6.0, 3)
    bad = tmp_path / "bad.toml"
    bad.write_text('[model]\nobjective = "tcvae"\nprior = "mog"\n')
    assert "needs prior standard" in user_error(capsys, "train", "--config", bad, "--out", out)
