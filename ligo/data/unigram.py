"""The unigram line: the loss of a model that has learned only token frequencies.

A language model first learns how often each token occurs; its loss then sits on a plateau
at the cross-entropy of predicting every label token by its frequency. Masked LM stays there
for a long time (the "unigram plateau"), and a curve measured there says nothing about
growth. Every run therefore computes this line for its own evaluation set, with the
collator's own labels (the masked positions for MLM, the next tokens for CLM), so the
comparison is exact: a model's eval loss below it is what it learned beyond frequencies.

Frequencies come from the training split, add-one smoothed over the tokens that can be
labels (special tokens never are in MLM), so a token unseen in training costs a finite
-log(1 / (N + V)) instead of infinity.
"""
from __future__ import annotations

from typing import Sequence

import numpy as np
import torch

from ligo.data.blocks import TokenBlocks
from ligo.data.collators import IGNORE_INDEX


def unigram_log_probabilities(stream: np.ndarray, vocab_size: int,
                              never_labels: Sequence[int] = ()) -> torch.Tensor:
    """(V,) float64 log-frequencies of the tokens in `stream`, add-one smoothed over the
    tokens not in `never_labels` (those get -inf: no label is ever one of them)."""
    counts = np.bincount(np.asarray(stream, dtype=np.int64), minlength=vocab_size)[:vocab_size]
    counts = torch.from_numpy(counts.astype(np.float64)) + 1.0
    excluded = torch.tensor(sorted(set(never_labels)), dtype=torch.int64)
    counts[excluded] = 0.0
    return (counts / counts.sum()).log()


def label_tokens(labels: torch.Tensor, objective: str) -> torch.Tensor:
    """The label ids a language-model loss is computed on, flat: the next tokens for causal
    LM (position t predicts t + 1), the chosen positions for masked LM."""
    if objective == "clm":
        return labels[:, 1:].reshape(-1)
    return labels[labels != IGNORE_INDEX]


def unigram_cross_entropy(log_probabilities: torch.Tensor, blocks: TokenBlocks, collator,
                          indices: np.ndarray, objective: str, batch_size: int = 512) -> float:
    """Mean -log p(label) over the labels the collator makes for blocks[indices] (the same
    labels an evaluation of those blocks scores), in nats."""
    total, count = 0.0, 0
    for start in range(0, len(indices), batch_size):
        part = np.asarray(indices[start:start + batch_size])
        targets = label_tokens(collator(blocks.batch(part), part)["labels"], objective)
        total -= log_probabilities[targets].sum().item()
        count += targets.numel()
    return total / max(count, 1)
