"""Loss curves of one or many runs in one PNG: train and eval loss against steps, tokens,
FLOPs or seconds of training, growth events marked, the unigram line where recorded.

    python -m ligo.plot out/scratch out/stack out/ligo --x flops --output curves.png

A run is any output folder of run_lm_distributed.py or run_grow_distributed.py (it reads
`metrics.jsonl`), finished or still running.
"""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

# --x: the metrics.jsonl field on that axis
AXES = {"steps": "step", "tokens": "tokens", "flops": "flops", "seconds": "train_seconds"}


def read_run(run_dir: str | Path) -> dict:
    """{"train": [...], "eval": [...], "growth": [...], "unigram": float | None} from a run's
    metrics.jsonl (one JSON object per logged line; rows repeated by a resume count once)."""
    path = Path(run_dir) / "metrics.jsonl"
    if not path.is_file():
        raise FileNotFoundError(f"{run_dir} holds no metrics.jsonl: give a run's output folder")
    rows: dict[str, dict[int, dict]] = {"train": {}, "eval": {}, "growth": {}}
    unigram = None
    lines = path.read_text().splitlines()
    for number, line in enumerate(lines, start=1):
        if not line.strip():
            continue
        try:
            record = json.loads(line)
        except json.JSONDecodeError:
            if number == len(lines):
                break  # a run still writing its last line
            raise ValueError(f"{path}:{number} is not JSON") from None
        if record.get("split") == "unigram":
            unigram = record["loss"]
        elif record.get("split") in rows:
            rows[record["split"]][record["step"]] = record
    return {**{k: [v[s] for s in sorted(v)] for k, v in rows.items()}, "unigram": unigram}


def plot_runs(run_dirs: list[str | Path], x: str = "steps", output: str | Path = "curves.png",
              title: str | None = None) -> dict:
    """Draw the runs into `output`; returns {"path": ..., "lines": number of lines drawn}."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    if x not in AXES:
        raise ValueError(f"--x must be one of {', '.join(AXES)}, not {x!r}")
    key = AXES[x]
    runs = [(Path(d), read_run(d)) for d in run_dirs]
    names = [d.name for d, _ in runs]
    if len(set(names)) < len(names):  # same folder names: tell them apart by their parents
        names = [f"{d.parent.name}/{d.name}" for d, _ in runs]
    figure, ax = plt.subplots(figsize=(8, 5))
    unigrams = set()
    for index, (name, (_, curves)) in enumerate(zip(names, runs, strict=False)):
        color = f"C{index % 10}"
        if curves["train"]:
            ax.plot([r.get(key, 0) for r in curves["train"]], [r["loss"] for r in curves["train"]],
                    color=color, alpha=0.45, linewidth=1, label=f"{name} train")
        if curves["eval"]:
            ax.plot([r.get(key, 0) for r in curves["eval"]], [r["loss"] for r in curves["eval"]],
                    color=color, marker="o", markersize=3, linewidth=1.5, label=f"{name} eval")
        for number, event in enumerate(curves["growth"]):
            ax.axvline(event.get(key, 0), color=color, linestyle=":", alpha=0.7,
                       label=f"{name} growth" if number == 0 else None)
        if curves["unigram"] is not None:
            unigrams.add(round(curves["unigram"], 6))
    for number, value in enumerate(sorted(unigrams)):
        ax.axhline(value, color="gray", linestyle="--", linewidth=0.8,
                   label="unigram line" if number == 0 else None)
    if x in ("flops", "tokens") and any(r.get(key, 0) > 0 for _, c in runs for r in c["eval"]):
        ax.set_xscale("log")
    ax.set_xlabel({"steps": "step", "tokens": "tokens", "flops": "training FLOPs",
                   "seconds": "training seconds"}[x])
    ax.set_ylabel("loss")
    ax.legend(fontsize=7)
    ax.set_title(title or ", ".join(names), fontsize=9)
    figure.tight_layout()
    output = Path(output)
    output.parent.mkdir(parents=True, exist_ok=True)
    figure.savefig(output, dpi=120)
    lines = len(ax.lines)
    plt.close(figure)
    return {"path": output, "lines": lines}


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("runs", nargs="+", help="run output folders (each with metrics.jsonl)")
    parser.add_argument("--x", default="steps", choices=list(AXES))
    parser.add_argument("--output", default="curves.png", help="the PNG to write")
    parser.add_argument("--title")
    args = parser.parse_args(sys.argv[1:] if argv is None else argv)
    output = Path(args.output)
    if output.is_dir() or output.suffix.lower() != ".png":
        raise ValueError(f"--output {output} must be a .png file path")
    result = plot_runs(args.runs, args.x, output, args.title)
    print(f"wrote {result['path']} ({len(args.runs)} runs, {result['lines']} lines)")
    return result


if __name__ == "__main__":
    from ligo.cli import run, setup_logging

    setup_logging()
    run(main)
