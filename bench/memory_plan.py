#!/usr/bin/env python
"""Memory per GPU of a training step, computed (not measured) for each parallelism.

Model states with AdamW and mixed precision: fp32 parameters (4 B), fp32 gradients (4 B) and
two fp32 moments (8 B) = 16 bytes per parameter; DDP keeps them all on every GPU, FSDP divides
them by the number of GPUs and adds the gathered bf16 parameters of the two layers in flight
(the one computing and the one prefetched). Activations of one transformer layer in 16-bit,
after Korthikanti et al. (2022, "Reducing Activation Recomputation in Large Transformer
Models", eq. 1): s·b·h·(34 + 5·a·s/h) bytes for sequence s, micro-batch b, hidden h, heads a;
with activation checkpointing only each layer's input (2·s·b·h bytes) is kept, plus one
layer's full activations during its recomputation. The LM head's logits (b·s·V in float32
for the loss) are added for causal LMs; an MLM head runs on 15 % of the tokens.
Tensor parallelism over t GPUs (--tp_size t, with FSDP over the other gpus/t) divides the
layers' states and gathered parameters by t more, and a layer's activations become
s·b·h·(10 + 24/t + 5·a·s/(h·t)) (eq. 2, no sequence parallelism); embeddings, norms, the
layer inputs and the logits stay whole on every rank of a tensor-parallel group.

    python bench/memory_plan.py                     # the README table
    python bench/memory_plan.py --gpus 16 --micro_batch 4
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

CASES = [("bert-12L-768H.json", 512), ("gpt2-36L-1280H.json", 1024)]


def parameters(config) -> int:
    import torch

    from ligo.families import family_of

    with torch.device("meta"):
        model = family_of(config).build_class()(config)
    return sum(p.numel() for p in model.parameters())


def plan(config, seq: int, micro_batch: int, gpus: int, tp: int = 2) -> dict[str, float]:
    from ligo.families import family_of
    from ligo.models import ffn_size

    n = parameters(config)
    layers, h, heads, vocab = (config.num_hidden_layers, config.hidden_size,
                               config.num_attention_heads, config.vocab_size)
    layer_params = 4 * h * h + 2 * h * ffn_size(config)
    per_layer_acts = seq * micro_batch * h * (34 + 5 * heads * seq / h)
    head_fraction = 1.0 if family_of(config).objective == "clm" else 0.15
    logits = 4 * micro_batch * seq * vocab * head_fraction * 2  # logits and their gradient
    states = 16 * n
    gathered = 2 * 2 * layer_params  # two layers' bf16 parameters
    full_acts = layers * per_layer_acts + logits
    checkpointed = layers * 2 * seq * micro_batch * h + per_layer_acts + logits
    # with TP: layer states over all gpus, the rest over the gpus / tp data-parallel ranks
    tp_states = 16 * layers * layer_params / gpus + 16 * (n - layers * layer_params) / (gpus / tp)
    tp_layer_acts = seq * micro_batch * h * (10 + 24 / tp + 5 * heads * seq / (h * tp))
    tp_checkpointed = layers * 2 * seq * micro_batch * h + tp_layer_acts + logits
    gib = 2 ** 30
    return {"parameters": n,
            "ddp": (states + full_acts) / gib,
            "fsdp": (states / gpus + gathered + full_acts) / gib,
            "fsdp_ac": (states / gpus + gathered + checkpointed) / gib,
            "fsdp_tp_ac": (tp_states + gathered / tp + tp_checkpointed) / gib}


def main(argv: list[str] | None = None) -> str:
    from ligo.models import load_config

    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--gpus", type=int, default=8)
    parser.add_argument("--micro_batch", type=int, default=8)
    parser.add_argument("--tp_size", type=int, default=2)
    args = parser.parse_args(argv)
    dp = args.gpus // args.tp_size
    lines = [f"| config | parameters | sequence | DDP | FSDP ({args.gpus} GPUs) | FSDP + activation "
             f"checkpointing | FSDP ({dp}) × TP ({args.tp_size}) + activation checkpointing |",
             "|---|---:|---:|---:|---:|---:|---:|"]
    for name, seq in CASES:
        result = plan(load_config(REPO / "configs" / name), seq, args.micro_batch, args.gpus,
                      args.tp_size)
        lines.append(f"| {name} | {result['parameters'] / 1e6:.0f} M | {seq} | {result['ddp']:.1f} GiB"
                     f" | {result['fsdp']:.1f} GiB | {result['fsdp_ac']:.1f} GiB"
                     f" | {result['fsdp_tp_ac']:.1f} GiB |")
    lines.append(f"\nMicro-batch {args.micro_batch} per data-parallel rank (a tensor-parallel group "
                 "shares one), bf16 autocast, AdamW; computed by `python bench/memory_plan.py`, "
                 "not measured (no GPU was available).")
    table = "\n".join(lines)
    print(table)
    return table


if __name__ == "__main__":
    main()
