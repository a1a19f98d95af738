"""State dict <-> roles, through a family's key map (ligo.families).

`Roles` holds the model-wide roles (embeddings, final/head LayerNorms, head) and one dict per
layer. Conversion is lossless both ways: `from_roles(to_roles(sd)) == sd`, tied copies
included, so an operator that leaves roles unchanged leaves the checkpoint unchanged.
"""
from __future__ import annotations

import re
from dataclasses import dataclass, field

import torch

from ligo.families import Family


@dataclass
class Roles:
    model: dict[str, torch.Tensor] = field(default_factory=dict)
    layers: list[dict[str, torch.Tensor]] = field(default_factory=list)

    @property
    def num_layers(self) -> int:
        return len(self.layers)

    def map(self, fn) -> "Roles":
        """Apply `fn(role, tensor)` to every tensor."""
        return Roles({r: fn(r, t) for r, t in self.model.items()},
                     [{r: fn(r, t) for r, t in layer.items()} for layer in self.layers])


def _layer_count(state: dict, family: Family) -> int:
    pattern = re.compile(re.escape(family.keys["q.weight"].key).replace(r"\{i\}", r"(\d+)"))
    found = {int(m.group(1)) for key in state if (m := pattern.fullmatch(key))}
    if found != set(range(len(found))):
        raise ValueError(f"layer indices in the state dict are not 0..n-1: {sorted(found)}")
    return len(found)


def _read(tensor: torch.Tensor, param) -> torch.Tensor:
    if param.transpose:
        tensor = tensor.t()
    if param.part is not None:
        index, count = param.part
        tensor = tensor.chunk(count, dim=0)[index]
    return tensor


def to_roles(state: dict[str, torch.Tensor], family: Family) -> Roles:
    layers = _layer_count(state, family)
    roles = Roles(layers=[{} for _ in range(layers)])
    for role, param in family.keys.items():
        if "{i}" in param.key:
            for i in range(layers):
                roles.layers[i][role] = _read(state[param.key.format(i=i)], param)
        elif param.key in state:  # optional roles (token types) may be absent
            roles.model[role] = _read(state[param.key], param)
    return roles


def from_roles(roles: Roles, family: Family) -> dict[str, torch.Tensor]:
    fused: dict[str, list] = {}
    state: dict[str, torch.Tensor] = {}

    def put(key: str, tensor: torch.Tensor, param) -> None:
        if param.part is None:
            state[key] = tensor.t().contiguous() if param.transpose else tensor
        else:
            fused.setdefault(key, [None] * param.part[1])[param.part[0]] = (tensor, param.transpose)

    for role, param in family.keys.items():
        if "{i}" in param.key:
            for i, layer in enumerate(roles.layers):
                put(param.key.format(i=i), layer[role], param)
        elif role in roles.model:
            put(param.key, roles.model[role], param)
    for key, parts in fused.items():
        whole = torch.cat([tensor for tensor, _ in parts], dim=0)
        state[key] = whole.t().contiguous() if parts[0][1] else whole
    for key, role in family.tied.items():
        state[key] = roles.model[role]
    return state


def expected_shapes(config, family: Family) -> dict[str, torch.Size]:
    """Keys and shapes of a model built from `config`, without allocating it."""
    with torch.device("meta"):
        model = family.build_class()(config)
    return {key: value.shape for key, value in model.state_dict().items()}


def check_state_matches_config(state: dict[str, torch.Tensor], config, family: Family,
                               what: str = "the checkpoint") -> None:
    expected = expected_shapes(config, family)
    missing = sorted(set(expected) - set(state))
    unexpected = sorted(set(state) - set(expected))
    wrong = [f"{k} is {tuple(state[k].shape)}, the config implies {tuple(expected[k])}"
             for k in expected if k in state and state[k].shape != expected[k]]
    problems = ([f"missing {', '.join(missing[:3])}"] if missing else []) + \
               ([f"unexpected {', '.join(unexpected[:3])}"] if unexpected else []) + wrong[:3]
    if problems:
        raise ValueError(f"{what} does not match its config ({family.name}, "
                         f"{config.num_hidden_layers} layers, hidden {config.hidden_size}): "
                         + "; ".join(problems))
