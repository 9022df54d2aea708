"""The oneDNN-backed dense layer equals nn.Linear: same parameters, outputs and gradients."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from vaekit.engines.torch import dense
from vaekit.engines.torch.dense import Dense


def _forward_backward(layer: Dense, h: torch.Tensor, use_onednn: bool, monkeypatch):
    monkeypatch.setattr(dense, "prefers_onednn", lambda: use_onednn)
    h = h.clone().requires_grad_(True)
    layer.zero_grad(set_to_none=True)
    out = layer(h)
    (out * torch.linspace(-1, 1, out.shape[1])).sum().backward()
    return out.detach(), h.grad, layer.weight.grad, layer.bias.grad


@pytest.mark.skipif(not dense.onednn_matmul_available(), reason="this torch build has no oneDNN")
def test_onednn_dense_matches_linear_outputs_and_gradients(monkeypatch):
    torch.manual_seed(0)
    layer = Dense(37, 23)
    h = torch.randn(11, 37)
    fast = _forward_backward(layer, h, True, monkeypatch)
    plain = _forward_backward(layer, h, False, monkeypatch)
    for got, want in zip(fast, plain, strict=True):
        torch.testing.assert_close(got, want, rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(plain[0], F.linear(h, layer.weight, layer.bias))


def test_dense_keeps_linear_parameter_names():
    assert [name for name, _ in Dense(3, 2).named_parameters()] == ["weight", "bias"]


@pytest.mark.parametrize("dtype", [torch.float64, torch.float16])
def test_other_dtypes_and_shapes_take_the_plain_path(dtype):
    h = torch.randn(4, 3, dtype=dtype)
    assert not dense.uses_onednn(h, torch.randn(2, 3))
    assert not dense.uses_onednn(torch.randn(2, 4, 3), torch.randn(2, 3))
    assert not dense.uses_onednn(torch.randn(4, 3), torch.randn(2, 3, dtype=dtype))
    layer = Dense(3, 2).to(torch.float64)
    h64 = torch.randn(4, 3, dtype=torch.float64)
    torch.testing.assert_close(layer(h64), F.linear(h64, layer.weight, layer.bias))


@pytest.mark.parametrize(
    "cpuinfo, vendor",
    [
        ("processor\t: 0\nvendor_id\t: GenuineIntel\nflags\t\t: avx512f\n", "GenuineIntel"),
        ("processor\t: 0\nvendor_id\t: AuthenticAMD\n", "AuthenticAMD"),
        ("processor\t: 0\n", ""),
    ],
)
def test_cpu_vendor_is_read_from_cpuinfo(cpuinfo, vendor, tmp_path):
    path = tmp_path / "cpuinfo"
    path.write_text(cpuinfo)
    assert dense.cpu_vendor(path) == vendor
    assert dense.cpu_vendor(tmp_path / "absent") == ""


@pytest.mark.skipif(not dense.onednn_matmul_available(), reason="this torch build has no oneDNN")
@pytest.mark.parametrize("vendor, expected", [("GenuineIntel", False), ("AuthenticAMD", True)])
def test_onednn_is_preferred_except_on_intel_cpus(vendor, expected, monkeypatch):
    monkeypatch.setattr(dense, "cpu_vendor", lambda: vendor)
    dense.prefers_onednn.cache_clear()
    try:
        assert dense.prefers_onednn() is expected
        assert dense.uses_onednn(torch.randn(4, 3), torch.randn(2, 3)) is expected
        with torch.no_grad():  # scores: oneDNN everywhere, a row's result batch-independent
            assert dense.uses_onednn(torch.randn(4, 3), torch.randn(2, 3))
    finally:
        dense.prefers_onednn.cache_clear()


@pytest.mark.skipif(not dense.onednn_matmul_available(), reason="this torch build has no oneDNN")
def test_without_gradients_a_rows_product_does_not_depend_on_the_batch_size():
    """What the estimator's row scores rely on: from two rows on, Dense's output for a row is the
    same bits whatever the batch's size (MKL's is not, for small batches on an Intel Xeon)."""
    torch.manual_seed(0)
    layer = Dense(784, 400)
    x = torch.randn(600, 784)
    with torch.no_grad():
        full = layer(x)
        for rows in (2, 3, 7, 20, 40, 100, 500):
            assert torch.equal(layer(x[:rows])[:2], full[:2]), rows


@pytest.mark.skipif(not dense.onednn_matmul_available(), reason="this torch build has no oneDNN")
@pytest.mark.parametrize("activation", ["relu", "tanh"])
def test_hidden_layers_without_gradients_apply_relu_in_the_product(activation):
    """Without gradients a ReLU is applied by the product as it writes (oneDNN's post-op), not
    by a pass of its own: the same bits as each layer and then its activation, for every row
    count."""
    torch.manual_seed(0)
    layers = dense.HiddenLayers([20, 64, 48], activation)
    for rows in (1, 2, 5, 300):
        h = torch.randn(rows, 20)
        with torch.no_grad():
            expected = h
            for layer in layers:
                expected = layers.act(layer(expected))
            assert torch.equal(layers(h), expected), rows


@pytest.mark.skipif(not dense.onednn_matmul_available(), reason="this torch build has no oneDNN")
@pytest.mark.parametrize("then", ["relu", "sigmoid"])
def test_onednn_linear_applies_its_function_as_it_writes(then):
    torch.manual_seed(0)
    h, weight, bias = torch.randn(30, 16), torch.randn(8, 16), torch.randn(8)
    expected = getattr(torch, then)(F.linear(h, weight, bias))
    torch.testing.assert_close(dense.onednn_linear(h, weight, bias, then), expected)
