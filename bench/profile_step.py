#!/usr/bin/env python
"""Where the time of one training step goes: tokens/s and the top operators of ligo's step
(loss module forward + backward, clipping, fused AdamW) on random token ids with 15 % MLM
labels (the data pipeline is not part of it), optionally with `torch.compile`.

    python bench/profile_step.py                          # bert-6L-512H, bf16, eager
    python bench/profile_step.py --compile                # the same, compiled (first step timed apart)
    python bench/profile_step.py --model configs/gpt2-6L-512H.json --precision fp32
"""
from __future__ import annotations

import argparse
import contextlib
import sys
import time
from pathlib import Path

import torch

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
from ligo.precision import native_bfloat16  # noqa: E402


def main(argv=None):
    from ligo.families import family_of
    from ligo.models import build_model, load_config
    from ligo.train.objective import LanguageModelingLoss
    from ligo.train.optim import build_optimizer

    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", default=str(REPO / "configs/bert-6L-512H.json"))
    parser.add_argument("--batch_size", type=int, default=32)
    parser.add_argument("--seq_len", type=int, default=128)
    parser.add_argument("--precision", choices=("bf16", "fp32"),
                        default="bf16" if native_bfloat16("cpu") else "fp32",  # it runs on the CPU
                        help="default: bf16 where the CPU has bf16 instructions (ligo.precision)")
    parser.add_argument("--steps", type=int, default=8)
    parser.add_argument("--compile", action="store_true")
    parser.add_argument("--top", type=int, default=12)
    args = parser.parse_args(argv)

    config = load_config(args.model)
    family = family_of(config)
    torch.manual_seed(0)
    model = build_model(config, family)
    loss_module = LanguageModelingLoss(model, family).train()
    forward = torch.compile(loss_module) if args.compile else loss_module
    optimizer = build_optimizer(model, 1e-4, 0.01, (0.9, 0.98), 1e-6)
    ids = torch.randint(1000, config.vocab_size, (args.batch_size, args.seq_len))
    labels = torch.where(torch.rand(ids.shape) < 0.15, ids, -100) if family.objective == "mlm" else ids
    autocast = (lambda: torch.autocast("cpu", dtype=torch.bfloat16)) if args.precision == "bf16" \
        else contextlib.nullcontext

    def step():
        with autocast():
            out = forward(ids, labels)
        out["loss_sum"].backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)

    start = time.perf_counter()
    step()
    print(f"first step (includes compilation when --compile): {time.perf_counter() - start:.1f}s")
    step()
    start = time.perf_counter()
    for _ in range(args.steps):
        step()
    seconds = (time.perf_counter() - start) / args.steps
    print(f"{Path(args.model).name} {args.precision}{' compiled' if args.compile else ''}: "
          f"{seconds:.3f} s/step, {args.batch_size * args.seq_len / seconds:,.0f} tokens/s")
    from torch.profiler import ProfilerActivity, profile

    with profile(activities=[ProfilerActivity.CPU]) as prof:
        for _ in range(3):
            step()
    print(prof.key_averages().table(sort_by="self_cpu_time_total", row_limit=args.top))


if __name__ == "__main__":
    main()
