"""Grow a small model folder into a larger config and write the grown model (HF format).

    python -m ligo.grow_model out/bert-small --config_name configs/bert-6L-512H.json \
        --output_dir out/bert-grown --grow_scheme stack --width_scheme bert2bert_aki

The output folder loads with `AutoModelForMaskedLM` / `AutoModelForCausalLM`; the source's
tokenizer files are copied next to it. To grow and then pretrain in one go, give the same
flags to run_lm_distributed.py (`--source_model_path ...`).
"""
from __future__ import annotations

import argparse
import json
import logging
import shutil
import sys
from pathlib import Path

from ligo.config import GrowthArguments, add_dataclass_arguments, argument_parser, from_namespace
from ligo.fileio import atomic_write_text, refuse_output_holding_inputs

TOKENIZER_FILES = ("tokenizer.json", "tokenizer_config.json", "special_tokens_map.json",
                   "vocab.txt", "vocab.json", "merges.txt")
log = logging.getLogger("ligo.grow_model")


def main(argv: list[str] | None = None) -> Path:
    parser = argument_parser(__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("source", nargs="?", help="the small model folder (or --source_model_path)")
    parser.add_argument("--config_name", required=True, help="the larger model config JSON")
    parser.add_argument("--output_dir", required=True, help="where the grown model is written")
    parser.add_argument("--overwrite_output_dir", action="store_true")
    add_dataclass_arguments(parser, GrowthArguments)
    known = parser.parse_args(sys.argv[1:] if argv is None else argv)
    growth = from_namespace(GrowthArguments, known)
    growth.check_operator_init()
    source = known.source or growth.source_model_path
    if not source:
        raise ValueError("give the small model folder (first argument or --source_model_path)")
    out = Path(known.output_dir)
    refuse_output_holding_inputs(out, {"source": source, "--config_name": known.config_name,
                                       "--pretrained_ligo_path": growth.pretrained_ligo_path})
    if out.exists() and any(out.iterdir()) and not known.overwrite_output_dir:
        raise FileExistsError(f"--output_dir {out} is not empty; pass --overwrite_output_dir")

    import ligo

    model = ligo.grow(source, known.config_name, **growth.api_options())
    out.mkdir(parents=True, exist_ok=True)
    model.save_pretrained(str(out))
    for name in TOKENIZER_FILES:
        if (Path(source) / name).is_file():
            shutil.copy2(Path(source) / name, out / name)
    atomic_write_text(out / "growth.json", json.dumps(
        {"source": str(Path(source).resolve()), "config": known.config_name,
         **growth.operator_options()}, indent=1) + "\n")
    log.info("grew %s into %s (%s)", source, out, growth.grow_scheme
             + (f" + {growth.width_scheme}" if growth.width_scheme else ""))
    return out


if __name__ == "__main__":
    from ligo.cli import run, setup_logging

    setup_logging()
    run(main)
