"""The pretraining loss as a module, so the data-parallel wrapper sees one forward.

Losses are *sums* over label tokens, returned with the token count: the training loop
divides by the number of label tokens in the whole global batch (all micro-batches, all
ranks). Gradients are then exactly those of the mean loss over the global batch, however
it is split, which a per-micro-batch mean (what most trainers do) is not for MLM, where
every sample has a different number of masked tokens.

The MLM head runs only on masked positions (about 15% of tokens): the vocabulary
projection is the largest matmul of a small BERT and 85% of it would be discarded.
"""
from __future__ import annotations

import logging

import torch
import torch.nn.functional as F

from ligo.data.collators import IGNORE_INDEX
from ligo.families import Family


class _PackedBlocksAreNotPadded(logging.Filter):
    """transformers warns "We strongly recommend passing in an `attention_mask`" whenever a
    block starts or ends with the pad id. GPT-2's pad id is its EOS, which separates the packed
    documents inside ligo's blocks; the blocks are never padded, so the warning is wrong here,
    and an all-ones mask would only add work to every forward."""

    def filter(self, record: logging.LogRecord) -> bool:
        return "strongly recommend passing in an `attention_mask`" not in record.getMessage()


logging.getLogger("transformers.modeling_utils").addFilter(_PackedBlocksAreNotPadded())


# label tokens per head + cross-entropy chunk. The float32 logits of all label tokens at
# once (GPT-2: 4,064 x 8,192 for batch 32 x 128, 133 MB) fall out of cache between the
# softmax's passes; in chunks of 1,024 the same head and loss, timed in isolation, took half
# the time (0.23 vs 0.47 s forward + backward on 2 cores), and a whole gpt2-4L-256H-8k step
# 0.87 -> 0.76 s. The sum is the same sum in another order.
LOSS_CHUNK_TOKENS = 1024
# Autograd keeps every chunk's logits for the backward pass, so chunking alone does not bound
# memory: GPT-2's 50,257-way head at batch 256 x 128 keeps > 20 GB of them. Above this many
# bytes of float32 logits per step, each chunk's head and loss are recomputed in the backward
# pass instead (activation checkpointing of the head): memory then holds one chunk's logits at
# a time, for one more head forward. Below it (the benchmark presets' 8k heads: 133 MB) the
# step stays as fast as before.
RECOMPUTE_LOGITS_ABOVE_BYTES = 1 << 30


class LanguageModelingLoss(torch.nn.Module):
    def __init__(self, model: torch.nn.Module, family: Family):
        super().__init__()
        self.model = model
        self.family = family
        self.head = getattr(model, family.head_attr)

    def forward(self, input_ids: torch.Tensor, labels: torch.Tensor) -> dict[str, torch.Tensor]:
        hidden = self.model.base_model(input_ids=input_ids).last_hidden_state  # (B, T, H)
        if self.family.objective == "clm":
            hidden, labels = hidden[:, :-1], labels[:, 1:]  # position t predicts token t+1
        selected = labels != IGNORE_INDEX
        hidden, targets = hidden[selected], labels[selected]  # (N, H), (N,): N = label tokens
        vocab = self.model.config.vocab_size
        recompute = (self.training and torch.is_grad_enabled() and hidden.requires_grad
                     and len(targets) * vocab * 4 > RECOMPUTE_LOGITS_ABOVE_BYTES)
        loss_sum, correct = None, None
        for start in range(0, max(len(targets), 1), LOSS_CHUNK_TOKENS):
            part = slice(start, start + LOSS_CHUNK_TOKENS)
            if recompute:
                from torch.utils.checkpoint import checkpoint

                chunk = checkpoint(self._chunk_loss, hidden[part], targets[part], use_reentrant=False)
            else:
                chunk, logits = self._chunk_loss(hidden[part], targets[part], keep_logits=True)
                if not self.training:  # accuracy is an evaluation metric; argmax over V is not free
                    hits = (logits.argmax(dim=-1) == targets[part]).sum()
                    correct = hits if correct is None else correct + hits
            loss_sum = chunk if loss_sum is None else loss_sum + chunk
        out = {"loss_sum": loss_sum, "tokens": selected.sum()}
        if not self.training:
            out["correct"] = correct
        return out

    def _chunk_loss(self, hidden: torch.Tensor, targets: torch.Tensor, keep_logits: bool = False):
        logits = self.head(hidden)  # (n, V)
        if logits.dtype in (torch.float16, torch.bfloat16):
            logits = logits.float()  # softmax over 30-50k classes needs float32 accumulation
        loss = F.cross_entropy(logits, targets, reduction="sum")
        return (loss, logits) if keep_logits else loss
