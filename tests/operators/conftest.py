import torch

from ligo.families import family_of
from ligo.models import build_model, load_config
from tests.conftest import CONFIGS

FAMILY_NAMES = ["bert", "roberta", "gpt2"]


def tiny_config(family: str, **changes):
    config = load_config(CONFIGS / f"{family}-tiny.json")  # 2 layers, hidden 64, 2 heads, ffn 256
    for key, value in changes.items():
        setattr(config, key, value)
    return config


def wide_config(family: str, layers: int = 2, hidden: int = 128, heads: int = 4, ffn: int = 512):
    if family == "llama":  # llama-tiny doubled: head size 16 kept (RoPE), 8 query / 4 key-value
        return tiny_config("llama", num_hidden_layers=layers, hidden_size=hidden,
                           num_attention_heads=2 * heads, num_key_value_heads=heads,
                           head_dim=hidden // (2 * heads), intermediate_size=ffn * 11 // 16)
    ffn_key = "n_inner" if family == "gpt2" else "intermediate_size"
    return tiny_config(family, num_hidden_layers=layers, hidden_size=hidden,
                       num_attention_heads=heads, **{ffn_key: ffn})


def trained_like_model(family: str, config=None, seed: int = 0):
    """A float64 tiny model with every parameter perturbed, LayerNorms included, so that no
    exactness claim holds by accident of a fresh init (LayerNorm weight 1, bias 0)."""
    config = config or tiny_config(family)
    torch.manual_seed(seed)
    return perturbed(build_model(config, family_of(config)).double().eval(), 0.05)


def perturbed(module, std: float):
    """`module` with `std` x standard normal noise added to every parameter, in place (the
    global RNG): moved off its init, as training would, so nothing holds by construction."""
    with torch.no_grad():
        for param in module.parameters():
            param.add_(torch.randn_like(param) * std)
    return module


def saved_operator(family: str, folder):
    """A LiGO operator (tiny source -> 4 layers, hidden 128) saved in `folder`, untrained."""
    from ligo.operators.learned import LiGO, LiGOOptions, save_operator

    model = trained_like_model(family, tiny_config(family))
    state = {k: v.detach() for k, v in model.state_dict().items()}
    return save_operator(LiGO(state, model.config, wide_config(family, layers=4), LiGOOptions()),
                         folder)


def logits(model, ids):
    with torch.no_grad():
        return model.eval()(input_ids=ids).logits
