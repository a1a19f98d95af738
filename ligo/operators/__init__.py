"""One API for every growth operator: `grow(small, target_config, depth=..., width=...)`.

An operator is a function over roles (ligo.roles), never over family-specific keys. Width
growth is applied first, at the source depth, then depth growth. Parameters that exist only
in the target (random layers, new neurons of the `random` width scheme, extra position
embeddings) come from a target model freshly initialised with `seed`, so every random
choice is reproducible.
"""
from __future__ import annotations

from pathlib import Path

import torch

from ligo.families import family_of
from ligo.models import load_config, model_from_state, read_model_dir
from ligo.operators.depth import DEPTH_OPERATORS
from ligo.operators.width import COPYING, WIDTH_OPERATORS, check_width_growth
from ligo.roles import Roles, check_state_matches_config, from_roles, to_roles


def _fresh_roles(config, family, seed: int, dtype: torch.dtype, zeros: bool = False) -> Roles:
    """Roles of a target model initialised with `seed` (the caller's RNG state is left
    untouched), or all zeros (built on the meta device: nothing is initialised)."""
    if zeros:
        with torch.device("meta"):
            model = family.build_class()(config)
        return to_roles(model.state_dict(), family).map(
            lambda role, t: torch.zeros(t.shape, dtype=dtype))
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        model = family.build_class()(config)
    return to_roles(model.state_dict(), family).map(lambda role, t: t.to(dtype))


def check_growth(small_config, large_config) -> None:
    small, large = family_of(small_config), family_of(large_config)
    if small.name != large.name:
        raise ValueError(f"cannot grow a {small.name} model into a {large.name} config")
    if small.tied != large.tied:
        raise ValueError(f"the source's and the target's tie_word_embeddings differ "
                         f"({getattr(small_config, 'tie_word_embeddings', None)} -> "
                         f"{getattr(large_config, 'tie_word_embeddings', None)}); give the target "
                         "the source's setting")
    pairs = {"layers": (small_config.num_hidden_layers, large_config.num_hidden_layers),
             "hidden size": (small_config.hidden_size, large_config.hidden_size)}
    for name, (a, b) in pairs.items():
        if b < a:
            raise ValueError(f"the target is smaller than the source: {name} {a} -> {b}")
    if small_config.vocab_size != large_config.vocab_size:
        raise ValueError(f"the vocabulary is never grown: source vocab_size {small_config.vocab_size}"
                         f", target {large_config.vocab_size}")


def grow_roles(roles: Roles, small_config, large_config, depth: str = "stack",
               width: str | None = None, depth_options: dict | None = None,
               width_options: dict | None = None, seed: int = 0,
               moment_power: int = 0) -> Roles:
    """Grow roles; with moment_power 1 or 2 the roles are Adam's first or second moments,
    mapped the way the values are (same seed, same choices): copies follow their source,
    new parameters start with zero moments, no noise is added."""
    family = family_of(large_config)
    check_growth(small_config, large_config)
    dtype = roles.layers[0]["q.weight"].dtype
    fresh = _fresh_roles(large_config, family, seed, dtype, zeros=bool(moment_power))
    if moment_power:
        depth_options = {**(depth_options or {}), "noise_std": 0.0}
        width_options = {**(width_options or {}), "moment_power": moment_power}
    generator = torch.Generator().manual_seed(seed)
    if depth not in DEPTH_OPERATORS:
        raise ValueError(f"unknown depth scheme {depth!r}; choose from {', '.join(DEPTH_OPERATORS)}")
    width = check_width_growth(small_config, large_config, width)
    _check_width_options(width, width_options or {})
    if width is not None:
        roles = WIDTH_OPERATORS[width](roles, small_config, large_config, family=family,
                                       fresh=fresh, generator=generator, **(width_options or {}))
    layers = DEPTH_OPERATORS[depth](roles.layers, large_config.num_hidden_layers, family=family,
                                    fresh=fresh.layers, generator=generator, **(depth_options or {}))
    model_roles = {}
    for role, target in fresh.model.items():
        source = roles.model[role]
        if source.shape == target.shape:
            model_roles[role] = source.clone()
        else:  # more positions in the target: the known ones are kept, the rest are fresh
            model_roles[role] = target.clone()
            model_roles[role][tuple(slice(0, n) for n in source.shape)] = source
    return Roles(model_roles, layers)


def _check_width_options(width: str | None, options: dict) -> None:
    """Noise options that the chosen width operator would silently ignore are errors."""
    if options.get("noise_std") and width != "net2net":
        raise ValueError(f"width noise_std (--width_noise_std) adds noise to net2net's copies; the "
                         f"width operator here is {width}: use width_split_noise to break the "
                         "symmetry of copied units")
    if options.get("split_noise") and width not in COPYING:
        raise ValueError(f"width split_noise (--width_split_noise) splits copied units; the width "
                         f"operator here is {width}, which copies none (ones that do: "
                         f"{', '.join(COPYING)})")


def grow_state(state: dict[str, torch.Tensor], small_config, large_config, **options) -> dict:
    family = family_of(small_config)
    check_state_matches_config(state, small_config, family, what="the source checkpoint")
    grown = grow_roles(to_roles(state, family), small_config, large_config, **options)
    return from_roles(grown, family)


def grow(small, large_config, depth: str = "stack", width: str | None = None,
         small_config=None, **options):
    """Grow `small` — an HF model, a folder holding one, or a state dict (then give
    `small_config`) — into a ready HF model of `large_config` (a config or a JSON path)."""
    if isinstance(large_config, (str, Path)):
        large_config = load_config(large_config)
    if isinstance(small, (str, Path)):
        small_config, state = read_model_dir(small)
    elif isinstance(small, dict):
        if small_config is None:
            raise ValueError("growing a state dict needs its config: pass small_config=")
        state = small
    else:
        small_config, state = small.config, {k: v.detach() for k, v in small.state_dict().items()}
    grown = grow_state(state, small_config, large_config, depth=depth, width=width, **options)
    return model_from_state(large_config, grown)
