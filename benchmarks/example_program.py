"""A whole program that does what PyTorch's VAE example (pytorch/examples, vae/main.py) does,
written here so that the comparison in ``benchmarks/run.py`` runs offline.

It reads MNIST from the local IDX files, trains the 784-400-20 ReLU MLP VAE with sigmoid outputs
through a DataLoader over a TensorDataset (shuffled, batch 128), with the loss
``F.binary_cross_entropy(recon, x, reduction="sum") + KL(q(z|x) ‖ N(0, I))`` in nats and Adam
(lr 1e-3); after every epoch it computes the test loss (nats per test example), saves the first 8
test images above their reconstructions and an 8×8 grid of samples from the prior, as PNGs, and
prints the average train and test losses, as the example does. As the example, it computes on
the GPU when PyTorch sees one (batches copied there from pinned memory, a loader process reading
them), else on the CPU; ``--device`` chooses.

    python benchmarks/example_program.py --epochs 3 --data-dir ../shared/data/mnist --out DIR
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image
from torch import nn
from torch.utils.data import DataLoader, TensorDataset

from vaekit.data.idx import read_idx

MNIST = Path(__file__).resolve().parents[2] / "shared" / "data" / "mnist"
FILES = {"train": "train-images-idx3-ubyte.gz", "test": "t10k-images-idx3-ubyte.gz"}


class VAE(nn.Module):
    """784-400-20 MLP VAE: ReLU hidden layers, a diagonal Gaussian q(z|x), Bernoulli means."""

    def __init__(self) -> None:
        super().__init__()
        self.fc1 = nn.Linear(784, 400)
        self.fc21 = nn.Linear(400, 20)
        self.fc22 = nn.Linear(400, 20)
        self.fc3 = nn.Linear(20, 400)
        self.fc4 = nn.Linear(400, 784)

    def encode(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        h = F.relu(self.fc1(x))
        return self.fc21(h), self.fc22(h)

    def decode(self, z: torch.Tensor) -> torch.Tensor:
        return torch.sigmoid(self.fc4(F.relu(self.fc3(z))))

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        mu, logvar = self.encode(x.view(-1, 784))
        z = mu + torch.randn_like(logvar) * torch.exp(0.5 * logvar)
        return self.decode(z), mu, logvar


def loss_function(recon, x, mu, logvar) -> torch.Tensor:
    """−ELBO summed over the batch, nats: Bernoulli cross-entropy + KL(N(μ, σ²) ‖ N(0, I)),
    KL = −½ Σ (1 + log σ² − μ² − σ²)."""
    bce = F.binary_cross_entropy(recon, x.view(-1, 784), reduction="sum")
    return bce - 0.5 * torch.sum(1 + logvar - mu.pow(2) - logvar.exp())


def load_images(data_dir: Path, split: str) -> torch.Tensor:
    """One MNIST split as float32 grey levels in [0, 1], shape (n, 1, 28, 28)."""
    levels = read_idx(data_dir / FILES[split])
    return torch.from_numpy(levels.astype(np.float32) / 255.0).unsqueeze(1)


def pick_device(name: str) -> torch.device:
    """``auto``: the GPU when PyTorch sees one, else the CPU (the example's choice); or the
    device named."""
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(name)


def loaders(
    train: torch.Tensor, test: torch.Tensor, batch_size: int, device: torch.device
) -> tuple[DataLoader, DataLoader]:
    """The example's loaders: shuffled training batches, test batches in order; for a GPU, one
    loader process and pinned memory, as the example asks."""
    extra = {"num_workers": 1, "pin_memory": True} if device.type == "cuda" else {}
    return (
        DataLoader(TensorDataset(train), batch_size=batch_size, shuffle=True, **extra),
        DataLoader(TensorDataset(test), batch_size=batch_size, **extra),
    )


def save_grid(images: torch.Tensor, rows: int, path: Path) -> None:
    """Tile (n, 784) images in [0, 1] into a grid of ``rows`` rows with 2-pixel borders, as PNG."""
    columns = len(images) // rows
    tiles = images.view(rows, columns, 28, 28).numpy()
    tiles = np.pad(tiles, ((0, 0), (0, 0), (2, 0), (2, 0)))
    grid = tiles.transpose(0, 2, 1, 3).reshape(rows * 30, columns * 30)
    grid = np.pad(grid, ((0, 2), (0, 2)))
    Image.fromarray((grid * 255 + 0.5).clip(0, 255).astype(np.uint8)).save(path)


def train(model, optimizer, loader, epoch: int, device: torch.device) -> None:
    """One epoch of Adam steps on the batch −ELBO; prints nats per training example."""
    model.train()
    total = 0.0
    for (x,) in loader:
        x = x.to(device)
        optimizer.zero_grad()
        recon, mu, logvar = model(x)
        loss = loss_function(recon, x, mu, logvar)
        loss.backward()
        total += loss.item()
        optimizer.step()
    print(f"====> Epoch: {epoch} Average loss: {total / len(loader.dataset):.4f}")


def test(model, loader, epoch: int, out: Path, device: torch.device) -> float:
    """The test −ELBO, nats per test example (printed and returned); saves the first batch's 8
    reconstructions."""
    model.eval()
    total = 0.0
    with torch.no_grad():
        for i, (x,) in enumerate(loader):
            x = x.to(device)
            recon, mu, logvar = model(x)
            total += loss_function(recon, x, mu, logvar).item()
            if i == 0:
                pair = torch.cat([x[:8].view(8, 784), recon[:8]])
                save_grid(pair.cpu(), 2, out / f"reconstruction_{epoch}.png")
    print(f"====> Test set loss: {total / len(loader.dataset):.4f}")
    return total / len(loader.dataset)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--epochs", type=int, default=10)
    parser.add_argument("--batch-size", type=int, default=128)
    parser.add_argument("--data-dir", type=Path, default=MNIST)
    parser.add_argument("--out", type=Path, default=Path("results"))
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--device", choices=["auto", "cpu", "cuda"], default="auto")
    args = parser.parse_args()
    started = time.perf_counter()
    torch.manual_seed(args.seed)
    args.out.mkdir(parents=True, exist_ok=True)
    device = pick_device(args.device)
    train_loader, test_loader = loaders(
        load_images(args.data_dir, "train"),
        load_images(args.data_dir, "test"),
        args.batch_size,
        device,
    )
    model = VAE().to(device)
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-3)
    for epoch in range(1, args.epochs + 1):
        train(model, optimizer, train_loader, epoch, device)
        test(model, test_loader, epoch, args.out, device)
        with torch.no_grad():
            samples = model.decode(torch.randn(64, 20, device=device)).cpu()
            save_grid(samples, 8, args.out / f"sample_{epoch}.png")
    print(f"({time.perf_counter() - started:.1f} s in the program)")


if __name__ == "__main__":
    main()
