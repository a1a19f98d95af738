"""LiGO, the learned growth operator (Wang et al., ICLR 2023, "Learning to Grow Pretrained
Models for Efficient Transformer Training").

Every parameter of the large model is a differentiable function of the small model's:

    large module m of layer l  =  E_out · ( sum_j  w[l, m, j] · W_small[m of layer j] ) · E_inᵀ

Depth: `w` holds, for every target layer and every module in it (q, k, v, attention-out,
FFN in/out, both LayerNorms), L1 mixing coefficients over the source layers, one vector for
the weight and one for the bias. Width: `E` is a D2 x D1 expansion of one dimension, applied
along every axis of that kind (rows and columns alike: large = B · W · Aᵀ). Two forms:
"full" (the paper: the whole D2 x D1 matrix is learned, initialised [I; new]) and
"structured" (the official code: the first D1 rows stay the identity, only the new
(D2 - D1) x D1 rows are learned, computed as [W; new · W] without the identity matmul).

Tying (default, as in the paper and its code): one expansion for the residual stream,
shared by the embeddings, every LayerNorm, the residual side of every layer and the LM head;
per layer, one for each of Q, K and V (attention-out reads V's) and one for the FFN inner
side. Untied (`tie=False`): every module axis has its own. The vocabulary, position and
token-type axes are never expanded; the tied output embedding stays the input embedding.

The operator works on roles (ligo.roles), so BERT, RoBERTa and GPT-2 share this code.
`init_from=(depth, width)` makes it start exactly where a fixed operator of ligo.operators
ends: the difference between that operator's weights and LiGO's own initial weights is kept
as a constant offset added to every generated weight (zero change at step 0, LiGO's
gradients from there on). `init_split_noise` is that fixed operator's `width_split_noise`
(its copied units take split shares), so the operator starts where a fixed-operator run
with the same split starts.
"""
from __future__ import annotations

import json
import logging
from dataclasses import asdict, dataclass
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

from ligo.families import ROLE_AXES, Family, family_of
from ligo.fileio import atomic_write, atomic_write_text, sha256_file
from ligo.models import (
    check_finite,
    config_from_dict,
    ffn_size,
    load_config,
    model_from_state,
    shape_signature,
)
from ligo.operators.width import COPYING
from ligo.roles import Roles, expected_shapes, from_roles, to_roles

log = logging.getLogger(__name__)

DEPTH_INITS = ("rand", "rand_softmax", "stackbert", "stackbert_noisy", "interlace", "interlace_noisy")
WIDTH_INITS = ("rand", "rand_softmax", "sel", "sel_noisy")
WIDTH_FORMS = ("full", "structured")  # ligo.config repeats them without torch (a test checks)
EXPANDED_KINDS = ("hidden", "attention", "kv_attention", "ffn")
OPERATOR_FILE, DESCRIPTION_FILE = "ligo_operator.pt", "ligo_operator.json"


@dataclass(frozen=True)
class LiGOOptions:
    tune_width: bool = True
    tune_depth: bool = True
    depth_init: str = "stackbert_noisy"
    width_init: str = "rand"
    init_noise: float = 0.03
    # full D2 x D1 matrices (the paper's): ahead of the official code's structured form (source
    # units fixed, only the new rows learned) on all 7 benchmark seeds (4 BERT, 3 GPT-2)
    width_form: str = "full"
    tie: bool = True
    tune_residual: bool = False  # a learned additive residual on every generated weight
    residual_noise: float = 0.01  # its init: uniform(-noise, noise)
    tune_small_model: bool = False  # the small weights become trainable too
    init_from: tuple[str, str | None] | None = None  # (depth, width) operator to start from
    init_split_noise: float = 0.0  # init_from's copied units take split shares (ligo.grow's width_split_noise)
    seed: int = 0

    def __post_init__(self):
        if self.depth_init not in DEPTH_INITS:
            raise ValueError(f"unknown LiGO depth init scheme {self.depth_init!r}; choose from "
                             f"{', '.join(DEPTH_INITS)}")
        if self.width_init not in WIDTH_INITS:
            raise ValueError(f"unknown LiGO width init scheme {self.width_init!r}; choose from "
                             f"{', '.join(WIDTH_INITS)}")
        if self.width_form not in WIDTH_FORMS:
            raise ValueError(f"unknown LiGO width form {self.width_form!r}; choose from "
                             f"{', '.join(WIDTH_FORMS)}")
        if self.init_from is not None:
            object.__setattr__(self, "init_from", tuple(self.init_from))
        if self.init_split_noise < 0:
            raise ValueError(f"init_split_noise must be >= 0, not {self.init_split_noise}")
        if self.init_split_noise and not self.init_from:
            raise ValueError("--width_split_noise splits the copies of the fixed operator the LiGO "
                             "operator starts from (init_split_noise): it needs init_from "
                             "(--init_from_operator, e.g. stack bert2bert_aki)")
        if self.init_split_noise and (list(self.init_from) + [None])[1] not in COPYING:
            raise ValueError(f"--width_split_noise (init_split_noise) splits copied units; init_from "
                             f"{' '.join(o for o in self.init_from if o)} copies none: give a width "
                             f"operator that does ({', '.join(COPYING)})")


def _size(config, kind: str) -> int:
    head_size = getattr(config, "head_dim", None) or config.hidden_size // config.num_attention_heads
    kv_heads = getattr(config, "num_key_value_heads", None) or config.num_attention_heads
    return {"hidden": config.hidden_size, "ffn": ffn_size(config),
            "attention": config.num_attention_heads * head_size,
            "kv_attention": kv_heads * head_size}[kind]


def check_ligo_growth(small_config, large_config, options: LiGOOptions) -> None:
    from ligo.operators import check_growth

    check_growth(small_config, large_config)
    for name in ("max_position_embeddings", "type_vocab_size"):
        if getattr(small_config, name, None) != getattr(large_config, name, None):
            raise ValueError(f"LiGO never expands {name}: source {getattr(small_config, name, None)}"
                             f", target {getattr(large_config, name, None)}")
    if options.tune_depth and small_config.num_hidden_layers == large_config.num_hidden_layers:
        raise ValueError(f"--tune_depth: the depth does not change ({small_config.num_hidden_layers}"
                         " layers in both): nothing to learn; drop --tune_depth")
    if options.tune_width and all(_size(small_config, k) == _size(large_config, k)
                                  for k in EXPANDED_KINDS):
        raise ValueError(f"--tune_width: the width does not change (hidden "
                         f"{small_config.hidden_size}, ffn {ffn_size(small_config)} in both): "
                         "nothing to learn; drop --tune_width")
    if not (options.tune_width or options.tune_depth or options.tune_residual
            or options.tune_small_model):
        raise ValueError("nothing to train: give --tune_width and/or --tune_depth")
    for kind in EXPANDED_KINDS:
        if _size(large_config, kind) < _size(small_config, kind):
            raise ValueError(f"the target is smaller than the source: {kind} "
                             f"{_size(small_config, kind)} -> {_size(large_config, kind)}")


def _expansion_name(role: str, axis: int, layer: int | None, tie: bool,
                    grouped: bool = False) -> str:
    """Which expansion acts on `axis` of `role` (in `layer`, None for model-wide roles).
    Tied: one hidden expansion, one FFN expansion per layer (SwiGLU's gate too), one per
    Q, K and V, attention-out's input tied to V's output, except under grouped-query
    attention (`grouped`), where V has fewer units than attention-out reads: then its own."""
    kind = ROLE_AXES[role][axis]
    module = role.rsplit(".", 1)[0] if role.endswith((".weight", ".bias")) else role
    scope = "model" if layer is None else f"l{layer}"
    if not tie:
        is_input = len(ROLE_AXES[role]) == 2 and axis == 1 and not role.startswith("embed.")
        return f"{scope}_{module.replace('.', '_')}_{'in' if is_input else 'out'}"
    if kind == "hidden":
        return "hidden"
    if kind == "ffn":
        return f"{scope}_ffn"
    if module == "attn_out":
        return f"{scope}_{'attn_out' if grouped else 'v'}"
    return f"{scope}_{module}"  # attention: Q, K or V's


def _normalised(values: torch.Tensor, scheme: str) -> torch.Tensor:
    return F.softmax(values, -1) if "softmax" in scheme else values / values.sum(-1, keepdim=True)


def _coefficients(scheme: str, rows: int, cols: int, noise: float, generator: torch.Generator,
                  picks) -> torch.Tensor:
    """(rows, cols): random rows normalised (rand, rand_softmax), or one-hot at `picks()`
    plus uniform(0, noise) where the scheme is *_noisy."""
    if scheme in ("rand", "rand_softmax"):
        return _normalised(torch.rand(rows, cols, generator=generator, dtype=torch.float64), scheme)
    values = torch.zeros(rows, cols, dtype=torch.float64)
    if scheme.endswith("_noisy"):
        values.uniform_(0.0, noise, generator=generator)
    values[torch.arange(rows), picks()] = 1.0
    return values


def depth_init(scheme: str, target: int, source: int, noise: float,
               generator: torch.Generator) -> torch.Tensor:
    """(target, source) mixing coefficients, each row summing to one."""
    # stackbert: layer l copies source l mod L1 (= `stack`); interlace: source floor(l L1 / L2)
    # (= `interpolate`; the official code's l // 2 is this for L2 = 2 L1)
    picks = [l % source if scheme.startswith("stackbert") else l * source // target
             for l in range(target)]
    coeffs = _coefficients(scheme, target, source, noise, generator, lambda: picks)
    return coeffs / coeffs.sum(-1, keepdim=True)


def width_init(scheme: str, new: int, old: int, noise: float,
               generator: torch.Generator) -> torch.Tensor:
    """(new, old): how each new unit is made from the old ones (sel: a random old unit)."""
    return _coefficients(scheme, new, old, noise, generator,
                         lambda: torch.randint(0, old, (new,), generator=generator))


def _apply(tensor: torch.Tensor, axis: int, expansion: torch.Tensor, structured: bool) -> torch.Tensor:
    """Expand `axis` of `tensor` by a (D2, D1) matrix, or by the new rows of [I; new]."""
    moved = tensor.movedim(axis, -1)
    if structured:
        moved = torch.cat([moved, moved @ expansion.t()], dim=-1)
    else:
        moved = moved @ expansion.t()
    return moved.movedim(-1, axis)


def _key(name: str) -> str:
    return name.replace(".", "__")  # module attribute names cannot hold dots


class _Holder(nn.Module):
    """A flat name -> tensor store, as parameters or as buffers."""

    def __init__(self, tensors: dict[str, torch.Tensor], trainable: bool):
        super().__init__()
        for name, tensor in tensors.items():
            if trainable:
                self.register_parameter(_key(name), nn.Parameter(tensor))
            else:
                self.register_buffer(_key(name), tensor)

    def get(self, name: str) -> torch.Tensor:
        return getattr(self, _key(name))

    def has(self, name: str) -> bool:
        return hasattr(self, _key(name))


class LiGO(nn.Module):
    """`LiGO(small_state, small_config, large_config, options)()` -> the large model's state
    dict (HF keys), differentiable in the operator's parameters."""

    def __init__(self, small_state: dict[str, torch.Tensor], small_config, large_config,
                 options: LiGOOptions = LiGOOptions(), _initialise: bool = True):
        super().__init__()
        check_ligo_growth(small_config, large_config, options)
        self.family: Family = family_of(large_config)
        self.small_config, self.large_config, self.options = small_config, large_config, options
        roles = to_roles(small_state, self.family)
        dtype = roles.layers[0]["q.weight"].dtype
        self.source_layers, self.target_layers = small_config.num_hidden_layers, large_config.num_hidden_layers
        self.model_roles = list(roles.model)
        self.layer_params = self.family.layer_params()
        self.kinds = ("weight", "bias") if self.family.biases else ("weight",)
        self.grouped = _size(large_config, "attention") != _size(large_config, "kv_attention")
        generator = torch.Generator().manual_seed(options.seed)

        small = {**{f"model.{r}": t.detach().clone() for r, t in roles.model.items()},
                 **{f"layers.{r}": torch.stack([layer[r] for layer in roles.layers]).detach()
                    for r in self.layer_params}}
        self.small = _Holder(small, options.tune_small_model)

        # depth: (weight|bias, module, target layer, source layer)
        depth = torch.stack([torch.stack([depth_init(options.depth_init, self.target_layers,
                                                     self.source_layers, options.init_noise, generator)
                                          for _ in self.family.layer_roles]) for _ in self.kinds])
        self.depth = _Holder({"coefficients": depth.to(dtype)}, options.tune_depth)

        # width: one (new rows or full) matrix per expansion name
        expansions = {}
        for scope, role_names in [(None, self.model_roles)] + [
                (l, self.layer_params) for l in range(self.target_layers)]:
            for role in role_names:
                for axis, kind in enumerate(ROLE_AXES[role]):
                    old, new = (_size(small_config, kind), _size(large_config, kind)) \
                        if kind in EXPANDED_KINDS else (0, 0)
                    name = _expansion_name(role, axis, scope, options.tie, self.grouped)
                    if new == old or name in expansions:
                        continue
                    rows = width_init(options.width_init, new - old, old, options.init_noise, generator)
                    if options.width_form == "full":
                        rows = torch.cat([torch.eye(old, dtype=torch.float64), rows])
                    expansions[name] = rows.to(dtype)
        self.width = _Holder(expansions, options.tune_width)

        self.residual = None
        self.offset = None
        if not _initialise:  # about to load a saved state: only the shapes matter
            if options.tune_residual:
                self.residual = _Holder(self._zeros_like_output(dtype), True)
            if options.init_from:
                self.offset = _Holder(self._zeros_like_output(dtype), False)
            return
        if options.tune_residual:
            residual = {k: torch.empty_like(v).uniform_(-options.residual_noise, options.residual_noise,
                                                        generator=generator)
                        for k, v in self._zeros_like_output(dtype).items()}
            self.residual = _Holder(residual, True)
        if options.init_from:
            self.offset = _Holder(self._init_offset(small_state), False)

    # ---------------------------------------------------------------- generation
    def _zeros_like_output(self, dtype) -> dict[str, torch.Tensor]:
        shapes = expected_shapes(self.large_config, self.family)
        return {k: torch.zeros(s, dtype=dtype) for k, s in shapes.items()
                if k not in self.family.tied}

    def _expand(self, role: str, tensor: torch.Tensor, layer: int | None) -> torch.Tensor:
        structured = self.options.width_form == "structured"
        for axis, kind in enumerate(ROLE_AXES[role]):
            if kind not in EXPANDED_KINDS:  # vocabulary, positions, token types
                continue
            name = _expansion_name(role, axis, layer, self.options.tie, self.grouped)
            if self.width.has(name):
                tensor = _apply(tensor, axis, self.width.get(name), structured)
        return tensor

    def generate_roles(self) -> Roles:
        model = {role: self._expand(role, self.small.get(f"model.{role}"), None)
                 for role in self.model_roles}
        coefficients = self.depth.get("coefficients")
        layers = [{} for _ in range(self.target_layers)]
        for m, module in enumerate(self.family.layer_roles):
            for k, kind in enumerate(self.kinds):
                role = f"{module}.{kind}"
                source = self.small.get(f"layers.{role}")  # (L1, ...)
                mixed = torch.tensordot(coefficients[k, m], source, dims=1)  # (L2, ...)
                # unbind, not mixed[l]: one backward that stacks the layer gradients instead
                # of one zero-filled (L2, ...) gradient per layer
                for l, layer_tensor in enumerate(mixed.unbind(0)):
                    layers[l][role] = self._expand(role, layer_tensor, l)
        return Roles(model, layers)

    def forward(self) -> dict[str, torch.Tensor]:
        dtype = self.depth.get("coefficients").dtype
        # under autocast the matmuls give bf16/fp16: back to the operator's dtype, which the
        # model's LayerNorms require on CPU (its linear layers re-cast to bf16 themselves)
        state = {k: v.to(dtype) for k, v in from_roles(self.generate_roles(), self.family).items()}
        for extra in (self.residual, self.offset):
            if extra is not None:
                state = {k: v + extra.get(k) if extra.has(k) else v for k, v in state.items()}
        for key, role in self.family.tied.items():  # tied copies stay one tensor
            state[key] = state[self.family.keys[role].key]
        return state

    @torch.no_grad()
    def _init_offset(self, small_state: dict) -> dict[str, torch.Tensor]:
        from ligo.operators import grow_state

        depth, width = (list(self.options.init_from) + [None])[:2]
        fixed = grow_state(small_state, self.small_config, self.large_config, depth=depth,
                           width=width, seed=self.options.seed,
                           width_options={"split_noise": self.options.init_split_noise})
        own = self.forward()
        return {k: fixed[k].to(v.dtype) - v for k, v in own.items() if k not in self.family.tied}


# ---------------------------------------------------------------- the materialised model
def materialise(operator: LiGO):
    """An ordinary HF model holding the operator's current output (no graph, no operator)."""
    with torch.no_grad():
        state = {k: v.detach() for k, v in operator().items()}
    return model_from_state(operator.large_config, state)


def skeleton(config, device: torch.device | str = "cpu"):
    """The large model's modules with parameters on the meta device: the operator supplies
    every parameter at each call (torch.func.functional_call), so real weights would only
    take memory. Buffers (position ids) stay real."""
    family = family_of(config)
    with torch.random.fork_rng(devices=[]):
        model = family.build_class()(config)
    buffers = {name: buffer.to(device) for name, buffer in model.named_buffers()}
    saved = set(model.state_dict())  # persistent buffers appear there, the others not
    model.to("meta")
    for name, buffer in buffers.items():
        owner, _, leaf = name.rpartition(".")
        model.get_submodule(owner).register_buffer(leaf, buffer, persistent=name in saved)
    return model


def generation_flops(operator: LiGO) -> float:
    """FLOPs of one forward generation of the large weights (matmuls, counted by PyTorch)."""
    from torch.utils.flop_counter import FlopCounterMode

    with torch.no_grad(), FlopCounterMode(display=False) as counter:
        operator()
    return float(counter.get_total_flops())


# ---------------------------------------------------------------- saving and loading
def _config_dict(config) -> dict:
    values = config.to_diff_dict()
    values.pop("transformers_version", None)
    return values


def save_operator(operator: LiGO, folder: str | Path, training: dict | None = None) -> Path:
    """OP_DIR/ligo_operator.pt (the operator's state) and ligo_operator.json (source and
    target configs, options, what training it cost), each written atomically."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    with atomic_write(folder / OPERATOR_FILE) as tmp:
        torch.save(operator.state_dict(), tmp)
    description = {"family": operator.family.name,
                   "source_config": _config_dict(operator.small_config),
                   "target_config": _config_dict(operator.large_config),
                   "options": asdict(operator.options), "training": training or {},
                   "sha256": sha256_file(folder / OPERATOR_FILE)}
    atomic_write_text(folder / DESCRIPTION_FILE, json.dumps(description, indent=1))
    return folder


def read_description(folder: str | Path) -> dict:
    folder = Path(folder)
    for name in (OPERATOR_FILE, DESCRIPTION_FILE):
        if not (folder / name).is_file():
            raise FileNotFoundError(f"{folder} holds no LiGO operator ({name} missing): give the "
                                    "--output_dir of run_grow_distributed.py")
    try:
        return json.loads((folder / DESCRIPTION_FILE).read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as error:
        raise ValueError(f"{folder / DESCRIPTION_FILE} is not valid JSON: {error}") from error


def _check_same_shapes(saved: dict, config, what: str, folder: Path) -> None:
    saved_config = config_from_dict(saved, folder)
    expected, given = shape_signature(saved_config), shape_signature(config)
    changed = [f"{k} {expected[k]} (operator) vs {given[k]} (given)"
               for k in expected if expected[k] != given[k]]
    if changed:
        raise ValueError(f"the LiGO operator in {folder} was trained for another {what} config: "
                         + "; ".join(changed))


def load_operator(folder: str | Path, source_config=None, target_config=None) -> LiGO:
    """The operator saved in `folder`; refused if it was trained for other configs."""
    folder = Path(folder)
    description = read_description(folder)
    if source_config is not None:
        _check_same_shapes(description["source_config"], source_config, "source", folder)
    if target_config is not None:
        _check_same_shapes(description["target_config"], target_config, "target", folder)
    small_config, large_config = (config_from_dict(d, folder)
                                  for d in (description["source_config"], description["target_config"]))
    if target_config is not None:
        large_config = target_config  # same shapes; the caller's dropout, ids etc. apply
    recorded = description.get("sha256")  # operators saved before digests have none
    if recorded is not None and sha256_file(folder / OPERATOR_FILE) != recorded:
        raise ValueError(f"{folder / OPERATOR_FILE} does not match the SHA-256 recorded in "
                         f"{DESCRIPTION_FILE} (corrupt or truncated)")
    try:
        state = torch.load(folder / OPERATOR_FILE, map_location="cpu", weights_only=True)
    except Exception as error:  # noqa: BLE001 - any unpickling failure means unusable
        raise ValueError(f"{folder / OPERATOR_FILE} cannot be loaded (corrupt?): {error}") from error
    check_finite(state, str(folder / OPERATOR_FILE))
    family = family_of(small_config)
    dtype = next(iter(state.values())).dtype
    shapes = expected_shapes(small_config, family)
    placeholder = {k: torch.zeros(s, dtype=dtype) for k, s in shapes.items()}
    options = LiGOOptions(**description["options"])
    operator = LiGO(placeholder, small_config, large_config, options, _initialise=False)
    try:
        operator.load_state_dict(state, strict=True)
    except RuntimeError as error:
        raise ValueError(f"{folder / OPERATOR_FILE} does not match its description: {error}") from error
    return operator


def grow_with_operator(folder: str | Path, large_config, source_dir: str | Path | None = None):
    """(materialised large model, the operator's training record) for a pretraining run."""
    source_config = load_config(source_dir) if source_dir else None
    operator = load_operator(folder, source_config, large_config)
    return materialise(operator), read_description(folder).get("training", {})
