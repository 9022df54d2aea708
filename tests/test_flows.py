"""The inverse autoregressive flow posterior: its masks and log-determinant, q(z|x) as a normalised
density, the ELBO and IWAE terms with a flow, and the flow model through the CLI, the estimator
and the ONNX export."""

from __future__ import annotations

import json
import math
import re

import numpy as np
import pytest
import torch

from cli_runner import resume_matches_whole, run_cli, user_error
from vaekit.cli import main
from vaekit.config.settings import ModelConfig, TrainConfig
from vaekit.engines import build_engine
from vaekit.engines.torch.flows import InverseAutoregressiveFlow, made_masks
from vaekit.engines.torch.model import VAEModule
from vaekit.model import parameters
from vaekit.runs import checkpoint, config_file

SMALL = ["--hidden", "32", "--latent-dim", "3", "--batch-size", "250", "--quiet"]
FLOW = ["--flow", "iaf", "--flow-steps", "2", "--flow-hidden", "16"]


def flow_config(**overrides) -> ModelConfig:
    settings = dict(
        input_shape=(6,), hidden=(8,), latent_dim=4, flow="iaf", flow_steps=3, flow_hidden=(9, 7)
    )
    return ModelConfig(**{**settings, **overrides})


def randomised(module: torch.nn.Module, seed: int, scale: float = 0.8) -> torch.nn.Module:
    """``module`` in float64 with every parameter drawn from N(0, scale²): a flow far from the
    identity it starts as."""
    generator = torch.Generator().manual_seed(seed)
    module = module.double()
    with torch.no_grad():
        for param in module.parameters():
            param.copy_(scale * torch.randn(param.shape, generator=generator, dtype=param.dtype))
    return module


def test_made_masks_are_autoregressive_in_the_given_order():
    order = torch.tensor([3, 1, 4, 2])
    product = torch.eye(4)
    for mask in made_masks(order, (5, 6)):
        product = mask @ product
    # output k is connected to input j only through paths; none may start at order[j] ≥ order[k]
    allowed = order[:, None] > order[None, :]
    assert torch.all(product[~allowed] == 0)
    assert torch.all(product[allowed] > 0)  # and every allowed input is connected
    one = made_masks(torch.tensor([1]), (3,))
    assert torch.all(one[0] == 0) and torch.all(one[1] == 1)  # K = 1: reads no z


def test_parameters_are_the_configs_and_masks_are_not_stored():
    config = flow_config()
    flow = InverseAutoregressiveFlow(config)
    names = {f"flow.{k}": tuple(v.shape) for k, v in flow.state_dict().items()}
    assert names == {k: v for k, v in parameters.shapes(config).items() if k.startswith("flow.")}
    assert any(name.endswith("mask") for name, _ in flow.named_buffers())
    step = flow.steps[0]
    assert torch.all(step.hidden[0].weight[step.hidden[0].mask == 0] == 0)
    s = torch.sigmoid(step.gate.bias)
    assert torch.all(s > 0.85)  # σ starts near 1


def step_jacobian(step, z: torch.Tensor, h: torch.Tensor) -> torch.Tensor:
    return torch.autograd.functional.jacobian(lambda v: step(v[None], h)[0][0], z)


@pytest.mark.parametrize(
    "seed, sizes",
    [
        (0, dict(latent_dim=4, flow_steps=3, flow_hidden=(9, 7))),
        (1, dict(latent_dim=4, flow_steps=3, flow_hidden=(9, 7))),
        (2, dict(latent_dim=5, flow_steps=2, flow_hidden=(3,))),  # fewer units than K − 1
        (3, dict(latent_dim=1, flow_steps=2, flow_hidden=(4,))),  # K = 1: the MADE reads h only
    ],
)
def test_each_step_is_triangular_and_log_det_is_that_of_the_jacobian(seed, sizes):
    config = flow_config(**sizes)
    flow = randomised(InverseAutoregressiveFlow(config), seed)
    generator = torch.Generator().manual_seed(100 + seed)
    z0 = torch.randn(config.latent_dim, generator=generator, dtype=torch.float64)
    h = torch.randn(1, config.encoder_width, generator=generator, dtype=torch.float64)
    z = z0
    for t, step in enumerate(flow.steps):
        jac = step_jacobian(step, z, h)
        # even steps: z_k reads z_<k (lower triangular); odd steps: the order reversed (upper)
        triangle = torch.tril(jac) if t % 2 == 0 else torch.triu(jac)
        torch.testing.assert_close(jac, triangle, rtol=0, atol=0)
        if config.latent_dim > 1:
            assert (jac - torch.diag(torch.diagonal(jac))).abs().max() > 1e-3  # not diagonal
        _, log_det = step(z[None], h)
        torch.testing.assert_close(log_det[0], torch.diagonal(jac).abs().log().sum())
        z = step(z[None], h)[0][0]
    whole = torch.autograd.functional.jacobian(lambda v: flow(v[None], h)[0][0], z0)
    _, log_det = flow(z0[None], h)
    torch.testing.assert_close(log_det[0], torch.linalg.slogdet(whole).logabsdet)
    assert abs(log_det.item()) > 0.1  # a flow far from volume-preserving


def test_h_broadcasts_over_leading_sample_axes():
    config = flow_config()
    flow = randomised(InverseAutoregressiveFlow(config), 3)
    z0 = torch.randn(5, 2, 3, config.latent_dim, dtype=torch.float64)
    h = torch.randn(3, config.encoder_width, dtype=torch.float64)
    z, log_det = flow(z0, h)
    assert z.shape == z0.shape and log_det.shape == (5, 2, 3)
    one_z, one_log_det = flow(z0[4, 1], h)
    torch.testing.assert_close(z[4, 1], one_z)
    torch.testing.assert_close(log_det[4, 1], one_log_det)


# --- q(z|x) of a flow model is a normalised density (K = 2) --------------------------------------


def density_model(scale: float):
    """A K = 2 model with random weights N(0, scale²) (a curved, stretched q(z|x)), one input x,
    and the encoder features h and base posterior (mu, σ) for it."""
    config = flow_config(latent_dim=2, flow_steps=2, flow_hidden=(12,))
    vae = randomised(VAEModule(config), seed=7, scale=scale).eval()
    x = torch.rand(1, 6, generator=torch.Generator().manual_seed(1), dtype=torch.float64)
    with torch.no_grad():
        h = vae.encoder.features(x)
        mu, logvar = vae.encoder.mu(h), vae.encoder.logvar(h)
    return vae, x, h, mu, torch.exp(0.5 * logvar)


def invert(steps, z: torch.Tensor, h: torch.Tensor) -> torch.Tensor:
    """z0 with flow(z0) = z, solved one variable at a time in each step's order (1…K for even
    steps, K…1 for odd ones): z_prev,k = (z_k − (1 − σ_k) m_k) / σ_k, where m_k and σ_k read
    only the variables already solved."""
    k = z.shape[-1]
    for t in reversed(range(len(steps))):
        prev = z.clone()
        for i in range(k) if t % 2 == 0 else reversed(range(k)):
            m, s = steps[t].shift_and_gate(prev, h)
            gate = torch.sigmoid(s[..., i])
            prev[..., i] = (z[..., i] - (1 - gate) * m[..., i]) / gate
        z = prev
    return z


def test_q_integrates_to_one_on_a_grid():
    """Σ over a fine grid of exp(log q(z|x)) · cell area = 1, with log q the model's own
    (VAE.latents) at the grid points pulled back through the inverted flow."""
    vae, x, h, mu, sigma = density_model(scale=0.6)  # q is a thin curved ridge
    eps = torch.randn(20_000, 1, 2, generator=torch.Generator().manual_seed(4), dtype=torch.float64)
    with torch.no_grad():
        draws = vae.latents(x, None, eps).z[:, 0]
        low, high = draws.min(0).values, draws.max(0).values
        low, high = low - 0.5 * (high - low), high + 0.5 * (high - low)
        n = 400
        axes = [torch.linspace(low[i], high[i], n, dtype=torch.float64) for i in range(2)]
        grid = torch.stack(torch.meshgrid(*axes, indexing="ij"), -1).reshape(-1, 1, 2)
        z0 = invert(vae.flow.steps, grid, h)
        # left out: points whose preimage has some |eps_k| ≥ 30 (z0 may overflow there);
        # their mass under q is P(eps in that set) < 1e-190
        eps = (z0 - mu) / sigma
        kept = (eps.abs() < 30).all(-1)[:, 0]
        grid, z0, eps = grid[kept], z0[kept], eps[kept]
        z, log_q, _ = vae.latents(x, None, eps)
    torch.testing.assert_close(z, grid)  # the inversion is exact
    cell = ((high - low) / (n - 1)).prod()
    mass = (log_q.exp().sum() * cell).item()
    assert mass == pytest.approx(1.0, abs=1e-3)
    # without the log-determinant it is not a density (it integrates to about 0.06)
    base = torch.distributions.Normal(mu, sigma).log_prob(z0).sum(-1)
    assert (base.exp().sum() * cell).item() < 0.5


def test_the_mean_of_indicator_over_q_is_the_area_of_the_box():
    """E_{z~q}[1_A(z) / q(z|x)] = area(A) for a box A: q(z|x) from the model's draws and its
    log q only; the Monte Carlo mean within 4 standard errors (each under 1 % of the area)."""
    vae, x, h, mu, sigma = density_model(scale=0.4)
    generator = torch.Generator().manual_seed(3)
    eps = torch.randn(410_000, 1, 2, generator=generator, dtype=torch.float64)
    with torch.no_grad():
        pilot = vae.latents(x, None, eps[:10_000]).z[:, 0]
        eps = eps[10_000:]  # the box is chosen from other draws
        z, log_q, _ = vae.latents(x, None, eps)
    z, log_q = z[:, 0], log_q[:, 0]
    low, high = pilot.quantile(0.3, dim=0), pilot.quantile(0.7, dim=0)
    inside = ((z > low) & (z < high)).all(-1)
    area = (high - low).prod().item()
    for log_density, holds in (
        (log_q, True),
        # the base density alone, without the flow's log-determinant: far off
        (torch.distributions.Normal(mu, sigma).log_prob(mu + sigma * eps).sum(-1)[:, 0], False),
    ):
        terms = inside * torch.exp(-log_density)
        error = (terms.std() / math.sqrt(len(terms))).item()
        assert error < 0.01 * max(area, terms.mean().item())
        assert (abs(terms.mean().item() - area) < 4 * error) == holds


# --- the ELBO and IWAE terms with a flow ----------------------------------------------------------


def manual_terms(vae: VAEModule, x: torch.Tensor, eps: torch.Tensor):
    """(recon, log q, log p), each (…, N), written out: z0 = mu + σ·eps, z = flow(z0), log q =
    log N(z0; mu, σ²) − log|det ∂z/∂z0| (by autograd, per example), log p = log N(z; 0, I)."""
    h = vae.encoder.features(x)
    mu, logvar = vae.encoder.mu(h), vae.encoder.logvar(h)
    sigma = torch.exp(0.5 * logvar)
    z0 = mu + sigma * eps
    z, _ = vae.flow(z0, h)
    flat_z0 = z0.reshape(-1, z0.shape[-1])
    rows = torch.arange(len(flat_z0)) % len(x)
    log_dets = torch.stack(
        [
            torch.linalg.slogdet(
                torch.autograd.functional.jacobian(
                    lambda v, r=r: vae.flow(v[None], h[r : r + 1])[0][0], v0
                )
            ).logabsdet
            for v0, r in zip(flat_z0, rows.tolist(), strict=True)
        ]
    ).reshape(z0.shape[:-1])
    normal = torch.distributions.Normal
    log_q = normal(mu, sigma).log_prob(z0).sum(-1) - log_dets
    log_p = normal(0.0, 1.0).log_prob(z).sum(-1)
    logits = vae.decoder(z.reshape(-1, z.shape[-1])).reshape(*z.shape[:-1], -1)
    recon = torch.nn.functional.binary_cross_entropy_with_logits(
        logits, x.expand_as(logits), reduction="none"
    ).sum(-1)
    return recon, log_q, log_p


def test_elbo_kl_and_iwae_weights_use_the_flows_density():
    config = flow_config(latent_dim=3, flow_steps=2)
    vae = randomised(VAEModule(config), seed=11, scale=0.5)
    assert not config.closed_form_kl
    generator = torch.Generator().manual_seed(5)
    x = torch.rand(4, 6, generator=generator, dtype=torch.float64)
    eps = torch.randn(4, 3, generator=generator, dtype=torch.float64)
    recon, kl = vae.elbo_terms(x, eps)
    want_recon, log_q, log_p = manual_terms(vae, x, eps)
    torch.testing.assert_close(recon, want_recon)
    torch.testing.assert_close(kl, log_q - log_p)

    eps = torch.randn(5, 4, 3, generator=generator, dtype=torch.float64)
    log_w, recon = vae.log_weights(x, eps)
    want_recon, log_q, log_p = manual_terms(vae, x, eps)
    torch.testing.assert_close(log_w, log_p - log_q - want_recon)
    iwae = VAEModule(flow_config(latent_dim=3, flow_steps=2, objective="iwae", iw_samples=5))
    iwae.load_state_dict(vae.state_dict())
    bound, _, kl_sum = iwae.double().training_sums(x, eps, None, 1.0)
    want = torch.logsumexp(log_p - log_q - want_recon, 0) - math.log(5)
    torch.testing.assert_close(bound, want.sum())
    torch.testing.assert_close(kl_sum, (log_q - log_p).mean(0).sum())


@pytest.mark.parametrize("objective", ["elbo", "iwae"])
def test_gradients_reach_every_flow_parameter_and_training_lowers_the_loss(objective):
    iwae = dict(objective="iwae", iw_samples=3) if objective == "iwae" else {}
    config = flow_config(latent_dim=3, flow_steps=2, **iwae)
    engine = build_engine(config, "torch", seed=0, device="cpu", lr=1e-2)
    x = np.random.default_rng(0).random((64, 6)).astype(np.float32)
    x = (x > 0.5).astype(np.float32)
    eps_shape = (64, 3) if objective == "elbo" else (3, 64, 3)
    eps = torch.randn(eps_shape, generator=torch.Generator().manual_seed(2))
    sums = engine.model.training_sums(torch.from_numpy(x), eps, None, 1.0)
    loss = -sums[0] if objective == "iwae" else sums[0] + sums[1].sum()
    loss.backward()
    for name, param in engine.model.named_parameters():
        if name.startswith("flow."):
            assert param.grad is not None and param.grad.abs().sum() > 0, name
    step = engine.model.flow.steps[0]
    masked = step.hidden[0].mask == 0
    assert torch.all(step.hidden[0].weight.grad[masked] == 0)  # the masks hold in the gradient
    before = engine.get_weights()
    losses = [engine.train_step(x, 1.0).loss for _ in range(25)]
    assert np.mean(losses[-5:]) < np.mean(losses[:5]) - 0.2  # nats per example
    after = engine.get_weights()
    assert all(not np.array_equal(before[k], after[k]) for k in after if k.startswith("flow."))


# --- the flow model end to end --------------------------------------------------------------------


@pytest.fixture(scope="module")
def flow_runs(tmp_path_factory):
    """mnist-small, ELBO and IWAE flow runs: 2 epochs straight, and 1 epoch then resumed to 2."""
    root = tmp_path_factory.mktemp("flow")
    runs = {}
    for objective in ("elbo", "iwae"):
        extra = ["--objective", "iwae", "--k", "3"] if objective == "iwae" else []
        base = ["train", "--data", "mnist-small", *SMALL, *FLOW, *extra]
        for name, epochs in (("straight", 2), ("cut", 1)):
            out = root / f"{objective}-{name}"
            assert main([*base, "--epochs", str(epochs), "--out", str(out)]) == 0
            runs[f"{objective}-{name}"] = out
    return runs


@pytest.mark.parametrize("objective", ["elbo", "iwae"])
def test_cli_trains_samples_evaluates_and_resumes_bit_exactly(
    flow_runs, objective, capsys, tmp_path
):
    cut, straight = flow_runs[f"{objective}-cut"], flow_runs[f"{objective}-straight"]
    config = config_file.read_config(cut)[0]
    assert config.flow == "iaf" and config.flow_steps == 2 and config.flow_hidden == (16,)
    weights = resume_matches_whole(capsys, cut, straight)
    assert any(name.startswith("flow.1.") for name in weights)

    code, _, err = run_cli(capsys, "sample", straight, "-n", "4", "--npy", tmp_path / "s.npy")
    assert code == 0, err
    assert np.load(tmp_path / "s.npy").shape[0] == 4
    code, out, err = run_cli(capsys, "evaluate", straight, "--iw-samples", "10")
    assert code == 0, err
    elbo = float(re.search(r"ELBO +(-[\d.,]+) nats", out)[1].replace(",", ""))
    nll = float(re.search(r"NLL \(IWAE, k=10\) +([\d.,]+)", out)[1].replace(",", ""))
    assert 0 < nll < -elbo  # the importance-weighted bound is the tighter one


def test_the_numpy_engine_refuses_a_flow_in_one_line(capsys, tmp_path):
    line = user_error(
        capsys, "train", "--data", "mnist-small", *SMALL, *FLOW, "--engine", "numpy",
        "--epochs", "1", "--out", tmp_path / "run",
    )  # fmt: skip
    assert "flow" in line


def test_the_estimator_fits_samples_and_scores_with_a_flow(mnist_small):
    from vaekit.api.estimator import VAE as Estimator

    images = mnist_small[0].x[:600]
    model = Estimator(
        hidden=(32,), latent_dim=3, flow="iaf", flow_steps=2, flow_hidden=(16,), epochs=1,
        batch_size=100, seed=0,
    ).fit(images)  # fmt: skip
    assert model.model_config_.flow == "iaf"
    assert model.sample(3).shape == (3, 1, 28, 28)
    scores = model.score_samples(images[:5], k=10)
    assert scores.shape == (5,) and np.all(np.isfinite(scores)) and np.all(scores < 0)


def test_onnx_export_of_a_flow_model_is_its_base_posterior_and_says_so(tmp_path):
    """The encoder exports q0(z0|x) (mu, logvar before the flow), the decoder p(x|z); the
    manifest says the flow is not exported."""
    onnxruntime = pytest.importorskip("onnxruntime")
    from vaekit.api import export

    config = ModelConfig(
        input_shape=(1, 8, 8), hidden=(16,), latent_dim=3, flow="iaf", flow_hidden=(8,)
    )
    engine = build_engine(config, "torch", seed=0, device="cpu")
    run = tmp_path / "run"
    run.mkdir()
    config_file.write_config(run, config, TrainConfig(), "train")
    checkpoint.save_checkpoint(run, engine, {"epoch": 1, "step": 1})
    export.export_onnx(run, tmp_path / "onnx")
    manifest = json.loads((tmp_path / "onnx" / export.MANIFEST_FILE).read_text())
    assert manifest["posterior"]["flow"] == "iaf" and manifest["posterior"]["exported"] is False
    assert "base" in manifest["posterior"]["mu_logvar"]
    x = np.random.default_rng(0).random((5, 1, 8, 8)).astype(np.float32)
    session = onnxruntime.InferenceSession(
        str(tmp_path / "onnx" / export.ENCODER_FILE), providers=["CPUExecutionProvider"]
    )
    mu, logvar = session.run(None, {"x": x})
    want_mu, want_logvar = engine.encode(x)
    np.testing.assert_allclose(mu, want_mu, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(logvar, want_logvar, rtol=1e-5, atol=1e-6)
