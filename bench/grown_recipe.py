#!/usr/bin/env python
"""Which after-growth recipe should every grown run share? A sweep of the shared recipe
(learning rate, warmup, length of the LR schedule) on the grown methods of one
`bench/growth.py` seed, reusing that seed's trained scratch run (the goal) and source model.

Every method gets every recipe: no method is tuned alone. For each (recipe, method): the eval
loss 40 and 120 steps after growth, the step and FLOPs at which it reaches scratch's final
loss, and the reuse FLOPs savings (the LiGO operator's FLOPs counted, as in bench/growth.py).

    python bench/grown_recipe.py --preset gpt2 --seed_dir WORK/gpt2-seed1 \
        --recipes 2e-3:40 1e-3:40 2e-3:40:800 --methods stack bert2bert ligo \
        --output bench/results/grown_recipe_gpt2.json

A recipe is LR:WARMUP[:SCHEDULE_STEPS] (schedule length default: the preset's --steps).
LiGO operators already in <seed_dir>/<method>_operator are reused (trained there otherwise).
"""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import growth  # noqa: E402 - bench/growth.py: presets, recipe, run_method, cost_to_reach
from reports import command_line, write_json  # noqa: E402 - bench/reports.py

from ligo.precision import bf16_flag  # noqa: E402

GROWN_METHODS = ("stack", "interpolate", "bert2bert", "double", "zero", "msg", *growth.LIGO_INITS)
DEFAULT_LIGO_STEPS = 100  # bench/growth.py's --ligo_steps; its operators are reused as they are


def parse_recipe(text: str) -> dict:
    parts = text.split(":")
    try:
        if len(parts) not in (2, 3):
            raise ValueError
        recipe = {"lr": float(parts[0]), "warmup": int(parts[1]),
                  "schedule_steps": int(parts[2]) if len(parts) == 3 else None}
    except ValueError:
        raise SystemExit(f"error: recipe {text!r} is not LR:WARMUP[:SCHEDULE_STEPS], e.g. 1e-3:40:800") from None
    steps = recipe["schedule_steps"]
    if not (recipe["lr"] > 0 and recipe["warmup"] >= 0 and (steps is None or steps > 0)):
        raise SystemExit(f"error: recipe {text!r}: LR must be > 0, warmup >= 0, schedule steps > 0")
    return recipe


def recipe_name(recipe: dict) -> str:
    name = f"lr{recipe['lr']:g}-warmup{recipe['warmup']}"
    return name + (f"-schedule{recipe['schedule_steps']}" if recipe["schedule_steps"] else "")


def loss_after(curve: list[dict], steps_after_growth: int) -> float | None:
    """Eval loss at the first eval at least `steps_after_growth` steps after growth (a grown
    run counts its steps from growth)."""
    for point in curve:
        if point["step"] >= steps_after_growth:
            return point["loss"]
    return None


def summarise_run(curve: list[dict], goal: float, scratch_flops: float) -> dict:
    flops = growth.cost_to_reach(curve, goal, "flops")
    reached_at = next((p["step"] for p in curve if p["loss"] <= goal), None)
    return {"loss_40_steps_after": loss_after(curve, 40),
            "loss_120_steps_after": loss_after(curve, 120), "final_loss": curve[-1]["loss"],
            "reached_goal_at_step": reached_at, "flops_to_goal": flops,
            "reuse_flops_savings": None if flops is None else 1 - flops / scratch_flops}


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--preset", choices=list(growth.PRESETS), default="gpt2")
    parser.add_argument("--seed_dir", required=True, help="a bench/growth.py seed folder "
                        "(<workdir>/<preset>-seed<N>) holding its trained scratch and small runs")
    parser.add_argument("--seed", type=int, default=1, help="the seed that folder was run with")
    parser.add_argument("--recipes", nargs="+", required=True, type=parse_recipe)
    parser.add_argument("--methods", nargs="+", default=["stack", "bert2bert", "ligo"],
                        choices=GROWN_METHODS)
    parser.add_argument("--train_files", nargs="+")
    parser.add_argument("--cache_dir")
    parser.add_argument("--ligo_steps", type=int, default=DEFAULT_LIGO_STEPS)
    parser.add_argument("--ligo_learning_rate", type=float, default=1e-3)
    parser.add_argument("--width_split_noise", type=float, default=growth.SPLIT_NOISE,
                        help="stack/bert2bert: as bench/growth.py's flag")
    parser.add_argument("--ligo_width_form", choices=growth.LIGO_WIDTH_FORMS, default=growth.LIGO_WIDTH_FORM,
                        help="the LiGO rows' width matrices: as bench/growth.py's flag")
    parser.add_argument("--eval_max_batches", type=int, default=8)  # as bench/growth.py: its eval set
    growth.add_bf16_argument(parser)
    parser.add_argument("--output", default="out/grown_recipe.json")
    args = parser.parse_args(argv)
    args.bf16 = bf16_flag(args.bf16)
    seed_dir = Path(args.seed_dir)
    for run in ("scratch", "small"):
        if not (seed_dir / run / "results.json").is_file():
            raise SystemExit(f"error: {seed_dir / run} holds no finished run (results.json); "
                             f"give the folder of a bench/growth.py seed (--seed_dir)")
    for name in ("source", "target", "steps", "tokenizer_path", "small_steps", "learning_rate",
                 "warmup_steps", "eval_steps", "batch_size", "block_size"):
        setattr(args, name, None)  # growth.recipe(): the preset's own recipe but the grown part
    args.train_files = args.train_files or [str(growth.SHARED / "corpus")]
    args.cache_dir = args.cache_dir or str(seed_dir.parent / "cache")
    scratch = json.loads((seed_dir / "scratch" / "results.json").read_text())
    scratch_curve = growth.read_curve(seed_dir / "scratch", scratch.get("unigram_loss"))
    goal = scratch_curve[-1]["loss"]
    scratch_flops = growth.cost_to_reach(scratch_curve, goal, "flops")
    output = Path(args.output)
    report = json.loads(output.read_text()) if output.is_file() else {
        "preset": args.preset, "seed": args.seed, "goal_eval_loss": goal,
        "unigram_loss": scratch.get("unigram_loss"), "scratch_flops": scratch_flops,
        "ligo_steps": args.ligo_steps, "commands": [], "recipes": {}}
    if abs(report["goal_eval_loss"] - goal) > 1e-9 or report["preset"] != args.preset:
        raise SystemExit(f"error: {output} holds a sweep of another seed or preset; give another --output")
    report["commands"].append(command_line("grown_recipe.py", argv))
    for recipe in args.recipes:
        args.grown_learning_rate, args.grown_warmup_steps = recipe["lr"], recipe["warmup"]
        args.grown_steps = recipe["schedule_steps"]
        name = recipe_name(recipe)
        rows = report["recipes"].setdefault(name, {"recipe": recipe, "methods": {}})["methods"]
        for method in args.methods:
            # a LiGO row with other than the default operator steps is a row (and operator) of its own
            label, operator = method, f"{method}_operator"
            if method.startswith("ligo") and args.ligo_steps != DEFAULT_LIGO_STEPS:
                label, operator = f"{method}-{args.ligo_steps}steps", f"{method}_operator_{args.ligo_steps}steps"
            if method in growth.COPYING_ROWS and args.width_split_noise:
                label = f"{method}-split{args.width_split_noise:g}"  # rows before it: plain copies
            if method.startswith("ligo") and args.ligo_width_form == "full":
                label += "-full"  # rows before the flag: structured width matrices
            print(f"=== {label}, after-growth recipe {name}", flush=True)
            out = seed_dir / "recipes" / name / label
            growth.run_method(method, args, seed_dir, seed_dir / "small", goal, seed=args.seed,
                              out=out, operator_dir=seed_dir / operator)
            rows[label] = summarise_run(growth.read_curve(out), goal, scratch_flops)
            write_json(report, output)  # after every run: partial results survive
    print(markdown(report))
    return report


def markdown(report: dict) -> str:
    lines = [f"Goal (scratch's final eval loss): {report['goal_eval_loss']:.4f}; {report['preset']}, "
             f"seed {report['seed']}.", "",
             "| after-growth recipe | method | eval loss 40 steps after growth | 120 steps after | "
             "reached goal at step | reuse FLOPs savings |", "|---|---|---:|---:|---:|---:|"]
    fmt = lambda v, spec=".4f": "—" if v is None else format(v, spec)  # noqa: E731
    for name, entry in report["recipes"].items():
        for method, row in entry["methods"].items():
            savings = "—" if row["reuse_flops_savings"] is None else f"{100 * row['reuse_flops_savings']:.1f} %"
            lines.append(f"| {name} | {method} | "
                         f"{fmt(row['loss_40_steps_after'])} | {fmt(row['loss_120_steps_after'])} | "
                         f"{fmt(row['reached_goal_at_step'], 'd')} | {savings} |")
    return "\n".join(lines)


if __name__ == "__main__":
    main()
