"""Width growth: hidden H1 -> H2, FFN F1 -> F2, heads n1 -> n2 (roles, any family).

Every operator is the same expansion with different choices. For each axis kind (hidden,
ffn, attention) an index map g says which source unit each target unit copies (the first D1
map to themselves); c[k] counts the copies of source unit k. A role is expanded by
gathering every axis through its map; where an axis is an *input* of a matrix, the columns
are divided by the count (Net2Net's rescale), so duplicated units sum back to the original
contribution. Attention grows by whole heads (head size must not change), so every new head
computes exactly the attention of the head it copies. Under grouped-query attention (LLaMA)
the key/value heads are mapped first and every query head copies a head of the group its
new key/value head copies, so each query head still reads the key/value head it read in the
source; the group size must stay the same.

The residual stream feeds the tied output embedding through the last LayerNorm (BERT's head
LayerNorm, GPT-2's ln_f): that LayerNorm is divided by the counts too, since the decoder
matrix is the (undivided) input embedding. An untied decoder (LLaMA's lm_head, role
`head.weight`) is a matrix like any other: its hidden input is divided instead.

    net2net        random maps on every axis (Chen et al. 2016), optional noise on the copies
    bert2bert_fpi  function-preserving init (Chen et al. 2022): hidden units copied round-robin,
                   FFN units and heads at random
    bert2bert_aki  advanced knowledge init: FPI, but the new units of layer l take their
                   incoming weights from layer l+1 (the last layer from itself)
    double         staged training (Shen et al. 2022): every width exactly doubled, each unit
                   copied once, matrices block-diagonal [[W, 0], [0, W]] (copy k of a unit
                   reads only copy k of its inputs), the LayerNorm before the decoder halved
    zero           new units get fresh incoming weights and zero outgoing weights; new hidden
                   dims start at zero (MSG's idea without its masks: not exact when the hidden
                   size grows, as LayerNorm then averages over the new zero dims)
    random         the source block kept, every new parameter from the target's initialiser
    msg            `random`'s weights, to be trained with MSG's masks (ligo.train.msg), which
                   make it exact at mask 0 for every width and depth change

Symmetry: a copy and its original compute the same thing and, when their consumers read them
with equal weights, get the same gradients, so without dropout or noise they never separate
(the grown model keeps the source's width). `split_noise` s breaks the tie without giving up
exactness: where an axis is divided by the counts, each copy of a unit takes the share
(1 + z_i - mean_copies(z)) / c of its outgoing weight, z ~ N(0, s^2) per entry, so the shares
of the c copies still sum to the source weight (net2net, bert2bert_fpi, bert2bert_aki; for
`double` only the LayerNorm before a tied decoder is divided).

Exactness: LayerNorm (and RMSNorm) normalises over the hidden units, so duplicating hidden
units preserves its statistics only when every unit has the same number of copies (H2 a
multiple of H1 with round-robin copies): `double` always, `bert2bert_fpi` when H2 % H1 == 0,
`zero` when the hidden size does not change. FFN (SwiGLU's gate and up rows copied together)
and head growth are exact for net2net, fpi, double and zero.
"""
from __future__ import annotations

import torch

from ligo.families import ROLE_AXES
from ligo.models import ffn_size
from ligo.roles import Roles

# the last LayerNorm before the tied decoder: scaled by 1/count like a matrix input
FEEDS_TIED_DECODER = {"head.ln.weight", "head.ln.bias", "final_ln.weight", "final_ln.bias"}


def _head_size(config) -> int:
    return getattr(config, "head_dim", None) or config.hidden_size // config.num_attention_heads


def _kv_heads(config) -> int:
    """Key/value heads: fewer than the query heads under grouped-query attention (LLaMA)."""
    return getattr(config, "num_key_value_heads", None) or config.num_attention_heads


def check_width_growth(small_config, large_config, width: str | None) -> str | None:
    same = (small_config.hidden_size == large_config.hidden_size
            and ffn_size(small_config) == ffn_size(large_config)
            and small_config.num_attention_heads == large_config.num_attention_heads
            and _kv_heads(small_config) == _kv_heads(large_config))
    if same:
        return None  # nothing to grow in width, whatever scheme was named
    if width is None:
        raise ValueError(f"the width changes (hidden {small_config.hidden_size} -> "
                         f"{large_config.hidden_size}, ffn {ffn_size(small_config)} -> "
                         f"{ffn_size(large_config)}): choose a width scheme "
                         f"({', '.join(WIDTH_OPERATORS)})")
    if width not in WIDTH_OPERATORS:
        raise ValueError(f"unknown width scheme {width!r}; choose from {', '.join(WIDTH_OPERATORS)}")
    if ffn_size(large_config) < ffn_size(small_config) or \
            large_config.num_attention_heads < small_config.num_attention_heads:
        raise ValueError("the target is smaller than the source: ffn "
                         f"{ffn_size(small_config)} -> {ffn_size(large_config)}, heads "
                         f"{small_config.num_attention_heads} -> {large_config.num_attention_heads}")
    if _head_size(small_config) != _head_size(large_config):
        raise ValueError(f"width growth adds whole heads, so the head size must stay the same: "
                         f"source {_head_size(small_config)}, target {_head_size(large_config)}")
    groups = [c.num_attention_heads // _kv_heads(c) for c in (small_config, large_config)]
    if groups[0] != groups[1] or large_config.num_attention_heads % _kv_heads(large_config):
        raise ValueError(f"grouped-query attention: every query head must keep reading the "
                         f"key/value head of its group, so the group size must stay the same: "
                         f"source {small_config.num_attention_heads} query / "
                         f"{_kv_heads(small_config)} key-value heads, target "
                         f"{large_config.num_attention_heads} / {_kv_heads(large_config)}; grow "
                         "both head counts by the same factor")
    return width


def _index_map(old: int, new: int, how: str, generator: torch.Generator) -> torch.Tensor:
    """Target unit -> source unit; the first `old` units keep their place."""
    extra = new - old
    if how == "round_robin":
        tail = torch.arange(extra) % old
    else:
        tail = torch.randint(0, old, (extra,), generator=generator)
    return torch.cat([torch.arange(old), tail])


def build_maps(small_config, large_config, choice: dict[str, str], generator) -> dict[str, torch.Tensor]:
    """Index maps per axis kind; `choice` says round_robin or random for hidden/ffn/heads."""
    kv_heads = _index_map(_kv_heads(small_config), _kv_heads(large_config), choice["heads"],
                          generator)
    # query head h sits in group h // g; it copies the same member of the group its new
    # key/value head copies (g = 1 without grouped-query attention: the same map)
    group = small_config.num_attention_heads // _kv_heads(small_config)
    target = torch.arange(large_config.num_attention_heads)
    heads = kv_heads[target // group] * group + target % group
    size = _head_size(small_config)

    def units(head_map):
        return (head_map[:, None] * size + torch.arange(size)).flatten()

    return {"hidden": _index_map(small_config.hidden_size, large_config.hidden_size,
                                 choice["hidden"], generator),
            "ffn": _index_map(ffn_size(small_config), ffn_size(large_config), choice["ffn"], generator),
            "attention": units(heads), "kv_attention": units(kv_heads)}


def _input_axis(role: str, tensor: torch.Tensor, tied_decoder: bool = True) -> int | None:
    """Which axis is divided by the copy counts: matrix inputs, and the decoder-feeding LN."""
    if role in FEEDS_TIED_DECODER and tied_decoder:
        return 0
    if tensor.ndim == 2 and not role.startswith("embed."):
        return 1
    return None


def _output_axis(role: str, tensor: torch.Tensor, tied_decoder: bool = True) -> int | None:
    """The axis whose copies share one gradient: consumers of a duplicated unit divide by
    its count, so the gradient of every entry writing to it is divided by that count."""
    if role in FEEDS_TIED_DECODER and tied_decoder:
        return None  # its gradient is that of the source entry (the decoder is undivided)
    return 1 if role.startswith("embed.") and tensor.ndim == 2 else 0  # lookups: (index, hidden)


def split_shares(shape, axis: int, index: torch.Tensor, counts: torch.Tensor, noise: float,
                 generator: torch.Generator | None, dtype: torch.dtype) -> torch.Tensor:
    """The share of its source unit's outgoing weight that each entry along `axis` takes:
    1/c, plus zero-sum Gaussian noise over the c copies of the unit (per entry), so the
    copies' shares sum to exactly 1. `index` maps target units to source units."""
    view = [1] * len(shape)
    view[axis] = -1
    count = counts[index].to(torch.float64).view(view)
    z = torch.randn(shape, generator=generator, dtype=torch.float64) * noise
    grouped = list(shape)
    grouped[axis] = len(counts)
    mean = torch.zeros(grouped, dtype=torch.float64).index_add_(axis, index, z).index_select(
        axis, index) / count
    return ((1.0 + (z - mean)) / count).to(dtype)  # an uncopied unit: exactly 1


def expand(role: str, tensor: torch.Tensor, maps: dict[str, torch.Tensor],
           counts: dict[str, torch.Tensor], moment_power: int = 0,
           block_diagonal: bool = False, tied_decoder: bool = True, split_noise: float = 0.0,
           generator: torch.Generator | None = None) -> torch.Tensor:
    """Gather every mapped axis, then rescale.

    Values (moment_power 0): the input axis is divided by the copy counts. Adam moments
    (moment_power 1 for exp_avg, 2 for exp_avg_sq): the gradient of an entry of the grown
    model is the source gradient divided by the count of its *output* unit, so the moments
    that the grown model would have accumulated are m / c_out and v / c_out**2. For the
    doubled hidden x hidden matrices this is staged training's rule (a duplicated-and-halved
    weight: first moment halved, second quartered). The moments hold for the entries of a
    block-diagonal layout too: an off-diagonal zero has the same gradient as its diagonal twin.

    block_diagonal (values only, round-robin maps): copy k of an output unit reads only copy
    k of the inputs — staged training's [[W, 0], [0, W]] — so nothing needs dividing except
    the LayerNorm feeding a tied decoder, or an untied decoder's hidden input.

    tied_decoder: whether the output embedding is the input embedding (BERT, RoBERTa, GPT-2)
    or a matrix of its own (LLaMA's lm_head).

    split_noise (values only): the copies of a unit divide its outgoing weight in random
    shares that sum to 1 (see split_shares) instead of equally, so they separate in training.
    """
    axes = ROLE_AXES[role]
    for axis, kind in enumerate(axes):
        if kind in maps:
            tensor = tensor.index_select(axis, maps[kind])
    decoder_input = role == "head.weight"  # an untied decoder reads the duplicated hidden units
    feeds_decoder = role in FEEDS_TIED_DECODER and tied_decoder
    if block_diagonal and not moment_power and not feeds_decoder and not decoder_input:
        if tensor.ndim == 2 and all(kind in maps for kind in axes):
            copy_out = torch.arange(tensor.shape[0]) // len(counts[axes[0]])
            copy_in = torch.arange(tensor.shape[1]) // len(counts[axes[1]])
            tensor = tensor * (copy_out[:, None] == copy_in[None, :]).to(tensor.dtype)
        return tensor
    axis = (_output_axis(role, tensor, tied_decoder) if moment_power
            else _input_axis(role, tensor, tied_decoder))
    if axis is not None and axes[axis] in maps:
        kind = axes[axis]
        if split_noise and not moment_power:  # moments follow the source, unsplit
            return tensor * split_shares(tensor.shape, axis, maps[kind], counts[kind],
                                         split_noise, generator, tensor.dtype)
        scale = counts[kind][maps[kind]].to(tensor.dtype) ** max(moment_power, 1)
        shape = [1] * tensor.ndim
        shape[axis] = -1
        tensor = tensor / scale.view(shape)
    return tensor


def _counts(maps: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    return {kind: torch.bincount(index) for kind, index in maps.items()}


def _expand_roles(roles: Roles, maps, moment_power: int = 0, block_diagonal: bool = False,
                  split_noise: float = 0.0, generator: torch.Generator | None = None) -> Roles:
    counts = _counts(maps)
    tied = "head.weight" not in roles.model
    return roles.map(lambda role, t: expand(role, t, maps, counts, moment_power, block_diagonal,
                                            tied_decoder=tied, split_noise=split_noise,
                                            generator=generator))


def _new_mask(shape, source_shape, axes_only: int | None = None) -> torch.Tensor:
    """True where an entry involves a unit the source did not have (per axis)."""
    mask = torch.zeros(shape, dtype=torch.bool)
    for axis, (new, old) in enumerate(zip(shape, source_shape, strict=True)):
        if axes_only is not None and axis != axes_only:
            continue
        if new > old:
            index = [slice(None)] * len(shape)
            index[axis] = slice(old, new)
            mask[tuple(index)] = True
    return mask


def _source_shape(roles: Roles, role: str) -> torch.Size:
    """Shape of `role` in the source (every layer has the same shapes)."""
    return (roles.model[role] if role in roles.model else roles.layers[0][role]).shape


def _fpi_choice(hidden: str) -> dict[str, str]:
    return {"hidden": hidden, "ffn": "random", "heads": "random"}


def net2net(roles: Roles, small_config, large_config, generator=None, noise_std: float = 0.0,
            moment_power: int = 0, split_noise: float = 0.0, **_) -> Roles:
    maps = build_maps(small_config, large_config, dict.fromkeys(("hidden", "ffn", "heads"), "random"),
                      generator)
    grown = _expand_roles(roles, maps, moment_power, split_noise=split_noise, generator=generator)
    if noise_std and not moment_power:  # noise breaks symmetry of values, not of moments
        def add_noise(role, tensor):
            mask = _new_mask(tensor.shape, _source_shape(roles, role))
            noise = torch.randn(tensor.shape, generator=generator, dtype=tensor.dtype) * noise_std
            return tensor + noise * mask
        grown = grown.map(add_noise)
    return grown


def bert2bert_fpi(roles: Roles, small_config, large_config, generator=None, moment_power: int = 0,
                  split_noise: float = 0.0, **_) -> Roles:
    return _expand_roles(roles, build_maps(small_config, large_config,
                                           _fpi_choice("round_robin"), generator), moment_power,
                         split_noise=split_noise, generator=generator)


def bert2bert_aki(roles: Roles, small_config, large_config, generator=None, moment_power: int = 0,
                  split_noise: float = 0.0, **_) -> Roles:
    maps = build_maps(small_config, large_config, _fpi_choice("round_robin"), generator)
    grown = _expand_roles(roles, maps, moment_power, split_noise=split_noise, generator=generator)
    layers = []
    for index, layer in enumerate(grown.layers):
        following = grown.layers[min(index + 1, len(grown.layers) - 1)]
        mixed = {}
        for role, tensor in layer.items():
            # rows (output units) the source did not have come from the next layer
            new_rows = _new_mask(tensor.shape, roles.layers[index][role].shape, axes_only=0)
            mixed[role] = torch.where(new_rows, following[role], tensor)
        layers.append(mixed)
    return Roles(grown.model, layers)


def double(roles: Roles, small_config, large_config, generator=None, moment_power: int = 0,
           split_noise: float = 0.0, **_) -> Roles:
    pairs = {"hidden": (small_config.hidden_size, large_config.hidden_size),
             "ffn": (ffn_size(small_config), ffn_size(large_config)),
             "heads": (small_config.num_attention_heads, large_config.num_attention_heads),
             "key/value heads": (_kv_heads(small_config), _kv_heads(large_config))}
    for name, (old, new) in pairs.items():
        if new != 2 * old:
            raise ValueError(f"`double` doubles every width, but {name} goes {old} -> {new}; "
                             "use bert2bert_fpi or net2net for other sizes")
    return _expand_roles(roles, build_maps(small_config, large_config,
                                           dict.fromkeys(("hidden", "ffn", "heads"), "round_robin"),
                                           generator), moment_power, block_diagonal=True,
                         split_noise=split_noise, generator=generator)


def _keep_source_block(roles: Roles, fresh: Roles, new_value) -> Roles:
    """Source values in the leading block of every role; `new_value(role, fresh)` elsewhere."""
    model = {}
    for role, target in fresh.model.items():
        model[role] = _place(roles.model[role], target, role, new_value)
    layers = [{role: _place(layer[role], fresh_layer[role], role, new_value)
               for role in layer}
              # width runs at the source depth: the target's extra fresh layers are not used
              for layer, fresh_layer in zip(roles.layers, fresh.layers, strict=False)]
    return Roles(model, layers)


def _place(source: torch.Tensor, target: torch.Tensor, role: str, new_value) -> torch.Tensor:
    result = new_value(role, target.clone())
    result[tuple(slice(0, n) for n in source.shape)] = source
    return result


def zero(roles: Roles, small_config, large_config, fresh: Roles = None, **_) -> Roles:
    def new_value(role, tensor):
        axes = ROLE_AXES[role]
        source_shape = _source_shape(roles, role)
        # outgoing weights of new units (their input columns) and every new hidden dimension
        # of the residual stream start at zero; incoming weights keep the fresh init
        zero_mask = torch.zeros(tensor.shape, dtype=torch.bool)
        axis = _input_axis(role, tensor)
        if axis is not None and axes[axis] != "hidden":
            zero_mask |= _new_mask(tensor.shape, source_shape, axes_only=axis)
        for index, kind in enumerate(axes):
            if kind == "hidden":
                zero_mask |= _new_mask(tensor.shape, source_shape, axes_only=index)
        return tensor.masked_fill(zero_mask, 0.0)

    return _keep_source_block(roles, fresh, new_value)


def random(roles: Roles, small_config, large_config, fresh: Roles = None, **_) -> Roles:
    return _keep_source_block(roles, fresh, lambda role, tensor: tensor)


def msg(roles: Roles, small_config, large_config, fresh: Roles = None, **_) -> Roles:
    """MSG's width growth (Yao et al. 2024): new units at a fresh random init, which MSG's
    masks (ligo.train.msg) fade in; without the masks this is `random`."""
    return random(roles, small_config, large_config, fresh=fresh)


# the width operators that copy units, and so can split the copies' shares (split_noise)
COPYING = ("net2net", "bert2bert_fpi", "bert2bert_aki", "double")
WIDTH_OPERATORS = {"net2net": net2net, "bert2bert_fpi": bert2bert_fpi,
                   "bert2bert_aki": bert2bert_aki, "double": double, "zero": zero,
                   "random": random, "msg": msg}
