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

import torch
import torch.nn.functional as F

from ligo.data.collators import IGNORE_INDEX
from ligo.families import Family


# label tokens per head + cross-entropy chunk. The float32 logits of all label tokens at
# once (GPT-2: 4,064 x 8,192 for batch 32 x 128, 133 MB) fall out of cache between the
# softmax's passes; in chunks of 1,024 the same head and loss, timed in isolation, took half
# the time (0.23 vs 0.47 s forward + backward on 2 cores), and a whole gpt2-4L-256H-8k step
# 0.87 -> 0.76 s. The sum is the same sum in another order.
LOSS_CHUNK_TOKENS = 1024


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
        loss_sum, correct = None, None
        for start in range(0, max(len(targets), 1), LOSS_CHUNK_TOKENS):
            part = slice(start, start + LOSS_CHUNK_TOKENS)
            logits = self.head(hidden[part])  # (n, V)
            if logits.dtype in (torch.float16, torch.bfloat16):
                logits = logits.float()  # softmax over 30-50k classes needs float32 accumulation
            chunk = F.cross_entropy(logits, targets[part], reduction="sum")
            loss_sum = chunk if loss_sum is None else loss_sum + chunk
            if not self.training:  # accuracy is an evaluation metric; argmax over V is not free
                hits = (logits.argmax(dim=-1) == targets[part]).sum()
                correct = hits if correct is None else correct + hits
        out = {"loss_sum": loss_sum, "tokens": selected.sum()}
        if not self.training:
            out["correct"] = correct
        return out
