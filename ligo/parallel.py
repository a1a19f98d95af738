"""How a model is spread over processes: the one place that chooses DDP or FSDP2.

    ddp   every rank holds the whole model; gradients are averaged (DistributedDataParallel)
    fsdp  parameters, gradients and AdamW state are sharded over the ranks with FSDP2
          (`torch.distributed.fsdp.fully_shard`, each transformer layer, then the root), with
          bf16 parameters and float32 gradient reduction under --bf16

and, with --tp_size T > 1, tensor parallelism first (ligo.tensor_parallel): the ranks form
a 2-D (dp, tp) mesh, each layer's projections are split over the T ranks of a "tp" row and
FSDP shards over the "dp" column.

Gathering and loading the model and optimizer state whatever the parallelism is the
checkpoint component's job (ligo.train.checkpoint).
"""
from __future__ import annotations

import contextlib
import dataclasses

import torch

from ligo.distributed import DistInfo, wrap_data_parallel
from ligo.families import Family
from ligo.tensor_parallel import apply_tensor_parallel, layers_of

PARALLELISMS = ("ddp", "fsdp")


def with_tensor_parallel(info: DistInfo, tp_size: int) -> DistInfo:
    """`info` with its (dp, tp) device mesh: consecutive ranks share a tensor-parallel group,
    so on GPUs a group stays inside one node."""
    if tp_size < 1 or info.world_size % tp_size:
        raise ValueError(f"--tp_size {tp_size} must divide the number of processes "
                         f"({info.world_size})")
    if tp_size == 1:
        return info
    from torch.distributed.device_mesh import init_device_mesh

    mesh = init_device_mesh(info.device.type, (info.world_size // tp_size, tp_size),
                            mesh_dim_names=("dp", "tp"))
    return dataclasses.replace(info, tp_size=tp_size, mesh=mesh, dp_group=mesh.get_group("dp"))


def parallelize(loss_module: torch.nn.Module, model: torch.nn.Module, family: Family,
                info: DistInfo, parallelism: str = "ddp", bf16: bool = False,
                activation_checkpointing: bool = False) -> torch.nn.Module:
    """The loss module as the training loop should call it."""
    if parallelism not in PARALLELISMS:
        raise ValueError(f"--parallelism must be one of {', '.join(PARALLELISMS)}, not {parallelism!r}")
    if activation_checkpointing:  # recompute each layer's activations in the backward pass
        model.gradient_checkpointing_enable(gradient_checkpointing_kwargs={"use_reentrant": False})
    if info.tp_size > 1:
        if parallelism == "ddp" and info.dp_size > 1:
            raise ValueError(f"--tp_size {info.tp_size} on {info.world_size} processes leaves "
                             f"{info.dp_size} data-parallel groups: combine it with "
                             "--parallelism fsdp (DDP does not take tensor-parallel parameters)")
        apply_tensor_parallel(model, family, info.mesh["tp"])
        if parallelism == "ddp":
            return loss_module
    elif parallelism == "ddp" or not info.enabled:
        return wrap_data_parallel(loss_module, info)
    from torch.distributed.device_mesh import init_device_mesh
    from torch.distributed.fsdp import MixedPrecisionPolicy, fully_shard

    mesh = info.mesh["dp"] if info.tp_size > 1 else init_device_mesh(info.device.type,
                                                                      (info.world_size,))
    policy = MixedPrecisionPolicy(param_dtype=torch.bfloat16 if bf16 else None,
                                  reduce_dtype=torch.float32)
    for layer in layers_of(model, family):
        fully_shard(layer, mesh=mesh, mp_policy=policy)
    # the root is the loss module: it calls the base model and the head separately, and the
    # root's hooks must gather the embeddings and head around both
    fully_shard(loss_module, mesh=mesh, mp_policy=policy)
    return loss_module


def clip_grad_norm_(parameters, max_norm: float) -> torch.Tensor:
    """torch.nn.utils.clip_grad_norm_ for parameters on several device meshes (with TP +
    FSDP, a layer's projections live on the 2-D mesh, embeddings and norms on the dp mesh,
    and torch's version cannot stack their norms): one norm per mesh and layout, made whole,
    then combined."""
    from torch.distributed.tensor import DTensor

    params = [p for p in parameters if p.grad is not None]
    groups: dict = {}
    for p in params:
        key = (p.grad.device_mesh, p.grad.placements) if isinstance(p.grad, DTensor) else None
        groups.setdefault(key, []).append(p.grad)
    if len(groups) <= 1:
        return torch.nn.utils.clip_grad_norm_(params, max_norm)
    norms = []
    for grads in groups.values():
        norm = torch.nn.utils.get_total_norm(grads)
        norms.append(norm.full_tensor() if isinstance(norm, DTensor) else norm)
    total = torch.linalg.vector_norm(torch.stack(norms))
    coefficient = torch.clamp(max_norm / (total + 1e-6), max=1.0)
    # scaling each rank's own shard scales the whole gradient
    torch._foreach_mul_([g.to_local() if isinstance(g, DTensor) else g
                         for grads in groups.values() for g in grads], coefficient)
    return total


def is_sharded(model: torch.nn.Module) -> bool:
    from torch.distributed.tensor import DTensor

    return any(isinstance(p, DTensor) for p in model.parameters())


def no_sync(loss_module: torch.nn.Module, model: torch.nn.Module, sync: bool):
    """Skip the gradient reduction of a micro-batch that is not the last one."""
    from torch.distributed.fsdp import FSDPModule

    if sync:
        return contextlib.nullcontext()
    if isinstance(loss_module, FSDPModule):
        return _fsdp_no_sync(loss_module)
    return loss_module.no_sync() if hasattr(loss_module, "no_sync") else contextlib.nullcontext()


@contextlib.contextmanager
def _fsdp_no_sync(model):
    model.set_requires_gradient_sync(False)
    try:
        yield
    finally:
        model.set_requires_gradient_sync(True)
