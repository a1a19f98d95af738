"""What the bench/ scripts share about their results: the command line that made them, and
one JSON file written whole (an interrupted write never leaves half a results file)."""
from __future__ import annotations

import json
import sys
from pathlib import Path

from ligo.fileio import atomic_write_text


def command_line(script: str, argv: list[str] | None) -> str:
    """`python bench/<script> <arguments>`; argv None means this process's own arguments."""
    return f"python bench/{script} " + " ".join(sys.argv[1:] if argv is None else argv)


def write_json(report: dict, path: str | Path) -> Path:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    atomic_write_text(path, json.dumps(report, indent=1) + "\n")
    return path
