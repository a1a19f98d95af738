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
    zero          zero-initialised new width (MSG's init without its masks), stacking for depth
    msg           MSG: random new width and stacked layers under masks ramped 0 -> 1 over
                  --msg_ramp_steps (exact at mask 0)
    ligo          LiGO operator trained --ligo_steps (stackbert_noisy rand), then pretraining
    ligo_from_stack  the same, its operator initialised exactly as `stack` (stack +
                  bert2bert_fpi: --init_from_operator), so it starts at the source's loss
    ligo_from_bert2bert  the same, initialised exactly as `bert2bert` (stack + bert2bert_aki)
    ligo_layer_drop  the `ligo` row's operator, then pretraining with progressive layer
                  dropping (--layer_drop, --layer_drop_ramp_steps; ligo.train.drop)
    ligo_token_drop  the `ligo` row's operator, then pretraining with token dropping
                  (--token_drop: the middle layers skip that fraction of the positions)
    progressive   progressive stacking from scratch at the target width: half depth, then full
    pli           progressive layer insertion from half depth, a layer at a time
    staged        staged training from the source config, automatic (slope) schedule

Grown runs all get the same after-growth recipe (--grown_learning_rate, --grown_warmup_steps);
from-scratch runs (scratch, small, progressive, pli, staged) use --learning_rate/--warmup_steps.

Regime check: every run records its eval set's unigram line (the loss of predicting each label
by its training frequency, ligo.data.unigram). A seed whose scratch run does not end at least
REGIME_MARGIN nats below it is on the unigram plateau: the results are labelled
"regime": "plateau" and are not savings. A source that already ends at or below the goal makes
growth "save" by construction: "regime": "source_reaches_goal", not savings either.

Savings = 1 - cost / scratch cost, where cost is the FLOPs (or seconds) at which a run's eval
loss first reaches the scratch run's final eval loss (linear interpolation between eval
points). *Reuse*: the small model is given (LiGO paper), the operator's training is counted;
*end-to-end*: the small model's training counted too. A method that never reaches the goal
within its budget gets no savings (reported as such). With --stop_at_goal (the default) every
run but scratch and small ends at its first evaluation at or below the goal: the cost to reach
the goal, hence every savings number, is the same as in a full run (training is deterministic
and the LR schedule keeps the full budget); only the curves after the goal are not drawn.

    python bench/growth.py --preset gpt2 --seed 1                  # every method, one seed
    python bench/growth.py --preset gpt2 --seed 2 --methods core   # the paper's methods
    python bench/growth.py --merge out/a.json out/b.json --output bench/results/growth_gpt2.json
    python bench/growth.py --preset bert --lr_sweep 5e-4 1e-3 2e-3  # scratch alone, per LR
    python bench/growth.py --preset bert-paper --estimate --tflops 300   # FLOPs and GPU hours
    python bench/growth.py --quick                 # a smoke run of every method (~2 min)
    python bench/growth.py --table bench/results/growth_gpt2.json   # the README table
"""
from __future__ import annotations

import argparse
import hashlib
import json
import os
import shutil
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(REPO / "bench"))  # the shared helpers of bench/throughput.py
from reports import command_line, write_json  # noqa: E402 - bench/reports.py

from ligo.config import LIGO_WIDTH_FORM, LIGO_WIDTH_FORMS, POSITION_INITS  # noqa: E402 - argument choices only, no torch

SHARED = Path(os.environ.get("LIGO_SHARED_DATA", REPO.parent / "shared" / "data"))

# Each preset aims at a regime where the models learn on 2 CPU cores (scratch ends well below
# the unigram line, the source above scratch's final loss; docs/benchmarks.md): depth x2 and width x2 as the LiGO paper's Small -> Base,
# an 8k vocabulary trained on the benchmark corpus (a 30-50k vocabulary spends most of a
# small model's FLOPs in the head, and its rare tokens are never learned at this budget), no
# dropout (the runs see each token about once). Recipes: `lr` for every from-scratch run
# (picked by --lr_sweep on scratch alone: bench/results/growth_<preset>_lr_sweep.json),
# `grown_lr` one shared after-growth recipe: the same LR and warmup, as the LiGO paper trains
# grown models with the hyperparameters of training from scratch.
PRESETS = {
    # masked LM leaves the unigram plateau slowly on 2 cores: 40 % masking (2.7x the labels per
    # block) and a sinusoidal start for the learned position table are what made scratch clear
    # the regime check in 2,000 steps (docs/benchmarks.md: 0.92 nats below with 15 % masking
    # at 4,000 steps, 0.97 with 40 %, 1.20 with 40 % and sinusoids)
    "bert": dict(family="bert", source="bert-2L-128H-8k.json", target="bert-4L-256H-8k.json",
                 args="bert_wiki.txt", tokenizer=None, steps=2000, small_steps=3000, lr=1e-3,
                 warmup=100, grown_lr=1e-3, grown_warmup=100, grown_steps=1300, eval_steps=100,
                 batch=32, block=128, mlm_probability=0.4, position_init="sinusoidal"),
    "gpt2": dict(family="gpt2", source="gpt2-2L-128H-8k.json", target="gpt2-4L-256H-8k.json",
                 args="gpt2_wiki.txt", tokenizer=None, steps=1200, small_steps=1000, lr=2e-3,
                 warmup=40, grown_lr=2e-3, grown_warmup=40, grown_steps=800, eval_steps=40,
                 batch=32, block=128),
    # LLaMA-style (grouped-query attention 4/2 -> 8/4 heads, SwiGLU), GPT-2's recipe: its
    # learning rate is gpt2's sweep winner, not yet swept for this family
    "llama": dict(family="llama", source="llama-2L-128H-8k.json", target="llama-4L-256H-8k.json",
                  args="llama_wiki.txt", tokenizer=None, steps=1200, small_steps=1000, lr=2e-3,
                  warmup=40, grown_lr=2e-3, grown_warmup=40, eval_steps=40, batch=32, block=128),
    # the LiGO paper's BERT-Small -> BERT-Base (6L-512H -> 12L-768H), BERT's batch 256 and
    # LR 1e-4, the official LiGO after-growth recipe (2e-4, no warmup), for a GPU:
    # `--preset bert-paper --estimate` prints its FLOPs and the time they take
    "bert-paper": dict(family="bert", source="bert-6L-512H.json", target="bert-12L-768H.json",
                       args="bert_wiki.txt", tokenizer=SHARED / "vocab" / "bert-base-uncased-vocab.txt",
                       steps=100000, small_steps=100000, lr=1e-4, warmup=10000, grown_lr=2e-4,
                       grown_warmup=0, eval_steps=2000, batch=256, block=128),
}
MLM_FAMILIES = ("bert", "roberta")
_MLM_DEFAULT = 0.15  # the masking rate of every masked-LM run, and of files from before the flag
METHODS = ("scratch", "small", "stack", "interpolate", "bert2bert", "double", "zero", "msg", "ligo",
           "ligo_from_stack", "ligo_from_bert2bert", "ligo_layer_drop", "ligo_token_drop",
           "progressive", "pli", "staged")
# how each LiGO row's operator starts: the paper's init, or exactly where a fixed operator ends
LIGO_INITS = {"ligo": ["--fuse_init_scheme", "stackbert_noisy", "rand"],
              "ligo_from_stack": ["--init_from_operator", "stack", "bert2bert_fpi"],
              "ligo_from_bert2bert": ["--init_from_operator", "stack", "bert2bert_aki"]}
# LiGO (the `ligo` row's operator, shared) trained on with compute-saving drops afterwards
DROP_ROWS = ("ligo_layer_drop", "ligo_token_drop")
# the LiGO operators' width matrices (--ligo_width_form, default ligo's); results files from
# before the flag ran the official code's structured form
LIGO_WIDTH_FORM_BEFORE_THE_FLAG = "structured"
REUSE = {"stack", "interpolate", "bert2bert", "double", "zero", "msg", *LIGO_INITS,
         *DROP_ROWS}  # grown from `small`
# settings of single rows: files merge whatever these are, unless both ran the row
# the fixed rows whose width operator copies units (--width_split_noise splits their copies)
COPYING_ROWS = ("stack", "interpolate", "bert2bert", "double")
# the LiGO rows that start exactly where a copying fixed row starts: with the same split
FROM_COPYING_ROWS = ("ligo_from_stack", "ligo_from_bert2bert")
ROW_SETTINGS = {"width_split_noise": COPYING_ROWS, "from_operator_split_noise": FROM_COPYING_ROWS,
                "msg_ramp_steps": ("msg",), "layer_drop": ("ligo_layer_drop",),
                "layer_drop_ramp_steps": ("ligo_layer_drop",), "token_drop": ("ligo_token_drop",),
                "ligo_width_form": (*LIGO_INITS, *DROP_ROWS)}
# the runs that start from a fresh model (their --position_init is the preset's); every other
# row grows `small` and keeps its position table
FROM_SCRATCH = ("scratch", "small", "progressive", "pli", "staged")
# the from-scratch rows that grow during their own run
GROWING_FROM_SCRATCH = tuple(m for m in FROM_SCRATCH if m not in ("scratch", "small"))
# the methods of the LiGO paper's comparison: run with every seed (--seeds); others once
CORE_METHODS = ("scratch", "small", "stack", "bert2bert", "ligo")
# the (depth, width) operators of the fixed rows (`double` is net2net where the target is not
# an exact doubling of the source)
FIXED_GROWTH = {"stack": ("stack", "bert2bert_fpi"), "interpolate": ("interpolate", "bert2bert_fpi"),
                "bert2bert": ("stack", "bert2bert_aki"), "double": ("stack", "double"),
                "zero": ("stack", "zero"), "msg": ("msg", "msg")}
# the fixed (not learned) operators a LiGO row is compared with, seed by seed
FIXED_OPERATORS = tuple(FIXED_GROWTH)
# ... of which these make the large weights linear functions of the source's (what LiGO
# learns); MSG's new units start at random
LINEAR_FIXED_OPERATORS = tuple(m for m in FIXED_OPERATORS if m != "msg")
# scratch must end at least this far below the eval set's unigram line, or nothing was learned
# beyond token frequencies and no savings figure means anything ("regime": "plateau")
REGIME_MARGIN = 1.0
# ... and the source must end above the goal: a source already at the goal "saves" by
# construction (the target's budget is too short for a growth comparison)
REGIMES = ("learning", "source_reaches_goal", "plateau")  # best to worst
# the presets train without dropout, so a unit copied by a fixed width operator (FPI, AKI's
# fallback, Net2Net) and its original get equal gradients and stay twins for ever
# (bench/twins.py): by default their copies take random shares of the outgoing weights
# (ligo --width_split_noise), exact at growth but separating in training
SPLIT_NOISE = 0.5


def add_bf16_argument(parser) -> None:
    """--bf16 of every growth benchmark script (resolved by ligo.precision.bf16_flag)."""
    parser.add_argument("--bf16", default="auto", choices=("true", "false", "auto"),
                        help="bf16 autocast; auto: where this machine runs it natively "
                             "(ligo.precision: not on AVX2-only CPUs), recorded resolved")


def regime(below_unigram: float, source_above_goal: float | None) -> str:
    if below_unigram < REGIME_MARGIN:
        return "plateau"
    if source_above_goal is not None and source_above_goal <= 0:
        return "source_reaches_goal"
    return "learning"
SAVINGS = ("reuse_flops_savings", "reuse_seconds_savings", "end_to_end_flops_savings",
           "end_to_end_seconds_savings")


def read_curve(run_dir: Path, unigram: float | None = None) -> list[dict]:
    """Eval points (step, tokens, flops, seconds, loss, below_unigram) from a run's metrics.jsonl."""
    points = []
    for line in (run_dir / "metrics.jsonl").read_text().splitlines():
        record = json.loads(line)
        if record["split"] == "eval":
            point = {k: record[k] for k in ("step", "tokens", "flops", "loss")}
            point["seconds"] = record.get("train_seconds", 0.0)
            if unigram is not None:
                point["below_unigram"] = unigram - record["loss"]
            points.append(point)
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


def recipe(args) -> dict:
    """The preset's recipe with any command-line overrides (flags left at None take the preset's)."""
    preset = PRESETS[args.preset]
    chosen = dict(preset)
    for key, flag in (("source", "source"), ("target", "target"), ("steps", "steps"),
                      ("tokenizer", "tokenizer_path"),
                      ("small_steps", "small_steps"), ("lr", "learning_rate"),
                      ("warmup", "warmup_steps"), ("grown_lr", "grown_learning_rate"),
                      ("grown_warmup", "grown_warmup_steps"), ("grown_steps", "grown_steps"),
                      ("eval_steps", "eval_steps"),
                      ("batch", "batch_size"), ("block", "block_size"),
                      ("mlm_probability", "mlm_probability"), ("position_init", "position_init")):
        if getattr(args, flag, None) is not None:
            chosen[key] = getattr(args, flag)
    chosen.setdefault("grown_steps", chosen["steps"])  # a grown run's schedule: as scratch's
    chosen.setdefault("position_init", "random")
    if chosen["family"] in MLM_FAMILIES:
        chosen.setdefault("mlm_probability", _MLM_DEFAULT)
        if not 0.01 <= chosen["mlm_probability"] <= 0.9:
            raise SystemExit(f"error: --mlm_probability {chosen['mlm_probability']} is outside "
                             "[0.01, 0.9]: give the fraction of positions to mask, e.g. 0.15")
    elif chosen.get("mlm_probability") is not None:
        raise SystemExit(f"error: --mlm_probability is for masked-LM presets; {args.preset} is "
                         "causal: leave it out")
    return chosen


def run_method(method: str, args, work: Path, small_dir: Path, goal: float | None = None,
               seed: int = 42, learning_rate: float | None = None, out: Path | None = None,
               operator_dir: Path | None = None) -> Path:
    """One run of `method` into `out` (default <work>/<method>). `operator_dir`: a LiGO row's
    operator, trained there unless it already holds one (a recipe sweep reuses it). The run's
    command line is kept in <out>/bench_argv.json (--reuse_finished compares it)."""
    from ligo.grow_train import main as grow_main
    from ligo.pretrain import main as pretrain_main

    out = out or work / method
    argv = method_argv(method, args, work, small_dir, goal, seed=seed, learning_rate=learning_rate,
                       out=out, operator_dir=operator_dir)
    if method in LIGO_INITS or method in DROP_ROWS:
        init, operator_dir = _operator_of(method, work, operator_dir)
        operator = operator_argv(args, seed, operator_dir, small_dir, init)
        # an operator made by another command (other steps, init or split) is made again
        if (not (operator_dir / "ligo_operator.pt").is_file()
                or _same_command(operator_dir, operator) is False):
            grow_main(operator)
            (operator_dir / "bench_argv.json").write_text(json.dumps(operator) + "\n")
    start = time.perf_counter()
    pretrain_main(argv)
    (out / "bench_wall_seconds.txt").write_text(f"{time.perf_counter() - start:.1f}\n")
    (out / "bench_argv.json").write_text(json.dumps(argv) + "\n")
    return out


def _operator_of(method: str, work: Path, operator_dir: Path | None) -> tuple[str, Path]:
    """A LiGO row's operator: its init (the drop rows share the `ligo` row's) and folder."""
    init = "ligo" if method in DROP_ROWS else method
    return init, operator_dir or work / f"{init}_operator"


def method_argv(method: str, args, work: Path, small_dir: Path, goal: float | None = None, *,
                seed: int = 42, learning_rate: float | None = None, out: Path | None = None,
                operator_dir: Path | None = None) -> list[str]:
    """The training command line of one run of `method` (its LiGO operator, if any, is
    trained first by run_method)."""
    r = recipe(args)
    out = out or work / method
    common = common_flags(args, seed) + ["--output_dir", str(out), "--overwrite_output_dir"]
    scratch_lr = ["--learning_rate", str(learning_rate or r["lr"]), "--warmup_steps", str(r["warmup"])]
    grown_lr = ["--learning_rate", str(r["grown_lr"]), "--warmup_steps", str(r["grown_warmup"])]
    target, source = _config_path(r["target"]), _config_path(r["source"])
    steps = ["--max_steps", str(r["steps"])]
    grown_steps = ["--max_steps", str(r["grown_steps"])]
    from_small = ["--source_model_path", str(small_dir), "--reset_optimizer"]
    half = max(1, _layers(target) // 2)
    if method == "scratch":
        argv = common + scratch_lr + steps + ["--config_name", target]
    elif method == "small":
        argv = common + scratch_lr + ["--config_name", source, "--max_steps", str(r["small_steps"])]
    elif method in FIXED_GROWTH:
        depth, width = FIXED_GROWTH[method]
        if method == "double" and not _is_double(source, target):
            width = "net2net"  # every unit copied, at random where the sizes are no exact doubling
        argv = common + grown_lr + grown_steps + from_small + [
            "--config_name", target, "--grow_scheme", depth, "--width_scheme", width]
        split = getattr(args, "width_split_noise", 0.0)  # callers from before the flag: none
        if method in COPYING_ROWS and split:
            argv += ["--width_split_noise", repr(split)]
        if method == "msg":
            argv += ["--msg_ramp_steps", str(getattr(args, "msg_ramp_steps", 100))]
    elif method in LIGO_INITS or method in DROP_ROWS:
        _, operator_dir = _operator_of(method, work, operator_dir)
        argv = common + grown_lr + grown_steps + ["--config_name", target, "--grow_scheme", "ligo",
                                            "--source_model_path", str(small_dir),
                                            "--pretrained_ligo_path", str(operator_dir)]
        if method == "ligo_layer_drop":
            argv += ["--layer_drop", str(args.layer_drop),
                     "--layer_drop_ramp_steps", str(args.layer_drop_ramp_steps)]
        elif method == "ligo_token_drop":
            argv += ["--token_drop", str(args.token_drop)]
    elif method == "progressive":
        first = r["steps"] // 3
        argv = common + scratch_lr + ["--config_name", target, "--stages", f"{half},{_layers(target)}",
                                      "--stage_steps", f"{first},{r['steps'] - first}"]
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
    if method in FROM_SCRATCH and r["position_init"] != "random":
        argv += ["--position_init", r["position_init"]]
    if goal is not None and method not in ("scratch", "small"):
        argv += ["--stop_at_eval_loss", repr(goal)]
    return argv


def common_flags(args, seed: int) -> list[str]:
    """What every run of the preset shares: corpus, tokenizer, batch, evaluation, precision."""
    r = recipe(args)
    flags = ["--config", str(REPO / "configs" / r["args"]), "--train_files", *args.train_files,
             "--cache_dir", str(args.cache_dir), "--block_size", str(r["block"]),
             "--per_device_train_batch_size", str(r["batch"]), "--eval_steps", str(r["eval_steps"]),
             "--eval_max_batches", str(args.eval_max_batches), "--logging_steps",
             str(r["eval_steps"]), "--ckpt_steps", str(10 ** 9), "--seed", str(seed),
             "--bf16", str(args.bf16), "--disable_tqdm", "--lr_scheduler_type", "linear",
             "--documents", "blank_line"]
    if getattr(args, "eval_batch_size", None) is not None:  # (other scripts' args lack it)
        flags += ["--per_device_eval_batch_size", str(args.eval_batch_size)]
    if r["tokenizer"] is not None:  # else: one trained on the corpus (cached in --cache_dir)
        flags += ["--tokenizer_path", str(r["tokenizer"])]
    if "mlm_probability" in r:
        flags += ["--mlm_probability", str(r["mlm_probability"])]
    return flags


def parse_ligo_steps(values: list[str]) -> dict[str, int]:
    """--ligo_steps N [METHOD=N ...]: operator steps of every LiGO row, and of named ones."""
    steps = {"default": 100}
    for value in values:
        method, _, count = value.rpartition("=")
        if method and method not in LIGO_INITS:
            raise SystemExit(f"error: --ligo_steps {value}: {method} is not a LiGO row "
                             f"({', '.join(LIGO_INITS)})")
        if not count.isdigit() or int(count) < 1:
            raise SystemExit(f"error: --ligo_steps {value}: the steps must be a whole number >= 1")
        steps[method or "default"] = int(count)
    return steps


def ligo_steps(args, method: str) -> int:
    """Operator steps of a LiGO row (`args.ligo_steps`: a number or parse_ligo_steps' table)."""
    return row_operator_steps(args.ligo_steps, method)


def row_operator_steps(steps: int | dict, method: str) -> int:
    """A row's steps in a --ligo_steps setting: a number, or parse_ligo_steps' table."""
    return steps if isinstance(steps, int) else steps.get(method, steps["default"])


def _ligo_steps_text(steps) -> str:
    if isinstance(steps, int):
        return str(steps)
    rows = [f"{m} {n}" for m, n in steps.items() if m != "default"]
    return f"{steps['default']}" + (f" ({', '.join(rows)})" if rows else "")


def operator_argv(args, seed: int, out: Path, small_dir: Path, init: str = "ligo") -> list[str]:
    """The command line of a LiGO row's operator run: its init, and for a row that starts
    where a copying fixed row starts, that row's --width_split_noise."""
    argv = operator_flags(args, seed, out, small_dir, init) + LIGO_INITS[init]
    split = getattr(args, "width_split_noise", 0.0)
    if init in FROM_COPYING_ROWS and split:
        argv += ["--width_split_noise", repr(split)]
    return argv


def operator_flags(args, seed: int, out: Path, small_dir: Path, method: str = "ligo") -> list[str]:
    """A LiGO operator run of its --ligo_steps at --ligo_learning_rate (its init flags follow)."""
    steps = str(ligo_steps(args, method))
    return common_flags(args, seed) + [
        "--output_dir", str(out), "--overwrite_output_dir",
        "--config_name", _config_path(recipe(args)["target"]), "--source_model_path",
        str(small_dir), "--tune_width", "--tune_depth", "--max_steps", steps,
        "--learning_rate", str(args.ligo_learning_rate), "--eval_steps", steps,
        "--logging_steps", steps,
        # named, not left to ligo's default: a finished operator of the other form is not reused
        "--width_form", getattr(args, "ligo_width_form", LIGO_WIDTH_FORM)]


def _config_path(name: str) -> str:
    """A config file path, or the name of one in configs/."""
    return name if Path(name).is_file() else str(REPO / "configs" / name)


def _config(path: str) -> dict:
    return json.loads(Path(path).read_text())


def _layers(config_path: str) -> int:
    config = _config(config_path)
    return config.get("num_hidden_layers") or config["n_layer"]


def _is_double(source: str, target: str) -> bool:
    """Every width exactly doubles (staged training's `double`); net2net otherwise."""
    from ligo.models import ffn_size, load_config

    s, t = load_config(source), load_config(target)
    sizes = lambda c: (c.hidden_size, ffn_size(c), c.num_attention_heads,  # noqa: E731
                       getattr(c, "num_key_value_heads", None) or c.num_attention_heads)
    return all(b == 2 * a for a, b in zip(sizes(s), sizes(t), strict=True))


def movie_review_score(model_dir: Path, args, seed: int) -> float:
    """Dev accuracy on the movie-review sentiment task (GLUE SST-2 layout), one LR and seed."""
    from ligo.glue import main as glue_main

    result = glue_main([str(model_dir), "--task_dir", str(SHARED / "classify" / "movie_reviews"),
                        "--output_dir", str(model_dir / "movie_reviews"), "--learning_rates",
                        str(args.glue_learning_rate), "--seeds", str(seed), "--epochs", "1",
                        "--max_seq_length", str(recipe(args)["block"]), "--max_train_samples",
                        str(args.glue_train_samples)])
    return result["tasks"]["movie_reviews"]["score"]


def summarise(runs: dict[str, dict], unigram: float | None = None) -> dict:
    """One seed: the goal (scratch's final eval loss), each method's cost to reach it and
    savings, and the regime (how far below the unigram line scratch ends)."""
    goal = runs["scratch"]["curve"][-1]["loss"]
    scratch = {axis: cost_to_reach(runs["scratch"]["curve"], goal, axis) for axis in ("flops", "seconds")}
    small = runs.get("small", {}).get("results", {})
    rows = {}
    for method, run in runs.items():
        if method == "small":
            continue
        reached = {axis: cost_to_reach(run["curve"], goal, axis) for axis in ("flops", "seconds")}
        final = run["curve"][-1]["loss"]
        row = {"final_loss": final, "steps_run": run["curve"][-1]["step"],
               "reached_goal": reached["flops"] is not None,
               "distance_to_goal": max(0.0, final - goal),
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
    summary = {"goal_eval_loss": goal, "scratch_flops": scratch["flops"],
               "scratch_seconds": scratch["seconds"], "methods": rows}
    if "small" in runs:
        summary["small_final_loss"] = runs["small"]["curve"][-1]["loss"]
        summary["source_above_goal"] = summary["small_final_loss"] - goal
    if unigram is not None:
        summary["unigram_loss"] = unigram
        summary["scratch_below_unigram"] = unigram - goal
        summary["regime"] = regime(unigram - goal, summary.get("source_above_goal"))
    return summary


def _stats(values: list[float]) -> dict:
    mean = sum(values) / len(values)
    var = sum((v - mean) ** 2 for v in values) / (len(values) - 1) if len(values) > 1 else 0.0
    return {"mean": mean, "std": var ** 0.5, "n": len(values)}


def aggregate(seeds: dict[str, dict]) -> dict:
    """Mean and sample standard deviation over seeds of every savings figure (over the seeds
    in which the method reached the goal; `reached` says in how many it did), the regime."""
    summaries = [seed["summary"] for seed in seeds.values()]
    methods = {}
    for summary in summaries:
        for method in summary["methods"]:
            methods.setdefault(method, [])
            methods[method].append(summary["methods"][method])
    table = {}
    for method, rows in methods.items():
        entry = {"seeds": len(rows), "reached": sum(r["reached_goal"] for r in rows),
                 "final_loss": _stats([r["final_loss"] for r in rows]),
                 "distance_to_goal": _stats([r["distance_to_goal"] for r in rows])}
        for key in SAVINGS:
            values = [r[key] for r in rows if r[key] is not None]
            entry[key] = _stats(values) if values else None
        accuracies = [r["movie_reviews_dev_accuracy"] for r in rows
                      if "movie_reviews_dev_accuracy" in r]
        if accuracies:
            entry["movie_reviews_dev_accuracy"] = _stats(accuracies)
        table[method] = entry
    out = {"seeds": sorted(seeds, key=int), "methods": table,
           "goal_eval_loss": _stats([s["goal_eval_loss"] for s in summaries])}
    if all("unigram_loss" in s for s in summaries):
        below = [s["scratch_below_unigram"] for s in summaries]
        out["unigram_loss"] = _stats([s["unigram_loss"] for s in summaries])
        out["scratch_below_unigram"] = _stats(below)
        out["regime"] = max((s["regime"] for s in summaries), key=REGIMES.index)  # the worst seed
    if all("small_final_loss" in s for s in summaries):
        out["small_final_loss"] = _stats([s["small_final_loss"] for s in summaries])
    out["paired"] = paired_differences(summaries)
    return out


def paired_differences(summaries: list[dict]) -> dict:
    """LiGO row − fixed operator, reuse FLOPs savings, seed by seed (`{ligo_row: {fixed: ...}}`).

    The goal is each seed's own scratch loss, so most of the spread of a method's savings over
    seeds is the goal moving, shared by every method of that seed; the per-seed difference
    removes it. Seeds in which either run missed the goal have no difference; `fixed_missed`
    and `ligo_missed` count those where only that one missed, so neither side's misses hide;
    `both_missed` those where both did, `ligo_closer` of them where LiGO ended nearer the goal.
    `ligo_ahead`: the seeds where the LiGO row did better by any of these measures (more
    savings, or the goal reached where the other missed it, or ended nearer it)."""
    out = {}
    for ligo_row in (*LIGO_INITS, *DROP_ROWS):
        for fixed in FIXED_OPERATORS:
            rows = [(s["methods"][ligo_row], s["methods"][fixed]) for s in summaries
                    if ligo_row in s["methods"] and fixed in s["methods"]]
            if not rows:
                continue
            both = [a["reuse_flops_savings"] - b["reuse_flops_savings"] for a, b in rows
                    if a["reached_goal"] and b["reached_goal"]]
            neither = [(a, b) for a, b in rows if not (a["reached_goal"] or b["reached_goal"])]
            entry = {"seeds": len(rows), "difference": _stats(both) if both else None,
                     "fixed_missed": sum(a["reached_goal"] and not b["reached_goal"] for a, b in rows),
                     "ligo_missed": sum(b["reached_goal"] and not a["reached_goal"] for a, b in rows),
                     "both_missed": len(neither),
                     "ligo_closer": sum(a["distance_to_goal"] < b["distance_to_goal"] for a, b in neither)}
            entry["ligo_ahead"] = (sum(d > 0 for d in both) + entry["fixed_missed"] + entry["ligo_closer"])
            out.setdefault(ligo_row, {})[fixed] = entry
    return out


def read_results(path) -> dict:
    """A results file written by this script, or one line `error: ...` naming what is wrong."""
    path = Path(path)
    if not path.is_file():
        raise SystemExit(f"error: {path} is not a file; pass a results file written by "
                         "bench/growth.py --output")
    try:
        results = json.loads(path.read_text())
    except (UnicodeDecodeError, json.JSONDecodeError) as err:
        raise SystemExit(f"error: {path} is not JSON ({err}); pass a results file written by "
                         "bench/growth.py --output") from None
    if not isinstance(results, dict) or not isinstance(results.get("seeds"), dict):
        raise SystemExit(f"error: {path} has no \"seeds\": it is not a bench/growth.py results file")
    return results


def merge(files: list[Path]) -> dict:
    """Result files of the same preset and recipe but different seeds -> one results dict."""
    loaded = [read_results(f) for f in files]
    for results in loaded:  # files from before --grown_steps: their grown runs ran --steps
        results["setup"].setdefault("grown_steps", results["setup"]["steps"])
        results["setup"].setdefault("position_init", "random")  # files from before the flag
        results["setup"].setdefault("width_split_noise", 0.0)  # ... and before this one
        results["setup"].setdefault("from_operator_split_noise", 0.0)  # ... and this one
        results["setup"].setdefault("eval_batch_size", 64)  # ligo's default, before the flag
        results["setup"].setdefault("ligo_width_form", LIGO_WIDTH_FORM_BEFORE_THE_FLAG)
    first = loaded[0]
    ignore = ("seeds", "quick", "ligo_steps", *ROW_SETTINGS)
    for other, name in zip(loaded[1:], files[1:], strict=True):
        differs = sorted(k for k in set(first["setup"]) | set(other["setup"])
                         if k not in ignore and first["setup"].get(k) != other["setup"].get(k))
        if differs:
            raise SystemExit(f"error: {name} was run with a different setup ({', '.join(differs)}) "
                             f"than {files[0]}; merge only seeds of one preset and recipe")
    # a row's own settings, and a LiGO row's operator steps, must agree among the files that
    # ran that row (and only there)
    row_settings, operator_steps = {}, {}
    for results, name in zip(loaded, files, strict=True):
        ran = {m for run in results["seeds"].values() for m in run["runs"]}
        for key, rows in ROW_SETTINGS.items():
            if ran & set(rows) and key in results["setup"]:
                seen = row_settings.setdefault(key, (results["setup"][key], name))
                if seen[0] != results["setup"][key]:
                    raise SystemExit(f"error: {name} ran {'/'.join(rows)} with {key} "
                                     f"{results['setup'][key]}, {seen[1]} with {seen[0]}; merge "
                                     "only seeds of one recipe")
        for row in sorted(ran & set(LIGO_INITS)):
            steps = row_operator_steps(results["setup"].get("ligo_steps", 100), row)
            seen = operator_steps.setdefault(row, (steps, name))
            if seen[0] != steps:
                raise SystemExit(f"error: {name} ran {row} with {steps} operator steps, "
                                 f"{seen[1]} with {seen[0]}; merge only seeds of one recipe")
    default = row_operator_steps(first["setup"].get("ligo_steps", 100), "default")
    merged_steps = {"default": default, **{row: n for row, (n, _) in operator_steps.items() if n != default}}
    seeds, commands, tokenizers, machines, first_file = {}, [], {}, {}, {}
    for results, name in zip(loaded, files, strict=True):
        for seed, run in results["seeds"].items():
            # seeds may come from different machines: their wall-clock figures then differ
            machine = (results.get("machine_by_seed") or {}).get(seed, results.get("machine"))
            if seed in seeds:  # more methods of a seed, run later from its scratch and source
                seeds[seed] = _combine_seed(seeds[seed], run, seed=seed, machines=(machines[seed], machine),
                                            names=(first_file[seed], name))
            else:
                seeds[seed], machines[seed], first_file[seed] = run, machine, name
            # seeds must share the task: a corpus, a vocabulary size and ligo's version give
            # one tokenizer, but files from before its WordPiece training was deterministic
            # (tokenizers#1794) or from another corpus differ
            digest = run.get("tokenizer_sha256")  # absent in files from before it was recorded
            if digest:
                tokenizers.setdefault(digest, seed)
                if len(tokenizers) > 1:
                    other = next(s for d, s in tokenizers.items() if d != digest)
                    raise SystemExit(f"error: seed {seed} ({name}) was tokenised with another "
                                     f"tokenizer than seed {other}; run it again with "
                                     f"--tokenizer_path <seed {other}'s run folder>/tokenizer.json")
        commands += results.get("commands", [])
    setup = {k: v for k, v in first["setup"].items() if k not in ROW_SETTINGS}
    setup.update({key: value for key, (value, _) in row_settings.items()})
    setup["ligo_steps"] = merged_steps
    merged = {**first, "commands": commands, "seeds": seeds,
              "setup": {**setup, "seeds": sorted(seeds, key=int)}, "machine_by_seed": machines}
    merged["summary"] = aggregate(seeds)
    return merged


def _same_curve(a: list[dict], b: list[dict]) -> bool:
    """Two runs' eval curves agree in everything but the clock (a rerun's seconds differ)."""
    keys = ("step", "flops", "loss")
    return [[p[k] for k in keys] for p in a] == [[p[k] for k in keys] for p in b]


def _combine_seed(kept: dict, more: dict, *, seed: str, machines: tuple, names: tuple) -> dict:
    """One seed from two files: the second ran more methods of it (a training run is
    deterministic per seed, so rerunning scratch and the source gives the same curves). Every
    run both files hold must be the same run, and both ran on the same kind of machine (the
    second file's wall-clock figures are measured against the first's scratch run)."""
    if machines[0] != machines[1]:
        raise SystemExit(f"error: seed {seed} is in {names[0]} and in {names[1]}, run on different "
                         f"machines ({machines[0]} and {machines[1]}): their wall-clock figures do not "
                         "combine; merge each seed once")
    if set(more["runs"]) <= set(kept["runs"]):
        raise SystemExit(f"error: seed {seed} is in {names[0]} and in {names[1]}, which adds no "
                         "method to it; merge each seed once")
    for method in sorted(set(kept["runs"]) & set(more["runs"])):
        if not _same_curve(kept["runs"][method]["curve"], more["runs"][method]["curve"]):
            raise SystemExit(f"error: seed {seed}'s {method} run differs between {names[0]} and "
                             f"{names[1]} (eval curves): not the same seed's runs; run the second "
                             "file's methods with --reuse_finished in the first one's work folder")
    runs = {**more["runs"], **kept["runs"]}
    runs = {method: runs[method] for method in METHODS if method in runs}
    return {**kept, "runs": runs, "summary": summarise(runs, kept.get("unigram_loss")),
            "reused_runs": sorted(set(kept.get("reused_runs", [])) | set(more.get("reused_runs", [])))}


def without_operator(seeds: dict[str, dict]) -> dict:
    """Per LiGO row, seed by seed: its reuse FLOPs savings with its operator's FLOPs left out
    (the grown run's FLOPs to the goal less the operator's), minus the best fixed row's of
    that seed and the best linear one's (LINEAR_FIXED_OPERATORS). The bound on any cheaper
    operator phase that ends at the same model: below the best fixed row, no saving on the
    operator's steps lets LiGO beat it (the gap is in the grown model's curve); above it, the
    operator's cost is the whole gap. Seeds where the row missed the goal, or whose file has no
    operator FLOPs, are left out (`n` says how many count)."""
    rows = {}
    for run in seeds.values():
        summary = run["summary"]
        methods = summary["methods"]
        fixed = {m: methods[m]["reuse_flops_savings"] for m in FIXED_OPERATORS
                 if m in methods and methods[m]["reached_goal"]}
        linear = {m: s for m, s in fixed.items() if m in LINEAR_FIXED_OPERATORS}
        for row in (*LIGO_INITS, *DROP_ROWS):
            if row not in methods or not methods[row]["reached_goal"] or not fixed:
                continue
            operator = run["runs"][row].get("results", {}).get("growth_flops")
            if not operator:
                continue
            free = 1 - (methods[row]["flops_to_goal"] - operator) / summary["scratch_flops"]
            entry = rows.setdefault(row, {"savings": [], "operator_share": [], "best": {}})
            entry["savings"].append(free)
            entry["operator_share"].append(operator / summary["scratch_flops"])
            for kind, among in (("fixed", fixed), ("linear", linear)):
                if among:
                    best = max(among, key=among.get)
                    entry["best"].setdefault(kind, []).append((best, free - among[best]))
    return {row: {"seeds": len(e["savings"]), "savings": _stats(e["savings"]),
                  "operator_share": _stats(e["operator_share"]),
                  **{f"minus_best_{kind}": {"rows": sorted({b for b, _ in pairs}),
                                            "difference": _stats([d for _, d in pairs]),
                                            "ahead": sum(d > 0 for _, d in pairs)}
                     for kind, pairs in e["best"].items()}}
            for row, e in rows.items()}


def _without_operator_lines(seeds: dict[str, dict]) -> list[str]:
    parts = []
    for row, entry in without_operator(seeds).items():
        text = f"{row} {_pm(entry['savings'])} (its operator: {_pm(entry['operator_share'])} of scratch's FLOPs)"
        for kind, what in (("fixed", "the best fixed row"), ("linear", "the best linear one")):
            best = entry.get(f"minus_best_{kind}")
            if best and (kind == "fixed" or best["rows"] != entry["minus_best_fixed"]["rows"]):
                text += (f", minus {what} of each seed ({', '.join(best['rows'])}): "
                         f"{_pm(best['difference'], 100, ' points')}, ahead on {best['ahead']} "
                         f"of {best['difference']['n']} seeds")
        parts.append(text)
    if not parts:
        return []
    return ["", "Without the operator's FLOPs (reuse FLOPs savings were the operator free: the "
                "bound on any cheaper operator phase ending at the same model): " + "; ".join(parts) + "."]


def _pm(stats: dict | None, scale: float = 100.0, unit: str = " %", digits: int = 1) -> str:
    if stats is None:
        return "—"
    text = f"{scale * stats['mean']:.{digits}f}"
    if stats["n"] > 1:
        text += f" ± {scale * stats['std']:.{digits}f}"
    return text + unit


def markdown(results: dict) -> str:
    summary, setup = results["summary"], results["setup"]
    lines = []
    label = summary.get("regime")
    if label == "plateau":
        lines.append(f"**Regime: plateau.** Scratch ends only {_pm(summary['scratch_below_unigram'], 1, '', 2)} "
                     f"nats below the unigram line ({_pm(summary['unigram_loss'], 1, '', 3)}); "
                     f"less than {REGIME_MARGIN} nat: the models learned little beyond token "
                     "frequencies, so these figures are not savings.")
    elif label == "source_reaches_goal":
        lines.append(f"**Regime: the source reaches the goal.** The source model ends at "
                     f"{_pm(summary['small_final_loss'], 1, '', 3)}, at or below the goal (scratch's "
                     f"final eval loss {_pm(summary['goal_eval_loss'], 1, '', 3)}): growing it "
                     "saves by construction, so these figures are not savings; the target's "
                     "budget is too short for a growth comparison.")
    elif label == "learning":
        lines.append(f"**Regime: learning.** Unigram line {_pm(summary['unigram_loss'], 1, '', 3)} "
                     f"nats; scratch ends {_pm(summary['scratch_below_unigram'], 1, '', 2)} nats "
                     f"below it (goal = scratch's final eval loss {_pm(summary['goal_eval_loss'], 1, '', 3)}); "
                     f"source ends at {_pm(summary.get('small_final_loss'), 1, '', 3)}; "
                     f"seeds {', '.join(summary['seeds'])}; mean ± sample std over seeds.")
    has_acc = any("movie_reviews_dev_accuracy" in row for row in summary["methods"].values())
    lines += ["", "| method | seeds | FLOPs savings (reuse) | wall-clock savings (reuse) | FLOPs "
              "savings (end-to-end) | reached goal | last eval loss | short of goal by |"
              + (" movie-review dev acc. |" if has_acc else ""),
              "|---|---:|---:|---:|---:|---:|---:|---:|" + ("---:|" if has_acc else "")]
    for method, row in summary["methods"].items():
        short = "—" if row["reached"] == row["seeds"] else _pm(row["distance_to_goal"], 1, " nats", 3)
        # a --quick run's seconds are timing noise (tiny steps on a shared machine: 76-82 %
        # "savings" were seen for equal FLOPs), so no wall-clock figure is shown for it
        seconds = "—" if setup.get("quick") else _pm(row['reuse_seconds_savings'])
        line = (f"| {method} | {row['seeds']} | {_pm(row['reuse_flops_savings'])} | "
                f"{seconds} | {_pm(row['end_to_end_flops_savings'])} | "
                f"{row['reached']}/{row['seeds']} | {_pm(row['final_loss'], 1, '', 3)} | {short} |")
        if has_acc:
            line += f" {_pm(row.get('movie_reviews_dev_accuracy'))} |"
        lines.append(line)
    lines += _never_grew_lines(results)
    lines += _paired_lines(summary.get("paired", {}))
    lines += _without_operator_lines(results.get("seeds", {}))
    lines.append("")
    lines.append(f"{setup['preset']}: {setup['source']} → {setup['target']}, {setup['steps']} steps "
                 f"per target run (source: {setup['small_steps']}), batch {setup['batch_size']} × "
                 f"{setup['block_size']}, bf16 {setup['bf16']}, scratch LR {setup['learning_rate']} "
                 f"(warmup {setup['warmup_steps']}), after-growth LR {setup['grown_learning_rate']} "
                 f"(warmup {setup['grown_warmup_steps']}"
                 + (f", schedule over {setup['grown_steps']} steps"
                    if setup.get("grown_steps", setup["steps"]) != setup["steps"] else "")
                 + f"), LiGO {_ligo_steps_text(setup['ligo_steps'])} operator steps of "
                 + setup.get("ligo_width_form", LIGO_WIDTH_FORM_BEFORE_THE_FLAG) + " width matrices"
                 + (f", masking {setup['mlm_probability']:.0%}" if "mlm_probability" in setup else "")
                 + (f", the fixed width operators' copies split their shares (--width_split_noise "
                    f"{setup['width_split_noise']:g})" if setup.get("width_split_noise") else
                    ", the fixed width operators' copies equal (no --width_split_noise)"
                    if "width_split_noise" in setup else "")
                 + _from_rows_text(setup, summary["methods"])
                 + (f", {setup['position_init']} position init of the from-scratch runs"
                    if setup.get("position_init", "random") != "random" else "") + "; "
                 f"{_machines_text(results)}. "
                 + ("Runs other than scratch and small end at their first eval at or below the "
                    "goal (--stop_at_goal), so their last eval loss is that crossing. "
                    if setup.get("stop_at_goal") else "")
                 + ("A --quick run: tiny models, not for numbers (no wall-clock figures). "
                    if setup.get("quick") else "")
                 + "Commands: " + "; ".join(f"`{c}`" for c in results["commands"]) + ".")
    return "\n".join(lines)


def _machine_text(machine: dict) -> str:
    return f"{machine['cpu']}, {machine['cores']} cores" + (
        f", torch {machine['torch']}" if "torch" in machine else "")


def _machines_text(results: dict) -> str:
    """The machine, or (a merge of seeds from different ones) each machine with its seeds."""
    by_seed = results.get("machine_by_seed") or {}
    texts = {}
    for seed, machine in by_seed.items():
        texts.setdefault(_machine_text(machine) if machine else "not recorded", []).append(seed)
    if len(texts) < 2:
        return f"machine: {_machine_text(results['machine'])}"
    return "machines: " + "; ".join(f"{text} ({_seeds_text(seeds)})" for text, seeds in texts.items())


def _seeds_text(seeds: list[str]) -> str:
    """'seed 2' or 'seeds 1, 3'."""
    return f"seed{'s' * (len(seeds) > 1)} {', '.join(seeds)}"


def _from_rows_text(setup: dict, methods) -> str:
    """How the LiGO rows that start where a copying fixed row starts were split (if run)."""
    if not set(FROM_COPYING_ROWS) & set(methods) or "from_operator_split_noise" not in setup:
        return ""
    split = setup["from_operator_split_noise"]
    return (f", the ligo_from_* operators starting from the same split ({split:g})" if split
            else ", the ligo_from_* operators starting from equal copies")


def _never_grew_lines(results: dict) -> list[str]:
    """A growing row whose run had no growth event trained its starting size throughout (the
    slope rule of `staged` need not fire within the budget): its row is no growth result."""
    idle = {}
    for seed, run in results.get("seeds", {}).items():
        for method in GROWING_FROM_SCRATCH:
            events = run["runs"].get(method, {}).get("growth_at")
            if events is not None and not events["flops"]:
                idle.setdefault(method, []).append(seed)
    if not idle:
        return []
    return ["", *(f"{method} never grew ({_seeds_text(seeds)}): no growth event in its run, so it "
                  "trained its starting size throughout and its row is not a growth result."
                  for method, seeds in idle.items())]


def _paired_lines(paired: dict) -> list[str]:
    """'LiGO row − fixed operator' per seed, in points of reuse FLOPs savings."""
    parts = []
    for ligo_row, against in paired.items():
        for fixed, entry in against.items():
            difference = entry["difference"]
            if difference is None:
                text = f"{ligo_row} − {fixed}: no seed where both reached the goal"
            else:
                text = (f"{ligo_row} − {fixed}: {_pm(difference, 100, ' points')} "
                        f"({difference['n']} of {entry['seeds']} seeds)")
            for who, key in ((fixed, "fixed_missed"), (ligo_row, "ligo_missed")):
                if entry[key]:
                    text += f", and {entry[key]} seed(s) where only {who} missed the goal"
            if entry.get("both_missed"):  # files merged before these counts have none
                text += (f", and {entry['both_missed']} where both missed ({ligo_row} ended nearer "
                         f"the goal on {entry['ligo_closer']})")
            if "ligo_ahead" in entry:
                text += f": {ligo_row} ahead on {entry['ligo_ahead']} of {entry['seeds']} seeds"
            parts.append(text)
    if not parts:
        return []
    return ["", "Paired by seed (reuse FLOPs savings, the same seed's goal; mean ± std of the "
                "per-seed differences): " + "; ".join(parts) + "."]


def _common_steps(curves: list[list[dict]]) -> list[int]:
    """The eval steps every seed's curve has, in order."""
    return sorted(set.intersection(*({point["step"] for point in curve} for curve in curves)))


def _mean_curve(curves: list[list[dict]], axis: str) -> tuple[list, list, list]:
    """Per eval step that every seed reached: mean x, mean loss, std of the loss. Only those
    steps: a run stopped at the goal has no later points, and a mean over the seeds that went
    on would jump up where the seeds that got there first drop out."""
    xs, ys, sds = [], [], []
    for step in _common_steps(curves):
        points = [point for curve in curves for point in curve if point["step"] == step]
        xs.append(sum(p[axis] for p in points) / len(points))
        losses = _stats([p["loss"] for p in points])
        ys.append(losses["mean"])
        sds.append(losses["std"])
    return xs, ys, sds


def _tails(curves: list[list[dict]], axis: str) -> list[tuple[list, list]]:
    """Each seed's curve from the last step every seed reached on (drawn as a thin line)."""
    last_common = max(_common_steps(curves), default=0)
    tails = []
    for curve in curves:
        tail = [point for point in curve if point["step"] >= last_common]
        if len(tail) > 1:
            tails.append(([p[axis] for p in tail], [p["loss"] for p in tail]))
    return tails


def plot(results: dict, folder: Path, name: str | None = None) -> list[Path]:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    name = name or f"growth_{results['setup']['preset']}"
    methods = list(results["summary"]["methods"]) + ["small"]
    markers = "o^svD<>pPX*hd"
    written = []
    for axis, label in (("flops", "training FLOPs"), ("seconds", "wall-clock seconds")):
        figure, ax = plt.subplots(figsize=(8, 5))
        for index, method in enumerate(methods):
            curves = [seed["runs"][method]["curve"] for seed in results["seeds"].values()
                      if method in seed["runs"]]
            if not curves:
                continue
            xs, ys, sds = _mean_curve(curves, axis)
            # distinct marker and dash per method: overlapping curves stay tellable apart
            line, = ax.plot(xs, ys, label=f"{method} ({len(curves)} seed{'s' * (len(curves) > 1)})",
                            marker=markers[index % len(markers)], markersize=3, linewidth=1,
                            linestyle=("-", "--", "-.")[index % 3])
            if len(curves) > 1:
                for tail_x, tail_y in _tails(curves, axis):
                    ax.plot(tail_x, tail_y, color=line.get_color(), linewidth=0.7, alpha=0.7)
                ax.fill_between(xs, [y - s for y, s in zip(ys, sds, strict=True)],
                                [y + s for y, s in zip(ys, sds, strict=True)], color=line.get_color(), alpha=0.2)
            events = [x for seed in results["seeds"].values() if method in seed["runs"]
                      for x in seed["runs"][method].get("growth_at", {}).get(axis, [])]
            for number, event_x in enumerate(sorted(set(events))[:4]):
                ax.axvline(event_x, color=line.get_color(), linestyle=":", alpha=0.6,
                           label=f"{method}: growth" if number == 0 else None)
        summary = results["summary"]
        ax.axhline(summary["goal_eval_loss"]["mean"], color="black", linewidth=0.8,
                   label="goal (scratch's final loss)")
        if "unigram_loss" in summary:
            ax.axhline(summary["unigram_loss"]["mean"], color="gray", linestyle="--",
                       linewidth=0.8, label="unigram line")
        ax.set_xlabel(label)
        ax.set_ylabel("validation loss")
        ax.set_xscale("log" if axis == "flops" else "linear")
        top = summary.get("unigram_loss", summary["goal_eval_loss"])["mean"] + 0.5
        ax.set_ylim(summary["goal_eval_loss"]["mean"] - 0.3, top)
        ax.legend(fontsize=7, ncol=2)
        ax.set_title(f"{results['setup']['source']} → {results['setup']['target']} "
                     f"({summary.get('regime', 'regime unknown')}; mean ± std over seeds; "
                     "thin: each seed after the first stops)", fontsize=8)
        path = folder / f"{name}_loss_vs_{axis}.png"
        figure.tight_layout()
        figure.savefig(path, dpi=120)
        plt.close(figure)
        written.append(path)
    return written


def lr_sweep(args, learning_rates: list[float], seed: int, previous: dict | None = None) -> dict:
    """Scratch alone at each learning rate (same recipe otherwise): which one ends lowest.
    `previous`, a sweep of the same recipe, keeps its runs (a sweep extended by more rates)."""
    r = recipe(args)
    work = Path(args.workdir) / f"{args.preset}-lr-sweep"
    runs = {}
    if previous is not None:
        same = ((previous["preset"], previous["target"], previous["seed"], previous["steps"],
                 previous["warmup_steps"], previous.get("mlm_probability", _MLM_DEFAULT if "mlm_probability" in r else None),
                 previous.get("position_init", "random"))
                == (args.preset, r["target"], seed, r["steps"], r["warmup"], r.get("mlm_probability"),
                    r["position_init"]))
        if not same:
            raise SystemExit("error: the existing sweep file was run with another recipe or seed; "
                             "give another --output folder")
        runs = dict(previous["runs"])
    for lr in learning_rates:
        out = work / f"scratch-lr{lr}"
        if getattr(args, "reuse_finished", False) and _finished(out):
            print(f"=== scratch, learning rate {lr}: reusing the finished run in {out}", flush=True)
        else:
            print(f"=== scratch, learning rate {lr}", flush=True)
            run_method("scratch", args, work, work / "small", seed=seed, learning_rate=lr, out=out)
        result = json.loads((out / "results.json").read_text())
        runs[repr(lr)] = {"curve": read_curve(out, result.get("unigram_loss")), "results": result}
    best = min(runs, key=lambda lr: runs[lr]["curve"][-1]["loss"])
    commands = (previous or {}).get("commands", []) + [_command(args.argv)]
    return {"commands": commands, "preset": args.preset, "target": r["target"],
            "seed": seed, "steps": r["steps"], "warmup_steps": r["warmup"], "runs": runs,
            "position_init": r["position_init"],
            **({"mlm_probability": r["mlm_probability"]} if "mlm_probability" in r else {}),
            "best_learning_rate": float(best),
            "final_loss": {lr: run["curve"][-1]["loss"] for lr, run in runs.items()}}


def plot_sweep(sweep: dict, path: Path) -> Path:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    figure, ax = plt.subplots(figsize=(7, 4.5))
    for lr, run in sweep["runs"].items():
        ax.plot([p["step"] for p in run["curve"]], [p["loss"] for p in run["curve"]],
                marker=".", label=f"lr {lr}")
    unigram = next(iter(sweep["runs"].values()))["results"].get("unigram_loss")
    if unigram is not None:
        ax.axhline(unigram, color="gray", linestyle="--", linewidth=0.8, label="unigram line")
    ax.set_xlabel("step")
    ax.set_ylabel("validation loss")
    ax.legend(fontsize=8)
    ax.set_title(f"{sweep['preset']}: scratch {sweep['target']}, learning-rate sweep")
    figure.tight_layout()
    figure.savefig(path, dpi=120)
    plt.close(figure)
    return path


def estimate(args) -> str:
    """FLOPs of each run of the preset (analytic, ligo.train.flops) and hours at --tflops."""
    from ligo.families import family_of
    from ligo.models import load_config
    from ligo.train.flops import training_flops_per_token

    r = recipe(args)
    tokens_per_step = r["batch"] * r["block"]
    head = 0.15 if PRESETS[args.preset]["family"] in ("bert", "roberta") else 1.0
    lines = [f"{args.preset}: {r['source']} -> {r['target']}, batch {r['batch']} x {r['block']}, "
             f"at a sustained {args.tflops:g} TFLOP/s"]
    total = 0.0
    for name, config, steps in (("small (source)", r["source"], r["small_steps"]),
                                ("scratch (target)", r["target"], r["steps"])):
        config = load_config(_config_path(config))
        per_token = training_flops_per_token(config, r["block"], head, family_of(config).head_transform)
        flops = per_token * tokens_per_step * steps
        total += flops
        lines.append(f"  {name}: {steps} steps, {flops:.3g} FLOPs, "
                     f"{flops / (args.tflops * 1e12) / 3600:.2f} h")
    lines.append(f"  every method at most the scratch budget; all {len(METHODS)} methods, one seed: "
                 f"at most {(total + (len(METHODS) - 2) * flops) / (args.tflops * 1e12) / 3600:.1f} h")
    return "\n".join(lines)


def _command(argv: list[str]) -> str:
    return command_line("growth.py", argv)


def run_seed(args, seed: int, methods: list[str]) -> dict:
    """Every method for one seed: {"runs": ..., "summary": ...}."""
    work = Path(args.workdir) / f"{args.preset}-seed{seed}"
    if not args.reuse_finished:
        shutil.rmtree(work, ignore_errors=True)  # the benchmark's own scratch space
    work.mkdir(parents=True, exist_ok=True)
    runs, unigram, reused = {}, None, []
    for method in methods:
        goal = runs["scratch"]["curve"][-1]["loss"] if args.stop_at_goal and runs else None
        out = work / method
        same = (_same_run(method, args, work, goal, seed)
                if args.reuse_finished and _finished(out) else False)
        if same is not False:
            print(f"=== {method} (seed {seed}): reusing the finished run in {out}"
                  + (" (ran before commands were recorded: assumed the same)" if same is None else ""),
                  flush=True)
            reused.append(method)
        else:
            print(f"=== {method} (seed {seed})", flush=True)
            run_method(method, args, work, work / "small", goal, seed=seed)
        result = json.loads((out / "results.json").read_text())
        unigram = result.get("unigram_loss") if unigram is None else unigram
        run = {"curve": read_curve(out, result.get("unigram_loss")), "results": result,
               "growth_at": _growth_positions(out, result)}
        if args.glue and PRESETS[args.preset]["family"] != "gpt2" and method != "small":
            run["movie_reviews_dev_accuracy"] = movie_review_score(out, args, seed)
        runs[method] = run
        if method == "scratch" and unigram is not None and unigram - run["curve"][-1]["loss"] < REGIME_MARGIN:
            print(f"warning: scratch ends {unigram - run['curve'][-1]['loss']:.2f} nats below the "
                  f"unigram line {unigram:.3f} (< {REGIME_MARGIN}): plateau regime, the savings "
                  "will not mean anything", flush=True)
    summary = summarise(runs, unigram)
    if summary.get("regime") == "source_reaches_goal":
        print(f"warning: the source ends at {summary['small_final_loss']:.3f}, at or below the goal "
              f"{summary['goal_eval_loss']:.3f}: the target budget is too short, growth saves by "
              "construction", flush=True)
    # the digest says whether two seeds (or a re-run elsewhere) tokenised the corpus the same
    # way (before ligo trained WordPiece deterministically, a retraining could differ:
    # huggingface/tokenizers#1794)
    tokenizer = work / "scratch" / "tokenizer.json"
    digest = hashlib.sha256(tokenizer.read_bytes()).hexdigest() if tokenizer.is_file() else None
    return {"runs": runs, "unigram_loss": unigram, "summary": summary, "reused_runs": reused,
            "tokenizer_sha256": digest}


def _same_run(method: str, args, work: Path, goal: float | None, seed: int) -> bool | None:
    """Whether <work>/<method> was made by the command this run would use, and a LiGO row's
    operator too (None: some part predates the record and is assumed the same)."""
    small = work / "small"
    same = [_same_command(work / method, method_argv(method, args, work, small, goal, seed=seed))]
    if method in LIGO_INITS or method in DROP_ROWS:
        init, operator_dir = _operator_of(method, work, None)
        same.append(_same_command(operator_dir, operator_argv(args, seed, operator_dir, small, init)))
    return False if False in same else None if None in same else True


def _same_command(run_dir: Path, argv: list[str]) -> bool | None:
    """Whether the run in `run_dir` was made by `argv` (None: it predates the record)."""
    path = run_dir / "bench_argv.json"
    return json.loads(path.read_text()) == argv if path.is_file() else None


def _finished(run_dir: Path) -> bool:
    """A run that ended by itself (at its last step or at the goal: results.json says finished)."""
    path = run_dir / "results.json"
    return path.is_file() and bool(json.loads(path.read_text()).get("finished"))


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--preset", choices=list(PRESETS), default="bert")
    parser.add_argument("--source", help="source config in configs/ (default: the preset's)")
    parser.add_argument("--target", help="target config in configs/ (default: the preset's)")
    parser.add_argument("--methods", nargs="+", default=["all"], choices=("all", "core") + METHODS,
                        help=f"all, core ({' '.join(CORE_METHODS)}) or method names; scratch and "
                             "small always run")
    parser.add_argument("--seeds", "--seed", type=int, nargs="+", default=[1],
                        help="one result file holds every seed given (run in turn)")
    parser.add_argument("--train_files", nargs="+", default=[str(SHARED / "corpus")])
    parser.add_argument("--tokenizer_path", help="default: the preset's (bert, gpt2: one trained "
                                                 "on the corpus at the target's vocab_size)")
    parser.add_argument("--block_size", type=int)
    parser.add_argument("--batch_size", type=int)
    parser.add_argument("--steps", type=int, help="budget of the target runs (default: the preset's)")
    parser.add_argument("--small_steps", type=int, help="budget of the source model")
    parser.add_argument("--learning_rate", type=float, help="every from-scratch run")
    parser.add_argument("--warmup_steps", type=int)
    parser.add_argument("--grown_learning_rate", type=float, help="every grown run")
    parser.add_argument("--grown_warmup_steps", type=int)
    parser.add_argument("--grown_steps", type=int, help="length of every grown run's LR schedule "
                        "(default: the preset's, else --steps as scratch's)")
    parser.add_argument("--ligo_steps", nargs="+", default=["100"], metavar="[METHOD=]N",
                        help="operator steps of every LiGO row (N) and of named rows "
                             "(e.g. 100 ligo_from_bert2bert=25)")
    parser.add_argument("--ligo_learning_rate", type=float, default=1e-3)
    parser.add_argument("--ligo_width_form", choices=LIGO_WIDTH_FORMS, default=LIGO_WIDTH_FORM,
                        help="the LiGO rows' width matrices: full (the paper's D2 x D1, ligo's "
                             "default) or structured (the official code's: the source's rows "
                             "fixed, only the new ones learned)")
    parser.add_argument("--msg_ramp_steps", type=int, default=100, help="the msg row's mask ramp")
    parser.add_argument("--width_split_noise", type=float, default=SPLIT_NOISE,
                        help="rows whose width operator copies units (stack, interpolate, "
                             "bert2bert, double): the copies take random shares of the source "
                             "unit's outgoing weights (exact, but they separate in training; "
                             "the presets have no dropout, so at 0 they stay twins); the LiGO "
                             "rows that start where one of them starts (ligo_from_stack, "
                             "ligo_from_bert2bert) start from the same split")
    parser.add_argument("--layer_drop", type=float, default=0.5,
                        help="ligo_layer_drop: the deepest layer's drop probability (PLD's 0.5)")
    parser.add_argument("--layer_drop_ramp_steps", type=int, default=100,
                        help="ligo_layer_drop: PLD's time constant of the rate's rise")
    parser.add_argument("--token_drop", type=float, default=0.5,
                        help="ligo_token_drop: the fraction of positions the middle layers skip")
    parser.add_argument("--reuse_finished", action="store_true",
                        help="keep the finished runs already in a seed's (or --lr_sweep's) "
                             "folder instead of starting it afresh (an interrupted benchmark goes on; the runs "
                             "must come from the same flags: listed as reused_runs)")
    parser.add_argument("--mlm_probability", type=float,
                        help="masked-LM presets: the fraction of positions masked (default 0.15)")
    parser.add_argument("--position_init", choices=POSITION_INITS,
                        help="the learned position table of the from-scratch runs (scratch, "
                             "small, progressive, pli, staged; the grown rows inherit small's); "
                             "default: the preset's")
    parser.add_argument("--eval_steps", type=int)
    parser.add_argument("--eval_max_batches", type=int, default=8)
    parser.add_argument("--eval_batch_size", type=int,
                        help="blocks per evaluation batch (default: ligo's 64; --quick: 16)")
    add_bf16_argument(parser)
    parser.add_argument("--glue", action=argparse.BooleanOptionalAction, default=False,
                        help="fine-tune each BERT result on the movie-review task (slow)")
    parser.add_argument("--glue_learning_rate", type=float, default=1e-4)
    parser.add_argument("--glue_train_samples", type=int, default=4000)
    parser.add_argument("--stop_at_goal", action=argparse.BooleanOptionalAction, default=True,
                        help="end each run but scratch and small at its first eval at or below "
                             "the scratch run's final loss (savings unchanged, much less time)")
    parser.add_argument("--quick", action="store_true", help="tiny sizes: a does-it-run check")
    parser.add_argument("--workdir", default=str(REPO / "out" / "bench_growth"),
                        help="scratch space: <workdir>/<preset>-seed<N> is replaced by each run")
    parser.add_argument("--cache_dir", help="tokenizer and token caches, kept between invocations "
                                            "(default <workdir>/cache)")
    parser.add_argument("--output", help="results JSON (default bench/results/growth_<preset>.json)")
    parser.add_argument("--table", help="print the markdown table of this results JSON and exit")
    parser.add_argument("--merge", nargs="+", type=Path,
                        help="combine result files of different seeds into --output, and plot")
    parser.add_argument("--lr_sweep", nargs="+", type=float,
                        help="run scratch alone at each learning rate and write "
                             "<output folder>/growth_<preset>_lr_sweep.json and its plot (an "
                             "existing sweep of the same recipe is extended)")
    parser.add_argument("--estimate", action="store_true",
                        help="print the FLOPs of the preset's runs and the hours at --tflops")
    parser.add_argument("--tflops", type=float, default=300.0,
                        help="--estimate: sustained TFLOP/s of the accelerator")
    args = parser.parse_args(argv)
    args.argv = list(argv if argv is not None else sys.argv[1:])
    args.ligo_steps = parse_ligo_steps(args.ligo_steps)
    if args.table:
        results = read_results(args.table)
        print(markdown(results))
        return results
    if args.estimate:
        print(estimate(args))
        return {}
    default_output = REPO / "bench" / "results" / f"growth_{args.preset}.json"
    if args.merge:
        if not args.output:
            parser.error("--merge needs --output (the merged results JSON)")
        results = merge(args.merge)
        results["commands"].append(_command(args.argv))
        return _write(results, Path(args.output))
    from ligo.precision import bf16_flag  # (imports torch: not for --table, --estimate, --merge)

    args.bf16 = bf16_flag(args.bf16)
    args.cache_dir = args.cache_dir or str(Path(args.workdir) / "cache")
    if args.quick:  # tiny (2 layers, hidden 64, heads of 32) -> 4 layers, hidden 128
        work = Path(args.workdir)
        work.mkdir(parents=True, exist_ok=True)
        args.source = args.source or f"{PRESETS[args.preset]['family']}-tiny.json"
        if not args.target:
            family = PRESETS[args.preset]["family"]
            values = json.loads((REPO / "configs" / f"{family}-tiny.json").read_text())
            wide = {"bert": dict(num_hidden_layers=4, hidden_size=128, num_attention_heads=4,
                                 intermediate_size=512),
                    "gpt2": dict(n_layer=4, n_embd=128, n_head=4, n_inner=512),
                    "llama": dict(num_hidden_layers=4, hidden_size=128, num_attention_heads=8,
                                  num_key_value_heads=4, head_dim=16, intermediate_size=352)}[family]
            args.target = str(work / "quick_target.json")
            Path(args.target).write_text(json.dumps({**values, **wide}))
        args.steps, args.small_steps, args.ligo_steps, args.msg_ramp_steps = 24, 24, 4, 4
        args.grown_steps = 24
        args.layer_drop_ramp_steps = 4
        args.eval_steps, args.eval_max_batches, args.batch_size, args.block_size = 6, 2, 8, 64
        # 2 x 64 blocks per evaluation cost as much as the 24 training steps (profiled): a
        # does-it-run check needs no precise loss
        args.eval_batch_size = args.eval_batch_size or 16
        args.warmup_steps, args.grown_warmup_steps, args.bf16, args.glue = 4, 2, "false", False
        family = PRESETS[args.preset]["family"]  # the published vocabulary: no tokenizer training
        args.tokenizer_path = args.tokenizer_path or str(
            SHARED / "vocab" / ("bert-base-uncased-vocab.txt" if family == "bert" else "gpt2"))
    if args.lr_sweep:
        folder = Path(args.output).parent if args.output else default_output.parent
        path = folder / f"growth_{args.preset}_lr_sweep.json"
        previous = json.loads(path.read_text()) if path.exists() else None
        sweep = lr_sweep(args, args.lr_sweep, args.seeds[0], previous)
        write_json(sweep, path)
        try:
            plot_sweep(sweep, path.with_suffix(".png"))
        except ImportError:
            print("matplotlib not installed (pip install 'ligo[plot]'): no plot", flush=True)
        for lr, loss in sweep["final_loss"].items():
            print(f"lr {lr}: final eval loss {loss:.4f}")
        print(f"best: {sweep['best_learning_rate']} ({path})")
        return sweep
    chosen = set(args.methods)
    chosen |= set(METHODS) if "all" in chosen else set()
    chosen |= set(CORE_METHODS) if "core" in chosen else set()
    methods = [m for m in METHODS if m in chosen or m in ("scratch", "small")]
    seeds = {str(seed): run_seed(args, seed, methods) for seed in args.seeds}
    import torch
    from throughput import cpu_name  # bench/throughput.py, next to this script

    r = recipe(args)
    results = {
        "commands": [_command(args.argv)],
        "machine": {"cpu": cpu_name(), "cores": os.cpu_count(),
                    "torch_threads": torch.get_num_threads(), "torch": torch.__version__},
        "setup": {"preset": args.preset, "source": r["source"], "target": r["target"],
                  "steps": r["steps"], "small_steps": r["small_steps"], "batch_size": r["batch"],
                  "block_size": r["block"], "bf16": args.bf16, "seeds": args.seeds,
                  "learning_rate": r["lr"], "warmup_steps": r["warmup"],
                  "grown_learning_rate": r["grown_lr"], "grown_warmup_steps": r["grown_warmup"],
                  "grown_steps": r["grown_steps"],
                  "ligo_steps": args.ligo_steps, "ligo_learning_rate": args.ligo_learning_rate,
                  "ligo_width_form": args.ligo_width_form,
                  "width_split_noise": args.width_split_noise,
                  "from_operator_split_noise": args.width_split_noise,
                  "msg_ramp_steps": args.msg_ramp_steps, "layer_drop": args.layer_drop,
                  "layer_drop_ramp_steps": args.layer_drop_ramp_steps, "token_drop": args.token_drop,
                  "eval_steps": r["eval_steps"], "eval_max_batches": args.eval_max_batches,
                  "eval_batch_size": args.eval_batch_size or 64,
                  "tokenizer": str(r["tokenizer"]) if r["tokenizer"] else
                  f"trained on the corpus ({_config(_config_path(r['target']))['vocab_size']} tokens)",
                  "train_files": args.train_files, "quick": args.quick,
                  "stop_at_goal": args.stop_at_goal, "position_init": r["position_init"],
                  **({"mlm_probability": r["mlm_probability"]} if "mlm_probability" in r else {})},
        "seeds": seeds,
    }
    if args.quick:  # tiny models, timing noise: a does-it-run check, never a result
        results["not_for_numbers"] = True
    results["summary"] = aggregate(seeds)
    output = Path(args.output or (Path(args.workdir) / "growth_quick.json" if args.quick
                                  else default_output))
    return _write(results, output)


def _write(results: dict, output: Path) -> dict:
    write_json(results, output)
    try:
        results["plots"] = [str(p) for p in plot(results, output.parent, output.stem)]
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
