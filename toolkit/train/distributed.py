"""Process-group setup for ``torchrun`` (env RANK, WORLD_SIZE, LOCAL_RANK) and helpers.

One process without those variables; NCCL when the ranks drive GPUs, gloo on CPU. A process
that torchrun started joins its process group even when it is the only rank, so that
``torchrun --nproc_per_node 1`` trains through DDP and NCCL (or gloo) like a larger job.
"""
from __future__ import annotations

import os
from dataclasses import dataclass

import torch
import torch.distributed as dist


@dataclass(frozen=True)
class DistInfo:
    rank: int
    world_size: int
    local_rank: int
    device: torch.device

    @property
    def is_main(self) -> bool:
        return self.rank == 0


def launched_by_torchrun() -> bool:
    """torchrun (or any env:// launcher) set the rendezvous variables for this process."""
    return all(k in os.environ for k in ("RANK", "WORLD_SIZE", "MASTER_ADDR", "MASTER_PORT"))


def in_process_group() -> bool:
    return dist.is_available() and dist.is_initialized()


def init_distributed(ngpu: int) -> DistInfo:
    """Join the torchrun process group if there is one; pick this rank's device."""
    world = int(os.environ.get("WORLD_SIZE", "1"))
    rank = int(os.environ.get("RANK", "0"))
    local = int(os.environ.get("LOCAL_RANK", "0"))
    use_cuda = ngpu > 0
    if use_cuda and not torch.cuda.is_available():
        raise RuntimeError(f"--ngpu {ngpu} but no CUDA device is visible; use --ngpu 0 for CPU")
    device = torch.device("cuda", local) if use_cuda else torch.device("cpu")
    if use_cuda:
        torch.cuda.set_device(device)
    if (world > 1 or launched_by_torchrun()) and not dist.is_initialized():
        dist.init_process_group(backend="nccl" if use_cuda else "gloo")
    return DistInfo(rank, world, local, device)


def all_reduce_sum(values: list[float], device: torch.device) -> list[float]:
    """Sum plain numbers over ranks (identity in a single process)."""
    if not in_process_group():
        return list(values)
    t = torch.tensor(values, dtype=torch.float64, device=device)
    dist.all_reduce(t)
    return t.tolist()


def gather_objects(obj) -> list:
    """Every rank's ``obj`` in rank order (``[obj]`` in a single process)."""
    if not in_process_group():
        return [obj]
    out = [None] * dist.get_world_size()
    dist.all_gather_object(out, obj)
    return out


def barrier() -> None:
    if in_process_group():
        dist.barrier()


def cleanup() -> None:
    if in_process_group():
        dist.destroy_process_group()
