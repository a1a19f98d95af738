"""Training checkpoints that survive crashes.

A checkpoint is a folder `checkpoint-<step>/` with `state.pt` (everything needed to continue:
model, optimizer, scheduler, scaler, RNG states, step, tokens, FLOPs, seconds) and
`meta.json` (the step and the SHA-256 of state.pt). It is written into a temporary folder,
flushed to disk and renamed into place, so a crash mid-write leaves at most a stray
temporary folder, never a half-written checkpoint under a valid name. Loading checks the
digest; a corrupt or partial checkpoint is reported and the previous one used instead.
"""
from __future__ import annotations

import hashlib
import json
import logging
import os
import re
import shutil
import tempfile
from pathlib import Path

import torch

log = logging.getLogger(__name__)
PATTERN = re.compile(r"^checkpoint-(\d+)$")


class CheckpointError(RuntimeError):
    pass


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for chunk in iter(lambda: handle.read(1 << 22), b""):
            digest.update(chunk)
    return digest.hexdigest()


def _fsync(path: Path) -> None:
    descriptor = os.open(path, os.O_RDONLY)
    try:
        os.fsync(descriptor)
    finally:
        os.close(descriptor)


def list_checkpoints(output_dir: Path) -> list[tuple[int, Path]]:
    """(step, folder) of every checkpoint folder, oldest first."""
    found = []
    if Path(output_dir).is_dir():
        for child in Path(output_dir).iterdir():
            match = PATTERN.match(child.name)
            if match and child.is_dir():
                found.append((int(match.group(1)), child))
    return sorted(found)


def save_checkpoint(output_dir: Path, step: int, state: dict, keep_last: int) -> Path:
    output_dir = Path(output_dir)
    final = output_dir / f"checkpoint-{step:07d}"
    tmp = Path(tempfile.mkdtemp(dir=output_dir, prefix=f".{final.name}.", suffix=".tmp"))
    os.chmod(tmp, 0o755)  # mkdtemp creates 0700
    try:
        torch.save(state, tmp / "state.pt")
        _fsync(tmp / "state.pt")
        meta = {"step": step, "sha256": _sha256(tmp / "state.pt")}
        (tmp / "meta.json").write_text(json.dumps(meta, indent=1))
        _fsync(tmp / "meta.json")
        if final.exists():  # same step saved again: swap, then drop the old copy
            old = final.with_name(final.name + ".old")
            os.replace(final, old)
            os.replace(tmp, final)
            shutil.rmtree(old)
        else:
            os.replace(tmp, final)
        _fsync(output_dir)
    finally:
        if tmp.exists():
            shutil.rmtree(tmp)
    for _, older in list_checkpoints(output_dir)[:-keep_last]:
        shutil.rmtree(older)
    return final


def load_checkpoint(folder: Path) -> dict:
    """The state saved in `folder`; CheckpointError if it is missing, partial or corrupt."""
    folder = Path(folder)
    meta_path, state_path = folder / "meta.json", folder / "state.pt"
    if not state_path.is_file() or not meta_path.is_file():
        raise CheckpointError(f"{folder} is incomplete (state.pt or meta.json missing)")
    try:
        meta = json.loads(meta_path.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as error:
        raise CheckpointError(f"{meta_path} is not valid JSON: {error}") from error
    if _sha256(state_path) != meta.get("sha256"):
        raise CheckpointError(f"{state_path} does not match its recorded SHA-256 (corrupt or "
                              "truncated)")
    try:
        return torch.load(state_path, map_location="cpu", weights_only=True)
    except Exception as error:  # noqa: BLE001 - any unpickling failure means unusable
        raise CheckpointError(f"{state_path} cannot be loaded: {error}") from error


def load_latest_valid(output_dir: Path) -> tuple[Path, dict] | None:
    """Newest checkpoint that loads; broken ones are reported and skipped."""
    for step, folder in reversed(list_checkpoints(output_dir)):
        try:
            return folder, load_checkpoint(folder)
        except CheckpointError as error:
            log.warning("skipping checkpoint at step %d: %s", step, error)
    return None
