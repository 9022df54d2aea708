"""ELBO and importance-weighted log-likelihood against independent computations."""

import math
import threading

import numpy as np
import pytest
import torch
from threadpoolctl import threadpool_info

from vaekit.config.settings import ModelConfig
from vaekit.engines import build_engine
from vaekit.engines.handwritten import model as handwritten_model
from vaekit.engines.numpy import NumpyEngine
from vaekit.measure import evaluation
from vaekit.measure.evaluation import evaluate_elbo, iwae_log_likelihood, row_generators
from vaekit.model import objectives


@pytest.fixture(scope="module")
def trained(mnist_small):
    """A small torch model after a few hundred steps on mnist-small, and 200 test images."""
    engine = build_engine(ModelConfig(hidden=(64,), latent_dim=4), seed=0)
    x = mnist_small[0].x
    for _ in range(3):
        for start in range(0, len(x), 100):
            engine.train_step(x[start : start + 100], 1.0)
    return engine, mnist_small[1].x[:200]


def test_iwae_with_one_sample_is_the_single_sample_elbo_with_monte_carlo_kl(trained):
    engine, x = trained
    got = iwae_log_likelihood(engine, x, 1, seed=7, batch_size=64)
    expected = []
    for start in range(0, len(x), 64):
        batch = x[start : start + 64]
        eps = np.stack([g.standard_normal(4, dtype=np.float32) for g in row_generators(batch, 7)])
        mu, logvar = (a.astype(np.float64) for a in engine.encode(batch))
        z = mu + np.exp(0.5 * logvar) * eps
        recon = engine.elbo_terms(batch, eps)[0]  # −log p(x|z) at the same z
        log_q = -0.5 * np.sum(eps.astype(np.float64) ** 2 + logvar + math.log(2 * math.pi), 1)
        log_p = -0.5 * np.sum(z**2 + math.log(2 * math.pi), 1)
        expected.append(-recon + log_p - log_q)
    np.testing.assert_allclose(got, np.concatenate(expected), rtol=1e-5)


def test_iwae_k1_averages_to_the_closed_form_elbo_and_tightens_with_k(trained):
    engine, x = trained
    elbo = -evaluate_elbo(engine, x, seed=0).loss
    bounds = {k: iwae_log_likelihood(engine, x, k, seed=1).mean() for k in (1, 10, 100)}
    assert abs(bounds[1] - elbo) < 1.5  # same expectation; Monte-Carlo noise over 200 images
    assert bounds[1] < bounds[10] < bounds[100]
    assert bounds[100] - elbo > 0.5  # a real gain, not noise


def test_iwae_chunking_does_not_change_the_result(trained, monkeypatch):
    engine, x = trained
    whole = iwae_log_likelihood(engine, x[:50], 40, seed=3)
    monkeypatch.setattr(evaluation, "IWAE_CHUNK_VALUES", 50 * 784 * 3)  # chunks of 3 samples
    chunked = iwae_log_likelihood(engine, x[:50], 40, seed=3)
    np.testing.assert_allclose(chunked, whole, rtol=1e-10)


#: Decoder calls for (rows, k) with chunks of 2**20 values of 784 (the test sets it): 1,337
#: samples × rows a call.
CALLS = {
    # all k samples of as many rows as fit: 1,337 of them at k = 1, 13 at k = 100 (a lone row
    # goes with its copy; the 14th row of 14 joins the call before it)
    (1, 1): 1, (2, 1): 1, (130, 1): 1,
    (1, 100): 1, (2, 100): 1, (7, 100): 1, (14, 100): 1, (130, 100): 10,
    # one row a call, its k samples in equal shares of at most 1,337: one call at k = 1000,
    # two of 1,000 at k = 2000
    (1, 1000): 1, (2, 1000): 2, (7, 1000): 7, (1, 2000): 2, (2, 2000): 4,
}  # fmt: skip


@pytest.mark.parametrize(("rows", "k"), list(CALLS))
def test_iwae_calls_fill_their_chunks_from_the_rows_at_hand(trained, monkeypatch, rows, k):
    """A few rows (one image in the explorer) go in as few decoder calls as the chunk size
    allows for them, not as many as a full batch would need (CALLS), each within
    IWAE_CHUNK_VALUES (a lone last row aside); and the rows score as they do inside a larger
    batch."""
    engine, x = trained
    monkeypatch.setattr(evaluation, "IWAE_CHUNK_VALUES", 2**20)
    calls = []
    log_weights = engine.log_weights

    def counted(batch, posterior, eps, *args, **kwargs):
        calls.append(eps.shape[:2])
        assert len(batch) == eps.shape[1] == len(posterior[0])
        return log_weights(batch, posterior, eps, *args, **kwargs)

    monkeypatch.setattr(engine, "log_weights", counted)
    got = iwae_log_likelihood(engine, x[:rows], k, seed=5)
    assert len(calls) == CALLS[rows, k]
    budget = evaluation.IWAE_CHUNK_VALUES + k * 784  # a last lone row joins the call before
    assert all(samples * images * 784 <= budget for samples, images in calls)
    if 2 * k <= 1337:
        assert {samples for samples, _ in calls} == {k}
    else:  # one row a call, the copy of a lone row in none
        assert {images for _, images in calls} == {1}
        assert sum(samples for samples, _ in calls) == k * rows
    monkeypatch.setattr(engine, "log_weights", log_weights)
    larger = 150 if k < 2000 else 20
    np.testing.assert_array_equal(got, iwae_log_likelihood(engine, x[:larger], k, seed=5)[:rows])


@pytest.mark.parametrize("rows", [1, 7, 130])
@pytest.mark.parametrize("k", [1, 100, 1000])
def test_iwae_gives_the_same_numbers_for_any_number_of_threads(trained, rows, k):
    engine, x = trained
    alone = iwae_log_likelihood(engine, x[:rows], k, seed=2, threads=1)
    for count in (2, 3):
        np.testing.assert_array_equal(
            iwae_log_likelihood(engine, x[:rows], k, seed=2, threads=count), alone
        )


def test_iwae_threads_give_the_numpy_engine_the_same_numbers_too(mnist_small):
    engine = NumpyEngine(ModelConfig(hidden=(32,), latent_dim=3), seed=1)
    x = mnist_small[1].x[:40]
    alone = iwae_log_likelihood(engine, x, 60, seed=4, threads=1)
    np.testing.assert_array_equal(iwae_log_likelihood(engine, x, 60, seed=4, threads=2), alone)


def _record_threads(engine, monkeypatch, method: str) -> list[tuple[str, int]]:
    """(thread name, the most threads its products may use there) of each call of
    ``engine.<method>``: torch's count, and OpenMP's as the libraries below torch read it (kept
    per thread, so a new thread starts from one per core)."""
    calls, original = [], getattr(engine, method)

    def recorded(*args, **kwargs):
        openmp = [pool["num_threads"] for pool in threadpool_info() if pool["user_api"] == "openmp"]
        calls.append((threading.current_thread().name, max([torch.get_num_threads(), *openmp])))
        return original(*args, **kwargs)

    monkeypatch.setattr(engine, method, recorded)
    return calls


def test_iwae_chunks_go_to_single_threaded_workers_and_the_callers_threads_come_back(
    trained, monkeypatch
):
    """With threads ≥ 2 each chunk is computed on a worker with one torch thread, and each
    batch's posterior here, with one thread too; the caller's count is as it was afterwards.
    With one thread everything runs on the caller's thread."""
    engine, x = trained
    monkeypatch.setattr(evaluation, "IWAE_CHUNK_VALUES", 40 * 784 * 5)  # 20 chunks a batch
    chunks = _record_threads(engine, monkeypatch, "log_weights")
    batches = _record_threads(engine, monkeypatch, "encode")
    here = threading.current_thread().name
    before = torch.get_num_threads()
    torch.set_num_threads(2)
    try:
        iwae_log_likelihood(engine, x[:80], 100, seed=0, batch_size=40, threads=2)
        assert torch.get_num_threads() == 2
    finally:
        torch.set_num_threads(before)
    assert len(chunks) == 40 and len(batches) == 2
    assert {count for _, count in chunks + batches} == {1}
    assert all(name.startswith("vaekit-iwae_") for name, _ in chunks)
    assert {name for name, _ in batches} == {here}
    chunks.clear()
    batches.clear()
    iwae_log_likelihood(engine, x[:80], 100, seed=0, batch_size=40, threads=1)
    assert {name for name, _ in chunks + batches} == {here}


def test_a_batchs_first_chunks_start_while_the_batch_before_finishes(trained, monkeypatch):
    """The workers do not wait at the end of a batch: the first batch's last chunk waits for a
    chunk of the second to start on the other worker, which could not happen if a batch's
    chunks were handed out only once the batch before was done."""
    engine, x = trained
    monkeypatch.setattr(evaluation, "IWAE_CHUNK_VALUES", 40 * 784 * 5)  # chunks of 2 rows
    index = {row.tobytes(): i for i, row in enumerate(x[:80])}
    second_started, overlapped, original = threading.Event(), [], engine.log_weights

    def log_weights(batch, *args, **kwargs):
        first = index[batch[0].tobytes()]
        if first >= 40:
            second_started.set()
        elif first == 38:  # the first batch's last chunk
            overlapped.append(second_started.wait(timeout=120))
        return original(batch, *args, **kwargs)

    monkeypatch.setattr(engine, "log_weights", log_weights)
    got = iwae_log_likelihood(engine, x[:80], 100, seed=0, batch_size=40, threads=2)
    assert overlapped == [True]
    monkeypatch.setattr(engine, "log_weights", original)
    np.testing.assert_array_equal(got, iwae_log_likelihood(engine, x[:80], 100, seed=0))


def test_a_rows_noise_is_drawn_once_for_all_the_calls_of_its_shares(trained, monkeypatch):
    """k = 2000 in calls of at most 1,337 samples: two calls of 1,000 for each row, which take
    the two halves of one stream of 2,000 draws."""
    engine, x = trained
    monkeypatch.setattr(evaluation, "IWAE_CHUNK_VALUES", 2**20)
    draws, original = [], evaluation.row_generators

    class Counted:
        def __init__(self, generator):
            self.generator = generator

        def standard_normal(self, **kwargs):
            draws.append(kwargs["out"].shape)
            return self.generator.standard_normal(**kwargs)

    def counted(rows, seed):
        return [Counted(generator) for generator in original(rows, seed)]

    seen, log_weights = [], engine.log_weights

    def recorded(batch, posterior, eps, *args, **kwargs):
        seen.append(eps.copy())
        return log_weights(batch, posterior, eps, *args, **kwargs)

    monkeypatch.setattr(evaluation, "row_generators", counted)
    monkeypatch.setattr(engine, "log_weights", recorded)
    iwae_log_likelihood(engine, x[:3], 2000, seed=4, threads=2)
    assert draws == [(2000, 4)] * 3
    assert [eps.shape for eps in seen] == [(1000, 1, 4)] * 6
    halves = [  # the calls of a row's two shares run at once, in either order
        half
        for generator in original(x[:3], 4)
        for half in np.split(generator.standard_normal((2000, 1, 4), dtype=np.float32), 2)
    ]
    for half in halves:
        assert sum(np.array_equal(eps, half) for eps in seen) == 1


def test_iwae_in_one_chunk_computes_here(trained, monkeypatch):
    """One image of the explorer at k = 100 is one decoder call: no workers to start."""
    engine, x = trained
    chunks = _record_threads(engine, monkeypatch, "log_weights")
    iwae_log_likelihood(engine, x[:1], 100, seed=0, threads=2)
    assert [name for name, _ in chunks] == [threading.current_thread().name]


def test_iwae_computes_in_order_here_for_an_engine_off_the_cpu(trained, monkeypatch):
    engine, x = trained
    monkeypatch.setattr(type(engine), "on_cpu", property(lambda self: False))
    chunks = _record_threads(engine, monkeypatch, "log_weights")
    iwae_log_likelihood(engine, x[:10], 50, seed=0, threads=4)
    assert {name for name, _ in chunks} == {threading.current_thread().name}


@pytest.mark.parametrize("method", ["log_weights", "encode"])
def test_an_error_on_a_worker_reaches_the_caller_and_no_worker_is_left(
    trained, monkeypatch, method
):
    engine, x = trained

    def broken(*args, **kwargs):
        raise RuntimeError(f"{method} failed")

    monkeypatch.setattr(engine, method, broken)
    with pytest.raises(RuntimeError, match=f"{method} failed"):
        iwae_log_likelihood(engine, x[:30], 50, seed=0, batch_size=10, threads=2)
    assert not [t for t in threading.enumerate() if t.name.startswith("vaekit-iwae")]


def test_iwae_converges_to_the_exact_marginal_likelihood():
    """A 1-d latent model whose log p(x) = log ∫ p(x|z) p(z) dz is computed by quadrature."""
    cfg = ModelConfig(
        input_shape=(3,),
        hidden=(8,),
        latent_dim=1,
        likelihood="gaussian",
        sigma=0.5,
        activation="tanh",
    )
    engine = NumpyEngine(cfg, seed=4, dtype=np.float64)
    x = np.random.default_rng(0).normal(size=(5, 3))
    grid = np.linspace(-10, 10, 40001)[:, None]
    means, _, _ = handwritten_model.decode(cfg, engine.params, grid)
    exact = []
    for xi in x:
        log_joint = -objectives.gaussian_nll(means, xi[None], math.log(0.5)) - 0.5 * (
            grid[:, 0] ** 2 + math.log(2 * math.pi)
        )
        peak = log_joint.max()
        exact.append(peak + math.log(np.exp(log_joint - peak).sum() * (grid[1, 0] - grid[0, 0])))
    estimate = iwae_log_likelihood(engine, x, 200_000, seed=0)
    np.testing.assert_allclose(estimate, exact, atol=0.01)
    mu, logvar = engine.encode(x)
    eps = np.random.default_rng(0).standard_normal((4000, 5, 1))
    single = engine.log_weights(x, (mu, logvar), eps)  # L_1 = log w of one sample
    assert np.all(single.mean(axis=0) < np.array(exact))  # E[L_1] ≤ log p(x)


def test_elbo_terms_with_zero_noise_use_the_posterior_mean(trained):
    engine, x = trained
    recon, kl = engine.elbo_terms(x[:5], np.zeros((5, 4), np.float32))
    mu, logvar = (a.astype(np.float64) for a in engine.encode(x[:5]))
    log_w = engine.log_weights(x[:5], (mu, logvar), np.zeros((1, 5, 4)))[0]
    # at eps = 0, z = mu: log w = −recon(mu) + log N(mu; 0, I) − log N(mu; mu, σ²)
    log_p_minus_log_q = -0.5 * (mu**2 - logvar).sum(1)
    np.testing.assert_allclose(recon, log_p_minus_log_q - log_w, rtol=1e-5)
    assert np.all(kl > 0)


@pytest.mark.parametrize(
    "measure",
    [
        lambda engine, x, progress: evaluate_elbo(engine, x, batch_size=64, progress=progress),
        lambda engine, x, progress: evaluation.latent_statistics(
            engine, x, batch_size=64, progress=progress
        ),
        lambda engine, x, progress: iwae_log_likelihood(
            engine, x, 3, batch_size=64, progress=progress
        ),
    ],
    ids=["evaluate_elbo", "latent_statistics", "iwae_log_likelihood"],
)
def test_progress_reports_the_cumulative_number_of_examples_after_each_batch(trained, measure):
    engine, x = trained
    seen: list[int] = []
    measure(engine, x, seen.append)
    assert seen == [64, 128, 192, 200]
