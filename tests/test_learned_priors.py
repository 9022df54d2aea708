"""The learned priors (VampPrior, mixture of Gaussians, class-conditional p(z|y), the VampPrior per
class): their densities against brute force, the class prior's KL and its gradients, draws and
quantiles, both engines, and the command line and estimator end to end."""

import json
import math
import tracemalloc

import numpy as np
import pytest
import torch

from cli_runner import resume_matches_whole, run_cli, sample_and_evaluate
from vaekit.config.settings import ModelConfig, default_prior
from vaekit.engines import build_engine
from vaekit.engines.numpy.engine import NumpyEngine
from vaekit.engines.sampling import sample_prior
from vaekit.engines.torch.engine import TorchEngine
from vaekit.errors import ConfigError
from vaekit.model import objectives, parameters
from vaekit.model.priors import ClassConditional, GaussianMixture, has_closed_form_kl
from vaekit.runs import config_file, loading

SMALL = ["--hidden", "32", "--latent-dim", "4", "--batch-size", "250", "--quiet"]


def brute_force_mixture(z, weights, means, logvars):
    """log Σ_c w_c Π_k N(z_k; m_ck, e^lv_ck), one component and coordinate at a time, float64."""
    out = np.empty(z.shape[:-1])
    for index in np.ndindex(*z.shape[:-1]):
        total = 0.0
        for w, m, lv in zip(weights, means, logvars, strict=True):
            var = np.exp(lv)
            density = np.prod(np.exp(-((z[index] - m) ** 2) / (2 * var)) / np.sqrt(2 * np.pi * var))
            total += w * density
        out[index] = math.log(total)
    return out


def random_mixture(rng, components=7, k=3):
    weights = rng.dirichlet(np.ones(components))
    return GaussianMixture(
        weights, rng.normal(size=(components, k)), rng.normal(scale=0.5, size=(components, k))
    )


# --- densities -----------------------------------------------------------------------------------


def test_mixture_log_density_equals_brute_force_in_numpy_and_torch(rng):
    prior = random_mixture(rng)
    z = rng.normal(size=(3, 4, 3))
    expected = brute_force_mixture(z, prior.weights, prior.means, prior.logvars)
    np.testing.assert_allclose(prior.log_prob(z), expected, rtol=1e-10)
    np.testing.assert_allclose(prior.log_prob(torch.from_numpy(z)).numpy(), expected, rtol=1e-10)


def test_mixture_log_density_never_forms_a_samples_by_components_by_latents_array(rng):
    prior = random_mixture(rng, components=500, k=16)
    z = rng.normal(size=(2, 50, 16))
    tracemalloc.start()
    prior.log_prob(z)
    _, peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    assert peak < z.size * 500 * 8 / 2  # half of one (S, N, C, K) float64 array (6.4 MB)


def test_class_prior_log_prob_by_label_is_that_class_gaussian(rng):
    prior = ClassConditional(rng.normal(size=(3, 2)), rng.normal(size=(3, 2)))
    z, labels = rng.normal(size=(5, 4, 2)), np.array([0, 2, 1, 2])
    expected = np.stack(
        [
            brute_force_mixture(z[:, n : n + 1], [1.0], prior.means[[y]], prior.logvars[[y]])[:, 0]
            for n, y in enumerate(labels)
        ],
        axis=1,
    )
    np.testing.assert_allclose(prior.log_prob(z, labels), expected, rtol=1e-10)
    marginal = brute_force_mixture(z, np.full(3, 1 / 3), prior.means, prior.logvars)
    np.testing.assert_allclose(prior.log_prob(z), marginal, rtol=1e-10)


def random_class_mixture(rng, classes=3, components=8, k=2):
    """A mixture whose component c belongs to class c mod ``classes``."""
    return GaussianMixture(
        rng.dirichlet(np.ones(components)),
        rng.normal(size=(components, k)),
        rng.normal(scale=0.5, size=(components, k)),
        np.arange(components) % classes,
    )


def test_a_class_mixture_by_label_is_the_mixture_of_that_class_components(rng):
    prior = random_class_mixture(rng)
    z, labels = rng.normal(size=(5, 4, 2)), np.array([0, 2, 1, 2])
    columns = []
    for n, y in enumerate(labels):
        own = prior.classes == y
        weights = prior.weights[own] / prior.weights[own].sum()
        columns.append(
            brute_force_mixture(z[:, n : n + 1], weights, prior.means[own], prior.logvars[own])
        )
    expected = np.concatenate(columns, axis=1)
    np.testing.assert_allclose(prior.log_prob(z, labels), expected, rtol=1e-10)
    as_tensor = prior.log_prob(torch.from_numpy(z), torch.from_numpy(labels)).numpy()
    np.testing.assert_allclose(as_tensor, expected, rtol=1e-10)
    whole = brute_force_mixture(z, prior.weights, prior.means, prior.logvars)
    np.testing.assert_allclose(prior.log_prob(z), whole, rtol=1e-10)


def test_class_mixture_draws_pick_that_class_components_by_their_weights():
    weights = np.array([0.1, 0.2, 0.3, 0.15, 0.25])
    means = np.stack([10.0 * np.arange(5), np.zeros(5)], axis=1)  # component c at (10c, 0)
    prior = GaussianMixture(weights, means, np.full((5, 2), -12.0), np.array([0, 1, 0, 1, 2]))
    n = 100_000

    def components(labels):
        draws = prior.sample(n, np.random.default_rng(0), labels=labels)
        return np.rint(draws[:, 0] / 10).astype(int)

    of_zero = components(np.zeros(n, int))
    assert set(of_zero) == {0, 2}
    assert (of_zero == 2).mean() == pytest.approx(0.75, abs=0.01)  # 0.3 / (0.1 + 0.3)
    np.testing.assert_array_equal(components(np.full(n, 2)), 4)
    mixed = np.arange(n) % 3
    np.testing.assert_array_equal(prior.classes[components(mixed)], mixed)
    with pytest.raises(ConfigError, match="labels must lie in 0..2"):
        prior.sample(2, np.random.default_rng(0), labels=np.array([0, 3]))
    with pytest.raises(ConfigError, match="no classes"):
        random_mixture(np.random.default_rng(0)).sample(2, np.random.default_rng(0), labels=0)


def test_a_conditional_vamp_prior_encodes_each_pseudo_input_with_its_class(rng):
    config = ModelConfig(hidden=(16,), latent_dim=3, n_classes=3, prior_components=7)
    assert config.prior == "vamp"
    names = [n for n in parameters.shapes(config) if n.startswith("prior.")]
    assert names == ["prior.pseudo_inputs", "prior.logits"]
    engine = TorchEngine(config, seed=0)
    weights = engine.get_weights()
    weights["prior.logits"] = rng.normal(size=7).astype(np.float32)  # learned weights per class
    engine.set_weights(weights)
    classes = np.arange(7) % 3
    u = weights["prior.pseudo_inputs"]
    mu, logvar = engine.encode(np.clip(u, 0, 1), classes)
    prior = engine.prior
    np.testing.assert_array_equal(prior.classes, classes)
    np.testing.assert_allclose(prior.means, mu, rtol=1e-5)
    np.testing.assert_allclose(prior.logvars, logvar, rtol=1e-5)
    within = np.exp(weights["prior.logits"].astype(np.float64))
    for c in range(3):  # w ∝ e^logit within each class; each class 1/3 of the marginal
        share = within[classes == c] / within[classes == c].sum()
        np.testing.assert_allclose(prior.weights[classes == c], share / 3, rtol=1e-6)
    z = torch.from_numpy(rng.normal(size=(2, 4, 3)).astype(np.float32))
    y = torch.tensor([0, 1, 2, 1])
    learned = engine.model.prior
    with torch.no_grad():
        np.testing.assert_allclose(
            learned.log_prob(z, y).numpy(), prior.log_prob(z.double(), y).numpy(), rtol=1e-5
        )
    with pytest.raises(ConfigError, match="per class"):
        learned.log_prob(z)
    learned.log_prob(z, torch.ones(4, dtype=torch.long)).sum().backward()
    for grad in (learned.pseudo_inputs.grad.abs().sum(1), learned.logits.grad.abs()):
        reached = grad.numpy()
        assert (reached[classes == 1] > 0).all() and (reached[classes != 1] == 0).all()


def test_the_default_prior_of_a_conditional_model_follows_the_engine():
    assert default_prior(0) == default_prior(0, "numpy") == "standard"
    assert default_prior(10) == "vamp" and default_prior(10, "numpy") == "class"
    assert ModelConfig(n_classes=10).prior == "vamp"
    with pytest.raises(ConfigError, match="one pseudo-input per class"):
        ModelConfig(n_classes=10, prior_components=5)
    with pytest.raises(ConfigError, match="mog prior is for unconditional"):
        ModelConfig(n_classes=3, prior="mog")


def test_torch_priors_density_equals_their_snapshot(rng):
    for prior in ("vamp", "mog"):
        config = ModelConfig(hidden=(16,), latent_dim=3, prior=prior, prior_components=6)
        engine = TorchEngine(config)
        z = torch.from_numpy(rng.normal(size=(2, 5, 3)).astype(np.float32))
        with torch.no_grad():
            learned = engine.model.prior.log_prob(z).numpy()
        np.testing.assert_allclose(learned, engine.prior.log_prob(z.double()).numpy(), rtol=1e-5)


# --- the class prior's KL -------------------------------------------------------------------------


def test_class_kl_closed_form_is_the_monte_carlo_mean(rng):
    prior = ClassConditional(rng.normal(size=(3, 2)), rng.normal(scale=0.5, size=(3, 2)))
    mu, logvar = rng.normal(size=(2, 4, 2))
    labels = np.array([0, 1, 2, 1])
    eps = rng.standard_normal((200_000, 4, 2))
    z = mu + np.exp(0.5 * logvar) * eps
    mc = (objectives.gaussian_log_density(eps, logvar) - prior.log_prob(z, labels)).mean(0)
    np.testing.assert_allclose(prior.kl(mu, logvar, labels), mc, atol=0.03)
    assert has_closed_form_kl(prior) and not has_closed_form_kl(random_mixture(rng))


def test_kl_to_a_gaussian_gradient_equals_autograd(rng):
    args = [torch.from_numpy(a).requires_grad_() for a in rng.normal(size=(4, 5, 3))]
    objectives.kl_per_dim_to(*args).sum().backward()
    by_hand = objectives.kl_per_dim_to_grad(*(a.detach().numpy() for a in args))
    for mine, auto in zip(by_hand, args, strict=True):
        np.testing.assert_allclose(mine, auto.grad.numpy(), rtol=1e-12)


def test_standard_kl_is_the_kl_to_a_gaussian_at_zero(rng):
    mu, logvar = rng.normal(size=(2, 6, 3)).astype(np.float32)
    zeros = np.zeros_like(mu)
    np.testing.assert_array_equal(
        objectives.kl_per_dim(mu, logvar), objectives.kl_per_dim_to(mu, logvar, zeros, zeros)
    )


# --- draws and quantiles --------------------------------------------------------------------------


def test_sampling_by_label_draws_from_that_class_gaussian(rng):
    prior = ClassConditional(np.array([[3.0, -2.0], [0.0, 0.0]]), np.log([[0.25, 4.0], [1, 1]]))
    draws = prior.sample(100_000, np.random.default_rng(0), labels=np.zeros(100_000, int))
    np.testing.assert_allclose(draws.mean(0), [3.0, -2.0], atol=0.02)
    np.testing.assert_allclose(draws.std(0), [0.5, 2.0], atol=0.02)
    one = prior.sample(4, np.random.default_rng(0), labels=1)
    np.testing.assert_array_equal(one, np.random.default_rng(0).standard_normal((4, 2)))


def test_mixture_draws_follow_the_weights_and_quantiles_invert_the_cdf(rng):
    prior = GaussianMixture(
        np.array([0.2, 0.8]), np.array([[-3.0, 0.0], [2.0, 1.0]]), np.log([[0.5, 1], [1, 4]])
    )
    draws = prior.sample(200_000, np.random.default_rng(0))
    np.testing.assert_allclose(
        draws.mean(0), 0.2 * prior.means[0] + 0.8 * prior.means[1], atol=0.02
    )
    p = np.array([[0.01, 0.2], [0.5, 0.97]])
    q = prior.quantile(p)
    assert q.shape == (2, 2, 2)
    np.testing.assert_allclose(prior.cdf(q), np.repeat(p[..., None], 2, -1), atol=1e-6)
    below = (draws[:, None, None, :] < q).mean(0)  # the share of draws below each quantile
    np.testing.assert_allclose(below, np.repeat(p[..., None], 2, -1), atol=0.004)


# --- torch: learned parameters --------------------------------------------------------------------


@pytest.mark.parametrize(
    ("prior", "names"),
    [
        ("vamp", ["prior.pseudo_inputs"]),
        ("mog", ["prior.means", "prior.logvars", "prior.logits"]),
        ("class", ["prior.means", "prior.logvars"]),
    ],
)
def test_gradients_reach_the_prior_and_training_moves_it(prior, names, mnist_small):
    classes = 10 if prior == "class" else 0
    config = ModelConfig(
        hidden=(32,), latent_dim=3, prior=prior, prior_components=5, n_classes=classes
    )
    assert [n for n in parameters.shapes(config) if n.startswith("prior.")] == names
    engine = TorchEngine(config, seed=0, lr=0.01)
    before = engine.get_weights()
    assert set(before) == set(parameters.shapes(config))
    if prior == "class":
        np.testing.assert_array_equal(before["prior.means"], 0)
    x, y = mnist_small[0].x[:64], mnist_small[0].y[:64] if classes else None
    for _ in range(3):
        assert np.isfinite(engine.train_step(x, 1.0, y).loss)
    for name, param in engine.model.named_parameters():
        if name in names:
            assert param.grad is not None and param.grad.abs().sum() > 0, name
    after = engine.get_weights()
    for name in names:
        assert not np.array_equal(before[name], after[name]), name


def test_snapshot_follows_the_current_weights(rng):
    engine = TorchEngine(ModelConfig(hidden=(16,), latent_dim=2, prior="mog", prior_components=4))
    weights = engine.get_weights()
    weights["prior.means"] = rng.normal(size=(4, 2)).astype(np.float32)
    weights["prior.logits"] = np.array([0, 1, 2, 3], np.float32)
    engine.set_weights(weights)
    prior = engine.prior
    assert prior.means.dtype == np.float64
    np.testing.assert_array_equal(prior.means, weights["prior.means"])
    np.testing.assert_allclose(prior.weights, np.exp(np.arange(4)) / np.exp(np.arange(4)).sum())
    vamp = TorchEngine(ModelConfig(hidden=(16,), latent_dim=2, prior="vamp", prior_components=3))
    u = vamp.get_weights()["prior.pseudo_inputs"]
    mu, logvar = vamp.encode(np.clip(u, 0, 1))
    np.testing.assert_allclose(vamp.prior.means, mu, rtol=1e-5)
    np.testing.assert_allclose(vamp.prior.logvars, logvar, rtol=1e-5)
    assert np.abs(u.mean() - 0.05) < 0.002  # N(0.05, 0.01²) at init


# --- the NumPy engine's class prior ---------------------------------------------------------------


def class_model(**overrides) -> ModelConfig:
    return ModelConfig(hidden=(16,), latent_dim=3, n_classes=4, prior="class", **overrides)


def with_random_prior(engine, rng):
    weights = engine.get_weights()
    for name in ("prior.means", "prior.logvars"):
        weights[name] = rng.normal(scale=0.5, size=weights[name].shape)
    engine.set_weights(weights)
    return weights


@pytest.mark.parametrize("free_bits", [0.0, 0.3])
def test_numpy_class_prior_gradient_equals_finite_differences(rng, free_bits):
    engine = NumpyEngine(class_model(free_bits=free_bits), dtype=np.float64, seed=2)
    with_random_prior(engine, rng)
    x = rng.uniform(size=(6, 784))
    eps, y = rng.standard_normal((6, 3)), np.array([0, 1, 1, 3, 0, 0])
    _, _, _, grads = engine.loss_and_grads(x, eps, 0.7, y)
    assert set(grads) == set(engine.params)
    checked = [
        ("prior.means", (1, 2)),
        ("prior.logvars", (0, 0)),
        ("prior.logvars", (3, 1)),
        ("prior.means", (2, 0)),
        ("encoder.mu.bias", (1,)),
        ("encoder.logvar.bias", (2,)),
    ]
    for name, index in checked:
        value, h = engine.params[name][index], 1e-6
        losses = []
        for step in (h, -h):
            engine.params[name][index] = value + step
            losses.append(engine.loss_and_grads(x, eps, 0.7, y)[0])
        engine.params[name][index] = value
        numeric = (losses[0] - losses[1]) / (2 * h)
        assert grads[name][index] == pytest.approx(numeric, rel=1e-5, abs=1e-9), (name, index)
    np.testing.assert_array_equal(grads["prior.means"][2], 0)  # class 2 is not in the batch


def test_numpy_and_torch_engines_agree_on_the_class_prior(rng):
    config = class_model()
    reference = TorchEngine(config, seed=3)
    engine = NumpyEngine(config, seed=9)
    weights = with_random_prior(reference, rng)
    engine.set_weights(weights)
    x = rng.uniform(size=(8, 784)).astype(np.float32)
    eps, y = rng.standard_normal((8, 3)).astype(np.float32), rng.integers(0, 4, size=8)
    objective, recon, kl, grads = engine.loss_and_grads(x, eps, 1.0, y)
    recon_sum, kl_sums = reference.objective(
        torch.from_numpy(x), torch.from_numpy(eps), torch.from_numpy(y), 1.0
    )
    t_objective = (recon_sum + kl_sums.sum()) / 8
    t_objective.backward()
    assert objective == pytest.approx(t_objective.item(), rel=1e-5)
    np.testing.assert_allclose(kl, reference.elbo_terms(x, eps, y)[1], rtol=1e-5)
    for name, param in reference.model.named_parameters():
        np.testing.assert_allclose(grads[name], param.grad.numpy(), rtol=1e-4, atol=1e-6)
    k_eps = rng.standard_normal((5, 8, 3)).astype(np.float32)
    np.testing.assert_allclose(
        engine.log_weights(x, engine.encode(x, y), k_eps, y),
        reference.log_weights(x, reference.encode(x, y), k_eps, y),
        rtol=1e-5,
    )
    np.testing.assert_array_equal(engine.prior.means, reference.prior.means)


def test_numpy_engine_trains_the_class_prior():
    engine = NumpyEngine(class_model(), seed=0, lr=0.01)
    rng = np.random.default_rng(0)
    x, y = rng.uniform(size=(32, 784)), np.arange(32) % 4
    for _ in range(3):
        engine.train_step(x, 1.0, y)
    assert np.abs(engine.get_weights()["prior.means"]).sum() > 0
    assert isinstance(engine.prior, ClassConditional)


def test_the_numpy_engine_refuses_the_mixture_priors():
    for prior in ("vamp", "mog"):
        with pytest.raises(ConfigError, match=f"the {prior} prior.*torch$"):
            build_engine(ModelConfig(prior=prior, prior_components=3), "numpy")
    with pytest.raises(ConfigError, match="the vamp prior.*or --prior class$"):
        build_engine(ModelConfig(n_classes=3), "numpy")


# --- end to end -----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("flags", "prior"),
    [
        (["--prior", "vamp", "--prior-components", "10"], "vamp"),
        (["--prior", "mog"], "mog"),
        (["--conditional", "--prior", "class"], "class"),
        (["--conditional", "--prior-components", "20"], "vamp"),
    ],
    ids=["vamp", "mog", "class", "class-vamp"],
)
def test_cli_trains_samples_evaluates_and_resumes_bit_exactly(flags, prior, tmp_path, capsys):
    whole, cut = tmp_path / "whole", tmp_path / "cut"
    train = ["train", "--data", "mnist-small", *SMALL, *flags]
    assert run_cli(capsys, *train, "--epochs", "2", "--out", whole)[0] == 0
    assert run_cli(capsys, *train, "--epochs", "1", "--out", cut)[0] == 0
    config, _, _ = config_file.read_config(cut)
    assert config.prior == prior
    weights = resume_matches_whole(capsys, cut, whole)
    assert any(name.startswith("prior.") for name in weights)

    labelled = ["--label", "3"] if config.n_classes else []
    result = sample_and_evaluate(capsys, cut, tmp_path / "s.npy", *labelled)
    if prior == "class":
        assert len(result["kl_per_dim"]) == 4
    else:
        assert result["kl_per_dim"] == "n/a"


def test_class_prior_samples_draw_each_labels_gaussian(tmp_path, capsys, monkeypatch):
    run = tmp_path / "run"
    train = ["train", "--data", "mnist-small", *SMALL, "--conditional", "--prior", "class"]
    assert run_cli(capsys, *train, "--epochs", "1", "--out", run)[0] == 0
    engine = loading.open_run(run)
    weights = engine.get_weights()
    weights["prior.means"][3] = 10.0
    engine.set_weights(weights)
    decoded = []
    monkeypatch.setattr(engine, "decode", lambda z, y=None: decoded.append((z, y)))
    sample_prior(engine, 4, labels=np.array([3, 3, 0, 1]))
    z, y = decoded[-1]
    np.testing.assert_array_equal(y, [3, 3, 0, 1])
    assert (z[:2] > 5).all() and (np.abs(z[2:]) < 5).all()


def test_estimator_with_a_mixture_prior_fits_samples_and_scores(mnist_small):
    from vaekit.api.estimator import VAE

    x = (mnist_small[0].x[:500] * 255).astype(np.uint8)
    model = VAE(prior="mog", prior_components=5, epochs=1, hidden=(32,), latent_dim=3, seed=0)
    model.fit(x)
    assert model.model_config_.prior == "mog"
    assert model.sample(3, seed=1).shape == (3, 1, 28, 28)
    assert np.isfinite(model.score_samples(x[:5], k=5)).all()


def test_an_old_conditional_run_loads_with_the_standard_prior(tmp_path, capsys):
    run = tmp_path / "run"
    argv = ["train", "--data", "mnist-small", *SMALL, "--conditional", "--prior", "standard"]
    assert run_cli(capsys, *argv, "--epochs", "1", "--out", run)[0] == 0
    record = json.loads((run / "config.json").read_text())
    del record["model"]["prior"]  # as written before learned priors existed
    (run / "config.json").write_text(json.dumps(record))
    config, _, _ = config_file.read_config(run)
    assert config.prior == "standard" and config.n_classes == 10
    engine = loading.open_run(run)
    assert not any(name.startswith("prior.") for name in engine.get_weights())
    code, _, err = run_cli(capsys, "sample", run, "-n", "2", "--npy", tmp_path / "s.npy")
    assert code == 0, err


@pytest.mark.parametrize(("engine", "prior"), [("torch", "vamp"), ("numpy", "class")])
def test_a_conditional_model_gets_its_engine_default_prior(engine, prior, tmp_path, capsys):
    from vaekit.api.estimator import VAE

    run = tmp_path / "run"
    argv = ["train", "--data", "mnist-small", *SMALL, "--conditional", "--engine", engine]
    assert run_cli(capsys, *argv, "--epochs", "1", "--out", run)[0] == 0
    assert config_file.read_config(run)[0].prior == prior
    x, y = np.random.default_rng(0).uniform(size=(40, 6)), np.arange(40) % 2
    model = VAE(conditional=True, engine=engine, epochs=1, hidden=(8,), latent_dim=2, seed=0)
    assert model.fit(x, y).model_config_.prior == prior
    assert model.sample(4, seed=1, labels=np.array([0, 1, 1, 0])).shape == (4, 6)
