"""Model configs from JSON files and `transformers` models built from them (never downloaded)."""
from __future__ import annotations

import json
import math
from pathlib import Path

import transformers

from ligo.families import Family, family_of


def load_config(path: str | Path):
    """A `transformers` config from a JSON file or an HF model folder, validated."""
    path = Path(path)
    file = path / "config.json" if path.is_dir() else path
    if path.is_dir() and not file.is_file() and (path / "run.json").is_file():
        file = path / "run.json"  # a run without its final model yet: the config it records
        try:
            values = json.loads(file.read_text()).get("model_config")
        except (json.JSONDecodeError, UnicodeDecodeError, AttributeError) as error:
            raise ValueError(f"{file} is not valid JSON: {error}") from error
        if not isinstance(values, dict):
            raise ValueError(f"{file} records no model config")
        return config_from_dict(values, file)
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
    for key in ("num_hidden_layers", "n_layer", "hidden_size", "n_embd", "num_attention_heads",
                "n_head", "intermediate_size", "n_inner", "vocab_size", "max_position_embeddings",
                "n_positions"):
        value = values.get(key)
        if value is not None and (not isinstance(value, int) or isinstance(value, bool) or value < 1):
            raise ValueError(f"{source}: {key} must be a positive whole number, not {value!r}")
    config = transformers.CONFIG_MAPPING[model_type].from_dict(values)
    family_of(config)  # only the families we describe
    # LLaMA-style configs carry their own head size: hidden / heads need not be whole there
    if config.hidden_size % config.num_attention_heads and not getattr(config, "head_dim", None):
        raise ValueError(f"{source}: hidden size {config.hidden_size} is not divisible by "
                         f"{config.num_attention_heads} attention heads")
    kv_heads = getattr(config, "num_key_value_heads", None)
    if kv_heads is not None and (kv_heads < 1 or config.num_attention_heads % kv_heads):
        raise ValueError(f"{source}: {config.num_attention_heads} attention heads cannot be "
                         f"grouped over {kv_heads} key/value heads (num_key_value_heads must "
                         "divide num_attention_heads)")
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
    """Inner FFN width: BERT/RoBERTa/LLaMA's intermediate_size, GPT-2's n_inner (None: 4H)."""
    return getattr(config, "intermediate_size", None) or getattr(config, "n_inner", None) \
        or 4 * config.hidden_size


SHAPE_FIELDS = ("model_type", "num_hidden_layers", "hidden_size", "num_attention_heads",
                "num_key_value_heads", "vocab_size", "max_position_embeddings", "type_vocab_size")


def shape_signature(config) -> dict:
    """Every size that shapes a weight (what a LiGO operator or a weights folder depends on)."""
    return {**{name: getattr(config, name, None) for name in SHAPE_FIELDS}, "ffn": ffn_size(config)}


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
        state = {}
        for file in files:
            try:
                state.update(load_file(str(file)))
            except Exception as error:  # noqa: BLE001 - SafetensorError, OSError, ...
                raise ValueError(f"{file} cannot be read (truncated or damaged?): "
                                 f"{error}") from error
    elif (path / "pytorch_model.bin").is_file():
        state = torch.load(path / "pytorch_model.bin", map_location="cpu", weights_only=True)
    else:
        raise FileNotFoundError(f"{path} holds no model weights (model.safetensors)")
    for key, role in family.tied.items():  # saved once, under the source role's key
        state.setdefault(key, state[family.keys[role].key])
    check_state_matches_config(state, config, family, what=f"the model in {path}")
    check_finite(state, f"the model in {path}")
    return config, state


def build_model(config, family: Family, weights_dir: str | None = None):
    model_class = family.build_class()
    if weights_dir:
        check_weights_fit(config, weights_dir)
        return load_pretrained(model_class, weights_dir, config=config)
    return model_class(config)


def sinusoidal_positions(positions: int, hidden: int, std: float):
    """Vaswani et al.'s position encodings (sin on even features, cos on odd ones, wavelengths
    2pi to 10000 * 2pi), rescaled to standard deviation `std`: a learned table initialised
    with them starts with every position distinct and nearby positions similar, where a
    random table must learn both first."""
    import torch

    position = torch.arange(positions, dtype=torch.float64)[:, None]
    frequency = torch.exp(torch.arange(0, hidden, 2, dtype=torch.float64)
                          * (-math.log(10000.0) / hidden))
    table = torch.empty(positions, hidden, dtype=torch.float64)
    table[:, 0::2] = torch.sin(position * frequency)
    table[:, 1::2] = torch.cos(position * frequency[: hidden // 2])
    return table * (std / table.std())


def check_position_init(family: Family, scheme: str) -> None:
    """Refuse --position_init sinusoidal for a family without a learned position table."""
    if scheme != "random" and "embed.position" not in family.keys:
        raise ValueError(f"--position_init {scheme}: {family.name} models have no learned "
                         "position table (rotary positions); drop the flag")


def init_position_table(model, family: Family, scheme: str) -> None:
    """--position_init: `random` keeps the family's init; `sinusoidal` overwrites the learned
    position table's usable rows (RoBERTa's first rows stay: its positions start after the
    padding index) with sinusoidal_positions at the config's initializer_range."""
    import torch

    check_position_init(family, scheme)
    if scheme == "random":
        return
    table = model.get_parameter(family.keys["embed.position"].key)
    offset = family.position_offset
    with torch.no_grad():
        table[offset:] = sinusoidal_positions(table.shape[0] - offset, table.shape[1],
                                              model.config.initializer_range).to(table.dtype)


def check_weights_fit(config, weights_dir: str | Path) -> None:
    """--model_name_or_path must hold a model of `config`'s family and shapes: otherwise
    from_pretrained would leave the mismatched weights at random init, with a warning only."""
    if not (Path(weights_dir) / "config.json").is_file():
        raise FileNotFoundError(f"{weights_dir} is not a model folder (no config.json)")
    saved = load_config(weights_dir)
    if family_of(saved).name != family_of(config).name or shape_signature(saved) != shape_signature(config):
        raise ValueError(f"--model_name_or_path {weights_dir} holds a {family_of(saved).name} "
                         f"model of other shapes than --config_name ({family_of(config).name}); "
                         "its weights would not load (random init). Give its own config, or "
                         "grow it with --source_model_path")


def check_finite(state: dict, what: str) -> None:
    """Refuse weights holding NaN or Inf: damaged bytes would otherwise load, train to a NaN
    loss and exit 0."""
    import torch

    bad = [k for k, v in state.items()
           if torch.is_tensor(v) and v.is_floating_point() and not torch.isfinite(v).all()]
    if bad:
        raise ValueError(f"{what} holds NaN or Inf in {len(bad)} tensors ({', '.join(bad[:3])}"
                         f"{', ...' if len(bad) > 3 else ''}): the file is damaged")


def load_pretrained(model_class, folder: str | Path, **options):
    """`model_class.from_pretrained(folder)` for folders someone sends: an unreadable weights
    file is named in one error, and NaN/Inf weights are refused."""
    from safetensors import SafetensorError

    try:
        model = model_class.from_pretrained(str(folder), **options)
    except (OSError, RuntimeError, ValueError, SafetensorError) as error:
        files = ", ".join(sorted(p.name for p in Path(folder).glob("*.safetensors"))) or "weights"
        raise ValueError(f"the model in {folder} ({files}) cannot be loaded (truncated or "
                         f"damaged?): {str(error).strip().splitlines()[0]}") from error
    check_finite(model.state_dict(), f"the model in {folder}")
    return model
