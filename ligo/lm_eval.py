"""Language-model evaluation of any checkpoint (ours or an HF BERT/RoBERTa/GPT-2 folder).

    python -m ligo.lm_eval out/gpt2 --eval_files held_out.txt --max_length 1024 --stride 512
    python -m ligo.lm_eval out/bert --eval_files held_out.txt --pseudo_perplexity
    python -m ligo.lm_eval out/gpt2 --lambada_file passages.txt

* Causal LM (GPT-2): perplexity with a sliding window (Hugging Face's recipe): windows of
  `max_length` tokens start every `stride` tokens and each token is scored once, in the
  first window whose new part contains it, so it sees up to max_length - stride tokens of
  context. stride == max_length is plain chunked evaluation; a stride above max_length
  would skip tokens and is refused. (staged training's eval_wikitext)
* Masked LM (BERT, RoBERTa): masked-token loss/accuracy with BERT's 15 % masking (fixed seed),
  and optionally pseudo-perplexity (Salazar et al. 2020: every token masked in turn).
* LAMBADA-style last-word accuracy for a file with one passage per line: a passage counts
  when every token of its last word is the model's top prediction — teacher-forced after
  the context for causal models, at [MASK] positions for masked ones (eval_lambada).
"""
from __future__ import annotations

import argparse
import json
import math
import sys
from pathlib import Path

import numpy as np
import torch

from ligo.config import AT_LEAST_1, check_range
from ligo.data.blocks import TokenBlocks
from ligo.data.collators import IGNORE_INDEX, MLMCollator
from ligo.data.corpus import resolve_corpus
from ligo.families import Family, family_of
from ligo.fileio import atomic_write_text
from ligo.models import load_config, load_pretrained
from ligo.train.checkpoint import require_model_folder
from ligo.train.loop import block_loss_totals
from ligo.train.objective import LanguageModelingLoss


def window_plan(num_tokens: int, max_length: int, stride: int) -> list[tuple[int, int, int]]:
    """(begin, end, first scored position) of each window. No token is scored twice; with
    stride < max_length every token after the first is scored, with stride == max_length the
    first token of each window has no context and is skipped (plain chunked evaluation)."""
    if not 0 < stride <= max_length:
        raise ValueError(f"--stride {stride} must be in [1, --max_length {max_length}]: a larger "
                         "stride would leave tokens between windows unscored")
    plan, scored_until = [], 1  # token 0 has no context: it is never predicted
    for begin in range(0, num_tokens, stride):
        end = min(begin + max_length, num_tokens)
        plan.append((begin, end, scored_until))
        scored_until = end
        if end == num_tokens:
            break
    return plan


@torch.no_grad()
def sliding_window_loss(loss: LanguageModelingLoss, ids: torch.Tensor, max_length: int,
                        stride: int, batch_size: int = 8) -> tuple[float, int]:
    """(summed negative log-likelihood, tokens scored) of a causal LM over one token stream."""
    plan = window_plan(len(ids), max_length, stride)
    total, count = 0.0, 0
    # windows of equal length go through the model together
    for length in sorted({end - begin for begin, end, _ in plan}, reverse=True):
        same = [w for w in plan if w[1] - w[0] == length]
        for start in range(0, len(same), batch_size):
            chunk = same[start:start + batch_size]
            begins = torch.tensor([b for b, _, _ in chunk])
            positions = begins[:, None] + torch.arange(length)  # (B, L)
            inputs = ids[positions]
            first = torch.tensor([s for _, _, s in chunk])[:, None]
            labels = torch.where(positions >= first, inputs, IGNORE_INDEX)
            out = loss(inputs, labels)
            total += out["loss_sum"].item()
            count += int(out["tokens"])
    return total, count


@torch.no_grad()
def pseudo_log_likelihood(loss: LanguageModelingLoss, block: torch.Tensor, mask_id: int,
                          positions: torch.Tensor, batch_size: int = 64) -> float:
    """Summed -log p(token_t | block with only t masked) over `positions` of one block."""
    total = 0.0
    for start in range(0, len(positions), batch_size):
        where = positions[start:start + batch_size]
        inputs = block.repeat(len(where), 1)
        rows = torch.arange(len(where))
        inputs[rows, where] = mask_id
        labels = torch.full_like(inputs, IGNORE_INDEX)
        labels[rows, where] = block[where]
        total += loss(inputs, labels)["loss_sum"].item()
    return total


def last_word_hits(logits: torch.Tensor, positions: torch.Tensor, targets: torch.Tensor) -> bool:
    """Is `targets` the argmax at every one of `positions` (logits: (T, V))?"""
    return bool((logits[positions].argmax(dim=-1) == targets).all())


@torch.no_grad()
def lambada_accuracy(model, tokenizer, family: Family, passages: list[str], max_length: int) -> float:
    hits = 0
    for passage in passages:
        context, _, word = passage.strip().rpartition(" ")
        ctx = tokenizer(context, add_special_tokens=False)["input_ids"]
        # byte-level BPE marks the word's leading space in its tokens; WordPiece does not
        target = tokenizer((" " if family.objective == "clm" else "") + word,
                           add_special_tokens=False)["input_ids"]
        if family.objective == "clm":
            ctx = ctx[-(max_length - len(target)):]
            ids = torch.tensor(ctx + target)
            logits = model(input_ids=ids[None, :-1]).logits[0]
            positions = torch.arange(len(ctx) - 1, len(ids) - 1)  # position t predicts t + 1
        else:
            ctx = ctx[-(max_length - len(target) - 2):]
            ids = torch.tensor([tokenizer.cls_token_id] + ctx + [tokenizer.mask_token_id] * len(target)
                               + [tokenizer.sep_token_id])
            logits = model(input_ids=ids[None]).logits[0]
            positions = torch.arange(1 + len(ctx), 1 + len(ctx) + len(target))
        hits += last_word_hits(logits, positions, torch.tensor(target))
    return hits / max(len(passages), 1)


def _stream(tokenizer, texts: list[str], separator: int | None) -> torch.Tensor:
    pieces = tokenizer(texts, add_special_tokens=False)["input_ids"]
    ids = [t for piece in pieces for t in piece + ([separator] if separator is not None else [])]
    return torch.tensor(ids, dtype=torch.int64)


def evaluate(model_dir: str, eval_files: list[str] | None = None, documents: str = "blank_line",
             max_length: int | None = None, stride: int | None = None, batch_size: int = 8,
             pseudo_perplexity: bool = False, max_eval_tokens: int = 200_000,
             lambada_file: str | None = None, seed: int = 0) -> dict:
    from transformers import AutoTokenizer

    require_model_folder(model_dir)
    config = load_config(model_dir)
    family = family_of(config)
    model = load_pretrained(family.build_class(), model_dir, config=config).eval()
    tokenizer = AutoTokenizer.from_pretrained(model_dir)
    max_length = max_length or family.max_block_size(config)
    if max_length > family.max_block_size(config):
        raise ValueError(f"--max_length {max_length} is above the model's "
                         f"{family.max_block_size(config)} positions")
    loss = LanguageModelingLoss(model, family).eval()
    results: dict = {"model": str(model_dir), "family": family.name, "max_length": max_length}
    if eval_files:
        texts = list(resolve_corpus(eval_files, documents).iter_texts())
        if family.objective == "clm":
            ids = _stream(tokenizer, texts, tokenizer.eos_token_id)[:max_eval_tokens]
            stride = stride or max_length
            nll, count = sliding_window_loss(loss, ids, max_length, stride, batch_size)
            results.update(stride=stride, tokens=count, loss=nll / count,
                           perplexity=math.exp(nll / count))
        else:
            ids = _stream(tokenizer, texts, tokenizer.sep_token_id)[:max_eval_tokens].numpy()
            blocks = TokenBlocks(ids, max_length, tokenizer.cls_token_id, tokenizer.sep_token_id)
            if len(blocks) == 0:
                raise ValueError(f"the evaluation text has fewer than {max_length} tokens")
            specials = [tokenizer.cls_token_id, tokenizer.sep_token_id, tokenizer.pad_token_id]
            collator = MLMCollator(tokenizer.mask_token_id, len(tokenizer), specials, seed)
            totals = block_loss_totals(loss, blocks, collator, np.arange(len(blocks)), batch_size,
                                       torch.device("cpu")).tolist()
            results.update(tokens=int(totals[1]), masked_loss=totals[0] / totals[1],
                           masked_perplexity=math.exp(totals[0] / totals[1]),
                           masked_accuracy=totals[2] / totals[1])
            if pseudo_perplexity:
                content = torch.arange(1, max_length - 1)
                nll = sum(pseudo_log_likelihood(loss, blocks.batch([i])[0], tokenizer.mask_token_id,
                                                content, batch_size * 8) for i in range(len(blocks)))
                scored = len(blocks) * len(content)
                results.update(pseudo_perplexity=math.exp(nll / scored), pseudo_tokens=scored)
    if lambada_file:
        passages = [line for line in Path(lambada_file).read_text().splitlines() if " " in line.strip()]
        if not passages:
            raise ValueError(f"{lambada_file} holds no passages (one per line, at least two words)")
        results.update(lambada_accuracy=lambada_accuracy(model, tokenizer, family, passages, max_length),
                       lambada_passages=len(passages))
    if not eval_files and not lambada_file:
        raise ValueError("nothing to evaluate: give --eval_files and/or --lambada_file")
    return results


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("model_dir")
    parser.add_argument("--eval_files", nargs="+")
    parser.add_argument("--documents", default="blank_line", choices=["blank_line", "line", "file"])
    parser.add_argument("--max_length", type=int, help="window / block length (default: the model's positions)")
    parser.add_argument("--stride", type=int, help="causal LM: window stride (default: max_length)")
    parser.add_argument("--batch_size", type=int, default=8)
    parser.add_argument("--pseudo_perplexity", action="store_true", help="masked LM: also pseudo-perplexity (slow)")
    parser.add_argument("--max_eval_tokens", type=int, default=200_000)
    parser.add_argument("--lambada_file", help="one passage per line; the last word is predicted")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--output_file", help="write the results as JSON here")
    args = parser.parse_args(sys.argv[1:] if argv is None else argv)
    for flag, value in (("--max_length", args.max_length), ("--stride", args.stride),
                        ("--batch_size", args.batch_size), ("--max_eval_tokens", args.max_eval_tokens)):
        check_range(flag, value, AT_LEAST_1)
    results = evaluate(args.model_dir, args.eval_files, args.documents, args.max_length, args.stride,
                       args.batch_size, args.pseudo_perplexity, args.max_eval_tokens,
                       args.lambada_file, args.seed)
    text = json.dumps(results, indent=1)
    print(text)
    if args.output_file:
        atomic_write_text(Path(args.output_file), text + "\n")
    return results


if __name__ == "__main__":
    from ligo.cli import run, setup_logging

    setup_logging()
    run(main)
