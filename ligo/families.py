"""Model families described once, as data.

Everything the rest of the package needs to know about BERT, RoBERTa, GPT-2 and LLaMA lives in
one `Family` record each: which `transformers` class to build, which objective trains it,
where its LM head sits, how many positions a block may use, which special tokens its
tokenizer must have, and where each *role* of the model sits in its state dict (the key
map that growth operators work through: they speak roles, never family-specific keys).

Roles are canonical: every matrix is (out, in) like `nn.Linear`; GPT-2's Conv1D weights are
stored transposed and its `c_attn` fuses q, k and v, which the key map records as
`Param(..., transpose=True, part=(0, 3))`. `ROLE_AXES` names the kind of each axis of each
role (hidden, attention, kv_attention, ffn, vocab, ...), which is what a width operator needs
to know: "attention" is the query heads x head size, "kv_attention" the key/value heads x head
size (the same heads in multi-head attention; fewer under LLaMA's grouped-query attention).
Adding a family means adding one record (and its tests).
"""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass

import transformers


@dataclass(frozen=True)
class SpecialTokens:
    """Names of the special tokens a family's tokenizer must provide."""

    bos: str  # prepended to each training block (BERT [CLS], RoBERTa <s>); GPT-2 prepends none
    eos: str  # separates documents in the token stream and closes each MLM block
    pad: str
    unk: str | None
    mask: str | None  # None for causal-LM families


@dataclass(frozen=True)
class Param:
    """Where a role lives: an HF state-dict key (`{i}` = layer index) and how it is stored."""

    key: str
    transpose: bool = False  # Conv1D keeps (in, out); roles are (out, in)
    part: tuple[int, int] | None = None  # (index, count): a slice of a tensor fused on `out`


# the kind of every axis of every role; "attention" is heads x head size (q/k/v outputs)
ROLE_AXES: dict[str, tuple[str, ...]] = {
    "embed.word": ("vocab", "hidden"), "embed.position": ("position", "hidden"),
    "embed.token_type": ("token_type", "hidden"),
    "embed.ln.weight": ("hidden",), "embed.ln.bias": ("hidden",),
    "final_ln.weight": ("hidden",), "final_ln.bias": ("hidden",),
    "head.dense.weight": ("hidden", "hidden"), "head.dense.bias": ("hidden",),
    "head.ln.weight": ("hidden",), "head.ln.bias": ("hidden",), "head.bias": ("vocab",),
    "head.weight": ("vocab", "hidden"),  # an untied decoder (LLaMA's lm_head)
    "q.weight": ("attention", "hidden"), "q.bias": ("attention",),
    **{f"{p}.weight": ("kv_attention", "hidden") for p in ("k", "v")},
    **{f"{p}.bias": ("kv_attention",) for p in ("k", "v")},
    "attn_out.weight": ("hidden", "attention"), "attn_out.bias": ("hidden",),
    "ffn_in.weight": ("ffn", "hidden"), "ffn_in.bias": ("ffn",),
    "ffn_gate.weight": ("ffn", "hidden"), "ffn_gate.bias": ("ffn",),  # SwiGLU's gate (LLaMA)
    "ffn_out.weight": ("hidden", "ffn"), "ffn_out.bias": ("hidden",),
    "ln_attn.weight": ("hidden",), "ln_attn.bias": ("hidden",),
    "ln_ffn.weight": ("hidden",), "ln_ffn.bias": ("hidden",),
}
LAYER_ROLES = ("q", "k", "v", "attn_out", "ffn_in", "ffn_out", "ln_attn", "ln_ffn")
LLAMA_LAYER_ROLES = ("q", "k", "v", "attn_out", "ffn_gate", "ffn_in", "ffn_out", "ln_attn", "ln_ffn")


def _encoder_keys(prefix: str, head: dict[str, str]) -> dict[str, Param]:
    """BERT and RoBERTa share the encoder layout; only the prefix and the head differ."""
    layer = f"{prefix}.encoder.layer.{{i}}"
    keys = {"embed.word": f"{prefix}.embeddings.word_embeddings.weight",
            "embed.position": f"{prefix}.embeddings.position_embeddings.weight",
            "embed.token_type": f"{prefix}.embeddings.token_type_embeddings.weight",
            "embed.ln.weight": f"{prefix}.embeddings.LayerNorm.weight",
            "embed.ln.bias": f"{prefix}.embeddings.LayerNorm.bias", **head}
    for kind in ("weight", "bias"):
        keys.update({f"q.{kind}": f"{layer}.attention.self.query.{kind}",
                     f"k.{kind}": f"{layer}.attention.self.key.{kind}",
                     f"v.{kind}": f"{layer}.attention.self.value.{kind}",
                     f"attn_out.{kind}": f"{layer}.attention.output.dense.{kind}",
                     f"ln_attn.{kind}": f"{layer}.attention.output.LayerNorm.{kind}",
                     f"ffn_in.{kind}": f"{layer}.intermediate.dense.{kind}",
                     f"ffn_out.{kind}": f"{layer}.output.dense.{kind}",
                     f"ln_ffn.{kind}": f"{layer}.output.LayerNorm.{kind}"})
    return {role: Param(key) for role, key in keys.items()}


def _gpt2_keys() -> dict[str, Param]:
    layer = "transformer.h.{i}"
    keys = {"embed.word": Param("transformer.wte.weight"),
            "embed.position": Param("transformer.wpe.weight"),
            "final_ln.weight": Param("transformer.ln_f.weight"),
            "final_ln.bias": Param("transformer.ln_f.bias")}
    for kind in ("weight", "bias"):
        transpose = kind == "weight"
        for index, role in enumerate(("q", "k", "v")):
            keys[f"{role}.{kind}"] = Param(f"{layer}.attn.c_attn.{kind}", transpose, (index, 3))
        keys[f"attn_out.{kind}"] = Param(f"{layer}.attn.c_proj.{kind}", transpose)
        keys[f"ffn_in.{kind}"] = Param(f"{layer}.mlp.c_fc.{kind}", transpose)
        keys[f"ffn_out.{kind}"] = Param(f"{layer}.mlp.c_proj.{kind}", transpose)
        keys[f"ln_attn.{kind}"] = Param(f"{layer}.ln_1.{kind}")
        keys[f"ln_ffn.{kind}"] = Param(f"{layer}.ln_2.{kind}")
    return keys


def _llama_keys() -> dict[str, Param]:
    """LlamaForCausalLM (and Mistral's identical layout): no biases, RMSNorm weights only,
    SwiGLU (gate, up, down), rotary positions (no position embedding), an untied lm_head."""
    layer = "model.layers.{i}"
    keys = {"embed.word": "model.embed_tokens.weight", "final_ln.weight": "model.norm.weight",
            "head.weight": "lm_head.weight",
            "q.weight": f"{layer}.self_attn.q_proj.weight", "k.weight": f"{layer}.self_attn.k_proj.weight",
            "v.weight": f"{layer}.self_attn.v_proj.weight",
            "attn_out.weight": f"{layer}.self_attn.o_proj.weight",
            "ffn_gate.weight": f"{layer}.mlp.gate_proj.weight",
            "ffn_in.weight": f"{layer}.mlp.up_proj.weight",
            "ffn_out.weight": f"{layer}.mlp.down_proj.weight",
            "ln_attn.weight": f"{layer}.input_layernorm.weight",
            "ln_ffn.weight": f"{layer}.post_attention_layernorm.weight"}
    return {role: Param(key) for role, key in keys.items()}


@dataclass(frozen=True)
class Family:
    name: str
    model_class: str  # attribute of `transformers`
    objective: str  # "mlm" or "clm"
    head_attr: str  # the LM head module, applied to hidden states of the base model
    specials: SpecialTokens
    keys: dict[str, Param] = None  # role -> where it is stored
    tied: dict[str, str] = None  # state-dict key -> the role it is a tied copy of
    pre_layernorm: bool = False  # GPT-2: LayerNorm before each sublayer, and a final one
    head_transform: bool = True  # an H x H dense + LayerNorm before the decoder (BERT, RoBERTa)
    position_offset: int = 0  # RoBERTa reserves positions 0..pad_token_id
    prepend_bos: bool = True
    layers_path: str = ""  # the ModuleList of transformer layers (sharded one by one)
    # tensor parallelism: module (relative to a layer) -> colwise | rowwise; None: not yet
    tp_plan: dict[str, str] | None = None
    # a column-parallel module whose output is k blocks side by side (GPT-2's fused q|k|v):
    # each rank takes its slice of every block
    tp_fused: dict[str, int] = dataclasses.field(default_factory=dict)
    # sizes the layer's forward reads that become per-rank sizes (GPT-2 splits its fused
    # projection by `split_size`; BERT's reshapes infer the local head count)
    tp_divide: tuple[str, ...] = ()
    # the modules of a layer (roles without .weight/.bias), in the order LiGO stores them
    layer_roles: tuple[str, ...] = LAYER_ROLES
    biases: bool = True  # every layer module has a bias (LLaMA: none)

    def layer_params(self) -> tuple[str, ...]:
        """Every role of a layer: module.weight (and module.bias), module by module."""
        kinds = ("weight", "bias") if self.biases else ("weight",)
        return tuple(f"{module}.{kind}" for module in self.layer_roles for kind in kinds)

    def build_class(self):
        return getattr(transformers, self.model_class)

    def max_block_size(self, config) -> int:
        return config.max_position_embeddings - self.position_offset


# Megatron's split: Q/K/V and FFN-in by output columns (each rank a group of whole heads and
# FFN units), attention-out and FFN-out by input rows, summed by one all-reduce each
_ENCODER_TP_PLAN = {"attention.self.query": "colwise", "attention.self.key": "colwise",
                    "attention.self.value": "colwise", "attention.output.dense": "rowwise",
                    "intermediate.dense": "colwise", "output.dense": "rowwise"}

BERT_SPECIALS = SpecialTokens(bos="[CLS]", eos="[SEP]", pad="[PAD]", unk="[UNK]", mask="[MASK]")
ROBERTA_SPECIALS = SpecialTokens(bos="<s>", eos="</s>", pad="<pad>", unk="<unk>", mask="<mask>")
GPT2_SPECIALS = SpecialTokens(bos="<|endoftext|>", eos="<|endoftext|>", pad="<|endoftext|>",
                              unk=None, mask=None)

_BERT_HEAD = {"head.dense.weight": "cls.predictions.transform.dense.weight",
              "head.dense.bias": "cls.predictions.transform.dense.bias",
              "head.ln.weight": "cls.predictions.transform.LayerNorm.weight",
              "head.ln.bias": "cls.predictions.transform.LayerNorm.bias",
              "head.bias": "cls.predictions.bias"}
_ROBERTA_HEAD = {"head.dense.weight": "lm_head.dense.weight", "head.dense.bias": "lm_head.dense.bias",
                 "head.ln.weight": "lm_head.layer_norm.weight",
                 "head.ln.bias": "lm_head.layer_norm.bias", "head.bias": "lm_head.bias"}

FAMILIES: dict[str, Family] = {
    "bert": Family("bert", "BertForMaskedLM", "mlm", "cls", BERT_SPECIALS,
                   keys=_encoder_keys("bert", _BERT_HEAD),
                   tied={"cls.predictions.decoder.weight": "embed.word",
                         "cls.predictions.decoder.bias": "head.bias"},
                   layers_path="bert.encoder.layer", tp_plan=_ENCODER_TP_PLAN),
    # RoBERTa position ids start at pad_token_id + 1, so two positions are never usable
    "roberta": Family("roberta", "RobertaForMaskedLM", "mlm", "lm_head", ROBERTA_SPECIALS,
                      keys=_encoder_keys("roberta", _ROBERTA_HEAD),
                      tied={"lm_head.decoder.weight": "embed.word", "lm_head.decoder.bias": "head.bias"},
                      position_offset=2, layers_path="roberta.encoder.layer",
                      tp_plan=_ENCODER_TP_PLAN),
    "gpt2": Family("gpt2", "GPT2LMHeadModel", "clm", "lm_head", GPT2_SPECIALS,
                   keys=_gpt2_keys(), tied={"lm_head.weight": "embed.word"},
                   pre_layernorm=True, head_transform=False, prepend_bos=False,
                   layers_path="transformer.h",
                   tp_plan={"attn.c_attn": "colwise", "attn.c_proj": "rowwise",
                            "mlp.c_fc": "colwise", "mlp.c_proj": "rowwise"},
                   tp_fused={"attn.c_attn": 3}, tp_divide=("attn.split_size",)),
    # LLaMA-style decoders (RMSNorm, SwiGLU, RoPE, grouped-query attention), with GPT-2's
    # byte-level BPE special token; an untied lm_head (LLaMA's default; tied: LLAMA_TIED)
    "llama": Family("llama", "LlamaForCausalLM", "clm", "lm_head", GPT2_SPECIALS,
                    keys=_llama_keys(), tied={}, pre_layernorm=True, head_transform=False,
                    prepend_bos=False, layers_path="model.layers",
                    layer_roles=LLAMA_LAYER_ROLES, biases=False,
                    # q, k, v, gate and up by output columns (whole query and key/value heads:
                    # each rank keeps the grouping), o and down by input rows
                    tp_plan={"self_attn.q_proj": "colwise", "self_attn.k_proj": "colwise",
                             "self_attn.v_proj": "colwise", "self_attn.o_proj": "rowwise",
                             "mlp.gate_proj": "colwise", "mlp.up_proj": "colwise",
                             "mlp.down_proj": "rowwise"}),
}


# Mistral (MistralForCausalLM) stores exactly LLaMA's parameters under the same names; its
# sliding-window attention is a config setting that growth copies along
FAMILIES["mistral"] = dataclasses.replace(FAMILIES["llama"], name="mistral",
                                          model_class="MistralForCausalLM")
LLAMA_STYLE = ("llama", "mistral")

# `tie_word_embeddings: true` (small LLaMA-style models, e.g. Llama-3.2-1B): lm_head is the
# input embedding, as in GPT-2, so growth treats it as GPT-2's tied decoder
TIED_VARIANTS = {name: dataclasses.replace(
    FAMILIES[name], keys={k: v for k, v in _llama_keys().items() if k != "head.weight"},
    tied={"lm_head.weight": "embed.word"}) for name in LLAMA_STYLE}
LLAMA_TIED = TIED_VARIANTS["llama"]


def family_of(config) -> Family:
    model_type = getattr(config, "model_type", None)
    if model_type not in FAMILIES:
        raise ValueError(f"unknown model type {model_type!r}; supported: {', '.join(FAMILIES)}")
    if model_type in TIED_VARIANTS and getattr(config, "tie_word_embeddings", False):
        return TIED_VARIANTS[model_type]
    return FAMILIES[model_type]
