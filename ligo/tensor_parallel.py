"""Tensor parallelism of a model's layers, by the family table (Megatron-style: column-split
projections feed row-split ones, one all-reduce per pair in each direction).

nn.Linear layers (BERT, RoBERTa) use DTensor's `parallelize_module`; transformers' Conv1D
layers (GPT-2: weights stored [in, out], q|k|v fused in one) are split by `_Conv1DParallel`.
Used by ligo.parallel on the "tp" axis of the device mesh.
"""
from __future__ import annotations

import functools

import torch

from ligo.families import Family


def layers_of(model: torch.nn.Module, family: Family) -> torch.nn.ModuleList:
    return model.get_submodule(family.layers_path)


def apply_tensor_parallel(model: torch.nn.Module, family: Family, mesh) -> torch.nn.Module:
    """Shard every layer's projections over a 1-D `mesh` by the family table's plan:
    nn.Linear layers (BERT, RoBERTa) with DTensor `parallelize_module`; GPT-2's Conv1D
    layers (weights stored [in, out], q|k|v fused) with `_Conv1DParallel`. Attention heads
    must divide by the mesh size."""
    from torch.distributed.tensor.parallel import ColwiseParallel, RowwiseParallel, parallelize_module

    if family.tp_plan is None:
        raise ValueError(f"tensor parallelism is not available for {family.name} yet")
    size = mesh.size()
    if model.config.num_attention_heads % size:
        raise ValueError(f"{model.config.num_attention_heads} attention heads do not divide over "
                         f"{size} tensor-parallel ranks")
    kv_heads = getattr(model.config, "num_key_value_heads", None)
    if kv_heads is not None and kv_heads % size:
        raise ValueError(f"{kv_heads} key/value heads do not divide over {size} tensor-parallel "
                         "ranks (each rank keeps whole query groups)")
    styles = {"colwise": ColwiseParallel, "rowwise": RowwiseParallel}
    for layer in layers_of(model, family):
        plan = {}
        for path, kind in family.tp_plan.items():
            if isinstance(layer.get_submodule(path), torch.nn.Linear):
                plan[path] = styles[kind]()
            else:
                _Conv1DParallel(kind, family.tp_fused.get(path, 1)).apply(layer.get_submodule(path), mesh)
        parallelize_module(layer, mesh, plan)
        for path in family.tp_divide:
            owner, _, name = path.rpartition(".")
            module = layer.get_submodule(owner)
            setattr(module, name, getattr(module, name) // size)
    return model


class _CopyToParallel(torch.autograd.Function):
    """Identity forward; the gradient, partial on each rank, is summed in backward."""

    @staticmethod
    def forward(ctx, x, group):
        ctx.group = group
        return x.view_as(x)

    @staticmethod
    def backward(ctx, grad):
        grad = grad.contiguous()
        torch.distributed.all_reduce(grad, group=ctx.group)
        return grad, None


class _ReduceFromParallel(torch.autograd.Function):
    """Sum of the ranks' partial outputs; every rank holds the same result, so its gradient
    passes through unchanged."""

    @staticmethod
    def forward(ctx, x, group):
        x = x.contiguous()
        torch.distributed.all_reduce(x, group=group)
        return x

    @staticmethod
    def backward(ctx, grad):
        return grad, None


def _column_forward(module, group, fused, x):
    shape = (*x.shape[:-1], -1)
    x = _CopyToParallel.apply(x, group)
    bias = module.bias.to_local()
    if fused > 1:  # a whole (replicated) bias: this rank's slice of every block
        size, rank = torch.distributed.get_world_size(group), torch.distributed.get_rank(group)
        blocks = _CopyToParallel.apply(bias, group).view(fused, size, -1)
        bias = blocks[:, rank].reshape(-1)
    return torch.addmm(bias, x.reshape(-1, x.shape[-1]), module.weight.to_local()).view(shape)


def _row_forward(module, group, x):
    shape = (*x.shape[:-1], -1)
    partial = torch.mm(x.reshape(-1, x.shape[-1]), module.weight.to_local())
    return (_ReduceFromParallel.apply(partial, group) + module.bias.to_local()).view(shape)


class _Conv1DParallel:
    """Megatron-style tensor parallelism for transformers' Conv1D (y = x W + b, W [in, out]).
    The parameters become DTensors (so FSDP, state dicts and the optimizer see the sharding),
    and the forward runs on the local shards. DTensor's own operators cannot do this for a
    fused q|k|v weight: its layout is `_StridedShard` (rank r holds q_r|k_r|v_r), which the
    matmul sharding rules do not follow."""

    def __init__(self, kind: str, fused: int = 1):
        self.kind, self.fused = kind, fused

    def apply(self, module, mesh):
        from torch.distributed.tensor import Replicate, Shard, distribute_tensor
        from torch.distributed.tensor.placement_types import _StridedShard

        def shard(dim):
            return _StridedShard(dim, split_factor=self.fused) if self.fused > 1 else Shard(dim)

        # a fused bias stays whole: sharded by TP and then by FSDP on the same dimension it
        # would be strided twice, which DTensor does not gather back in order
        weight, bias = ((shard(1), Replicate() if self.fused > 1 else Shard(0))
                        if self.kind == "colwise" else (Shard(0), Replicate()))
        for name, placement in (("weight", weight), ("bias", bias)):
            tensor = distribute_tensor(getattr(module, name).data, mesh, [placement])
            module.register_parameter(name, torch.nn.Parameter(tensor))
        if self.kind == "colwise":
            module.forward = functools.partial(_column_forward, module, mesh.get_group(), self.fused)
        else:
            module.forward = functools.partial(_row_forward, module, mesh.get_group())
        return module
