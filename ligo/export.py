"""Export a training checkpoint (full or sharded, from any world size and parallelism) as a
plain HF model folder, e.g. to fine-tune or evaluate the model of step N mid-run.

    python -m ligo.export out/bert/checkpoint-0000500 --output_dir out/bert-step500
    python -m ligo.export out/bert --output_dir out/bert-latest   # the newest valid checkpoint

Runs in one process; a sharded checkpoint is read whole into memory. The run's tokenizer
files are copied next to the model.
"""
from __future__ import annotations

import argparse
import logging
import shutil
import sys
from pathlib import Path

from ligo.fileio import refuse_output_holding_inputs

log = logging.getLogger("ligo.export")


def export_checkpoint(checkpoint: str | Path, output_dir: str | Path) -> Path:
    """Write checkpoint `checkpoint` (a checkpoint-N folder, or a run folder: its newest valid
    checkpoint) to `output_dir` as an HF model with the run's tokenizer."""
    from ligo.grow_model import TOKENIZER_FILES
    from ligo.models import model_from_state
    from ligo.train.checkpoint import PATTERN, checkpoint_model, load_checkpoint, load_latest_valid

    folder = Path(checkpoint)
    if not folder.is_dir():
        raise FileNotFoundError(f"checkpoint folder {folder} does not exist")
    if PATTERN.match(folder.name):
        state = load_checkpoint(folder)
    else:
        found = load_latest_valid(folder)
        if found is None:
            raise FileNotFoundError(f"{folder} holds no valid checkpoint-<step> folder")
        folder, state = found
    config, weights = checkpoint_model(folder, state, "export the run's final model folder instead")
    model = model_from_state(config, weights)
    out = Path(output_dir)
    out.mkdir(parents=True, exist_ok=True)
    model.save_pretrained(str(out))
    run_dir = folder.parent
    for name in TOKENIZER_FILES:
        if (run_dir / name).is_file():
            shutil.copy2(run_dir / name, out / name)
    log.info("exported %s (step %d) to %s", folder, state["progress"]["step"], out)
    return out


def main(argv: list[str] | None = None) -> Path:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("checkpoint", help="a checkpoint-<step> folder, or a run's output folder")
    parser.add_argument("--output_dir", required=True)
    parser.add_argument("--overwrite_output_dir", action="store_true")
    args = parser.parse_args(sys.argv[1:] if argv is None else argv)
    out = Path(args.output_dir)
    refuse_output_holding_inputs(out, {"checkpoint": args.checkpoint})
    if out.exists() and any(out.iterdir()) and not args.overwrite_output_dir:
        raise FileExistsError(f"--output_dir {out} is not empty; pass --overwrite_output_dir")
    return export_checkpoint(args.checkpoint, out)


if __name__ == "__main__":
    from ligo.cli import run, setup_logging

    setup_logging()
    run(main)
