"""Training throughput of ligo's loop against `transformers.Trainer`, same model and batch.

For each family (BERT and RoBERTa: masked LM; GPT-2: causal LM) and precision (bf16 autocast,
fp32), in this one process: ligo's loop (`ligo.pretrain.main`, eager and with `--compile`)
and `transformers.Trainer` train the family's 6L-512H config on the same real-text blocks,
with the same batch size, sequence length, precision, optimizer (fused AdamW) and thread
count. Each runs `--warmup` steps first (not timed: compilation happens there), then
`--steps` timed steps: ligo's own logged tokens/s over the timed interval (data preparation
included), the Trainer's through a callback that times from the end of the last warm-up step
to the end of the last step (data loading included).

Also reported: the machine's measured matmul peak per precision (best of square matmuls of
a few sizes) and the fraction of it each loop achieves, counting *useful* FLOPs the same way
for every loop (analytic: `ligo.train.flops`; the masked-LM head on the masked 15 % of tokens).

    python bench/throughput.py                       # bert gpt2 roberta, bf16 and fp32
    python bench/throughput.py --families bert --precisions bf16 --output out/t.json
    python bench/throughput.py --table bench/results/throughput.json
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
sys.path.insert(0, str(REPO / "bench"))
from reports import command_line, write_json  # noqa: E402 - bench/reports.py

from ligo.precision import native_bfloat16  # noqa: E402

SHARED = Path(os.environ.get("LIGO_SHARED_DATA", REPO.parent / "shared" / "data"))  # as the tests
SHARED_VOCAB = SHARED / "vocab"
TOKENIZERS = {"bert": SHARED_VOCAB / "bert-base-uncased-vocab.txt", "gpt2": SHARED_VOCAB / "gpt2",
              "roberta": SHARED_VOCAB / "gpt2"}
DTYPES = {"bf16": torch.bfloat16, "fp32": torch.float32}


def cpu_name() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def device_name(device: torch.device) -> str:
    return torch.cuda.get_device_name(device) if device.type == "cuda" else cpu_name()


def synchronize(device: torch.device) -> None:
    """Wait for the device's queued work (a GPU runs behind the Python that launches it)."""
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def matmul_peak(dtype: torch.dtype, device: torch.device, sizes: tuple[int, ...] | None = None,
                repeats: int = 5) -> float:
    """FLOP/s of the fastest square matmul of `dtype` on `device` over a few sizes (best of
    `repeats`); a GPU needs larger products than a CPU to reach its peak."""
    sizes = sizes or ((4096, 8192) if device.type == "cuda" else (1024, 2048, 4096))
    best_rate = 0.0
    for size in sizes:
        a = torch.randn(size, size, dtype=dtype, device=device)
        b = torch.randn(size, size, dtype=dtype, device=device)
        a @ b  # warm-up: kernel selection, page faults
        best = float("inf")
        for _ in range(repeats):
            synchronize(device)
            start = time.perf_counter()
            a @ b
            synchronize(device)
            best = min(best, time.perf_counter() - start)
        best_rate = max(best_rate, 2 * size**3 / best)
    return best_rate


def ligo_tokens_per_s(family: str, precision: str, compiled: bool, args, workdir: Path) -> dict:
    """tokens/s of `run_lm_distributed.py` over the timed steps, and its useful FLOPs per token."""
    from ligo.pretrain import main

    out = workdir / f"ligo-{family}-{precision}{'-compiled' if compiled else ''}"
    main(["--config", str(REPO / "configs" / f"{family}_wiki.txt"),
          "--config_name", str(REPO / "configs" / f"{family}-{args.size}.json"),
          "--output_dir", str(out), "--train_files", *args.train_files,
          "--tokenizer_path", str(TOKENIZERS[family]), "--cache_dir", str(workdir / "cache"),
          "--block_size", str(args.seq_len), "--per_device_train_batch_size", str(args.batch_size),
          "--max_steps", str(args.warmup + args.steps), "--logging_steps", str(args.warmup),
          "--eval_steps", str(10**9), "--eval_max_batches", "1", "--ckpt_steps", str(10**9),
          "--bf16", str(precision == "bf16").lower(), "--disable_tqdm", "--seed", "0",
          "--warmup_steps", str(min(10, args.warmup + args.steps)), *(["--compile"] if compiled else [])])
    rows = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    train = [r for r in rows if r["split"] == "train"]
    # records every --warmup steps: the first closes the untimed warm-up
    timed = train[1:]
    seconds = sum(r["seconds"] - prev["seconds"] for prev, r in zip(train, timed, strict=False))
    tokens = sum(r["tokens"] - prev["tokens"] for prev, r in zip(train, timed, strict=False))
    return {"tokens_per_s": tokens / seconds,
            "flops_per_token": json.loads((out / "results.json").read_text())["flops_per_token"]}


def hf_tokens_per_s(family_name: str, precision: str, args, workdir: Path,
                    device: torch.device) -> float:
    """tokens/s of `transformers.Trainer` on the blocks ligo's token cache holds (the same
    text, tokenizer and block layout), with the usual collator for the objective."""
    from transformers import (
        AutoTokenizer,
        DataCollatorForLanguageModeling,
        Trainer,
        TrainerCallback,
        TrainingArguments,
    )

    from ligo.data.corpus import resolve_corpus
    from ligo.data.pipeline import build_lm_data
    from ligo.data.tokenizer import load_tokenizer, save_hf_tokenizer, special_ids
    from ligo.distributed import DistInfo
    from ligo.families import FAMILIES
    from ligo.models import load_config

    family = FAMILIES[family_name]
    tok = load_tokenizer(str(TOKENIZERS[family_name]), family)
    ids = special_ids(tok, family)
    data = build_lm_data(resolve_corpus(args.train_files), tok, ids, family, block_size=args.seq_len,
                         valid_percent=2.0, cache_dir=str(workdir / "cache"), mlm_probability=0.15,
                         whole_word_mask=False, seed=0, info=DistInfo())
    blocks = data.train
    tokenizer_dir = workdir / f"tokenizer-{family_name}"
    save_hf_tokenizer(tok, family, tokenizer_dir)
    tokenizer = AutoTokenizer.from_pretrained(tokenizer_dir)
    config = load_config(REPO / "configs" / f"{family_name}-{args.size}.json")
    config.pad_token_id = tokenizer.pad_token_id
    torch.manual_seed(0)
    model = family.build_class()(config)
    causal = family.objective == "clm"

    class Blocks(torch.utils.data.Dataset):
        def __len__(self):
            return len(blocks)

        def __getitem__(self, index):
            block = blocks.batch([index])[0]
            return {"input_ids": block, "labels": block} if causal else {"input_ids": block}

    class Timer(TrainerCallback):
        def __init__(self):
            self.marks: list[float] = []

        def on_step_end(self, training_args, state, control, **kwargs):
            synchronize(device)
            self.marks.append(time.perf_counter())

    timer = Timer()
    training_args = TrainingArguments(
        output_dir=str(workdir / "hf"), per_device_train_batch_size=args.batch_size,
        max_steps=args.warmup + args.steps, learning_rate=2e-4,
        warmup_steps=min(10, args.warmup + args.steps),
        weight_decay=0.01, adam_beta2=0.98, adam_epsilon=1e-6, max_grad_norm=1.0,
        bf16=precision == "bf16", use_cpu=device.type == "cpu", optim="adamw_torch_fused",
        report_to=[], save_strategy="no", logging_strategy="no", disable_tqdm=True,
        dataloader_num_workers=0, seed=0)
    # packed blocks, never padded: causal LM needs no collator beyond stacking
    collator = None if causal else DataCollatorForLanguageModeling(tokenizer, mlm_probability=0.15)
    Trainer(model=model, args=training_args, train_dataset=Blocks(), data_collator=collator,
            callbacks=[timer]).train()
    seconds = timer.marks[-1] - timer.marks[args.warmup - 1]
    return args.steps * args.batch_size * args.seq_len / seconds


def measure(args, workdir: Path, device: torch.device) -> list[dict]:
    """One row per (family, precision, loop)."""
    rows = []
    for precision in args.precisions:
        for family in args.families:
            loops = [("ligo", False)] + ([("ligo --compile", True)] if precision in args.compile else [])
            flops_per_token = None
            for loop, compiled in loops:
                measured = ligo_tokens_per_s(family, precision, compiled, args, workdir)
                flops_per_token = measured["flops_per_token"]
                rows.append({"family": family, "precision": precision, "loop": loop,
                             "tokens_per_s": measured["tokens_per_s"]})
            rows.append({"family": family, "precision": precision, "loop": "transformers.Trainer",
                         "tokens_per_s": hf_tokens_per_s(family, precision, args, workdir, device)})
            for row in rows:
                if row["family"] == family and row["precision"] == precision:
                    row["model"] = f"{family}-{args.size}.json"
                    row["useful_flops_per_token"] = flops_per_token
    return rows


def add_ratios(result: dict) -> dict:
    """Fraction of the precision's matmul peak for every row; ligo over the Trainer per pair."""
    trainer = {(r["family"], r["precision"]): r["tokens_per_s"] for r in result["rows"]
               if r["loop"] == "transformers.Trainer"}
    for row in result["rows"]:
        useful = row["tokens_per_s"] * row["useful_flops_per_token"]
        row["fraction_of_peak"] = useful / result["matmul_peak_flops"][row["precision"]]
        row["over_trainer"] = row["tokens_per_s"] / trainer[(row["family"], row["precision"])]
    return result


def markdown_table(result: dict) -> str:
    m = result["machine"]
    lines = ["| family | precision | loop | tokens/s | useful FLOP/s | fraction of matmul peak | vs Trainer |",
             "|---|---|---|---:|---:|---:|---:|"]
    for r in result["rows"]:
        loop = {"ligo": "ligo", "ligo --compile": "ligo `--compile`"}.get(r["loop"], f"`{r['loop']}`")
        lines.append(f"| {r['family']} | {r['precision']} | {loop} | {r['tokens_per_s']:,.0f} | "
                     f"{r['tokens_per_s'] * r['useful_flops_per_token'] / 1e9:,.0f} G | "
                     f"{100 * r['fraction_of_peak']:.1f} % | {r['over_trainer']:.2f}x |")
    peaks = ", ".join(f"{p} {v / 1e9:,.0f} GFLOP/s" for p, v in result["matmul_peak_flops"].items())
    s = result["settings"]
    # files from before GPUs were measured have no "device": they ran on their CPU
    on_gpu = m.get("device", m["cpu"]) != m["cpu"]
    where = (f"{m['device']} (host: {m['cpu']}, {m['cores']} cores)" if on_gpu
             else f"{m['cpu']}, {m['cores']} cores, {m['torch_threads']} threads")
    return ("\n".join(lines) + f"\n\nMachine: {where}, torch {m['torch']}, transformers "
            f"{m['transformers']}; models <family>-{s['size']}.json, batch {s['batch_size']} x "
            f"{s['seq_len']}, {s['timed_steps']} timed steps after {s['warmup_steps']} untimed; "
            f"measured matmul peak: {peaks}.")


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--families", nargs="+", choices=sorted(TOKENIZERS), default=["bert", "gpt2", "roberta"])
    parser.add_argument("--precisions", nargs="+", choices=sorted(DTYPES),
                        help="default: bf16 and fp32, or fp32 alone on a CPU without bf16 "
                             "instructions (ligo.precision: its bf16 matmuls run ~200x slower)")
    parser.add_argument("--compile", nargs="*", choices=sorted(DTYPES), default=["bf16"],
                        help="precisions that also get a --compile row (none: --compile alone)")
    parser.add_argument("--size", default="6L-512H", help="configs/<family>-<size>.json")
    parser.add_argument("--train_files", nargs="+", default=[str(SHARED / "corpus" / "wiki.txt")])
    parser.add_argument("--seq_len", type=int, default=128)
    parser.add_argument("--batch_size", type=int, default=32)
    parser.add_argument("--warmup", type=int, default=5)
    parser.add_argument("--steps", type=int, default=10)
    parser.add_argument("--output", default=str(REPO / "bench/results/throughput.json"))
    parser.add_argument("--table", metavar="JSON", help="only print the README table of a results file")
    args = parser.parse_args(argv)
    if args.table:
        print(markdown_table(json.loads(Path(args.table).read_text())))
        return None
    native = native_bfloat16()  # the device the measured runs train on
    if args.precisions is None:
        args.precisions = ["bf16", "fp32"] if native else ["fp32"]
    elif "bf16" in args.precisions and not native:
        parser.error("--precisions bf16: this machine has no native bfloat16 (ligo.precision); "
                     "measure fp32")
    for name in ("seq_len", "batch_size", "warmup", "steps"):
        if getattr(args, name) < 1:
            parser.error(f"--{name} must be at least 1")
    if args.steps % args.warmup:
        parser.error("--steps must be a multiple of --warmup (ligo logs every --warmup steps)")
    for family in args.families:
        if not (REPO / "configs" / f"{family}-{args.size}.json").is_file():
            parser.error(f"configs/{family}-{args.size}.json does not exist; choose another --size")

    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")  # as ligo.distributed
    peaks = {p: matmul_peak(DTYPES[p], device) for p in args.precisions}
    with tempfile.TemporaryDirectory() as tmp:
        rows = measure(args, Path(tmp), device)
    result = add_ratios({
        "command": command_line("throughput.py", argv),
        "machine": {"cpu": cpu_name(), "device": device_name(device), "cores": os.cpu_count(),
                    "torch_threads": torch.get_num_threads(), "torch": torch.__version__,
                    "transformers": __import__("transformers").__version__},
        "settings": {"size": args.size, "seq_len": args.seq_len, "batch_size": args.batch_size,
                     "warmup_steps": args.warmup, "timed_steps": args.steps,
                     "train_files": [Path(f).name for f in args.train_files]},
        "matmul_peak_flops": peaks, "rows": rows})
    write_json(result, Path(args.output))
    print(markdown_table(result))
    return result


if __name__ == "__main__":
    main()
