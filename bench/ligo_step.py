#!/usr/bin/env python
"""Cost of one LiGO operator step against one training step of the large model.

Both steps run the large model's masked-LM loss forward and backward on the same batch and
then an AdamW step: the training step updates the large model's own weights; the operator
step first generates them from the small model through LiGO (width + depth, the default
tying and init) and updates only LiGO's parameters. Each is measured in its own process
(`--warmup` untimed steps, then the median of `--steps` timed ones), so that the peak memory
of one does not hide in the other's. Memory: peak resident set size on CPU, peak allocated
CUDA memory on a GPU. Token ids are random with 15% of positions masked: the arithmetic of a
step does not depend on the text.

    python bench/ligo_step.py           # bert-6L-512H -> bert-12L-768H, batch 16 x 128, bf16
    python bench/ligo_step.py --batch_size 8 --precision fp32 --output /tmp/ligo_step.json
"""
from __future__ import annotations

import argparse
import json
import os
import resource
import statistics
import subprocess
import sys
import time
from pathlib import Path

import torch

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
from ligo.operators.learned import WIDTH_FORMS, LiGOOptions  # noqa: E402
from ligo.precision import native_bfloat16  # noqa: E402


def peak_memory_bytes(device: torch.device) -> int:
    if device.type == "cuda":
        return torch.cuda.max_memory_allocated(device)
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024  # Linux: kilobytes


def measure(args) -> dict:
    """One kind of step, in this process."""
    from ligo.families import family_of
    from ligo.models import load_config
    from ligo.operators.learned import LiGO
    from ligo.train.growth import LiGOLoss
    from ligo.train.objective import LanguageModelingLoss
    from ligo.train.optim import build_optimizer

    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    torch.manual_seed(0)
    small_config, large_config = load_config(args.source), load_config(args.target)
    family = family_of(large_config)
    ids = torch.randint(1000, large_config.vocab_size, (args.batch_size, args.seq_len), device=device)
    labels = torch.where(torch.rand(ids.shape, device=device) < 0.15, ids, -100)
    before = peak_memory_bytes(device)
    if args.measure == "large":
        model = family.build_class()(large_config).to(device)
        loss_module, trained = LanguageModelingLoss(model, family), model
    else:
        small = family.build_class()(small_config)
        operator = LiGO(small.state_dict(), small_config, large_config,
                        LiGOOptions(width_form=args.width_form)).to(device)
        del small
        loss_module, trained = LiGOLoss(operator, device), operator
    optimizer = build_optimizer(trained, 1e-4, 0.01, (0.9, 0.98), 1e-6)
    autocast = torch.autocast(device.type, dtype=torch.bfloat16, enabled=args.precision == "bf16")
    loss_module.train()
    times = []
    for step in range(args.warmup + args.steps):
        if device.type == "cuda":
            torch.cuda.synchronize()
        start = time.perf_counter()
        with autocast:
            out = loss_module(ids, labels)
        (out["loss_sum"] / out["tokens"]).backward()
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
        if device.type == "cuda":
            torch.cuda.synchronize()
        if step >= args.warmup:
            times.append(time.perf_counter() - start)
    return {"seconds_per_step": statistics.median(times), "peak_memory_bytes": peak_memory_bytes(device),
            "memory_before_model_bytes": before,
            "trainable_parameters": sum(p.numel() for p in trained.parameters() if p.requires_grad),
            "device": torch.cuda.get_device_name(device) if device.type == "cuda" else "cpu"}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    parser.add_argument("--source", default=str(REPO / "configs" / "bert-6L-512H.json"))
    parser.add_argument("--target", default=str(REPO / "configs" / "bert-12L-768H.json"))
    parser.add_argument("--batch_size", type=int, default=16)
    parser.add_argument("--seq_len", type=int, default=128)
    parser.add_argument("--precision", choices=("bf16", "fp32"),
                        default="bf16" if native_bfloat16() else "fp32",
                        help="default: bf16 where the CPU has bf16 instructions (ligo.precision)")
    parser.add_argument("--width_form", choices=WIDTH_FORMS, default=LiGOOptions.width_form,
                        help="the operator's width matrices (default: ligo's)")
    parser.add_argument("--warmup", type=int, default=2)
    parser.add_argument("--steps", type=int, default=5)
    parser.add_argument("--output", default=str(REPO / "bench" / "results" / "ligo_step.json"))
    parser.add_argument("--measure", choices=("large", "operator"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.measure:  # a child process: one measurement, as JSON on stdout
        print(json.dumps(measure(args)))
        return
    results = {}
    for kind in ("large", "operator"):
        done = subprocess.run([sys.executable, __file__, *sys.argv[1:], "--measure", kind],
                              capture_output=True, text=True, check=False)
        if done.returncode:
            sys.exit(f"{kind} step failed:\n{done.stderr[-3000:]}")
        results[kind] = json.loads(done.stdout.strip().splitlines()[-1])
        print(kind, results[kind], flush=True)
    large, op = results["large"], results["operator"]
    summary = {
        "command": "python bench/ligo_step.py " + " ".join(sys.argv[1:]),
        "machine": {"device": large["device"], "cores": os.cpu_count(),
                    "torch_threads": torch.get_num_threads(), "torch": torch.__version__},
        "source": Path(args.source).name, "target": Path(args.target).name,
        "batch_size": args.batch_size, "seq_len": args.seq_len, "precision": args.precision,
        "width_form": args.width_form,
        "timed_steps": args.steps, "large_step": large, "operator_step": op,
        "time_ratio_operator_over_large": op["seconds_per_step"] / large["seconds_per_step"],
        "peak_memory_ratio_operator_over_large": op["peak_memory_bytes"] / large["peak_memory_bytes"],
    }
    Path(args.output).parent.mkdir(parents=True, exist_ok=True)
    Path(args.output).write_text(json.dumps(summary, indent=1) + "\n")
    print(f"operator step / large-model step: time x{summary['time_ratio_operator_over_large']:.2f}, "
          f"peak memory x{summary['peak_memory_ratio_operator_over_large']:.2f} -> {args.output}")


if __name__ == "__main__":
    main()
