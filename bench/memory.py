#!/usr/bin/env python
"""Peak memory of one training step (forward, backward, AdamW) at growing batch sizes, for
ligo's loss (vocabulary projection and cross-entropy fused, in chunks of label tokens: no
logits are kept for backward) and transformers' own loss (`model(ids, labels=...)`).

Each measurement runs in a fresh process and reports its peak resident memory (ru_maxrss),
so nothing of one configuration stays in the next. A configuration whose float32 logits alone
would not fit under --limit_gb is not run; its analytic logits size is reported instead.

    python bench/memory.py --output bench/results/memory.json
    python bench/memory.py --families gpt2 --batches 32 256 --losses ligo transformers
"""
from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(REPO / "bench"))  # reports.py, next to this script
CONFIGS = {"gpt2": "gpt2-2L-128H.json", "bert": "bert-2L-128H.json"}
LOSSES = ("ligo", "transformers")


def logits_gb(config: dict, family: str, batch: int, block: int, mlm_probability: float = 0.15) -> float:
    """Float32 bytes of the logits of every label token of one step, in GB."""
    labels = batch * (block - 1) if family == "gpt2" else batch * block * mlm_probability
    return labels * config["vocab_size"] * 4 / 1e9


def one_step(family: str, batch: int, block: int, loss_kind: str) -> dict:
    """In this process: one bf16 training step; peak RSS before and after it."""
    import torch

    from ligo.families import FAMILIES
    from ligo.models import build_model, load_config
    from ligo.train import objective
    from ligo.train.optim import build_optimizer

    torch.manual_seed(0)
    config = load_config(REPO / "configs" / CONFIGS[family])
    model = build_model(config, FAMILIES[family])
    optimizer = build_optimizer(model, 1e-4, 0.01, (0.9, 0.98), 1e-6)
    ids = torch.randint(5, config.vocab_size, (batch, block))
    labels = ids.clone()
    if family != "gpt2":
        labels[torch.rand(ids.shape) > 0.15] = -100
    before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1e6  # KB -> GB (Linux)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        if loss_kind == "transformers":
            loss = model(input_ids=ids, labels=labels).loss
        else:
            out = objective.LanguageModelingLoss(model, FAMILIES[family]).train()(ids, labels)
            loss = out["loss_sum"] / out["tokens"]
    loss.backward()
    optimizer.step()
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1e6
    return {"peak_gb": peak, "before_step_gb": before, "step_gb": peak - before}


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--families", nargs="+", default=list(CONFIGS), choices=list(CONFIGS))
    parser.add_argument("--batches", nargs="+", type=int, default=[32, 128, 256])
    parser.add_argument("--block", type=int, default=128)
    parser.add_argument("--losses", nargs="+", default=list(LOSSES), choices=LOSSES)
    parser.add_argument("--limit_gb", type=float, default=12.0,
                        help="skip a configuration whose float32 logits alone exceed this")
    parser.add_argument("--output", default="out/memory.json")
    parser.add_argument("--one", nargs=4, metavar=("FAMILY", "BATCH", "BLOCK", "LOSS"),
                        help=argparse.SUPPRESS)  # the child process
    args = parser.parse_args(argv)
    if args.one:
        family, batch, block, loss_kind = args.one
        print(json.dumps(one_step(family, int(batch), int(block), loss_kind)))
        return {}
    rows = []
    for family in args.families:
        config = json.loads((REPO / "configs" / CONFIGS[family]).read_text())
        for batch in args.batches:
            analytic = logits_gb(config, family, batch, args.block)
            for loss_kind in args.losses:
                row = {"family": family, "config": CONFIGS[family], "batch": batch,
                       "block": args.block, "loss": loss_kind, "logits_gb": analytic}
                if analytic > args.limit_gb and loss_kind != "ligo":  # ligo's memory is bounded
                    row["skipped"] = f"float32 logits alone need {analytic:.1f} GB > --limit_gb"
                else:
                    done = subprocess.run([sys.executable, __file__, "--one", family, str(batch),
                                           str(args.block), loss_kind], capture_output=True,
                                          text=True, env={**os.environ, "PYTHONPATH": str(REPO)})
                    if done.returncode != 0:
                        row["failed"] = done.stderr.strip().splitlines()[-1] if done.stderr else "killed"
                    else:
                        row.update(json.loads(done.stdout.strip().splitlines()[-1]))
                rows.append(row)
                print(json.dumps(row), flush=True)
    import torch
    from reports import command_line, write_json

    report = {"command": command_line("memory.py", argv),
              "torch": torch.__version__, "rows": rows}
    write_json(report, args.output)
    print(markdown(report))
    return report


def markdown(report: dict) -> str:
    lines = ["| family | batch × block | float32 logits | ligo | transformers' loss |",
             "|---|---|---:|---:|---:|"]
    cells: dict = {}
    for row in report["rows"]:
        value = (f"{row['peak_gb']:.2f} GB" if "peak_gb" in row
                 else "not run" if "skipped" in row else "failed")
        cells.setdefault((row["family"], row["batch"], row["block"], row["logits_gb"]), {})[row["loss"]] = value
    for (family, batch, block, logits), by_loss in cells.items():
        lines.append(f"| {family} | {batch} × {block} | {logits:.2f} GB | "
                     + " | ".join(by_loss.get(k, "—") for k in LOSSES) + " |")
    return "\n".join(lines)


if __name__ == "__main__":
    main()
