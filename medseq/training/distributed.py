"""DistributedDataParallel set-up from the environment ``torchrun`` provides.

Without ``WORLD_SIZE`` > 1 everything runs in one process and these helpers do nothing.
gloo on CPU, NCCL on CUDA.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Any

import torch
import torch.distributed as dist


@dataclass(frozen=True)
class DistInfo:
    """Where this process sits in the job."""

    rank: int = 0
    world: int = 1
    local_rank: int = 0

    @property
    def enabled(self) -> bool:
        """Several processes train together."""
        return self.world > 1

    @property
    def is_main(self) -> bool:
        """Rank 0 writes files and shows progress."""
        return self.rank == 0


def init_from_env(device_type: str) -> DistInfo:
    """Join the process group ``torchrun`` describes (or run alone)."""
    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world <= 1:
        return DistInfo()
    info = DistInfo(
        rank=int(os.environ.get("RANK", "0")), world=world,
        local_rank=int(os.environ.get("LOCAL_RANK", "0")),
    )
    if not dist.is_initialized():
        backend = "nccl" if device_type == "cuda" else "gloo"
        if device_type == "cuda":
            torch.cuda.set_device(info.local_rank)
        dist.init_process_group(backend=backend)
    return info


def shutdown(info: DistInfo) -> None:
    """Leave the process group."""
    if info.enabled and dist.is_initialized():
        dist.destroy_process_group()


def barrier(info: DistInfo) -> None:
    """Wait for every rank."""
    if info.enabled:
        dist.barrier()


def mean_across(info: DistInfo, value: float, weight: float, device: torch.device) -> float:
    """The ``weight``-weighted mean of ``value`` over ranks."""
    if not info.enabled:
        return value
    pair = torch.tensor([value * weight, weight], dtype=torch.float64, device=device)
    dist.all_reduce(pair)
    return float(pair[0] / pair[1].clamp_min(1e-12))


def broadcast(info: DistInfo, obj: Any) -> Any:
    """Rank 0's ``obj`` on every rank."""
    if not info.enabled:
        return obj
    box = [obj]
    dist.broadcast_object_list(box, src=0)
    return box[0]
