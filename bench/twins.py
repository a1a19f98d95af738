#!/usr/bin/env python
"""Does a grown model use its width? Count the units that still have an exact twin.

Width operators that copy neurons (bert2BERT's FPI, the width of the growth benchmark's
`stack` row; Net2Net without noise; AKI where it falls back to FPI) make pairs of units with
identical incoming weights. Identical units get identical gradients, so with no dropout and no
noise nothing ever separates them: after any amount of training the large model still has the
small one's width. A unit has a twin when another row of its weight matrix lies within
`--tolerance` (relative Euclidean distance) of it: hidden dimensions are compared by their
column of the word embeddings, feed-forward units by their incoming weights.

    python bench/twins.py WORK/bert-seed1/scratch WORK/bert-seed1/stack WORK/bert-seed1/ligo
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(REPO / "bench"))  # reports.py, next to this script


def twin_count(rows, tolerance: float) -> int:
    """How many rows have another row within `tolerance` x their norm (zero rows twin each other)."""
    import torch

    rows = rows.double()
    distance = torch.cdist(rows, rows)
    distance.fill_diagonal_(float("inf"))
    return int((distance.min(dim=1).values <= tolerance * rows.norm(dim=1)).sum())


def count_twins(model_dir: Path, tolerance: float) -> dict:
    from ligo.families import family_of
    from ligo.roles import to_roles
    from ligo.train.checkpoint import read_source_model

    config, state = read_source_model(model_dir)  # a model folder, or a stopped run's newest checkpoint
    roles = to_roles(state, family_of(config))
    embedding = roles.model["embed.word"]  # (vocab, hidden): a hidden dimension is a column
    return {"model": str(model_dir),
            "hidden_dims": [twin_count(embedding.t(), tolerance), embedding.shape[1]],
            "ffn_units": [[twin_count(layer["ffn_in.weight"], tolerance), layer["ffn_in.weight"].shape[0]]
                          for layer in roles.layers]}


def markdown(rows: list[dict], tolerance: float) -> str:
    lines = [f"Units with an exact twin (relative distance ≤ {tolerance:g}):", "",
             "| model | hidden dims with a twin | FFN units with a twin, per layer |", "|---|---:|---|"]
    for row in rows:
        ffn = ", ".join(f"{twins}/{total}" for twins, total in row["ffn_units"])
        lines.append(f"| {row['model']} | {row['hidden_dims'][0]}/{row['hidden_dims'][1]} | {ffn} |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> list[dict]:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("models", nargs="+", type=Path,
                        help="Hugging Face model folders, or run folders stopped before their final model")
    parser.add_argument("--tolerance", type=float, default=1e-3,
                        help="relative distance under which two units are twins, in (0, 1)")
    parser.add_argument("--output", type=Path, help="also write the counts as JSON here")
    args = parser.parse_args(argv)
    if not 0 < args.tolerance < 1:
        parser.error(f"--tolerance must be in (0, 1), not {args.tolerance}")
    from ligo.train.checkpoint import list_checkpoints

    for model in args.models:
        if not (model / "config.json").is_file() and not list_checkpoints(model):
            parser.error(f"{model} holds no model (no config.json, no checkpoint-*): give a Hugging "
                         "Face model folder or a run folder")
    if args.output is not None and args.output.exists() and args.output.is_dir():
        parser.error(f"--output {args.output} is a folder: give a file name")
    rows = [count_twins(model, args.tolerance) for model in args.models]
    print(markdown(rows, args.tolerance))
    if args.output is not None:
        from reports import write_json

        write_json({"tolerance": args.tolerance, "models": rows}, args.output)
    return rows


if __name__ == "__main__":
    main()
