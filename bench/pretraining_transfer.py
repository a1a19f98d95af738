#!/usr/bin/env python
"""Does pretraining help fine-tuning at this scale? Checkpoints of one pretraining run against
the same architecture from random init, fine-tuned with exactly the same budget.

Every model gets the same tokenizer (the run's), task, label budget, learning-rate sweep,
seeds, epochs and therefore fine-tuning steps (`ligo.glue`, best dev score over the sweep).
The random init is `ligo.glue --random_init` on the run's model: its architecture, each
fine-tuning run's seed initialising all of it.

    python bench/pretraining_transfer.py --output_dir out/transfer            # pretrains bert-tiny first
    python bench/pretraining_transfer.py --pretrained_run out/bert --steps 5000 20000 \\
        --output_dir out/transfer                                             # reuse a run
    python bench/pretraining_transfer.py --table bench/results/pretraining_transfer.json

Writes <output_dir>/transfer.json (setup, pretraining command, eval loss per checkpoint,
scores) and transfer.md (the table).
"""
from __future__ import annotations

import argparse
import json
import math
import os
import shlex
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(REPO / "bench"))  # growth.py's metrics reader, next to this script
SHARED = Path(os.environ.get("LIGO_SHARED_DATA", REPO.parent / "shared" / "data"))
RECIPE = "transfer_pretraining.json"  # how this script pretrained a run, kept for reuse


def pretrain(args, workdir: Path) -> Path:
    """A fresh pretraining run that keeps a checkpoint at every step of --steps."""
    from ligo.pretrain import main as pretrain_main

    run = workdir / "pretrain"
    every = math.gcd(*args.steps)
    config = json.loads(Path(args.config_name).read_text())
    for item in filter(None, args.config_overrides.split(",")):
        key, value = item.split("=")
        config[key] = json.loads(value)
    (workdir / "config.json").write_text(json.dumps(config, indent=1) + "\n")
    pretrain_main(["--config", str(REPO / "configs" / f"{args.family}_wiki.txt"),
                   "--config_name", str(workdir / "config.json"), "--output_dir", str(run),
                   "--overwrite_output_dir", "--train_files", *args.train_files,
                   "--max_steps", str(max(args.steps)), "--ckpt_steps", str(every),
                   "--eval_steps", str(every), "--save_total_limit", str(len(args.steps) + 1000),
                   "--cache_dir", str(workdir / "cache"), "--disable_tqdm",
                   *shlex.split(args.pretrain_args)])
    (run / RECIPE).write_text(json.dumps({"train_files": args.train_files, "flags": args.pretrain_args,
                                          "config_overrides": args.config_overrides}, indent=1) + "\n")
    return run


def evaluations(run: Path) -> dict[int, dict]:
    """The run's eval loss, tokens and training seconds at each evaluated step."""
    from growth import read_curve

    return {p["step"]: {"eval_loss": p["loss"], "tokens": p["tokens"], "train_seconds": p["seconds"]}
            for p in read_curve(run)}


def fine_tune(model_dir: Path, args, out: Path, random_init: bool = False) -> dict:
    from ligo.glue import main as glue

    results = glue([str(model_dir), "--task_dir", args.task_dir, "--output_dir", str(out),
                    *(["--random_init"] if random_init else []),
                    "--learning_rates", *map(str, args.learning_rates),
                    "--seeds", *map(str, args.seeds), "--epochs", str(args.epochs),
                    "--max_seq_length", str(args.max_seq_length),
                    *(["--max_train_samples", str(args.max_train_samples)] if args.max_train_samples else [])])
    task = next(iter(results["tasks"].values()))
    return {"score": task["score"], "learning_rate": task["best"]["learning_rate"],
            "seed": task["best"]["seed"], "majority_dev_accuracy": task.get("majority_dev_accuracy")}


def markdown_table(result: dict) -> str:
    random_score = result["random_init"]["score"]
    lines = ["| model | pretraining steps | tokens | minutes | eval loss | dev score | vs random init |",
             "|---|---:|---:|---:|---:|---:|---:|",
             f"| random init | 0 | | | | {100 * random_score:.1f} | |"]
    for row in result["pretrained"]:
        loss = "" if row["eval_loss"] is None else f"{row['eval_loss']:.2f}"
        tokens = f"{row['tokens'] / 1e6:.1f} M" if row.get("tokens") else ""
        minutes = f"{row['train_seconds'] / 60:.1f}" if row.get("train_seconds") else ""
        lines.append(f"| pretrained | {row['step']} | {tokens} | {minutes} | {loss} | "
                     f"{100 * row['score']:.1f} | {100 * (row['score'] - random_score):+.1f} |")
    majority = result["random_init"].get("majority_dev_accuracy")
    if majority is not None:
        lines.append(f"| majority class | | | | | {100 * majority:.1f} | |")
    return "\n".join(lines) + "\n"


def main(argv=None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--output_dir")
    parser.add_argument("--pretrained_run", help="an existing ligo.pretrain output_dir (else pretrain one)")
    parser.add_argument("--steps", type=int, nargs="+", help="checkpoint steps to fine-tune "
                        "(default: 1000 3000 for a fresh run, the final model of a given run)")
    parser.add_argument("--family", choices=["bert", "roberta", "gpt2"], default="bert",
                        help="which recipe configs/<family>_wiki.txt a fresh run starts from")
    parser.add_argument("--config_name", default=str(REPO / "configs" / "bert-tiny.json"))
    parser.add_argument("--config_overrides", default="vocab_size=8192,hidden_dropout_prob=0,"
                        "attention_probs_dropout_prob=0", help="key=value,... changed in --config_name "
                        "(the default: a WordPiece vocabulary trained on the corpus, no dropout)")
    parser.add_argument("--train_files", nargs="+", default=[str(SHARED / "corpus" / name) for name in (
        "brown.txt", "wiki.txt", "news.txt")] + sorted(map(str, (SHARED / "corpus" / "gutenberg").glob("*.txt"))))
    parser.add_argument("--pretrain_args", default="--documents line --block_size 128 --learning_rate 1e-3 "
                        "--lr_scheduler_type constant --warmup_steps 300 --bf16 false",
                        help="more ligo.pretrain flags for a fresh run (one string)")
    parser.add_argument("--task_dir", default=str(SHARED / "classify" / "movie_reviews"))
    parser.add_argument("--max_train_samples", type=int, default=2000, help="labelled examples (0: all)")
    parser.add_argument("--learning_rates", type=float, nargs="+", default=[1e-4, 3e-4, 1e-3])
    parser.add_argument("--seeds", type=int, nargs="+", default=[1, 2])
    parser.add_argument("--epochs", type=float, default=3.0)
    parser.add_argument("--max_seq_length", type=int, default=64)
    parser.add_argument("--table", help="print the markdown table of a transfer.json and exit")
    args = parser.parse_args(argv)
    if args.table:
        result = json.loads(Path(args.table).read_text())
        print(markdown_table(result), end="")
        return result
    if not args.output_dir:
        parser.error("--output_dir is required")
    from ligo.export import export_checkpoint

    workdir = Path(args.output_dir)
    workdir.mkdir(parents=True, exist_ok=True)
    if args.pretrained_run:
        run = Path(args.pretrained_run)
    else:
        args.steps = args.steps or [1000, 3000]
        run = pretrain(args, workdir)
    measured = evaluations(run)
    if args.steps:
        models = {step: export_checkpoint(run / f"checkpoint-{step:07d}", workdir / f"model-{step}")
                  for step in args.steps}
    else:  # the run's final model folder
        final = json.loads((run / "results.json").read_text())["step"]
        models = {final: run}
    result = {"command": "python bench/pretraining_transfer.py " + " ".join(sys.argv[1:] if argv is None else argv),
              "pretraining": {"run": str(run), **json.loads((run / "run.json").read_text()),
                              **(json.loads((run / RECIPE).read_text()) if (run / RECIPE).is_file() else {})},
              "setup": {k: getattr(args, k) for k in ("task_dir", "max_train_samples", "learning_rates",
                                                     "seeds", "epochs", "max_seq_length")},
              "random_init": fine_tune(next(iter(models.values())), args, workdir / "glue-random-init",
                                       random_init=True),
              "pretrained": []}
    for step, model_dir in models.items():
        row = {"step": step, **measured.get(step, {"eval_loss": None}),
               **fine_tune(model_dir, args, workdir / f"glue-{step}")}
        result["pretrained"].append(row)
    (workdir / "transfer.json").write_text(json.dumps(result, indent=1) + "\n")
    (workdir / "transfer.md").write_text(markdown_table(result))
    print(markdown_table(result), end="")
    return result


if __name__ == "__main__":
    main()
