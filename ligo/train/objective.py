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


# label tokens per vocabulary-projection chunk: the peak memory of the head is one chunk's
# logits (GPT-2's 50,257-way head: 1,024 x 50,257 in bfloat16, 103 MB), whatever the batch.
LOSS_CHUNK_TOKENS = 1024
# on a CPU, rows of a chunk's logits taken through the float32 softmax at a time: a few MiB,
# so that the softmax's passes (max, exp, sum, scale) run in cache instead of streaming the
# whole chunk through memory once per pass. Measured on 2 cores (1,024 x 50,257 logits):
# 216 ms for the softmax and its gradient over the whole chunk at once, 53-58 ms in blocks of
# 8-16 rows.
SOFTMAX_BLOCK_BYTES = 4 << 20


def softmax_block_rows(device_type: str, vocab_size: int, rows: int) -> int:
    """How many of a chunk's `rows` logits rows one float32 softmax pass takes: cache-sized
    blocks on a CPU; the whole chunk on a GPU, where each block is ~13 kernel launches and
    there is no cache to fit (on an H100, GPT-2 12L-768H at batch 128 x 128, the CPU's
    20-row blocks made ~11,000 small operations a step, and ligo's loop ran at 0.70x the
    speed of transformers.Trainer: bench/results/throughput_h100.json)."""
    if device_type != "cpu":
        return rows
    return max(1, SOFTMAX_BLOCK_BYTES // (vocab_size * 4))


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
        features = features_before_decoder(self.family, self.head, hidden)
        # looked up at every call: under torch.func.functional_call (the LiGO operator's
        # training) the decoder's weight is the generated one
        decoder = self.model.get_output_embeddings()
        loss_sum, correct = linear_cross_entropy(features, decoder.weight, decoder.bias, targets,
                                                 count_correct=not self.training)
        out = {"loss_sum": loss_sum, "tokens": selected.sum()}
        if not self.training:
            out["correct"] = correct
        return out


def features_before_decoder(family: Family, head: torch.nn.Module, hidden: torch.Tensor) -> torch.Tensor:
    """The LM head up to its vocabulary projection (`head(x) == decoder(this(x))`, tested for
    every family): the projection and the softmax are fused in `linear_cross_entropy`."""
    if not family.head_transform:
        return hidden  # GPT-2, LLaMA: the head is the decoder
    if family.name == "bert":
        return head.predictions.transform(hidden)
    return head.layer_norm(F.gelu(head.dense(hidden)))  # RoBERTa: RobertaLMHead.forward


def linear_cross_entropy(features: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None,
                         targets: torch.Tensor, *, count_correct: bool = False):
    """Sum over rows of cross_entropy(features @ weight.T + bias, targets), and with
    `count_correct` how many rows' argmax is their target (else None).

    Neither all logits nor their float32 copy are ever held: the projection runs in chunks of
    LOSS_CHUNK_TOKENS rows, and when gradients are wanted each chunk's gradient (softmax minus
    one-hot, then through the projection) is computed at once in the forward pass and kept
    instead of the chunk's logits (the fused linear cross-entropy of Liger-Kernel); backward
    only scales it. Under autocast the projection runs in its dtype and the softmax in float32,
    as `F.cross_entropy(logits.float())` does; a float64 model stays float64."""
    compute_dtype = _compute_dtype(features.device.type, weight.dtype)
    if torch.is_grad_enabled() and any(t is not None and t.requires_grad for t in (features, weight, bias)):
        loss, correct = _LinearCrossEntropy.apply(features, weight, bias, targets, compute_dtype,
                                                  count_correct)
    else:
        loss, correct, _ = _chunks(features, weight, bias, targets, compute_dtype,
                                   want_grads=(False, False, False), count_correct=count_correct)
    return loss, (correct if count_correct else None)


def _compute_dtype(device_type: str, weight_dtype: torch.dtype) -> torch.dtype:
    if torch.is_autocast_enabled(device_type):
        return torch.get_autocast_dtype(device_type)
    return weight_dtype


class _LinearCrossEntropy(torch.autograd.Function):
    @staticmethod
    def forward(ctx, features, weight, bias, targets, compute_dtype, count_correct):
        loss, correct, grads = _chunks(features, weight, bias, targets, compute_dtype,
                                       want_grads=tuple(ctx.needs_input_grad[:3]),
                                       count_correct=count_correct)
        grad_features, grad_weight, grad_bias = grads
        ctx.save_for_backward(
            None if grad_features is None else grad_features.to(features.dtype),
            None if grad_weight is None else grad_weight.to(weight.dtype),
            None if grad_bias is None else grad_bias.to(bias.dtype))
        if correct is None:  # an argmax over the vocabulary is not free: only when asked
            correct = torch.zeros((), dtype=torch.long, device=loss.device)
        return loss, correct  # `correct`, an integer count, has no gradient

    @staticmethod
    def backward(ctx, grad_loss, grad_correct):
        return (*(None if g is None else g * grad_loss.to(g.dtype) for g in ctx.saved_tensors),
                None, None, None)


def _chunks(features, weight, bias, targets, compute_dtype: torch.dtype, *,
            want_grads: tuple[bool, bool, bool], count_correct: bool):
    """The loss (and hits, and the gradients of the loss sum that `want_grads` names) of the
    rows of `features`, LOSS_CHUNK_TOKENS at a time, the projection in `compute_dtype` (cast
    here, autocast off) and the softmax in float32 (float64 for a float64 model)."""
    with torch.autocast(features.device.type, enabled=False):
        features, weight = features.to(compute_dtype), weight.to(compute_dtype)
        bias = None if bias is None else bias.to(compute_dtype)
        softmax_dtype = torch.float64 if compute_dtype == torch.float64 else torch.float32
        want_features, want_weight, want_bias = want_grads  # want_bias is False without a bias
        gradient = any(want_grads)
        grad_features = torch.empty_like(features) if want_features else None
        grad_weight = (torch.zeros(weight.shape, dtype=softmax_dtype, device=weight.device)
                       if want_weight else None)
        grad_bias = torch.zeros(weight.shape[0], dtype=softmax_dtype, device=weight.device) if want_bias else None
        loss = torch.zeros((), dtype=softmax_dtype, device=features.device)
        correct = torch.zeros((), dtype=torch.long, device=features.device) if count_correct else None
        for start in range(0, len(targets), LOSS_CHUNK_TOKENS):
            rows = slice(start, start + LOSS_CHUNK_TOKENS)
            logits = F.linear(features[rows], weight, bias)  # (n, V) in the compute dtype
            if count_correct:
                correct += (logits.argmax(dim=-1) == targets[rows]).sum()
            loss += _softmax_in_place(logits, targets[rows], softmax_dtype, gradient=gradient)
            if not gradient:
                continue
            # `logits` now holds d(loss sum)/d(logits) = softmax - one-hot
            if want_features:
                grad_features[rows] = logits @ weight
            if want_weight:
                grad_weight += logits.T @ features[rows]
            if want_bias:
                grad_bias += logits.sum(dim=0, dtype=softmax_dtype)
    return loss, correct, (grad_features, grad_weight, grad_bias)


def _softmax_in_place(logits: torch.Tensor, targets: torch.Tensor, softmax_dtype: torch.dtype,
                      *, gradient: bool) -> torch.Tensor:
    """The cross-entropy sum of `logits` (n, V) at `targets`, the softmax in `softmax_dtype`
    over blocks of rows that stay in cache. With `gradient`, `logits` is overwritten by the
    gradient of that sum: softmax - one-hot (computed in `softmax_dtype`, then rounded)."""
    index = targets[:, None]
    target_logits = logits.gather(1, index).squeeze(1).to(softmax_dtype)
    block_rows = softmax_block_rows(logits.device.type, logits.shape[1], len(targets))
    log_partition = torch.empty(len(targets), dtype=softmax_dtype, device=logits.device)
    for start in range(0, len(targets), block_rows):
        rows = slice(start, start + block_rows)
        # a float32 copy under autocast; the logits themselves (a view) otherwise, which the
        # gradient overwrites anyway
        block = logits[rows].to(softmax_dtype)
        peak = block.amax(dim=-1, keepdim=True)
        block.sub_(peak).exp_()
        total = block.sum(dim=-1, keepdim=True)
        log_partition[rows] = (peak + total.log()).squeeze(1)
        if gradient:
            block.scatter_add_(1, index[rows], -total)  # exp(z_t - peak) - total: p_t - 1 once scaled
            torch.mul(block, total.reciprocal(), out=logits[rows])
    return (log_partition - target_logits).sum()
