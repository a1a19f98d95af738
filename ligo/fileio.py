"""Writing files so that a crash never leaves a half-written one under the real name."""
from __future__ import annotations

import contextlib
import hashlib
import os
import tempfile
from pathlib import Path
from typing import Iterator


def sha256_file(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for chunk in iter(lambda: handle.read(1 << 22), b""):
            digest.update(chunk)
    return digest.hexdigest()


@contextlib.contextmanager
def atomic_write(path: str | Path) -> Iterator[Path]:
    """The one way this package writes a file: yields a temporary path beside `path` for the
    caller to write (by any library: torch.save, h5py, a tokenizer's save, ...); when the block
    ends without an error the file is flushed to disk and renamed onto `path`, so a crash
    leaves the old file or none, never a half-written one. On an error the temporary goes."""
    path = Path(path)
    descriptor, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    os.close(descriptor)
    try:
        yield Path(tmp)
        with open(tmp, "rb") as handle:
            os.fsync(handle.fileno())
        os.chmod(tmp, 0o644)  # mkstemp creates 0600
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)


def atomic_write_text(path: str | Path, text: str) -> None:
    with atomic_write(path) as tmp:
        tmp.write_text(text)


def refuse_output_holding_inputs(output_dir, inputs: dict) -> None:
    """An output folder that is, or contains, something the command reads is refused whatever
    the flags say (--overwrite_output_dir included): writing it would destroy the input.
    `inputs`: flag -> a path, a list of paths or None."""
    out = Path(output_dir).resolve()
    for flag, value in inputs.items():
        paths = [] if value is None else list(value) if isinstance(value, (list, tuple)) else [value]
        for path in paths:
            resolved = Path(path).resolve()
            if resolved == out or out in resolved.parents:
                raise ValueError(f"--output_dir {output_dir} is also an input ({flag} {path}); "
                                 "write to another folder")


def refuse_foreign_output(output_dir, own, overwrite: bool, what: str) -> None:
    """An existing output folder holding anything this command did not write (`own(name)` is
    False) is refused unless --overwrite_output_dir: it may be a model, a run or another
    tool's results."""
    out = Path(output_dir)
    if overwrite or not out.is_dir():
        return
    foreign = sorted(child.name for child in out.iterdir() if not own(child.name))
    if foreign:
        shown = ", ".join(foreign[:4]) + (", ..." if len(foreign) > 4 else "")
        raise FileExistsError(f"--output_dir {out} holds files that are not {what} ({shown}); "
                              "choose another folder, or pass --overwrite_output_dir to write "
                              "into it anyway")
