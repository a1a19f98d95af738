"""How a model is spread over processes: the one place that chooses DDP or FSDP2.

    ddp   every rank holds the whole model; gradients are averaged (DistributedDataParallel)
    fsdp  parameters, gradients and AdamW state are sharded over the ranks with FSDP2
          (`torch.distributed.fsdp.fully_shard`, each transformer layer, then the root), with
          bf16 parameters and float32 gradient reduction under --bf16

and, with --tp_size T > 1, tensor parallelism first (ligo.tensor_parallel): the ranks form
a 2-D (dp, tp) mesh, each layer's projections are split over the T ranks of a "tp" row and
FSDP shards over the "dp" column.

Checkpoint states work whatever the parallelism: full (unsharded) model and optimizer state,
gathered with torch.distributed.checkpoint's state-dict API, the optimizer state indexed like
a plain AdamW's; or each rank's shards keyed by name, for DCP's own files. Either resumes
with another world size or another parallelism.
"""
from __future__ import annotations

import contextlib
import dataclasses

import torch

from ligo.distributed import DistInfo, wrap_data_parallel
from ligo.families import Family
from ligo.tensor_parallel import apply_tensor_parallel, layers_of
from ligo.train.optim import adam_state_from_names, named_adam_state, named_param_groups

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


def full_state(model: torch.nn.Module, optimizer: torch.optim.Optimizer,
               every_rank: bool = False) -> tuple[dict, dict]:
    """(model state dict, AdamW state dict) unsharded, in the plain format (collective
    under FSDP: every rank calls it). Gathered into CPU memory on rank 0 only (for a
    checkpoint), or with `every_rank` on every rank, on its device (to grow it there)."""
    if not is_sharded(model):
        return model.state_dict(), optimizer.state_dict()
    from torch.distributed.checkpoint.state_dict import StateDictOptions, get_state_dict

    if not optimizer.state:
        # a fresh optimizer (right after a growth event that resets AdamW): get_state_dict
        # would create its state by a zero-gradient step, which counts as Adam's first step
        return full_model_state(model, every_rank), optimizer.state_dict()
    model_state, optim_state = get_state_dict(
        model, optimizer,
        options=StateDictOptions(full_state_dict=True, cpu_offload=not every_rank))
    if "state" not in optim_state:  # gathered on rank 0 only (cpu_offload): others save nothing
        return model_state, {}
    return model_state, adam_state_from_names(model, optim_state["state"], optimizer.state_dict())


def full_model_state(model: torch.nn.Module, every_rank: bool = False) -> dict:
    """The unsharded model state dict (collective under FSDP), in CPU memory on rank 0 only,
    or with `every_rank` on every rank."""
    if not is_sharded(model):
        return model.state_dict()
    from torch.distributed.checkpoint.state_dict import StateDictOptions, get_model_state_dict

    return get_model_state_dict(model, options=StateDictOptions(full_state_dict=True,
                                                                cpu_offload=not every_rank))


@contextlib.contextmanager
def _own_kernels(optimizer: torch.optim.Optimizer):
    """Loading a state dict overwrites each group's settings; keep the optimizer's own kernel
    choice (a state saved by a fused AdamW loads into a per-parameter one, as tensor
    parallelism needs, and back)."""
    kernels = [{k: group[k] for k in ("fused", "foreach") if k in group}
               for group in optimizer.param_groups]
    yield
    for group, kernel in zip(optimizer.param_groups, kernels, strict=True):
        group.update(kernel)


def load_full_state(model: torch.nn.Module, optimizer: torch.optim.Optimizer,
                    model_state: dict | None, optim_state: dict) -> None:
    """The inverse of `full_state`, for any parallelism and world size (model_state None:
    the optimizer only)."""
    with _own_kernels(optimizer):
        _load_full_state(model, optimizer, model_state, optim_state)


def sharded_state(model: torch.nn.Module, optimizer: torch.optim.Optimizer) -> dict:
    """This rank's shards of the model and AdamW state, keyed by parameter name, for
    `torch.distributed.checkpoint.save` (collective under FSDP / TP). A fresh optimizer is
    left out: DCP would create its state by a zero-gradient step."""
    from torch.distributed.checkpoint.state_dict import get_model_state_dict, get_state_dict

    if not optimizer.state:
        return {"model": get_model_state_dict(model)}
    model_state, optim_state = get_state_dict(model, optimizer)
    return {"model": model_state, "optimizer": optim_state}


def load_sharded_state(model: torch.nn.Module, optimizer: torch.optim.Optimizer, path,
                       with_optimizer: bool) -> None:
    """Read a `sharded_state` written by any world size and parallelism into this rank's
    shards (DCP reads the pieces each rank needs)."""
    import torch.distributed.checkpoint as dcp
    from torch.distributed.checkpoint.state_dict import (
        get_model_state_dict,
        get_state_dict,
        set_model_state_dict,
        set_state_dict,
    )

    from ligo.train.checkpoint import safe_load_planner, safe_shard_reader, shard_errors_named

    with _own_kernels(optimizer), shard_errors_named(path):
        if not with_optimizer:
            state = {"model": get_model_state_dict(model)}
            dcp.load(state, storage_reader=safe_shard_reader(path), planner=safe_load_planner())
            set_model_state_dict(model, state["model"])
            return
        model_state, optim_state = get_state_dict(model, optimizer)  # templates to read into
        state = {"model": model_state, "optimizer": optim_state}
        dcp.load(state, storage_reader=safe_shard_reader(path), planner=safe_load_planner())
        set_state_dict(model, optimizer, model_state_dict=state["model"],
                       optim_state_dict=state["optimizer"])


def indexed_optimizer_state(model: torch.nn.Module, by_name: dict) -> dict:
    """An AdamW state keyed by parameter name (DCP's layout) in the plain layout, indexed in
    `named_param_groups` order."""
    decay, no_decay = named_param_groups(model)
    index = {name: i for i, name in enumerate(decay + no_decay)}
    groups = [{**group, "params": [index[n] for n in group["params"]]}
              for group in by_name["param_groups"]]
    return adam_state_from_names(model, by_name["state"], {"param_groups": groups})


def _load_full_state(model, optimizer, model_state, optim_state) -> None:
    if not is_sharded(model):
        if model_state is not None:
            model.load_state_dict(model_state)
        optimizer.load_state_dict(optim_state)
        return
    from torch.distributed.checkpoint.state_dict import (
        StateDictOptions,
        set_model_state_dict,
        set_optimizer_state_dict,
        set_state_dict,
    )

    if not optim_state["state"]:  # saved fresh: loading it through DCP would create state
        if model_state is not None:
            set_model_state_dict(model, model_state, options=StateDictOptions(full_state_dict=True))
        optimizer.load_state_dict(optim_state)
        return

    decay, no_decay = named_param_groups(model)
    names = decay + no_decay
    by_name = {"state": named_adam_state(model, optim_state),
               "param_groups": [{**group, "params": [names[i] for i in group["params"]]}
                                for group in optim_state["param_groups"]]}
    options = StateDictOptions(full_state_dict=True)
    if model_state is None:
        set_optimizer_state_dict(model, optimizer, by_name, options=options)
    else:
        set_state_dict(model, optimizer, model_state_dict=model_state, optim_state_dict=by_name,
                       options=options)
