#!/usr/bin/env python
"""How much of its width does a model use? The effective rank of its activations on real text.

Every linear growth operator (StackBERT's FPI, bert2BERT's AKI, the exact doubling, LiGO's
learned expansions) writes the large model's weights as linear maps of the small one's, so at
growth the large model computes with at most the small one's width until something (a
nonlinearity acting on mixed units, a split of the copies' shares, training) spreads it out;
bench/twins.py counts the extreme case, exact twins. This measures the continuous version:
the entropy effective rank (Roy & Vetterli 2007: exp of the entropy of the normalised
singular values) of the centred activations over the first `--tokens` tokens of a text file,
in float64, for

  residual  the hidden state after each layer (the residual stream: `hidden_size` wide)
  ffn       the feed-forward units entering each layer's output projection (`ffn` wide)

and the numerical rank (singular values above 1e-6 of the largest) of each layer's residual
stream: exact copies keep it at the source's width, and so does LiGO with tied expansions in a
pre-norm decoder (GPT-2, LLaMA), whatever its operator learned: the embeddings and every
layer's writes into the stream go through the one hidden expansion, so the stream stays in its
D1-dimensional column span (tests/operators/test_learned.py). HF's GPT-2 and LLaMA return the
last layer's state after the final norm, whose elementwise scale leaves that span; a post-norm
model (BERT) puts every layer's stream through such a norm, so its numerical rank says little
there and the effective rank is the measure.

    python bench/unit_diversity.py WORK/gpt2-seed1/small GROWN_A GROWN_B \\
        --text_file ../shared/data/corpus/news.txt --output diversity.json
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(REPO / "bench"))  # reports.py, next to this script

# model folders hold float32 weights: their rounding alone leaves singular values ~1e-9 of the
# largest in a stream confined to D1 dimensions, where the real ones of the benchmark's models
# are above 1e-3 of it
NUMERICAL_RANK_TOLERANCE = 1e-6


def singular_values(activations):
    """Of the centred (samples, units) matrix, in float64, largest first."""
    import torch

    values = activations.double()
    return torch.linalg.svdvals(values - values.mean(dim=0))


def effective_rank(values) -> float:
    """exp(entropy of the singular `values` normalised to sum 1): D for D equally used orthogonal
    directions, 1 for a single one, 0 for none."""
    import torch

    if values.sum() == 0:
        return 0.0
    shares = values / values.sum()
    shares = shares[shares > 0]
    return float(torch.exp(-(shares * shares.log()).sum()))


def numerical_rank(values, tolerance: float = NUMERICAL_RANK_TOLERANCE) -> int:
    """How many singular `values` are above `tolerance` times the largest."""
    return int((values > tolerance * values.max()).sum()) if values.numel() and values.max() > 0 else 0


def layer_activations(model, family, input_ids) -> dict[str, list]:
    """{"residual": [(tokens, hidden) after each layer], "ffn": [(tokens, ffn) per layer]}."""
    import torch

    config = model.config
    captured: list = []
    hooks = []
    for layer in range(config.num_hidden_layers):
        key = family.keys["ffn_out.weight"].key.format(i=layer)
        module = model.get_submodule(key.removesuffix(".weight"))
        hooks.append(module.register_forward_pre_hook(
            lambda _module, inputs: captured.append(inputs[0].reshape(-1, inputs[0].shape[-1]))))
    try:
        with torch.no_grad():
            outputs = model(input_ids=input_ids, output_hidden_states=True)
    finally:
        for hook in hooks:
            hook.remove()
    # hidden_states: the embeddings, then each layer's output (HF GPT-2 and LLaMA apply the final
    # norm to the last one; BERT has none): index 1..L are the layers
    hidden = [state.reshape(-1, state.shape[-1]) for state in outputs.hidden_states[1:]]
    return {"residual": hidden, "ffn": captured}


def token_blocks(model_dir: Path, text_file: Path, tokens: int, block_size: int):
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(str(model_dir))
    # read only as much text as the tokens need (a few characters a token, generously)
    with open(text_file, encoding="utf-8") as handle:
        text = handle.read(tokens * 20)
    import torch

    ids = torch.tensor(tokenizer(text, add_special_tokens=False)["input_ids"][:tokens])
    blocks = len(ids) // block_size
    if blocks == 0:
        raise ValueError(f"{text_file} gave {len(ids)} tokens, fewer than one block of {block_size}")
    return ids[:blocks * block_size].view(blocks, block_size)


def measure(model_dir: Path, input_ids) -> dict:
    from ligo.families import family_of
    from ligo.models import ffn_size, load_pretrained

    config = _config(model_dir)
    family = family_of(config)
    model = load_pretrained(family.build_class(), model_dir).double().eval()
    found = layer_activations(model, family, input_ids)
    residual = [singular_values(state) for state in found["residual"]]
    return {"model": str(model_dir), "hidden_size": config.hidden_size, "ffn_size": ffn_size(config),
            "layers": config.num_hidden_layers, "tokens": int(input_ids.numel()),
            "residual_effective_rank": [effective_rank(values) for values in residual],
            "ffn_effective_rank": [effective_rank(singular_values(units)) for units in found["ffn"]],
            "residual_numerical_rank": [numerical_rank(values) for values in residual]}


def _config(model_dir: Path):
    from ligo.models import load_config

    return load_config(model_dir / "config.json")


def markdown(rows: list[dict]) -> str:
    lines = ["Effective rank of the activations (entropy of the singular values; "
             f"{rows[0]['tokens']:,} tokens, float64):", "",
             "| model | residual stream, per layer (of hidden) | FFN units, per layer (of ffn) | "
             "residual stream's numerical rank, per layer |", "|---|---|---|---|"]
    for row in rows:
        residual = ", ".join(f"{value:.1f}" for value in row["residual_effective_rank"])
        ffn = ", ".join(f"{value:.1f}" for value in row["ffn_effective_rank"])
        ranks = ", ".join(str(value) for value in row["residual_numerical_rank"])
        lines.append(f"| {row.get('label', row['model'])} | {residual} (of {row['hidden_size']}) | {ffn} (of "
                     f"{row['ffn_size']}) | {ranks} (of {row['hidden_size']}) |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> list[dict]:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("models", nargs="+", type=Path, help="Hugging Face model folders "
                        "(the first one's tokenizer cuts the text for all of them)")
    parser.add_argument("--text_file", type=Path, required=True, help="plain text to run the models on")
    parser.add_argument("--tokens", type=int, default=4096, help="tokens to measure on, in [block_size, 1e6]")
    parser.add_argument("--block_size", type=int, default=128, help="tokens per sequence, >= 2")
    parser.add_argument("--labels", nargs="+", help="a name for each model, in the table and the JSON "
                        "(default: its folder)")
    parser.add_argument("--output", type=Path, help="also write the measurements as JSON here")
    args = parser.parse_args(argv)
    if args.labels is not None and len(args.labels) != len(args.models):
        parser.error(f"--labels gives {len(args.labels)} names for {len(args.models)} models: give one per model")
    if args.block_size < 2:
        parser.error(f"--block_size must be >= 2, not {args.block_size}")
    if not args.block_size <= args.tokens <= 1_000_000:
        parser.error(f"--tokens must be in [--block_size {args.block_size}, 1000000], not {args.tokens}")
    for model in args.models:
        if not (model / "config.json").is_file():
            parser.error(f"{model} holds no model (no config.json): give a Hugging Face model folder")
        positions = getattr(_config(model), "max_position_embeddings", None)
        if positions is not None and args.block_size > positions:
            parser.error(f"--block_size {args.block_size} is longer than {model}'s "
                         f"{positions} positions: give at most {positions}")
    if not args.text_file.is_file():
        parser.error(f"--text_file {args.text_file} is not a file: give a plain text file")
    if args.output is not None and args.output.is_dir():
        parser.error(f"--output {args.output} is a folder: give a file name")
    try:
        input_ids = token_blocks(args.models[0], args.text_file, args.tokens, args.block_size)
    except ValueError as error:
        parser.error(str(error))
    rows = [measure(model, input_ids) for model in args.models]
    for row, label in zip(rows, args.labels or [], strict=False):
        row["label"] = label
    print(markdown(rows))
    if args.output is not None:
        from reports import command_line, write_json

        write_json({"command": command_line("unit_diversity.py", argv), "text_file": str(args.text_file),
                    "models": rows}, args.output)
    return rows


if __name__ == "__main__":
    main()
