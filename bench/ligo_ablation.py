#!/usr/bin/env python
"""What makes LiGO's operator phase pay for itself? Operator runs alone, one per variant, on a
`bench/growth.py` preset, each from the same trained source, compared at equal FLOPs with the
fixed operator it generalises (stack + bert2bert_fpi) trained as an ordinary model.

For every variant: the eval loss of the large model at the operator's init, after its
training, and the fixed operator's loss at the same point, two ways: at its start (what the
operator must beat for free) and after as many FLOPs of ordinary training as the operator
spent (read off the fixed row's curve in a growth results file, when given: `bert2bert` or
`double` for the variants that start from it, `stack` for the others). An operator whose end loss is not
below the latter costs more than it brings.

With --grown (and --growth_results), each operator's model is then trained as the growth
benchmark's `ligo` row is (the preset's after-growth recipe, stopping at the goal) and its
reuse FLOPs savings is computed against that results file's scratch run of the same seed,
the operator's FLOPs counted: the figure that decides, beside the fixed rows' savings on that
seed. The variants that start from a copying fixed operator (FPI, AKI) start from it with
its copies split by --width_split_noise, as bench/growth.py's fixed rows and its
ligo_from_* rows do. With --fixed_row_reruns K, each fixed row compared is trained K more
times to the goal with its split re-drawn (--growth_seed 1..K), all else equal: how far one
seed's savings moves when only the init is perturbed, the yardstick for a variant's
difference from its fixed row on that seed.

    python bench/ligo_ablation.py --preset gpt2 --source_run WORK/gpt2-seed1/small \
        --growth_results bench/results/growth_gpt2.json --output bench/results/ligo_ablation_gpt2.json
    python bench/ligo_ablation.py --preset gpt2 --source_run ... --variants paper from_stack --grown
    python bench/ligo_ablation.py --preset bert --source_run ... --grown --growth_results ... \
        --variants --fixed_row_reruns 2 --rerun_rows double
"""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import growth  # noqa: E402 - bench/growth.py: presets, recipe, the runs' shared flags
from reports import command_line, write_json  # noqa: E402 - bench/reports.py

from ligo.precision import bf16_flag  # noqa: E402


def _steps(count: int) -> list[str]:
    """Operator flags for `count` steps instead of --ligo_steps (argparse: the last one wins)."""
    return ["--max_steps", str(count), "--eval_steps", str(count), "--logging_steps", str(count)]


def _batch(sequences: int) -> list[str]:
    """Operator steps of `sequences` sequences instead of the preset's batch: as many operator
    updates for a fraction of the FLOPs (its few parameters may need fewer tokens per update)."""
    return ["--per_device_train_batch_size", str(sequences)]


# every variant changes one thing of the official code's operator, structured width matrices
# (as every committed ablation ran; ligo's default is now full, the paper_full* variants' form)
VARIANTS_WIDTH_FORM = "structured"
# the paper's init with the paper's full D2 x D1 width matrices, what the paper_full* variants change
PAPER_FULL = ["--fuse_init_scheme", "stackbert_noisy", "rand", "--width_form", "full"]
# name: (what it is, the operator run's extra flags)
VARIANTS = {
    "paper": ("stackbert_noisy rand (the paper's setting)", ["--fuse_init_scheme", "stackbert_noisy", "rand"]),
    "sel": ("stackbert_noisy sel", ["--fuse_init_scheme", "stackbert_noisy", "sel"]),
    "sel_noisy": ("stackbert_noisy sel_noisy", ["--fuse_init_scheme", "stackbert_noisy", "sel_noisy"]),
    "from_stack": ("init = stack + bert2bert_fpi exactly", ["--init_from_operator", "stack", "bert2bert_fpi"]),
    "from_bert2bert": ("init = stack + bert2bert_aki exactly",
                       ["--init_from_operator", "stack", "bert2bert_aki"]),
    "from_double": ("init = stack + double exactly (the exact doubling, copies split)",
                    ["--init_from_operator", "stack", "double"]),
    "from_double_25steps": ("init = stack + double exactly, 25 operator steps",
                            ["--init_from_operator", "stack", "double", *_steps(25)]),
    "from_double_25steps_constant_lr": (
        "init = stack + double exactly, 25 operator steps at a constant LR (no decay: its end is not annealed)",
        ["--init_from_operator", "stack", "double", *_steps(25), "--lr_scheduler_type", "constant"]),
    "from_double_25steps_depth_only": (
        "init = stack + double exactly, 25 operator steps, only the depth coefficients learned "
        "(the width expansions stay the doubling's)",
        ["--init_from_operator", "stack", "double", *_steps(25), "--tune_width", "false"]),
    "double_trained_25steps": (
        "control, no operator: double's own weights trained 25 steps in the operator's run "
        "(same LR, schedule and FLOPs; a learned residual from 0), then the same grown run",
        ["--init_from_operator", "stack", "double", *_steps(25), "--tune_width", "false",
         "--tune_depth", "false", "--tune_residual", "--tune_residual_noise", "0"]),
    "from_bert2bert_25steps": ("init = stack + bert2bert_aki exactly, 25 operator steps",
                               ["--init_from_operator", "stack", "bert2bert_aki", *_steps(25)]),
    "from_bert2bert_10steps": ("init = stack + bert2bert_aki exactly, 10 operator steps",
                               ["--init_from_operator", "stack", "bert2bert_aki", *_steps(10)]),
    "paper_25steps": ("stackbert_noisy rand, 25 operator steps",
                      ["--fuse_init_scheme", "stackbert_noisy", "rand", *_steps(25)]),
    "paper_500steps": ("stackbert_noisy rand, 500 operator steps (the paper's second setting)",
                       ["--fuse_init_scheme", "stackbert_noisy", "rand", *_steps(500)]),
    "paper_1000steps": ("stackbert_noisy rand, 1,000 operator steps (the paper's third setting)",
                        ["--fuse_init_scheme", "stackbert_noisy", "rand", *_steps(1000)]),
    "paper_batch8": ("stackbert_noisy rand, 100 operator steps of 8 sequences (a quarter of the FLOPs)",
                     ["--fuse_init_scheme", "stackbert_noisy", "rand", *_batch(8)]),
    "from_bert2bert_batch8": ("init = stack + bert2bert_aki exactly, 100 operator steps of 8 sequences",
                              ["--init_from_operator", "stack", "bert2bert_aki", *_batch(8)]),
    "from_bert2bert_full_batch8": (
        "init = stack + bert2bert_aki exactly, full D2 x D1 width matrices, 100 operator steps of 8 sequences",
        ["--init_from_operator", "stack", "bert2bert_aki", "--width_form", "full", *_batch(8)]),
    "from_stack_lr1e-4": ("init = stack + bert2bert_fpi, operator LR 1e-4",
                          ["--init_from_operator", "stack", "bert2bert_fpi", "--learning_rate", "1e-4"]),
    "from_stack_lr1e-2": ("init = stack + bert2bert_fpi, operator LR 1e-2",
                          ["--init_from_operator", "stack", "bert2bert_fpi", "--learning_rate", "1e-2"]),
    "paper_lr1e-2": ("stackbert_noisy rand, operator LR 1e-2 (ten times the default)",
                     ["--fuse_init_scheme", "stackbert_noisy", "rand", "--learning_rate", "1e-2"]),
    "paper_warmup0": ("stackbert_noisy rand, no operator warmup (the default warms up 10 % of its steps)",
                      ["--fuse_init_scheme", "stackbert_noisy", "rand", "--warmup_steps", "0"]),
    "paper_full": ("stackbert_noisy rand, full D2 x D1 width matrices", [*PAPER_FULL]),
    "paper_full_batch8": ("stackbert_noisy rand, full D2 x D1 width matrices, 100 operator steps of 8 sequences",
                          [*PAPER_FULL, *_batch(8)]),
    "paper_full_25steps_batch8": (
        "stackbert_noisy rand, full D2 x D1 width matrices, 25 operator steps of 8 sequences (a sixteenth "
        "of the tokens)", [*PAPER_FULL, *_steps(25), *_batch(8)]),
    "paper_full_batch4": ("stackbert_noisy rand, full D2 x D1 width matrices, 100 operator steps of 4 sequences",
                          [*PAPER_FULL, *_batch(4)]),
    # the operator's init with nothing learned: is what the grown run gains the learning, or
    # the init's random mixes of the source's units? (one step of one sequence at LR 1e-12:
    # the operator run needs a step; its FLOPs are ~1e-4 of the default's, counted)
    "paper_full_init_only": (
        "control, nothing learned: the paper's init (stackbert_noisy rand, full width) materialised "
        "after one step of one sequence at LR 1e-12",
        [*PAPER_FULL, *_steps(1), *_batch(1), "--learning_rate", "1e-12"]),
    "paper_full_residual": (
        "stackbert_noisy rand, full D2 x D1 width matrices and a learned residual on every generated "
        "weight (the official code's --tune_residual: full-rank, trained beside the expansions)",
        [*PAPER_FULL, "--tune_residual"]),
    "paper_untied": ("stackbert_noisy rand, untied expansions",
                     ["--fuse_init_scheme", "stackbert_noisy", "rand", "--no_fuse_tie_param"]),
    # tied, every write into the residual stream goes through one hidden expansion: the generated
    # model's residual stream stays in its D1-dimensional span whatever the operator learns
    # (bench/unit_diversity.py); untied, each layer writes through its own
    "paper_full_untied": ("stackbert_noisy rand, full D2 x D1 width matrices, untied expansions",
                          [*PAPER_FULL, "--no_fuse_tie_param"]),
}


def fixed_row(name: str) -> str:
    """The growth benchmark's fixed row a variant is compared with: the one it starts from
    (bert2bert for an AKI start, double for an exact doubling), else stack (StackBERT, the
    init the paper's starts near)."""
    flags = VARIANTS[name][1]
    if "--init_from_operator" not in flags:
        return "stack"
    start = flags.index("--init_from_operator") + 1
    return next(row for row, operators in growth.FIXED_GROWTH.items()
                if list(operators) == flags[start:start + 2])


# the recipe a --grown run shares with the growth results it is compared with
SHARED_SETUP = {"source": "source", "target": "target", "steps": "steps", "batch_size": "batch",
                "block_size": "block", "grown_learning_rate": "grown_lr",
                "grown_warmup_steps": "grown_warmup", "grown_steps": "grown_steps",
                "eval_steps": "eval_steps", "eval_max_batches": None, "bf16": None}


def variant_flags(name: str, split: float) -> list[str]:
    """A variant's operator flags; one that starts from a copying fixed operator gets its split."""
    flags = list(VARIANTS[name][1])
    if "--init_from_operator" in flags and split:
        flags += ["--width_split_noise", repr(split)]
    return flags


def check_same_recipe(args, setup: dict) -> None:
    """--grown compares with the results file's scratch run: both must share the recipe."""
    chosen = growth.recipe(args)
    differs = [f"{key} {setup.get(key)} there, {chosen[name] if name else getattr(args, key)} here"
               for key, name in SHARED_SETUP.items()
               if str(setup.get(key)) != str(chosen[name] if name else getattr(args, key))]
    if differs:
        raise SystemExit(f"error: --grown compares with {args.growth_results}, whose recipe differs: "
                         + "; ".join(differs) + ". Give a results file of this preset's recipe")


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
    parser.add_argument("--variants", nargs="*", default=list(VARIANTS), choices=list(VARIANTS))
    parser.add_argument("--ligo_steps", type=int, default=100)
    parser.add_argument("--ligo_learning_rate", type=float, default=1e-3)
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--growth_results", help="a bench/growth.py results file of the same "
                        "preset and seed: its stack and bert2bert curves give the fixed "
                        "operator's loss at equal FLOPs, its scratch run --grown's goal")
    parser.add_argument("--train_files", nargs="+")
    parser.add_argument("--workdir", default="out/ligo_ablation")
    parser.add_argument("--cache_dir")
    parser.add_argument("--eval_max_batches", type=int, default=8)  # as bench/growth.py: its eval set
    growth.add_bf16_argument(parser)
    parser.add_argument("--width_split_noise", type=float, default=growth.SPLIT_NOISE,
                        help="the variants that start from a copying fixed operator start from "
                             "its copies split by this (bench/growth.py's default)")
    parser.add_argument("--grown", action="store_true", help="train each operator's model on to "
                        "the growth results' goal and report its reuse FLOPs savings")
    parser.add_argument("--fixed_row_reruns", type=int, default=0,
                        help="with --grown: train each fixed row the variants are compared with "
                             "(or --rerun_rows) this many more times, its split re-drawn "
                             "(--growth_seed 1..K; the growth row is seed 0) and all else equal: "
                             "how far a fixed row's savings moves when only its init is perturbed, "
                             "the yardstick for a variant's difference from it on one seed")
    parser.add_argument("--rerun_rows", nargs="+", choices=sorted(growth.FIXED_GROWTH),
                        help="the fixed rows --fixed_row_reruns trains (default: the variants' own)")
    parser.add_argument("--output", default="out/ligo_ablation/ligo_ablation.json")
    args = parser.parse_args(argv)
    args.bf16 = bf16_flag(args.bf16)
    for name in ("source", "target", "steps", "tokenizer_path", "small_steps", "learning_rate",
                 "warmup_steps", "grown_learning_rate", "grown_warmup_steps", "eval_steps",
                 "batch_size", "block_size"):
        setattr(args, name, None)  # growth.recipe(): the preset's own recipe, no overrides
    args.ligo_width_form = VARIANTS_WIDTH_FORM  # growth.operator_flags' form; a variant may name another
    if args.width_split_noise < 0:
        raise SystemExit(f"error: --width_split_noise {args.width_split_noise}: must be >= 0")
    if args.ligo_steps < 1:
        raise SystemExit(f"error: --ligo_steps {args.ligo_steps}: must be >= 1")
    if args.fixed_row_reruns < 0:
        raise SystemExit(f"error: --fixed_row_reruns {args.fixed_row_reruns}: must be >= 0")
    if args.rerun_rows and not args.fixed_row_reruns:
        raise SystemExit("error: --rerun_rows names the rows --fixed_row_reruns K retrains: give K >= 1")
    if args.fixed_row_reruns and not args.grown:
        raise SystemExit("error: --fixed_row_reruns trains fixed rows to the goal: add --grown")
    rerun_rows = sorted(args.rerun_rows or {fixed_row(name) for name in args.variants}) \
        if args.fixed_row_reruns else []
    if not args.variants and not rerun_rows:
        raise SystemExit("error: nothing to run: give --variants, or --fixed_row_reruns K with --rerun_rows")
    if args.grown and not args.growth_results:
        raise SystemExit("error: --grown needs --growth_results (its scratch run of the same seed "
                         "gives the goal and the cost the savings are measured against)")
    source_dir = Path(args.source_run)
    if not (source_dir / "config.json").is_file():
        raise SystemExit(f"error: --source_run {source_dir} holds no trained model (config.json): "
                         "give a growth run's <workdir>/<preset>-seed<N>/small")
    args.train_files = args.train_files or [str(growth.SHARED / "corpus")]
    args.cache_dir = args.cache_dir or str(Path(args.workdir) / "cache")
    seed_runs, summary = {}, None
    if args.growth_results:
        results = json.loads(Path(args.growth_results).read_text())
        seed_runs = results["seeds"].get(str(args.seed), {}).get("runs", {})
        needed = ({fixed_row(name) for name in args.variants} | set(rerun_rows)
                  | ({"scratch"} if args.grown else set()))
        if results["setup"]["preset"] != args.preset or needed - set(seed_runs):
            raise SystemExit(f"error: {args.growth_results} has no {args.preset} "
                             f"{'/'.join(sorted(needed - set(seed_runs)))} run for seed {args.seed}")
        if args.grown:
            check_same_recipe(args, results["setup"])
        summary = results["seeds"][str(args.seed)]["summary"]
    from ligo.grow_train import main as grow_main

    rows = {}
    for name in args.variants:
        what, flags = VARIANTS[name][0], variant_flags(name, args.width_split_noise)
        out = Path(args.workdir) / name
        print(f"=== {name}: {what}", flush=True)
        result = grow_main(growth.operator_flags(args, args.seed, out, source_dir) + flags)
        row = {"what": what, "flags": flags, "operator_flops": result["flops"],
               "operator_seconds": result["train_seconds"], "steps": result["step"],
               "source_loss": result["source_eval_loss"],
               "fixed_operator_loss": result["fixed_operator_eval_loss"],
               "init_loss": result["init_eval_loss"], "end_loss": result["eval_loss"]}
        compared = fixed_row(name)
        if compared in seed_runs:  # the fixed operator's model after the same FLOPs
            row["fixed_row"] = compared
            row["fixed_operator_loss_at_equal_flops"] = loss_at_flops(seed_runs[compared]["curve"],
                                                                      result["flops"])
        if args.grown:
            row.update(grown_savings(args, out, source_dir, seed_runs["scratch"]["curve"]))
        rows[name] = row
    reruns = {row: [fixed_row_rerun(args, row, growth_seed, source_dir, seed_runs["scratch"]["curve"])
                    for growth_seed in range(1, args.fixed_row_reruns + 1)] for row in rerun_rows}
    report = {"command": command_line("ligo_ablation.py", argv),
              "preset": args.preset, "seed": args.seed, "ligo_steps": args.ligo_steps,
              "ligo_learning_rate": args.ligo_learning_rate,
              "width_split_noise": args.width_split_noise, "variants": rows}
    if reruns:
        report["fixed_row_reruns"] = reruns
    if summary is not None and args.grown:  # what the variants compete with, on this seed
        report["goal_eval_loss"] = summary["goal_eval_loss"]
        report["growth_rows_savings"] = {method: row["reuse_flops_savings"]
                                         for method, row in summary["methods"].items()
                                         if method != "scratch"}
        # where a row does not reach the goal, how far it ends from it (the variants' too)
        report["growth_rows_distance"] = {method: row["distance_to_goal"]
                                          for method, row in summary["methods"].items()
                                          if method != "scratch"}
    write_json(report, args.output)
    print(markdown(report))
    return report


def grown_savings(args, operator_dir: Path, source_dir: Path, scratch_curve: list[dict]) -> dict:
    """Train the operator's model on (the growth benchmark's `ligo` row recipe, stopping at the
    goal) and its reuse FLOPs savings against the scratch curve: its curve's FLOPs start at the
    operator's, so they are counted."""
    goal = scratch_curve[-1]["loss"]
    out = operator_dir.parent / f"{operator_dir.name}-grown"
    return _trained_to_goal(growth.method_argv("ligo", args, operator_dir.parent, source_dir, goal,
                                               seed=args.seed, out=out, operator_dir=operator_dir),
                            out, scratch_curve)


def fixed_row_rerun(args, row: str, growth_seed: int, source_dir: Path, scratch_curve: list[dict]) -> dict:
    """The growth benchmark's fixed `row` of this seed once more, with its random split (and
    any other random choice of the operator) drawn from `growth_seed`: same source, data
    order and recipe, stopping at the goal."""
    out = Path(args.workdir) / f"{row}-growth_seed{growth_seed}"
    print(f"=== {row}, growth seed {growth_seed}", flush=True)
    argv = growth.method_argv(row, args, out.parent, source_dir, scratch_curve[-1]["loss"],
                              seed=args.seed, out=out) + ["--growth_seed", str(growth_seed)]
    return {"growth_seed": growth_seed, **_trained_to_goal(argv, out, scratch_curve)}


def _trained_to_goal(argv: list[str], out: Path, scratch_curve: list[dict]) -> dict:
    from ligo.pretrain import main as pretrain_main

    pretrain_main(argv)
    runs = {"scratch": {"curve": scratch_curve}, "run": {"curve": growth.read_curve(out)}}
    row = growth.summarise(runs)["methods"]["run"]  # the growth benchmark's own arithmetic
    return {"grown_final_loss": row["final_loss"], "grown_steps_run": row["steps_run"],
            "reuse_flops_savings": row["reuse_flops_savings"],
            "distance_to_goal": row["distance_to_goal"]}


def markdown(report: dict) -> str:
    grown = any("reuse_flops_savings" in row for row in report["variants"].values())
    lines = ["| variant | at init | after operator | fixed operator | fixed operator "
             "after the same FLOPs | operator beats it by |" + (" reuse FLOPs savings |" if grown else ""),
             "|---|---:|---:|---:|---:|---:|" + ("---:|" if grown else "")]
    for name, row in report["variants"].items():
        equal = row.get("fixed_operator_loss_at_equal_flops")
        gain = "—" if equal is None else f"{equal - row['end_loss']:+.4f}"
        at_equal = "—" if equal is None else f"{equal:.4f} ({row.get('fixed_row', 'stack')})"
        line = (f"| {name}: {row['what']} | {row['init_loss']:.4f} | {row['end_loss']:.4f} | "
                f"{row['fixed_operator_loss']:.4f} | {at_equal} | {gain} |")
        if grown:
            savings = row.get("reuse_flops_savings")
            line += (" — |" if "reuse_flops_savings" not in row else
                     f" not reached ({row['distance_to_goal']:.3f} short) |" if savings is None
                     else f" {savings:.1%} |")
        lines.append(line)
    fixed = report.get("growth_rows_savings")
    if fixed:
        lines.append("")
        lines.append(f"The growth benchmark's rows on seed {report['seed']} (goal "
                     f"{report['goal_eval_loss']:.4f}): " + ", ".join(
                         f"{method} {_reached(value, report.get('growth_rows_distance', {}).get(method))}"
                         for method, value in fixed.items()) + ".")
    for row, runs in report.get("fixed_row_reruns", {}).items():
        lines.append("")
        lines.append(f"{row} again, its split re-drawn (same source, data order and recipe): " + ", ".join(
            f"growth seed {run['growth_seed']} {_reached(run['reuse_flops_savings'], run['distance_to_goal'])}"
            for run in runs) + (f"; the growth row (seed 0): {_reached(fixed[row], report.get('growth_rows_distance', {}).get(row))}"
                                if fixed and row in fixed else "") + ".")
    return "\n".join(lines)


def _reached(savings: float | None, distance: float | None) -> str:
    if savings is not None:
        return f"{savings:.1%}"
    return "not reached" + ("" if distance is None else f" ({distance:.3f} short)")


if __name__ == "__main__":
    main()
