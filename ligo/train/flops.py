"""Analytic training FLOPs of one token, from the model config alone.

Counted as matrix multiplies (2 FLOPs per multiply-add), forward pass, per token:

    per layer   Q and attention-out projections      2 * 2 * H * A
                K and V projections                  2 * 2 * H * KV
                attention scores Q K^T               2 * T * A
                attention-weighted values            2 * T * A
                FFN in and out (SwiGLU: gate too)    2 * 2 * H * F  (2 * 3 * H * F)

A = query heads x head size (H for BERT, RoBERTa, GPT-2), KV = key/value heads x head size
(A without grouped-query attention).
    LM head     optional H x H transform (BERT, RoBERTa), then H x V decoder,
                applied to `head_fraction` of the tokens (an MLM head only runs on the
                masked positions; a causal LM head on all of them)

Training = forward + backward = 3 x forward. Embedding lookups, LayerNorms, softmax and
biases are left out (each well under 1% at these sizes), as in Kaplan et al. (2020) and
Hoffmann et al. (2022). Causal attention is counted over the full T x T square, which is
what the kernels compute.
"""
from __future__ import annotations

from ligo.families import family_of
from ligo.models import ffn_size


def model_dims(config) -> dict[str, int]:
    head_size = getattr(config, "head_dim", None) or config.hidden_size // config.num_attention_heads
    kv_heads = getattr(config, "num_key_value_heads", None) or config.num_attention_heads
    return {"layers": config.num_hidden_layers, "hidden": config.hidden_size,
            "ffn": ffn_size(config), "vocab": config.vocab_size,
            "attention": config.num_attention_heads * head_size, "kv": kv_heads * head_size,
            "ffn_matrices": 3 if "ffn_gate.weight" in family_of(config).keys else 2}


def layer_forward_flops_per_token(config, seq_len: int) -> float:
    """One transformer layer, per token of a sequence of `seq_len` tokens."""
    d = model_dims(config)
    h, f, a, kv = d["hidden"], d["ffn"], d["attention"], d["kv"]
    return 2 * 2 * h * a + 2 * 2 * h * kv + 2 * 2 * seq_len * a + 2 * d["ffn_matrices"] * h * f


def forward_flops_per_token(config, seq_len: int, head_fraction: float = 1.0,
                            head_transform: bool = False) -> float:
    d = model_dims(config)
    head = 2 * d["hidden"] * d["vocab"] + (2 * d["hidden"] ** 2 if head_transform else 0)
    return d["layers"] * layer_forward_flops_per_token(config, seq_len) + head_fraction * head


def training_flops_per_token(config, seq_len: int, head_fraction: float = 1.0,
                             head_transform: bool = False) -> float:
    return 3 * forward_flops_per_token(config, seq_len, head_fraction, head_transform)


def layer_training_flops_per_token(config, seq_len: int) -> float:
    """Forward + backward of one layer per token: what skipping it saves (ligo.train.drop)."""
    return 3 * layer_forward_flops_per_token(config, seq_len)
