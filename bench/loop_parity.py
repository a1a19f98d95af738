#!/usr/bin/env python
"""Is ligo's training loop as good as a plain `transformers` loop? Same tokens, model config,
AdamW settings, warmup and schedule; several seeds of each; mean eval loss at equal steps.

    ligo          run_lm_distributed.py (summed-loss normalisation over the global batch,
                  masks keyed by sample, MLM head on masked positions only, its own batch order)
    transformers  BertForMaskedLM / GPT2LMHeadModel + DataCollatorForLanguageModeling, the
                  model's own mean loss, torch AdamW (no decay on biases and LayerNorm, as
                  transformers.Trainer), get_linear_schedule_with_warmup, batches drawn at random

Both are evaluated by the same function on the same blocks and masks (ligo's evaluation of
the run's seed), so the comparison carries no evaluation noise of its own. A difference
beyond the seeds' spread is a difference in the loops.

    python bench/loop_parity.py                      # bert 4L-256H 8k, 200 steps, seeds 1 2 3
    python bench/loop_parity.py --preset gpt2 --steps 200
"""
from __future__ import annotations

import argparse
import contextlib
import json
import math
import os
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(REPO / "bench"))
SHARED = Path(os.environ.get("LIGO_SHARED_DATA", REPO.parent / "shared" / "data"))

from growth import PRESETS, _stats, add_bf16_argument  # noqa: E402  (bench/growth.py, next to this script)

from ligo.precision import bf16_flag  # noqa: E402


def ligo_run(args, seed: int, out: Path) -> list[dict]:
    from ligo.pretrain import main as pretrain_main

    preset = PRESETS[args.preset]
    pretrain_main(common_argv(args, seed) + [
        "--config", str(REPO / "configs" / preset["args"]), "--output_dir", str(out),
        "--overwrite_output_dir", "--disable_tqdm", "--logging_steps", str(args.eval_steps),
        "--ckpt_steps", str(10 ** 9), "--lr_scheduler_type", "linear"])
    rows = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    return [{"step": r["step"], "loss": r["loss"]} for r in rows if r["split"] == "eval"]


def common_argv(args, seed: int) -> list[str]:
    preset = PRESETS[args.preset]
    return ["--config_name", str(REPO / "configs" / preset["target"]), "--train_files",
            *args.train_files, "--cache_dir", args.cache_dir, "--block_size", str(args.block_size),
            "--per_device_train_batch_size", str(args.batch_size), "--seed", str(seed),
            "--learning_rate", str(args.learning_rate), "--warmup_steps", str(args.warmup_steps),
            "--max_steps", str(args.steps), "--eval_steps", str(args.eval_steps),
            "--eval_max_batches", str(args.eval_max_batches), "--bf16", str(args.bf16).lower()]


def transformers_run(args, seed: int, out: Path) -> list[dict]:
    """A plain loop over the same token blocks, evaluated by ligo's evaluation."""
    import numpy as np
    import torch
    import transformers

    from ligo.config import DataArguments, ModelArguments, TrainingArguments, parse_args
    from ligo.distributed import DistInfo
    from ligo.pretrain import prepare_run
    from ligo.train.loop import block_loss_totals
    from ligo.train.objective import LanguageModelingLoss

    model_args, data_args, train_args = parse_args(
        (ModelArguments, DataArguments, TrainingArguments),
        ["--config", str(REPO / "configs" / PRESETS[args.preset]["args"])] + common_argv(args, seed)
        + ["--output_dir", str(out), "--overwrite_output_dir"])
    setup = prepare_run(model_args, data_args, train_args, DistInfo())
    family, data = setup.family, setup.data
    hf_tokenizer = transformers.AutoTokenizer.from_pretrained(out)  # prepare_run saved it
    mlm = family.objective == "mlm"
    collate = transformers.DataCollatorForLanguageModeling(
        hf_tokenizer, mlm=mlm, mlm_probability=data_args.mlm_probability)
    torch.manual_seed(seed)
    model = transformers.AutoModelForMaskedLM.from_config(setup.config) if mlm else \
        transformers.AutoModelForCausalLM.from_config(setup.config)
    no_decay = [n for n, p in model.named_parameters() if "bias" in n or "LayerNorm" in n
                or ".ln_" in n or n.endswith("ln_f.weight")]
    groups = [{"params": [p for n, p in model.named_parameters() if n not in no_decay],
               "weight_decay": train_args.weight_decay},
              {"params": [p for n, p in model.named_parameters() if n in no_decay],
               "weight_decay": 0.0}]
    optimizer = torch.optim.AdamW(groups, lr=train_args.learning_rate,
                                  betas=(train_args.adam_beta1, train_args.adam_beta2),
                                  eps=train_args.adam_epsilon)
    scheduler = transformers.get_linear_schedule_with_warmup(optimizer, train_args.warmup_steps,
                                                             train_args.max_steps)
    autocast = (lambda: torch.autocast("cpu", dtype=torch.bfloat16)) if train_args.bf16 \
        else contextlib.nullcontext
    generator = np.random.default_rng(seed)
    evaluator = LanguageModelingLoss(model, family)
    eval_indices = np.arange(min(len(data.valid),
                                 train_args.eval_max_batches * train_args.per_device_eval_batch_size))
    curve = []
    for step in range(1, train_args.max_steps + 1):
        model.train()
        indices = generator.choice(len(data.train), train_args.per_device_train_batch_size,
                                   replace=False)
        batch = collate([{"input_ids": row} for row in data.train.batch(indices)])
        with autocast():
            loss = model(input_ids=batch["input_ids"], labels=batch["labels"]).loss
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), train_args.max_grad_norm)
        optimizer.step()
        scheduler.step()
        optimizer.zero_grad(set_to_none=True)
        if step % train_args.eval_steps == 0 or step == train_args.max_steps:
            evaluator.eval()
            totals = block_loss_totals(evaluator, data.valid, data.collator, eval_indices,
                                       train_args.per_device_eval_batch_size, torch.device("cpu"),
                                       autocast)
            curve.append({"step": step, "loss": (totals[0] / totals[1]).item()})
            print(f"transformers seed {seed} step {step}: eval loss {curve[-1]['loss']:.4f}",
                  flush=True)
    return curve


def compare(curves: dict[str, dict[str, list[dict]]]) -> list[dict]:
    """Per eval step: mean and std of each loop over seeds, and their difference."""
    rows = []
    steps = [p["step"] for p in next(iter(curves["ligo"].values()))]
    for index, step in enumerate(steps):
        row = {"step": step}
        for loop in ("ligo", "transformers"):
            row[loop] = _stats([c[index]["loss"] for c in curves[loop].values()])
        row["difference"] = row["ligo"]["mean"] - row["transformers"]["mean"]
        spread = math.sqrt(row["ligo"]["std"] ** 2 + row["transformers"]["std"] ** 2)
        row["within_spread"] = abs(row["difference"]) <= max(spread, 1e-9)
        rows.append(row)
    return rows


def markdown(results: dict) -> str:
    lines = ["| step | ligo eval loss | transformers eval loss | ligo − transformers | within "
             "the seeds' spread |", "|---:|---:|---:|---:|---|"]
    for row in results["comparison"]:
        lines.append(f"| {row['step']} | {row['ligo']['mean']:.3f} ± {row['ligo']['std']:.3f} | "
                     f"{row['transformers']['mean']:.3f} ± {row['transformers']['std']:.3f} | "
                     f"{row['difference']:+.3f} | {'yes' if row['within_spread'] else 'no'} |")
    s = results["setup"]
    lines.append("")
    lines.append(f"{s['preset']} target {s['target']}, {s['steps']} steps of {s['batch_size']} × "
                 f"{s['block_size']}, LR {s['learning_rate']} (warmup {s['warmup_steps']}, linear "
                 f"decay), bf16 {s['bf16']}, seeds {', '.join(map(str, s['seeds']))}; mean ± sample "
                 f"std over seeds; 'within the spread' = |difference| ≤ √(std₁² + std₂²). "
                 f"Command: `{results['command']}`.")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--preset", choices=("bert", "gpt2"), default="bert")
    parser.add_argument("--seeds", type=int, nargs="+", default=[1, 2, 3])
    parser.add_argument("--steps", type=int, default=200)
    parser.add_argument("--eval_steps", type=int, default=50)
    parser.add_argument("--eval_max_batches", type=int, default=8)
    parser.add_argument("--learning_rate", type=float)
    parser.add_argument("--warmup_steps", type=int, default=100)
    parser.add_argument("--batch_size", type=int, default=32)
    parser.add_argument("--block_size", type=int, default=128)
    add_bf16_argument(parser)
    parser.add_argument("--train_files", nargs="+", default=[str(SHARED / "corpus")])
    parser.add_argument("--workdir", default=str(REPO / "out" / "bench_loop_parity"))
    parser.add_argument("--cache_dir", help="default <workdir>/cache")
    parser.add_argument("--output", help="default bench/results/loop_parity_<preset>.json")
    parser.add_argument("--table", help="print the markdown table of this results JSON and exit")
    args = parser.parse_args(argv)
    if args.table:
        results = json.loads(Path(args.table).read_text())
        print(markdown(results))
        return results
    args.bf16 = bf16_flag(args.bf16)
    args.learning_rate = args.learning_rate or PRESETS[args.preset]["lr"]
    args.cache_dir = args.cache_dir or str(Path(args.workdir) / "cache")
    work = Path(args.workdir)
    curves: dict[str, dict[str, list[dict]]] = {"ligo": {}, "transformers": {}}
    seconds = {"ligo": 0.0, "transformers": 0.0}
    for seed in args.seeds:
        for loop, run in (("ligo", ligo_run), ("transformers", transformers_run)):
            print(f"=== {loop}, seed {seed}", flush=True)
            start = time.perf_counter()
            curves[loop][str(seed)] = run(args, seed, work / f"{loop}-seed{seed}")
            seconds[loop] += time.perf_counter() - start
    results = {"command": "python bench/loop_parity.py " + " ".join(
                   argv if argv is not None else sys.argv[1:]),
               "setup": {"preset": args.preset, "target": PRESETS[args.preset]["target"],
                         "steps": args.steps, "batch_size": args.batch_size,
                         "block_size": args.block_size, "learning_rate": args.learning_rate,
                         "warmup_steps": args.warmup_steps, "bf16": args.bf16,
                         "seeds": args.seeds, "train_files": args.train_files},
               "seconds": seconds, "curves": curves, "comparison": compare(curves)}
    output = Path(args.output or REPO / "bench" / "results" / f"loop_parity_{args.preset}.json")
    output.parent.mkdir(parents=True, exist_ok=True)
    output.write_text(json.dumps(results, indent=1) + "\n")
    print(markdown(results))
    return results


if __name__ == "__main__":
    main()
