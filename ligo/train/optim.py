"""AdamW with weight-decay groups, and learning-rate schedules with linear warmup."""
from __future__ import annotations

import math

import torch


def named_param_groups(model: torch.nn.Module) -> tuple[list[str], list[str]]:
    """Names of the parameters with and without weight decay, in optimizer order.

    Biases and LayerNorm weights (every tensor with fewer than 2 dims) get no decay. The
    order is what an optimizer's state_dict indexes by, so it also maps that state to names.
    """
    decay, no_decay = [], []
    for name, param in model.named_parameters():
        if param.requires_grad:
            (decay if param.ndim >= 2 else no_decay).append(name)
    return decay, no_decay


def param_groups(model: torch.nn.Module, weight_decay: float) -> list[dict]:
    params = dict(model.named_parameters())
    decay, no_decay = named_param_groups(model)
    return [{"params": [params[n] for n in decay], "weight_decay": weight_decay},
            {"params": [params[n] for n in no_decay], "weight_decay": 0.0}]


def named_adam_state(model: torch.nn.Module, state_dict: dict) -> dict[str, dict]:
    """{parameter name: {"step", "exp_avg", "exp_avg_sq"}} from an AdamW state_dict."""
    decay, no_decay = named_param_groups(model)
    return {name: state_dict["state"][index]
            for index, name in enumerate(decay + no_decay) if index in state_dict["state"]}


def adam_state_from_names(model: torch.nn.Module, named: dict[str, dict], template: dict) -> dict:
    """An AdamW state_dict for `model` (param_groups copied from `template`, an existing
    state_dict of an optimizer over `model`) holding the per-name `named` state."""
    decay, no_decay = named_param_groups(model)
    return {"state": {index: named[name] for index, name in enumerate(decay + no_decay)
                      if name in named},
            "param_groups": template["param_groups"]}


def build_optimizer(model: torch.nn.Module, lr: float, weight_decay: float,
                    betas: tuple[float, float], eps: float) -> torch.optim.AdamW:
    groups = param_groups(model, weight_decay)
    meshes = {getattr(p, "device_mesh", None) for g in groups for p in g["params"]}
    if len(meshes) > 1:
        # tensor parallelism leaves plain tensors beside DTensors (or DTensors on two meshes
        # under FSDP): the fused and foreach kernels take one kind per call, so update one
        # parameter at a time
        return torch.optim.AdamW(groups, lr=lr, betas=betas, eps=eps, foreach=False)
    # the fused kernel (CPU and CUDA) does the whole update in one pass over memory
    try:
        return torch.optim.AdamW(groups, lr=lr, betas=betas, eps=eps, fused=True)
    except (RuntimeError, TypeError):
        return torch.optim.AdamW(groups, lr=lr, betas=betas, eps=eps, foreach=True)


def lr_multiplier(step: int, kind: str, warmup: int, total: int, end_ratio: float = 0.0,
                  power: float = 1.0) -> float:
    """Factor applied to the peak LR at `step` (0-based count of finished optimizer steps)."""
    if step < warmup:
        return (step + 1) / warmup
    if kind == "constant":
        return 1.0
    progress = min(1.0, (step - warmup) / max(1, total - warmup))
    if kind == "linear":
        return 1.0 - progress
    if kind == "cosine":
        return 0.5 * (1.0 + math.cos(math.pi * progress))
    if kind == "poly":
        return end_ratio + (1.0 - end_ratio) * (1.0 - progress) ** power
    raise ValueError(f"unknown learning-rate schedule {kind!r}")


def build_scheduler(optimizer: torch.optim.Optimizer, kind: str, warmup: int, total: int,
                    lr_end: float = 0.0, power: float = 1.0) -> torch.optim.lr_scheduler.LambdaLR:
    peak = optimizer.param_groups[0]["lr"]
    end_ratio = lr_end / peak if peak else 0.0
    return torch.optim.lr_scheduler.LambdaLR(
        optimizer, lambda step: lr_multiplier(step, kind, warmup, total, end_ratio, power))
