"""Analytic training FLOPs of one token, from the model config alone.

Counted as matrix multiplies (2 FLOPs per multiply-add), forward pass, per token:

    per layer   Q, K, V, attention-out projections   2 * 4 * H^2
                attention scores Q K^T               2 * T * H
                attention-weighted values            2 * T * H
                FFN in and out                       2 * 2 * H * F
    LM head     optional H x H transform (BERT, RoBERTa), then H x V decoder,
                applied to `head_fraction` of the tokens (an MLM head only runs on the
                masked positions; a causal LM head on all of them)

Training = forward + backward = 3 x forward. Embedding lookups, LayerNorms, softmax and
biases are left out (each well under 1% at these sizes), as in Kaplan et al. (2020) and
Hoffmann et al. (2022). Causal attention is counted over the full T x T square, which is
what the kernels compute.
"""
from __future__ import annotations

from ligo.models import ffn_size


def model_dims(config) -> dict[str, int]:
    return {"layers": config.num_hidden_layers, "hidden": config.hidden_size,
            "ffn": ffn_size(config), "vocab": config.vocab_size}


def forward_flops_per_token(config, seq_len: int, head_fraction: float = 1.0,
                            head_transform: bool = False) -> float:
    d = model_dims(config)
    h, f = d["hidden"], d["ffn"]
    per_layer = 2 * 4 * h * h + 2 * 2 * seq_len * h + 2 * 2 * h * f
    head = 2 * h * d["vocab"] + (2 * h * h if head_transform else 0)
    return d["layers"] * per_layer + head_fraction * head


def training_flops_per_token(config, seq_len: int, head_fraction: float = 1.0,
                             head_transform: bool = False) -> float:
    return 3 * forward_flops_per_token(config, seq_len, head_fraction, head_transform)
