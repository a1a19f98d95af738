#!/usr/bin/env python
"""Training throughput of ligo's loop against `transformers.Trainer`, same model and batch.

Both train bert-6L-512H (by default) with masked LM on the same real-text blocks, the same
batch size, sequence length, precision, optimizer (fused AdamW) and thread count, in this
one process. Each runs `--warmup` steps first (not timed), then `--steps` timed steps:
ligo through `ligo.pretrain.main` (its own logged tokens/s over the timed interval, data
preparation included), the Trainer through a callback that times from the end of the
last warm-up step to the end of the last step (data loading included).

Also reported: the machine's measured matmul peak (best of square bf16 / fp32 matmuls)
and the fraction of it each loop achieves, counting *useful* FLOPs the same way for both
(analytic, MLM head on the masked 15% of tokens: `ligo.train.flops`).

    python bench/throughput.py                      # bf16, writes bench/results/throughput.json
    python bench/throughput.py --precision fp32 --steps 10
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import tempfile
import time
from pathlib import Path

import torch

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))


def cpu_name() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def matmul_peak(dtype: torch.dtype, size: int = 2048, repeats: int = 10) -> float:
    a, b = torch.randn(size, size, dtype=dtype), torch.randn(size, size, dtype=dtype)
    for _ in range(3):
        a @ b
    best = float("inf")
    for _ in range(repeats):
        start = time.perf_counter()
        a @ b
        best = min(best, time.perf_counter() - start)
    return 2 * size**3 / best


def ligo_tokens_per_s(args, corpus_args: list[str], workdir: Path) -> dict:
    from ligo.pretrain import main

    out = workdir / "ligo"
    main(["--config", str(REPO / "configs/bert_wiki.txt"), "--config_name", args.model,
          "--output_dir", str(out), *corpus_args, "--block_size", str(args.seq_len),
          "--per_device_train_batch_size", str(args.batch_size),
          "--max_steps", str(args.warmup + args.steps), "--logging_steps", str(args.warmup),
          "--eval_steps", str(10**9), "--eval_max_batches", "1", "--ckpt_steps", str(10**9),
          "--bf16", str(args.precision == "bf16").lower(), "--disable_tqdm", "--seed", "0",
          "--warmup_steps", "10"])
    rows = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    train = [r for r in rows if r["split"] == "train"]
    # records: after the warm-up steps, then after the timed steps (a shorter final
    # record is only written when steps is not a multiple of warmup)
    timed = train[1:]
    seconds = sum(r["seconds"] - prev["seconds"] for prev, r in zip(train, timed, strict=True))
    tokens = sum(r["tokens"] - prev["tokens"] for prev, r in zip(train, timed, strict=True))
    return {"tokens_per_s": tokens / seconds, "flops_per_token": json.loads(
        (out / "results.json").read_text())["flops_per_token"], "cache": out}


def hf_tokens_per_s(args, blocks, tokenizer_dir: Path, workdir: Path) -> float:
    import transformers
    from transformers import (
        AutoTokenizer,
        DataCollatorForLanguageModeling,
        Trainer,
        TrainerCallback,
        TrainingArguments,
    )

    from ligo.models import load_config

    config = load_config(args.model)
    tokenizer = AutoTokenizer.from_pretrained(tokenizer_dir)
    config.pad_token_id = tokenizer.pad_token_id
    torch.manual_seed(0)
    model = transformers.BertForMaskedLM(config)

    class Blocks(torch.utils.data.Dataset):
        def __len__(self):
            return len(blocks)

        def __getitem__(self, index):
            return {"input_ids": blocks.batch([index])[0]}

    class Timer(TrainerCallback):
        marks: list[float] = []

        def on_step_end(self, training_args, state, control, **kwargs):
            self.marks.append(time.perf_counter())

    timer = Timer()
    training_args = TrainingArguments(
        output_dir=str(workdir / "hf"), per_device_train_batch_size=args.batch_size,
        max_steps=args.warmup + args.steps, learning_rate=2e-4, warmup_steps=10,
        weight_decay=0.01, adam_beta2=0.98, adam_epsilon=1e-6, max_grad_norm=1.0,
        bf16=args.precision == "bf16", use_cpu=True, optim="adamw_torch_fused",
        report_to=[], save_strategy="no", logging_strategy="no", disable_tqdm=True,
        dataloader_num_workers=0, seed=0)
    collator = DataCollatorForLanguageModeling(tokenizer, mlm_probability=0.15)
    Trainer(model=model, args=training_args, train_dataset=Blocks(), data_collator=collator,
            callbacks=[timer]).train()
    seconds = timer.marks[-1] - timer.marks[args.warmup - 1]
    return args.steps * args.batch_size * args.seq_len / seconds


def markdown_table(result: dict) -> str:
    m = result["machine"]
    rows = [
        "| loop | tokens/s | useful FLOP/s | fraction of matmul peak |",
        "|---|---:|---:|---:|",
        f"| ligo (`run_lm_distributed.py`) | {result['ligo_tokens_per_s']:,.0f} | "
        f"{result['ligo_tokens_per_s'] * result['useful_flops_per_token'] / 1e9:,.0f} G | "
        f"{100 * result['ligo_fraction_of_peak']:.1f} % |",
        f"| `transformers.Trainer` | {result['hf_trainer_tokens_per_s']:,.0f} | "
        f"{result['hf_trainer_tokens_per_s'] * result['useful_flops_per_token'] / 1e9:,.0f} G | "
        f"{100 * result['hf_fraction_of_peak']:.1f} % |",
    ]
    return ("\n".join(rows) + f"\n\nRatio ligo / Trainer: **{result['ratio_ligo_over_hf']:.2f}**. "
            f"Machine: {m['cpu']}, {m['cores']} cores, {m['torch_threads']} threads, torch {m['torch']}, "
            f"transformers {m['transformers']}; {result['precision']}, {result['model']}, "
            f"batch {result['batch_size']} x {result['seq_len']}, {result['timed_steps']} timed steps; "
            f"measured matmul peak {result['matmul_peak_flops'] / 1e9:,.0f} GFLOP/s.")


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", default=str(REPO / "configs/bert-6L-512H.json"))
    parser.add_argument("--train_files", nargs="+", default=[str(REPO.parent / "shared/data/corpus/wiki.txt")])
    parser.add_argument("--tokenizer_path", default=str(REPO.parent / "shared/data/vocab/bert-base-uncased-vocab.txt"))
    parser.add_argument("--seq_len", type=int, default=128)
    parser.add_argument("--batch_size", type=int, default=32)
    parser.add_argument("--precision", choices=["bf16", "fp32"], default="bf16")
    parser.add_argument("--warmup", type=int, default=5)
    parser.add_argument("--steps", type=int, default=20)
    parser.add_argument("--output", default=str(REPO / "bench/results/throughput.json"))
    parser.add_argument("--table", metavar="JSON", help="only print the README table of a results file")
    args = parser.parse_args(argv)
    if args.table:
        print(markdown_table(json.loads(Path(args.table).read_text())))
        return
    if args.steps % args.warmup:
        parser.error("--steps must be a multiple of --warmup (ligo logs every --warmup steps)")

    from ligo.data import cache as token_cache
    from ligo.data.blocks import TokenBlocks
    from ligo.data.corpus import resolve_corpus
    from ligo.data.tokenizer import load_tokenizer, save_hf_tokenizer, special_ids
    from ligo.families import FAMILIES

    with tempfile.TemporaryDirectory() as tmp:
        workdir = Path(tmp)
        corpus_args = ["--train_files", *args.train_files, "--tokenizer_path", args.tokenizer_path,
                       "--cache_dir", str(workdir / "cache")]
        peak = max(matmul_peak(torch.bfloat16), matmul_peak(torch.float32))
        ours = ligo_tokens_per_s(args, corpus_args, workdir)
        # the very same blocks, read from ligo's token cache, feed the Trainer
        family = FAMILIES["bert"]
        tok = load_tokenizer(args.tokenizer_path, family)
        ids = special_ids(tok, family)
        built = token_cache.build_or_reuse(resolve_corpus(args.train_files), tok, ids.eos, 2.0,
                                           cache_dir=str(workdir / "cache"))
        blocks = TokenBlocks(token_cache.open_split(built.path, "train"), args.seq_len, ids.bos, ids.eos)
        save_hf_tokenizer(tok, family, workdir / "tokenizer")
        theirs = hf_tokens_per_s(args, blocks, workdir / "tokenizer", workdir)

    flops_per_token = ours["flops_per_token"]
    result = {
        "command": " ".join(["python bench/throughput.py", *(argv if argv is not None else sys.argv[1:])]),
        "machine": {"cpu": cpu_name(), "cores": os.cpu_count(),
                    "torch_threads": torch.get_num_threads(), "torch": torch.__version__,
                    "transformers": __import__("transformers").__version__},
        "model": Path(args.model).name, "seq_len": args.seq_len, "batch_size": args.batch_size,
        "precision": args.precision, "timed_steps": args.steps,
        "ligo_tokens_per_s": ours["tokens_per_s"], "hf_trainer_tokens_per_s": theirs,
        "ratio_ligo_over_hf": ours["tokens_per_s"] / theirs,
        "useful_flops_per_token": flops_per_token, "matmul_peak_flops": peak,
        "ligo_fraction_of_peak": ours["tokens_per_s"] * flops_per_token / peak,
        "hf_fraction_of_peak": theirs * flops_per_token / peak,
    }
    Path(args.output).parent.mkdir(parents=True, exist_ok=True)
    Path(args.output).write_text(json.dumps(result, indent=1) + "\n")
    print(json.dumps(result, indent=1))
    print("\n" + markdown_table(result))
    print(f"\nligo {ours['tokens_per_s']:.0f} tok/s vs transformers.Trainer {theirs:.0f} tok/s: "
          f"ratio {result['ratio_ligo_over_hf']:.2f}; ligo reaches "
          f"{100 * result['ligo_fraction_of_peak']:.1f}% of the measured matmul peak "
          f"({peak / 1e9:.0f} GFLOP/s)")


if __name__ == "__main__":
    main()
