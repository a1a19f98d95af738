#!/usr/bin/env python
"""Growth-efficiency benchmark: how much compute and wall-clock does each growth method save
to reach the validation loss of the target model trained from scratch?

Every run uses the same corpus and split, tokenizer, target architecture, global batch,
sequence length, optimizer, evaluation set and seed; the runs are ordinary
`run_lm_distributed.py` / `run_grow_distributed.py` invocations (in this process):

    scratch       the target from random init (its final eval loss is the goal)
    small         the source from scratch: the checkpoint every reuse method grows from
    stack         StackBERT: depth stack, width bert2bert_fpi
    interpolate   depth interpolation, width bert2bert_fpi
    bert2bert     bert2bert_aki (width), stacking for depth
    double        staged training's exact doubling (net2net for other ratios)
    ligo          LiGO operator trained --ligo_steps (stackbert_noisy rand), then pretraining
    progressive   progressive stacking from scratch at the target width: half depth, then full
    pli           progressive layer insertion from half depth, a layer at a time
    staged        staged training from the source config, automatic (slope) schedule

Grown runs all get the same after-growth recipe (--grown_learning_rate, --grown_warmup_steps);
from-scratch runs (scratch, small, progressive, pli, staged) use --learning_rate/--warmup_steps.

Savings = 1 - cost / scratch cost, where cost is the FLOPs (or seconds) at which a run's eval
loss first reaches the scratch run's final eval loss (linear interpolation between eval
points). *Reuse*: the small model is given (LiGO paper), the operator's training is counted;
*end-to-end*: the small model's training counted too. A method that never reaches the goal
within its budget gets no savings (reported as such). With --stop_at_goal (the default) every
run but scratch and small ends at its first evaluation at or below the goal: the cost to reach
the goal, hence every savings number, is the same as in a full run (training is deterministic
and the LR schedule keeps the full budget); only the curves after the goal are not drawn.

    python bench/growth.py                         # BERT 3L-256H -> 6L-512H, ~20 min scratch
    python bench/growth.py --preset gpt2
    python bench/growth.py --quick                 # a smoke run of every method (~2 min)
    python bench/growth.py --table bench/results/growth_bert.json   # the README table
"""
from __future__ import annotations

import argparse
import json
import os
import shutil
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(REPO / "bench"))  # the shared helpers of bench/throughput.py
SHARED = Path(os.environ.get("LIGO_SHARED_DATA", REPO.parent / "shared" / "data"))

PRESETS = {
    "bert": dict(source="bert-3L-256H.json", target="bert-6L-512H.json", family="bert",
                 tokenizer=SHARED / "vocab" / "bert-base-uncased-vocab.txt", args="bert_wiki.txt"),
    "gpt2": dict(source="gpt2-3L-256H.json", target="gpt2-6L-512H.json", family="gpt2",
                 tokenizer=SHARED / "vocab" / "gpt2", args="gpt2_wiki.txt"),
}
METHODS = ("scratch", "small", "stack", "interpolate", "bert2bert", "double", "ligo",
           "progressive", "pli", "staged")
REUSE = {"stack", "interpolate", "bert2bert", "double", "ligo"}  # grown from `small`


def read_curve(run_dir: Path) -> list[dict]:
    """Eval points (step, tokens, flops, seconds, loss) from a run's metrics.jsonl."""
    points = []
    for line in (run_dir / "metrics.jsonl").read_text().splitlines():
        record = json.loads(line)
        if record["split"] == "eval":
            points.append({k: record[k] for k in ("step", "tokens", "flops", "loss")}
                          | {"seconds": record.get("train_seconds", 0.0)})
    return points


def cost_to_reach(points: list[dict], goal: float, axis: str) -> float | None:
    """The `axis` value where the eval loss first reaches `goal`, interpolated linearly."""
    previous = None
    for point in points:
        if point["loss"] <= goal:
            if previous is None:
                return point[axis]
            fraction = (previous["loss"] - goal) / (previous["loss"] - point["loss"])
            return previous[axis] + fraction * (point[axis] - previous[axis])
        previous = point
    return None


def run_method(method: str, args, work: Path, small_dir: Path, goal: float | None = None) -> Path:
    from ligo.grow_train import main as grow_main
    from ligo.pretrain import main as pretrain_main

    preset = PRESETS[args.preset]
    configs = REPO / "configs"
    out = work / method
    common = ["--config", str(configs / preset["args"]), "--train_files", *args.train_files,
              "--tokenizer_path", str(preset["tokenizer"]), "--cache_dir", str(work / "cache"),
              "--block_size", str(args.block_size), "--per_device_train_batch_size",
              str(args.batch_size), "--eval_steps", str(args.eval_steps), "--eval_max_batches",
              str(args.eval_max_batches), "--logging_steps", str(args.eval_steps),
              "--ckpt_steps", str(10 ** 9), "--seed", str(args.seed), "--bf16", str(args.bf16),
              "--output_dir", str(out), "--overwrite_output_dir", "--disable_tqdm",
              "--lr_scheduler_type", "linear", "--documents", "blank_line"]
    scratch_lr = ["--learning_rate", str(args.learning_rate), "--warmup_steps", str(args.warmup_steps)]
    grown_lr = ["--learning_rate", str(args.grown_learning_rate),
                "--warmup_steps", str(args.grown_warmup_steps)]
    target, source = (_config_path(args.target or preset["target"]),
                      _config_path(args.source or preset["source"]))
    steps = ["--max_steps", str(args.steps)]
    from_small = ["--source_model_path", str(small_dir), "--reset_optimizer"]
    half = max(1, _layers(target) // 2)
    if method == "scratch":
        argv = common + scratch_lr + steps + ["--config_name", target]
    elif method == "small":
        argv = common + scratch_lr + ["--config_name", source, "--max_steps", str(args.small_steps)]
    elif method in ("stack", "interpolate"):
        argv = common + grown_lr + steps + from_small + [
            "--config_name", target, "--grow_scheme", method, "--width_scheme", "bert2bert_fpi"]
    elif method == "bert2bert":
        argv = common + grown_lr + steps + from_small + [
            "--config_name", target, "--grow_scheme", "stack", "--width_scheme", "bert2bert_aki"]
    elif method == "double":
        argv = common + grown_lr + steps + from_small + [
            "--config_name", target, "--grow_scheme", "stack", "--width_scheme",
            "double" if _is_double(source, target) else "net2net"]
    elif method == "ligo":
        grow_main(common[:common.index("--output_dir")] + [
            "--output_dir", str(work / "ligo_operator"), "--overwrite_output_dir", "--disable_tqdm",
            "--config_name", target, "--source_model_path", str(small_dir), "--tune_width",
            "--tune_depth", "--fuse_init_scheme", "stackbert_noisy", "rand",
            "--max_steps", str(args.ligo_steps), "--learning_rate", str(args.ligo_learning_rate),
            "--eval_steps", str(args.ligo_steps), "--lr_scheduler_type", "linear",
            "--documents", "blank_line"])
        argv = common + grown_lr + steps + ["--config_name", target, "--grow_scheme", "ligo",
                                            "--source_model_path", str(small_dir),
                                            "--pretrained_ligo_path", str(work / "ligo_operator")]
    elif method == "progressive":
        first = args.steps // 3
        argv = common + scratch_lr + ["--config_name", target, "--stages", f"{half},{_layers(target)}",
                                      "--stage_steps", f"{first},{args.steps - first}"]
    elif method == "pli":
        inserts = _layers(target) - half
        patches = ",".join(f"{(i + 1) / (2 * (inserts + 1)):.3f}:{half + i}" for i in range(inserts))
        argv = common + scratch_lr + steps + ["--config_name", target, "--initial_num_layers",
                                              str(half), "--insert_patches", patches]
    elif method == "staged":
        argv = common + scratch_lr + steps + ["--config_name", source, "--grow_when", "slope",
                                              "--auto_growth", "both"]
    else:
        raise ValueError(f"unknown method {method!r}; choose from {', '.join(METHODS)}")
    if goal is not None and method not in ("scratch", "small"):
        argv += ["--stop_at_eval_loss", repr(goal)]
    start = time.perf_counter()
    pretrain_main(argv)
    (out / "bench_wall_seconds.txt").write_text(f"{time.perf_counter() - start:.1f}\n")
    return out


def _config_path(name: str) -> str:
    """A config file path, or the name of one in configs/."""
    return name if Path(name).is_file() else str(REPO / "configs" / name)


def _layers(config_path: str) -> int:
    return json.loads(Path(config_path).read_text()).get("num_hidden_layers") or \
        json.loads(Path(config_path).read_text())["n_layer"]


def _is_double(source: str, target: str) -> bool:
    s, t = (json.loads(Path(p).read_text()) for p in (source, target))
    hidden = lambda c: c.get("hidden_size") or c["n_embd"]  # noqa: E731
    return hidden(t) == 2 * hidden(s)


def movie_review_score(model_dir: Path, args) -> float:
    """Dev accuracy on the movie-review sentiment task (GLUE SST-2 layout), one LR and seed."""
    from ligo.glue import main as glue_main

    result = glue_main([str(model_dir), "--task_dir", str(SHARED / "classify" / "movie_reviews"),
                        "--output_dir", str(model_dir / "movie_reviews"), "--learning_rates",
                        str(args.glue_learning_rate), "--seeds", str(args.seed), "--epochs", "1",
                        "--max_seq_length", str(args.block_size), "--max_train_samples",
                        str(args.glue_train_samples)])
    return result["tasks"]["movie_reviews"]["score"]


def summarise(runs: dict[str, dict]) -> dict:
    goal = runs["scratch"]["curve"][-1]["loss"]
    scratch = {axis: cost_to_reach(runs["scratch"]["curve"], goal, axis) for axis in ("flops", "seconds")}
    small = runs.get("small", {}).get("results", {})
    rows = {}
    for method, run in runs.items():
        if method == "small":
            continue
        reached = {axis: cost_to_reach(run["curve"], goal, axis) for axis in ("flops", "seconds")}
        row = {"final_loss": run["curve"][-1]["loss"], "steps_run": run["curve"][-1]["step"],
               "reached_goal": reached["flops"] is not None,
               "flops_to_goal": reached["flops"], "seconds_to_goal": reached["seconds"]}
        for axis, key in (("flops", "flops"), ("seconds", "train_seconds")):
            if reached[axis] is None:
                row[f"reuse_{axis}_savings"] = row[f"end_to_end_{axis}_savings"] = None
                continue
            # a grown run's axes start at its growth cost (operator FLOPs/seconds): reuse
            row[f"reuse_{axis}_savings"] = 1 - reached[axis] / scratch[axis]
            extra = small.get(key, 0.0) if method in REUSE else 0.0
            row[f"end_to_end_{axis}_savings"] = 1 - (reached[axis] + extra) / scratch[axis]
        if "movie_reviews_dev_accuracy" in run:
            row["movie_reviews_dev_accuracy"] = run["movie_reviews_dev_accuracy"]
        rows[method] = row
    return {"goal_eval_loss": goal, "scratch_flops": scratch["flops"],
            "scratch_seconds": scratch["seconds"], "methods": rows}


def markdown(results: dict) -> str:
    def pct(value):
        return "—" if value is None else f"{100 * value:.1f} %"

    lines = ["| method | FLOPs savings (reuse) | wall-time savings (reuse) | FLOPs savings "
             "(end-to-end) | steps run | last eval loss | movie-review dev acc. |",
             "|---|---:|---:|---:|---:|---:|---:|"]
    for method, row in results["summary"]["methods"].items():
        acc = row.get("movie_reviews_dev_accuracy")
        lines.append(f"| {method} | {pct(row['reuse_flops_savings'])} | "
                     f"{pct(row['reuse_seconds_savings'])} | {pct(row['end_to_end_flops_savings'])}"
                     f" | {row.get('steps_run', '—')} | {row['final_loss']:.3f} | {'—' if acc is None else f'{100 * acc:.1f} %'} |")
    setup = results["setup"]
    lines.append("")
    lines.append(f"{setup['preset']}: {setup['source']} → {setup['target']}, {setup['steps']} steps "
                 f"per run (small: {setup['small_steps']}), batch {setup['batch_size']} × "
                 f"{setup['block_size']}, bf16 {setup['bf16']}, seed {setup['seed']}; goal = scratch "
                 f"final eval loss {results['summary']['goal_eval_loss']:.3f}; machine: "
                 f"{results['machine']['cpu']}, {results['machine']['cores']} cores. "
                 + ("Runs other than scratch and small end at their first eval at or below the "
                    "goal (--stop_at_goal), so their last eval loss is that crossing. "
                    if setup.get("stop_at_goal") else "") +
                 f"Command: `{results['command']}`.")
    return "\n".join(lines)


def plot(results: dict, folder: Path) -> list[Path]:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    written = []
    for axis, label in (("flops", "training FLOPs"), ("seconds", "wall-clock seconds")):
        figure, ax = plt.subplots(figsize=(7, 4.5))
        for method, run in results["runs"].items():
            xs = [p[axis] for p in run["curve"]]
            line, = ax.plot(xs, [p["loss"] for p in run["curve"]], label=method, marker=".")
            for event_x in run.get("growth_at", {}).get(axis, []):
                ax.axvline(event_x, color=line.get_color(), linestyle=":", alpha=0.6)
        ax.axhline(results["summary"]["goal_eval_loss"], color="black", linewidth=0.8)
        ax.set_xlabel(label)
        ax.set_ylabel("validation loss")
        ax.set_xscale("log" if axis == "flops" else "linear")
        ax.legend(fontsize=8)
        ax.set_title(f"{results['setup']['source']} → {results['setup']['target']}")
        path = folder / f"growth_{results['setup']['preset']}_loss_vs_{axis}.png"
        figure.tight_layout()
        figure.savefig(path, dpi=120)
        plt.close(figure)
        written.append(path)
    return written


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--preset", choices=list(PRESETS), default="bert")
    parser.add_argument("--source", help="source config in configs/ (default: the preset's)")
    parser.add_argument("--target", help="target config in configs/ (default: the preset's)")
    parser.add_argument("--methods", nargs="+", default=list(METHODS), choices=METHODS)
    parser.add_argument("--train_files", nargs="+", default=[str(SHARED / "corpus" / "wiki.txt")])
    parser.add_argument("--block_size", type=int, default=128)
    parser.add_argument("--batch_size", type=int, default=32)
    parser.add_argument("--steps", type=int, default=600,
                        help="budget of the target runs (600: ~20 min for the scratch run here)")
    parser.add_argument("--small_steps", type=int, default=600)
    parser.add_argument("--learning_rate", type=float, default=2e-4)  # 5e-4: plateau, see README
    parser.add_argument("--warmup_steps", type=int, default=60)
    parser.add_argument("--grown_learning_rate", type=float, default=2e-4)
    parser.add_argument("--grown_warmup_steps", type=int, default=30)
    parser.add_argument("--ligo_steps", type=int, default=100)
    parser.add_argument("--ligo_learning_rate", type=float, default=1e-3)
    parser.add_argument("--eval_steps", type=int, default=50)
    parser.add_argument("--eval_max_batches", type=int, default=8)
    parser.add_argument("--seed", type=int, default=42)
    parser.add_argument("--bf16", default="true")
    parser.add_argument("--glue", action=argparse.BooleanOptionalAction, default=True,
                        help="fine-tune each BERT result on the movie-review task")
    parser.add_argument("--glue_learning_rate", type=float, default=1e-4)
    parser.add_argument("--glue_train_samples", type=int, default=4000)
    parser.add_argument("--stop_at_goal", action=argparse.BooleanOptionalAction, default=True,
                        help="end each run but scratch and small at its first eval at or below "
                             "the scratch run's final loss (savings unchanged, much less time)")
    parser.add_argument("--quick", action="store_true", help="tiny sizes: a does-it-run check")
    parser.add_argument("--workdir", default=str(REPO / "out" / "bench_growth"))
    parser.add_argument("--output", help="results JSON (default bench/results/growth_<preset>.json)")
    parser.add_argument("--table", help="print the markdown table of this results JSON and exit")
    args = parser.parse_args(argv)
    if args.table:
        results = json.loads(Path(args.table).read_text())
        print(markdown(results))
        return results
    work = Path(args.workdir)
    shutil.rmtree(work, ignore_errors=True)
    work.mkdir(parents=True)
    if args.quick:  # tiny (2 layers, hidden 64, heads of 32) -> 4 layers, hidden 128
        args.source = args.source or f"{args.preset}-tiny.json"
        if not args.target:
            values = json.loads((REPO / "configs" / f"{args.preset}-tiny.json").read_text())
            wide = {"bert": dict(num_hidden_layers=4, hidden_size=128, num_attention_heads=4,
                                 intermediate_size=512),
                    "gpt2": dict(n_layer=4, n_embd=128, n_head=4, n_inner=512)}[args.preset]
            args.target = str(work / "quick_target.json")
            Path(args.target).write_text(json.dumps({**values, **wide}))
        args.steps, args.small_steps, args.ligo_steps = 24, 24, 4
        args.eval_steps, args.eval_max_batches, args.batch_size, args.block_size = 6, 2, 8, 64
        args.warmup_steps, args.grown_warmup_steps, args.bf16, args.glue = 4, 2, "false", False
    methods = [m for m in METHODS if m in args.methods or m in ("scratch", "small")]
    runs = {}
    for method in methods:
        print(f"=== {method}", flush=True)
        goal = runs["scratch"]["curve"][-1]["loss"] if args.stop_at_goal and runs else None
        out = run_method(method, args, work, work / "small", goal)
        result = json.loads((out / "results.json").read_text())
        run = {"curve": read_curve(out), "results": result,
               "growth_at": _growth_positions(out, result)}
        if args.glue and PRESETS[args.preset]["family"] != "gpt2" and method != "small":
            run["movie_reviews_dev_accuracy"] = movie_review_score(out, args)
        runs[method] = run
    import torch
    from throughput import cpu_name  # bench/throughput.py, next to this script

    results = {
        "command": "python bench/growth.py " + " ".join(argv if argv is not None else sys.argv[1:]),
        "machine": {"cpu": cpu_name(), "cores": os.cpu_count(),
                    "torch_threads": torch.get_num_threads(), "torch": torch.__version__},
        "setup": {"preset": args.preset, "source": args.source or PRESETS[args.preset]["source"],
                  "target": args.target or PRESETS[args.preset]["target"], "steps": args.steps,
                  "small_steps": args.small_steps, "batch_size": args.batch_size,
                  "block_size": args.block_size, "bf16": args.bf16, "seed": args.seed,
                  "learning_rate": args.learning_rate, "warmup_steps": args.warmup_steps,
                  "grown_learning_rate": args.grown_learning_rate,
                  "grown_warmup_steps": args.grown_warmup_steps, "ligo_steps": args.ligo_steps,
                  "train_files": args.train_files, "quick": args.quick,
                  "stop_at_goal": args.stop_at_goal},
        "runs": runs,
    }
    results["summary"] = summarise(runs)
    output = Path(args.output or (work / "growth_quick.json" if args.quick
                                  else REPO / "bench" / "results" / f"growth_{args.preset}.json"))
    output.parent.mkdir(parents=True, exist_ok=True)
    output.write_text(json.dumps(results, indent=1) + "\n")
    try:
        results["plots"] = [str(p) for p in plot(results, output.parent)]
    except ImportError:
        print("matplotlib not installed (pip install 'ligo[plot]'): no plots", flush=True)
    print(markdown(results))
    return results


def _growth_positions(out: Path, result: dict) -> dict:
    """FLOPs and seconds at each growth event of a run (for the plots' markers)."""
    steps = {e["step"] for e in result.get("growth_events", [])}
    found = {"flops": [], "seconds": []}
    for line in (out / "metrics.jsonl").read_text().splitlines():
        record = json.loads(line)
        if record["split"] == "growth" and record["step"] in steps:
            found["flops"].append(record["flops"])
            found["seconds"].append(record.get("train_seconds", 0.0))
    return found


if __name__ == "__main__":
    main()
