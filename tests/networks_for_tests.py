"""Encoders and decoders of one's own, importable as ``networks_for_tests:Name`` (tests/ on
sys.path, or on PYTHONPATH for a command run in another process), for tests/test_custom_networks.py.
Each constructor takes the run's ModelConfig, as the interface says."""

from __future__ import annotations

import torch
from torch import nn

HIDDEN = 16


class MLPEncoder(nn.Module):
    """x (N, D) → one hidden layer → (mu, logvar), each (N, K)."""

    def __init__(self, config) -> None:
        super().__init__()
        self.body = nn.Sequential(nn.Linear(config.input_dim, HIDDEN), nn.Tanh())
        self.mu = nn.Linear(HIDDEN, config.latent_dim)
        self.logvar = nn.Linear(HIDDEN, config.latent_dim)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        h = self.body(x)
        return self.mu(h), self.logvar(h)


class MLPDecoder(nn.Module):
    """z (N, K) → one hidden layer → (N, D) outputs."""

    def __init__(self, config) -> None:
        super().__init__()
        self.net = nn.Sequential(
            nn.Linear(config.latent_dim, HIDDEN), nn.Tanh(), nn.Linear(HIDDEN, config.input_dim)
        )

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        return self.net(z)


class ConvEncoder(nn.Module):
    """x (N, C·H·W) → a stride-2 convolution → (mu, logvar); H and W even."""

    def __init__(self, config) -> None:
        super().__init__()
        self.shape = config.input_shape
        c, h, w = self.shape
        self.conv = nn.Conv2d(c, 4, 3, stride=2, padding=1)
        self.heads = nn.Linear(4 * (h // 2) * (w // 2), 2 * config.latent_dim)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        h = torch.relu(self.conv(x.reshape(-1, *self.shape))).flatten(1)
        mu, logvar = self.heads(h).chunk(2, dim=1)
        return mu, logvar


class ConvDecoder(nn.Module):
    """z → a projection to 4 × H/2 × W/2 → a stride-2 transposed convolution → (N, C·H·W)."""

    def __init__(self, config) -> None:
        super().__init__()
        c, h, w = config.input_shape
        self.grid = (4, h // 2, w // 2)
        self.project = nn.Linear(config.latent_dim, 4 * (h // 2) * (w // 2))
        self.deconv = nn.ConvTranspose2d(4, c, 4, stride=2, padding=1)

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        h = torch.relu(self.project(z)).reshape(-1, *self.grid)
        return self.deconv(h).flatten(1)


class OneHeadEncoder(MLPEncoder):
    """Wrong: returns mu alone."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # type: ignore[override]
        return self.mu(self.body(x))


class WideDecoder(MLPDecoder):
    """Wrong: one output too many per example."""

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        out = self.net(z)
        return torch.cat([out, out[:, :1]], dim=1)


class BatchNormEncoder(MLPEncoder):
    """Wrong: BatchNorm's num_batches_tracked is an int64 buffer."""

    def __init__(self, config) -> None:
        super().__init__(config)
        self.norm = nn.BatchNorm1d(HIDDEN)


class SigmaDecoder(MLPDecoder):
    """Wrong: log_sigma is vaekit's name on a decoder."""

    def __init__(self, config) -> None:
        super().__init__(config)
        self.log_sigma = nn.Parameter(torch.zeros(1))


class FailingEncoder(nn.Module):
    """Wrong: its constructor raises."""

    def __init__(self, config) -> None:
        super().__init__()
        raise RuntimeError("no weights for you")


class NotAModule:
    """Wrong: no torch.nn.Module."""

    def __init__(self, config) -> None:
        self.config = config


class BranchingDecoder(MLPDecoder):
    """Python control flow on a tensor's value: it trains, but torch.export cannot trace it."""

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        out = self.net(z)
        return out if float(out.sum()) > 0 else -out
