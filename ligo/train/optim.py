"""AdamW with weight-decay groups, and learning-rate schedules with linear warmup (one
segment, or piecewise across growth events: LRSchedule)."""
from __future__ import annotations

import math
from dataclasses import dataclass, field

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


@dataclass
class LRSchedule:
    """Global step -> LR multiplier, piecewise over segments: a segment starting at global
    step g evaluates the base schedule (warmup, then linear/cosine/... decay over `total`) at
    position `position + (t - g)`; `rewarm` re-warms linearly from 0 to the value at
    `position + rewarm` (staged training's restart). Progressive stacking starts a fresh
    segment per stage (position 0, the stage's own budget); staged training keeps the run's
    schedule but may jump to the compute-equivalent position.
    A segment's warmup is `warmup_steps` when given (0 included), else `warmup_ratio` of its
    own total."""

    kind: str
    total: int
    warmup_steps: int | None = None
    warmup_ratio: float = 0.0
    end_ratio: float = 0.0  # poly: lr_end / peak
    power: float = 1.0  # poly
    segments: list[dict] = field(default_factory=list)

    def segment_at(self, step: int) -> dict:
        segment = {"start": 0, "position": 0, "rewarm": 0, "total": self.total}
        for candidate in self.segments:
            if candidate["start"] <= step:
                segment = {"total": self.total, **candidate}
        return segment

    def warmup(self, segment: dict) -> int:
        if self.warmup_steps is not None:  # an explicit 0 means no warmup
            return self.warmup_steps
        return round(self.warmup_ratio * segment["total"])

    def warming_up(self, step: int) -> bool:
        """Inside a warmup or re-warm: the loss curve there says nothing about scaling."""
        segment = self.segment_at(step)
        warmup = self.warmup(segment)
        position = segment["position"] + step - segment["start"]
        return position < warmup or position < segment["position"] + segment["rewarm"]

    def __call__(self, step: int) -> float:
        segment = self.segment_at(step)
        warmup = self.warmup(segment)
        position = segment["position"] + step - segment["start"]

        def base(p):
            return lr_multiplier(p, self.kind, warmup, segment["total"], self.end_ratio, self.power)

        rewarm = segment["rewarm"]
        if rewarm and position < segment["position"] + rewarm:
            done = position - segment["position"] + 1
            return done / rewarm * base(segment["position"] + rewarm)
        return base(position)


def position_scheduler(optimizer, schedule: LRSchedule, step: int):
    """A LambdaLR over `optimizer` at global `step` of `schedule`: the LR of every group is
    its peak (`initial_lr`, recorded by the first scheduler over it) times schedule(step)."""
    for group in optimizer.param_groups:
        group.setdefault("initial_lr", group["lr"])  # a fresh optimizer's lr is the peak
    # a scheduler created at last_epoch step - 1 takes its first step to `step`
    return torch.optim.lr_scheduler.LambdaLR(optimizer, schedule, last_epoch=step - 1)
