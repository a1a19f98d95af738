"""Depth growth: a list of L1 source layers -> L2 >= L1 target layers (roles, any family).

    stack        StackBERT / progressive stacking (Gong et al. 2019): target layer j copies
                 source layer j mod L1, so layers i and i + L1 share source layer i.
    interpolate  each source layer repeated in place (0, 0, 1, 1, ...): layer j copies
                 source layer floor(j * L1 / L2) (Chang et al. 2018 "interpolation").
    insert       progressive layer insertion: new layers at the given target indices, the
                 source layers keep their order around them; a new layer is a copy of its
                 neighbour below (above, at index 0), a fresh random layer, or a copy plus
                 Gaussian noise.
    identity     new layers (placed as `insert`) whose attention-out and FFN-out weights and
                 biases are zero. Exact identity for pre-LN GPT-2 (x + 0 + 0 = x). For post-LN
                 BERT/RoBERTa a zero sublayer still passes through LayerNorm: the layer then
                 computes LN(x), which equals x only if the layer below ended in a LayerNorm
                 with weight 1 and bias 0; the new layer copies the LayerNorms of its
                 neighbour, so it is close to, not exactly, the identity.

Every copied tensor is cloned: layers of the result never share storage.
"""
from __future__ import annotations

import torch

from ligo.families import Family

Layer = dict[str, torch.Tensor]


def _copy(layer: Layer) -> Layer:
    return {role: tensor.clone() for role, tensor in layer.items()}


def stack(layers: list[Layer], num_layers: int, **_) -> list[Layer]:
    return [_copy(layers[j % len(layers)]) for j in range(num_layers)]


def interpolate(layers: list[Layer], num_layers: int, **_) -> list[Layer]:
    return [_copy(layers[j * len(layers) // num_layers]) for j in range(num_layers)]


def _new_positions(source: int, target: int, positions: list[int] | None) -> list[int]:
    count = target - source
    positions = list(range(source, target)) if positions is None else sorted(positions)
    if len(positions) != count:
        raise ValueError(f"growing {source} -> {target} layers inserts {count} layers, but "
                         f"{len(positions)} positions were given ({positions})")
    if len(set(positions)) != count or any(not 0 <= p < target for p in positions):
        raise ValueError(f"insertion positions must be distinct target indices in [0, {target}): "
                         f"{positions}")
    return positions


def insert(layers: list[Layer], num_layers: int, positions: list[int] | None = None,
           init: str = "copy", noise_std: float = 0.0, fresh: list[Layer] | None = None,
           generator: torch.Generator | None = None, **_) -> list[Layer]:
    """New layers at `positions` (target indices; default: on top)."""
    new = set(_new_positions(len(layers), num_layers, positions))
    if init not in ("copy", "random", "copy_noise"):
        raise ValueError(f"layer insertion init must be copy, random or copy_noise, not {init!r}")
    source = iter(layers)
    result: list[Layer | None] = [None if j in new else _copy(next(source)) for j in range(num_layers)]
    for j in sorted(new):  # in order, so a run of new layers copies the one below it
        if init == "random":
            result[j] = _copy(fresh[j])
            continue
        below = next((result[i] for i in range(j - 1, -1, -1) if result[i] is not None), None)
        neighbour = below if below is not None else next(r for r in result[j + 1:] if r is not None)
        result[j] = _copy(neighbour)
        if init == "copy_noise":
            for tensor in result[j].values():
                tensor.add_(torch.randn(tensor.shape, generator=generator, dtype=tensor.dtype)
                            * noise_std)
    return result


def identity(layers: list[Layer], num_layers: int, positions: list[int] | None = None,
             family: Family | None = None, **_) -> list[Layer]:
    result = insert(layers, num_layers, positions, init="copy")
    for j in _new_positions(len(layers), num_layers, positions):
        for role in ("attn_out.weight", "attn_out.bias", "ffn_out.weight", "ffn_out.bias"):
            if role in result[j]:  # LLaMA has no biases
                result[j][role].zero_()
    return result


def msg(layers: list[Layer], num_layers: int, **_) -> list[Layer]:
    """MSG's depth growth (Yao et al. 2024): stacked copies, which MSG's layer masks
    (ligo.train.msg) fade in from the identity; without the masks this is `stack`."""
    return stack(layers, num_layers)


DEPTH_OPERATORS = {"stack": stack, "interpolate": interpolate, "insert": insert, "identity": identity,
                   "msg": msg}
