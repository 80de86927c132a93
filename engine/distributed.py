"""torchrun support: one process per device, DistributedDataParallel, rank 0 writes the run.

Without torchrun (WORLD_SIZE unset) every helper here is a no-op for a single process."""

from __future__ import annotations

import os
from dataclasses import dataclass

import numpy as np
import torch
import torch.distributed as dist


@dataclass
class World:
    rank: int = 0
    local_rank: int = 0
    size: int = 1

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    @property
    def active(self) -> bool:
        return self.size > 1


def world_from_env() -> World:
    return World(int(os.environ.get("RANK", 0)), int(os.environ.get("LOCAL_RANK", 0)),
                 int(os.environ.get("WORLD_SIZE", 1)))


def check_world(world: World, device_type: str) -> None:
    """More processes than devices cannot work; say so before any process group starts."""
    if device_type == "cuda" and world.active:
        per_node = int(os.environ.get("LOCAL_WORLD_SIZE", world.size))
        if per_node > torch.cuda.device_count():
            raise ValueError(f"{per_node} processes per node but only {torch.cuda.device_count()} CUDA "
                             "device(s); lower --nproc_per_node")


def init(world: World, device_type: str) -> None:
    if world.active and not dist.is_initialized():
        dist.init_process_group("nccl" if device_type == "cuda" else "gloo")


def shutdown(world: World) -> None:
    if world.active and dist.is_initialized():
        dist.destroy_process_group()


def sum_all(world: World, *values: torch.Tensor) -> list[torch.Tensor]:
    """Sum tensors across processes (loss sums, correct counts, image counts)."""
    if not world.active:
        return list(values)
    packed = torch.stack([v.detach().double() for v in values])
    dist.all_reduce(packed)
    return list(packed.unbind())


def broadcast_float(world: World, value: float | None) -> float:
    if not world.active:
        return float(value)
    holder = [value]
    dist.broadcast_object_list(holder, src=0)
    return float(holder[0])


def gather_dump(world: World, dump: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    """Every rank predicted a shard of the test set; rank 0 gets the whole dump, in index order."""
    if not world.active:
        return dump
    parts: list = [None] * world.size
    dist.all_gather_object(parts, dump)
    merged = {k: np.concatenate([p[k] for p in parts]) for k in dump}
    order = np.argsort(merged["index"], kind="stable")
    return {k: v[order] for k, v in merged.items()}


def barrier(world: World) -> None:
    if world.active:
        dist.barrier()
