"""Process-group set-up and the one place where a module is wrapped for data parallelism.

Launch with `torchrun`; without it everything runs as a single process. The backend is
nccl when each process has a GPU, gloo otherwise. Nothing outside this file reads ranks
from the environment.
"""
from __future__ import annotations

import datetime
import os
from dataclasses import dataclass

import torch
import torch.distributed as dist


@dataclass(frozen=True)
class DistInfo:
    rank: int = 0
    world_size: int = 1
    local_rank: int = 0
    device: torch.device = torch.device("cpu")
    # tensor parallelism (ligo.parallel.with_tensor_parallel): consecutive ranks form a
    # tensor-parallel group and see the same data; the data-parallel ranks are the groups
    tp_size: int = 1
    mesh: object = None  # the (dp, tp) DeviceMesh when tp_size > 1
    dp_group: object = None  # process group over which data statistics are summed

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    @property
    def enabled(self) -> bool:
        return self.world_size > 1

    @property
    def dp_rank(self) -> int:
        return self.rank // self.tp_size

    @property
    def dp_size(self) -> int:
        return self.world_size // self.tp_size


def launched_world_size() -> int:
    """How many processes torchrun started (1 without torchrun)."""
    return int(os.environ.get("WORLD_SIZE", "1"))


def init_distributed(timeout_minutes: float = 30.0) -> DistInfo:
    """Join torchrun's process group. `timeout_minutes`: how long a collective waits for a
    rank that stopped answering before the run fails (instead of hanging)."""
    world_size = launched_world_size()
    local_rank = int(os.environ.get("LOCAL_RANK", "0"))
    use_cuda = torch.cuda.is_available()
    gpus = torch.cuda.device_count() if use_cuda else 0
    if use_cuda and local_rank >= gpus:
        raise ValueError(f"torchrun started {os.environ.get('LOCAL_WORLD_SIZE', local_rank + 1)} processes "
                         f"on this node but it has {gpus} GPU(s): use --nproc_per_node {gpus}, or "
                         "CUDA_VISIBLE_DEVICES= to run them all on the CPU (gloo)")
    device = torch.device("cuda", local_rank) if use_cuda else torch.device("cpu")
    if use_cuda:
        torch.cuda.set_device(device)
    if world_size == 1:
        return DistInfo(device=device)
    if not dist.is_initialized():
        dist.init_process_group(backend="nccl" if use_cuda else "gloo",
                                timeout=datetime.timedelta(minutes=timeout_minutes))
    return DistInfo(rank=dist.get_rank(), world_size=dist.get_world_size(),
                    local_rank=local_rank, device=device)


def wrap_data_parallel(module: torch.nn.Module, info: DistInfo) -> torch.nn.Module:
    if not info.enabled:
        return module
    from torch.nn.parallel import DistributedDataParallel

    device_ids = [info.local_rank] if info.device.type == "cuda" else None
    # buffers here are constants (position ids; a LiGO operator's frozen small weights): DDP
    # syncs them once at construction, re-broadcasting them before every forward is waste
    return DistributedDataParallel(module, device_ids=device_ids, broadcast_buffers=False)


def all_reduce_sum(tensor: torch.Tensor, info: DistInfo) -> torch.Tensor:
    """Sum over the data-parallel ranks (each tensor-parallel group counts once)."""
    if info.enabled:
        dist.all_reduce(tensor, op=dist.ReduceOp.SUM, group=info.dp_group)
    return tensor


def all_reduce_gradients(module: torch.nn.Module, info: DistInfo) -> None:
    """Sum every trainable parameter's gradient over the processes, in one flat buffer. For
    loops that already scale each process's loss by the global batch (no averaging wanted)
    and where a process may have no rows at all, which DDP does not allow; a missing
    gradient counts as zero."""
    if not info.enabled:
        return
    params = [p for p in module.parameters() if p.requires_grad]
    grads = [torch.zeros_like(p) if p.grad is None else p.grad for p in params]
    flat = torch.cat([g.reshape(-1) for g in grads])
    dist.all_reduce(flat, op=dist.ReduceOp.SUM)
    for param, piece in zip(params, flat.split([g.numel() for g in grads]), strict=True):
        param.grad = piece.view_as(param)


def all_gather_objects(value, info: DistInfo) -> list:
    """Every process's `value`, in rank order."""
    if not info.enabled:
        return [value]
    gathered = [None] * info.world_size
    dist.all_gather_object(gathered, value)
    return gathered


def broadcast_object(value, info: DistInfo):
    """Rank 0's value on every rank."""
    if not info.enabled:
        return value
    holder = [value]
    dist.broadcast_object_list(holder, src=0)
    return holder[0]


def barrier(info: DistInfo) -> None:
    if info.enabled:
        dist.barrier()


def shutdown(info: DistInfo) -> None:
    if info.enabled and dist.is_initialized():
        dist.destroy_process_group()
