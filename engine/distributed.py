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


def wrap(model: torch.nn.Module, world: World, device: torch.device, sync_bn: bool,
         ) -> tuple[torch.nn.Module, torch.nn.Module]:
    """(the model whose weights are saved, the module training steps call). SyncBatchNorm keeps
    the same parameters; DistributedDataParallel wraps them. One process: the model twice."""
    if world.active and sync_bn:
        model = torch.nn.SyncBatchNorm.convert_sync_batchnorm(model)
    if not world.active:
        return model, model
    ids = [device.index] if device.type == "cuda" else None
    return model, torch.nn.parallel.DistributedDataParallel(model, device_ids=ids)


def sum_all(world: World, *values: torch.Tensor) -> list[torch.Tensor]:
    """Sum tensors across processes (loss sums, correct counts, image counts)."""
    if not world.active:
        return list(values)
    packed = torch.stack([v.detach().double() for v in values])
    dist.all_reduce(packed)
    return list(packed.unbind())


def any_rank(world: World, flag: bool, device: torch.device) -> bool:
    """True on every process when it is true on any (a stop request, say), so all act alike."""
    if not world.active:
        return flag
    value = torch.tensor([1.0 if flag else 0.0], device=device)  # NCCL reduces device tensors only
    dist.all_reduce(value, op=dist.ReduceOp.MAX)
    return bool(value.item())


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
