#!/usr/bin/env python
"""What makes LiGO's operator phase pay for itself? Operator runs alone, one per variant, on a
`bench/growth.py` preset, each from the same trained source, compared at equal FLOPs with the
fixed operator it generalises (stack + bert2bert_fpi) trained as an ordinary model.

For every variant: the eval loss of the large model at the operator's init, after its
training, and the fixed operator's loss at the same point, two ways: at its start (what the
operator must beat for free) and after as many FLOPs of ordinary training as the operator
spent (read off the `stack` run's curve in a growth results file, when given). An operator
whose end loss is not below the latter costs more than it brings.

    python bench/ligo_ablation.py --preset gpt2 --source_run WORK/gpt2-seed1/small \
        --growth_results bench/results/growth_gpt2.json --output bench/results/ligo_ablation_gpt2.json
    python bench/ligo_ablation.py --preset gpt2 --source_run ... --variants paper from_stack
"""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import growth  # noqa: E402 - bench/growth.py: presets, recipe, the runs' shared flags
from reports import command_line, write_json  # noqa: E402 - bench/reports.py

# name: (what it is, the operator run's extra flags)
VARIANTS = {
    "paper": ("stackbert_noisy rand (the paper's setting)", ["--fuse_init_scheme", "stackbert_noisy", "rand"]),
    "sel": ("stackbert_noisy sel", ["--fuse_init_scheme", "stackbert_noisy", "sel"]),
    "sel_noisy": ("stackbert_noisy sel_noisy", ["--fuse_init_scheme", "stackbert_noisy", "sel_noisy"]),
    "from_stack": ("init = stack + bert2bert_fpi exactly", ["--init_from_operator", "stack", "bert2bert_fpi"]),
    "from_stack_lr1e-4": ("init = stack + bert2bert_fpi, operator LR 1e-4",
                          ["--init_from_operator", "stack", "bert2bert_fpi", "--learning_rate", "1e-4"]),
    "from_stack_lr1e-2": ("init = stack + bert2bert_fpi, operator LR 1e-2",
                          ["--init_from_operator", "stack", "bert2bert_fpi", "--learning_rate", "1e-2"]),
    "paper_full": ("stackbert_noisy rand, full D2 x D1 width matrices",
                   ["--fuse_init_scheme", "stackbert_noisy", "rand", "--width_form", "full"]),
    "paper_untied": ("stackbert_noisy rand, untied expansions",
                     ["--fuse_init_scheme", "stackbert_noisy", "rand", "--no_fuse_tie_param"]),
}


def loss_at_flops(curve: list[dict], flops: float) -> float | None:
    """The eval loss a curve reaches after `flops` (linear between its eval points)."""
    previous = None
    for point in curve:
        if point["flops"] >= flops:
            if previous is None:
                return point["loss"]
            fraction = (flops - previous["flops"]) / (point["flops"] - previous["flops"])
            return previous["loss"] + fraction * (point["loss"] - previous["loss"])
        previous = point
    return None


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--preset", choices=list(growth.PRESETS), default="gpt2")
    parser.add_argument("--source_run", required=True, help="the trained source model folder "
                        "(a growth run's <workdir>/<preset>-seed<N>/small)")
    parser.add_argument("--variants", nargs="+", default=list(VARIANTS), choices=list(VARIANTS))
    parser.add_argument("--ligo_steps", type=int, default=100)
    parser.add_argument("--ligo_learning_rate", type=float, default=1e-3)
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--growth_results", help="a bench/growth.py results file of the same "
                        "preset and seed: its stack curve gives the fixed operator's loss at "
                        "equal FLOPs")
    parser.add_argument("--train_files", nargs="+")
    parser.add_argument("--workdir", default="out/ligo_ablation")
    parser.add_argument("--cache_dir")
    parser.add_argument("--eval_max_batches", type=int, default=8)  # as bench/growth.py: its eval set
    parser.add_argument("--bf16", default="true")
    parser.add_argument("--output", default="out/ligo_ablation/ligo_ablation.json")
    args = parser.parse_args(argv)
    for name in ("source", "target", "steps", "tokenizer_path", "small_steps", "learning_rate",
                 "warmup_steps", "grown_learning_rate", "grown_warmup_steps", "eval_steps",
                 "batch_size", "block_size"):
        setattr(args, name, None)  # growth.recipe(): the preset's own recipe, no overrides
    source_dir = Path(args.source_run)
    if not (source_dir / "config.json").is_file():
        raise SystemExit(f"error: --source {source_dir} holds no trained model (config.json)")
    args.train_files = args.train_files or [str(growth.SHARED / "corpus")]
    args.cache_dir = args.cache_dir or str(Path(args.workdir) / "cache")
    stack_curve = None
    if args.growth_results:
        results = json.loads(Path(args.growth_results).read_text())
        seed_runs = results["seeds"].get(str(args.seed), {}).get("runs", {})
        if results["setup"]["preset"] != args.preset or "stack" not in seed_runs:
            raise SystemExit(f"error: {args.growth_results} has no {args.preset} stack run for "
                             f"seed {args.seed}")
        stack_curve = seed_runs["stack"]["curve"]
    from ligo.grow_train import main as grow_main

    rows = {}
    for name in args.variants:
        what, flags = VARIANTS[name]
        out = Path(args.workdir) / name
        print(f"=== {name}: {what}", flush=True)
        result = grow_main(growth.operator_flags(args, args.seed, out, source_dir) + flags)
        row = {"what": what, "flags": flags, "operator_flops": result["flops"],
               "operator_seconds": result["train_seconds"], "steps": result["step"],
               "source_loss": result["source_eval_loss"],
               "fixed_operator_loss": result["fixed_operator_eval_loss"],
               "init_loss": result["init_eval_loss"], "end_loss": result["eval_loss"]}
        if stack_curve is not None:  # the fixed operator's model after the same FLOPs
            row["fixed_operator_loss_at_equal_flops"] = loss_at_flops(stack_curve, result["flops"])
        rows[name] = row
    report = {"command": command_line("ligo_ablation.py", argv),
              "preset": args.preset, "seed": args.seed, "ligo_steps": args.ligo_steps,
              "ligo_learning_rate": args.ligo_learning_rate, "variants": rows}
    write_json(report, args.output)
    print(markdown(report))
    return report


def markdown(report: dict) -> str:
    lines = ["| variant | at init | after operator | fixed operator (stack + FPI) | fixed operator "
             "after the same FLOPs | operator beats it by |", "|---|---:|---:|---:|---:|---:|"]
    for name, row in report["variants"].items():
        equal = row.get("fixed_operator_loss_at_equal_flops")
        gain = "—" if equal is None else f"{equal - row['end_loss']:+.4f}"
        lines.append(f"| {name}: {row['what']} | {row['init_loss']:.4f} | {row['end_loss']:.4f} | "
                     f"{row['fixed_operator_loss']:.4f} | "
                     f"{'—' if equal is None else f'{equal:.4f}'} | {gain} |")
    return "\n".join(lines)


if __name__ == "__main__":
    main()
