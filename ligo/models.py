"""Model configs from JSON files and `transformers` models built from them (never downloaded)."""
from __future__ import annotations

import json
from pathlib import Path

import transformers

from ligo.families import Family, family_of


def load_config(path: str | Path):
    """A `transformers` config from a JSON file or an HF model folder, validated."""
    path = Path(path)
    file = path / "config.json" if path.is_dir() else path
    if not file.is_file():
        raise FileNotFoundError(f"model config {path} does not exist")
    try:
        values = json.loads(file.read_text())
    except json.JSONDecodeError as error:
        raise ValueError(f"model config {file} is not valid JSON: {error}") from error
    return config_from_dict(values, file)


def config_from_dict(values: dict, source: str | Path = "the config"):
    """A `transformers` config from its dict (a config.json, or one recorded in a checkpoint
    or operator), validated; `source` names it in errors."""
    model_type = values.get("model_type")
    if model_type not in transformers.CONFIG_MAPPING:
        raise ValueError(f"unknown model type {model_type!r} in {source}")
    config = transformers.CONFIG_MAPPING[model_type].from_dict(values)
    family_of(config)  # only the families we describe
    if config.hidden_size % config.num_attention_heads:
        raise ValueError(f"{source}: hidden size {config.hidden_size} is not divisible by "
                         f"{config.num_attention_heads} attention heads")
    return config


def model_from_state(config, state: dict):
    """The HF model of `config` holding `state` (strictly, in the state's dtype). Its random
    initialisation is overwritten, so it runs on a forked RNG: the caller's stays untouched."""
    import torch

    with torch.random.fork_rng(devices=[]):
        model = family_of(config).build_class()(config)
    model.to(next(iter(state.values())).dtype).load_state_dict(state, strict=True)
    return model


def ffn_size(config) -> int:
    """Inner FFN width: BERT/RoBERTa's intermediate_size, GPT-2's n_inner (None means 4H)."""
    return getattr(config, "intermediate_size", None) or getattr(config, "n_inner", None) \
        or 4 * config.hidden_size


def check_block_size(config, family: Family, block_size: int) -> None:
    limit = family.max_block_size(config)
    if block_size > limit:
        raise ValueError(f"--block_size {block_size} is above the {limit} positions the "
                         f"{family.name} config allows (max_position_embeddings); lower it")


def read_model_dir(path: str | Path):
    """(config, state dict) of an HF model folder, tied copies filled in and checked against
    the config, so a folder whose weights do not match its config.json fails here, by name."""
    import torch
    from safetensors.torch import load_file

    from ligo.roles import check_state_matches_config

    path = Path(path)
    config = load_config(path)
    family = family_of(config)
    files = sorted(path.glob("model*.safetensors"))
    if files:
        state = {k: v for f in files for k, v in load_file(str(f)).items()}
    elif (path / "pytorch_model.bin").is_file():
        state = torch.load(path / "pytorch_model.bin", map_location="cpu", weights_only=True)
    else:
        raise FileNotFoundError(f"{path} holds no model weights (model.safetensors)")
    for key, role in family.tied.items():  # saved once, under the source role's key
        state.setdefault(key, state[family.keys[role].key])
    check_state_matches_config(state, config, family, what=f"the model in {path}")
    return config, state


def build_model(config, family: Family, weights_dir: str | None = None):
    model_class = family.build_class()
    if weights_dir:
        if not (Path(weights_dir) / "config.json").is_file():
            raise FileNotFoundError(f"{weights_dir} is not a model folder (no config.json)")
        return model_class.from_pretrained(weights_dir, config=config)
    return model_class(config)
