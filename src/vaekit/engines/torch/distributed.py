"""Data-parallel training on several processes with ``torch.distributed``, as ``torchrun``
launches it.

``torchrun --nproc_per_node N -m vaekit train ...`` starts N processes and tells each its place
through the environment (``RANK``, ``WORLD_SIZE``, ``LOCAL_RANK``, ``MASTER_ADDR``…). Every
process loads the data, builds the same model from the same seed and walks the same epoch
permutation; each step, rank r trains on its own contiguous share of the global batch, and
``DistributedDataParallel`` averages the gradients. Each rank's loss is scaled so that the
average is the gradient of the global batch mean: the run follows the same path as one process
with the same global batch (to float rounding). Only rank 0 writes.
"""

from __future__ import annotations

import os
import sys
from dataclasses import dataclass, replace
from typing import Any

from vaekit.errors import ConfigError


@dataclass(frozen=True)
class Group:
    """This process's place among ``world_size`` training processes."""

    rank: int
    world_size: int
    local_rank: int

    @property
    def is_main(self) -> bool:
        """Rank 0: the one process that writes checkpoints, metrics, figures and logs."""
        return self.rank == 0

    def rows(self, batch: int) -> slice:
        """This rank's contiguous share of a global batch of ``batch`` rows."""
        return slice(
            batch * self.rank // self.world_size, batch * (self.rank + 1) // self.world_size
        )


def from_environment() -> Group | None:
    """The group torchrun set up for this process, or None for a single process."""
    try:
        world_size = int(os.environ.get("WORLD_SIZE", "1"))
        rank = int(os.environ.get("RANK", "0"))
        local_rank = int(os.environ.get("LOCAL_RANK", "0"))
    except ValueError:
        raise ConfigError("RANK, WORLD_SIZE and LOCAL_RANK must be integers") from None
    if world_size <= 1:
        return None
    return Group(rank=rank, world_size=world_size, local_rank=local_rank)


def device_for(group: Group, device: str) -> str:
    """One CUDA device per local rank when CUDA is asked for or available; else the CPU."""
    if device == "cpu":
        return "cpu"
    import torch

    if torch.cuda.is_available():
        return f"cuda:{group.local_rank % torch.cuda.device_count()}"
    if device == "cuda" or device.startswith("cuda:"):
        raise ConfigError("--device cuda was asked for, but PyTorch sees no CUDA GPU; use cpu")
    return "cpu"


def backend_for(device: str) -> str:
    """NCCL between GPUs, gloo between CPU processes."""
    return "nccl" if device.startswith("cuda") else "gloo"


def start(group: Group, device: str) -> None:
    """Join the process group (a no-op if this process has joined already)."""
    import torch
    import torch.distributed as dist

    if dist.is_initialized():
        return
    if device.startswith("cuda"):
        torch.cuda.set_device(torch.device(device))
    dist.init_process_group(backend_for(device), rank=group.rank, world_size=group.world_size)


def _joined() -> Any:
    """``torch.distributed`` when this process has joined a process group, else None (a process
    that never imported torch has joined none)."""
    dist = sys.modules.get("torch.distributed")
    return dist if dist is not None and dist.is_initialized() else None


def stop() -> None:
    """Leave the process group, if this process joined one."""
    if dist := _joined():
        dist.destroy_process_group()


def barrier() -> None:
    """Wait until every process of the group gets here (no-op without a group)."""
    if dist := _joined():
        dist.barrier()


def gather_rows(values: Any, group: Group, batch: int) -> Any:
    """The rows of the whole global batch (batch, …) from ``values``, this rank's share
    (``group.rows(batch)``, …) of a tensor, in rank order. Shares may differ by a row, so each
    is padded to the largest for the all-gather; its backward hands each rank the gradients of
    its own rows, summed over the ranks that used them."""
    import torch
    from torch.distributed.nn.functional import all_gather

    sizes = [len(range(batch)[replace(group, rank=r).rows(batch)]) for r in range(group.world_size)]
    padded = torch.nn.functional.pad(values, (0, 0, 0, max(sizes) - len(values)))
    parts = all_gather(padded)
    return torch.cat([part[:size] for part, size in zip(parts, sizes, strict=True)])
