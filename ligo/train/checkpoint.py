"""Training checkpoints that survive crashes.

A checkpoint is a folder `checkpoint-<step>/` with `state.pt` (everything needed to continue:
model, optimizer, scheduler, scaler, RNG states, step, tokens, FLOPs, seconds) and
`meta.json` (the step and the SHA-256 of every file). A sharded checkpoint
(--checkpoint_format sharded) keeps the model and optimizer out of state.pt, in `shards/`,
written by every rank with torch.distributed.checkpoint. It is written into a temporary folder,
flushed to disk and renamed into place, so a crash mid-write leaves at most a stray
temporary folder, never a half-written checkpoint under a valid name. Loading checks the
digest; a corrupt or partial checkpoint is reported and the previous one used instead.
"""
from __future__ import annotations

import contextlib
import json
import logging
import os
import pickle
import re
import shutil
import tempfile
from pathlib import Path

import torch

from ligo import distributed
from ligo.fileio import sha256_file

log = logging.getLogger(__name__)
PATTERN = re.compile(r"^checkpoint-(\d+)$")
SHARDS = "shards"  # a sharded checkpoint's torch.distributed.checkpoint folder


class CheckpointError(ValueError):
    """A checkpoint that cannot be used (missing, partial, corrupt or unsafe): bad input, so
    the command lines report it as one `error:` line."""


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
        _commit(tmp, final, step, state, keep_last)
    finally:
        if tmp.exists():
            shutil.rmtree(tmp)
    return final


def _commit(tmp: Path, final: Path, step: int, state: dict, keep_last: int) -> None:
    """Write state.pt and meta.json (with the digest of every file) into `tmp`, then rename
    it into place as `final` and drop checkpoints beyond the last `keep_last`."""
    torch.save(state, tmp / "state.pt")
    _fsync(tmp / "state.pt")
    meta = {"step": step, "sha256": sha256_file(tmp / "state.pt")}
    if (tmp / SHARDS).is_dir():
        meta["shards"] = {f.name: sha256_file(f) for f in sorted((tmp / SHARDS).iterdir())}
    (tmp / "meta.json").write_text(json.dumps(meta, indent=1))
    _fsync(tmp / "meta.json")
    if final.exists():  # same step saved again: swap, then drop the old copy
        old = final.with_name(final.name + ".old")
        os.replace(final, old)
        os.replace(tmp, final)
        shutil.rmtree(old)
    else:
        os.replace(tmp, final)
    _fsync(final.parent)
    for _, older in list_checkpoints(final.parent)[:-keep_last]:
        shutil.rmtree(older)


def save_sharded_checkpoint(output_dir: Path, step: int, state: dict, shards: dict,
                            keep_last: int, info) -> Path:
    """Collective: every rank writes its own `shards` (torch.distributed.checkpoint, into
    `shards/`), rank 0 the small `state` and the digests, then renames the folder into place.
    Nothing is gathered, so the model size is not bounded by one host's memory."""
    import torch.distributed.checkpoint as dcp

    output_dir = Path(output_dir)
    final = output_dir / f"checkpoint-{step:07d}"
    tmp = output_dir / f".{final.name}.sharded.tmp"  # one name every rank can compute
    if info.is_main:
        if tmp.exists():  # left by a crash mid-write
            shutil.rmtree(tmp)
        tmp.mkdir()
    distributed.barrier(info)
    dcp.save(shards, checkpoint_id=str(tmp / SHARDS))  # fsyncs its files
    distributed.barrier(info)
    if info.is_main:
        try:
            _commit(tmp, final, step, {**state, "sharded": True}, keep_last)
        finally:
            if tmp.exists():
                shutil.rmtree(tmp)
    distributed.barrier(info)
    return final


def load_checkpoint(folder: Path, verify: bool = True) -> dict:
    """The state saved in `folder`; CheckpointError if it is missing, partial or corrupt.
    `verify=False` skips the SHA-256 checks (another process already made them)."""
    folder = Path(folder)
    meta_path, state_path = folder / "meta.json", folder / "state.pt"
    if not state_path.is_file() or not meta_path.is_file():
        raise CheckpointError(f"{folder} is incomplete (state.pt or meta.json missing)")
    try:
        meta = json.loads(meta_path.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as error:
        raise CheckpointError(f"{meta_path} is not valid JSON: {error}") from error
    if verify and sha256_file(state_path) != meta.get("sha256"):
        raise CheckpointError(f"{state_path} does not match its recorded SHA-256 (corrupt or "
                              "truncated)")
    for name, digest in meta.get("shards", {}).items():
        shard = folder / SHARDS / name
        if not shard.is_file() or (verify and sha256_file(shard) != digest):
            raise CheckpointError(f"{shard} is missing or does not match its recorded SHA-256")
    if meta.get("shards"):  # digests prove integrity, not authorship: refuse code in metadata
        read_shard_metadata(folder / SHARDS / ".metadata")
    try:
        return torch.load(state_path, map_location="cpu", weights_only=True)
    except Exception as error:  # noqa: BLE001 - any unpickling failure means unusable
        raise CheckpointError(f"{state_path} cannot be loaded: {error}") from error


def load_latest_valid(output_dir: Path, info: distributed.DistInfo | None = None
                      ) -> tuple[Path, dict] | None:
    """Newest checkpoint that loads; broken ones are reported and skipped.

    Under torch.distributed (`info`) rank 0 alone checks the digests and broadcasts the
    folder it chose; the other ranks load that folder unchecked. Every shard file is then
    hashed once, not once per rank, and all ranks resume from the same step even if they
    would have seen the files differently."""
    if info is None or not info.enabled:
        return _newest_valid(output_dir)
    found = _newest_valid(output_dir) if info.is_main else None
    chosen = distributed.broadcast_object(None if found is None else str(found[0]), info)
    if chosen is None:
        return None
    return found if info.is_main else (Path(chosen), load_checkpoint(Path(chosen), verify=False))


def _newest_valid(output_dir: Path) -> tuple[Path, dict] | None:
    for step, folder in reversed(list_checkpoints(output_dir)):
        try:
            return folder, load_checkpoint(folder)
        except CheckpointError as error:
            log.warning("skipping checkpoint at step %d: %s", step, error)
    return None


def whole_state(folder: Path, state: dict) -> dict:
    """`state` (from `load_checkpoint`) with the model and AdamW state in one process's
    memory, as a full checkpoint holds them; the AdamW state of a sharded checkpoint stays
    keyed by parameter name (see ligo.parallel.indexed_optimizer_state)."""
    if not state.get("sharded"):
        return state
    # torch's own dcp_to_torch_save, with the safe reader and planner below
    from torch.distributed.checkpoint.default_planner import _EmptyStateDictLoadPlanner
    from torch.distributed.checkpoint.state_dict_loader import _load_state_dict

    class SafeEmptyPlanner(_EmptyStateDictLoadPlanner):
        load_bytes = _safe_load_bytes

    whole: dict = {}
    with shard_errors_named(Path(folder) / SHARDS):
        _load_state_dict(whole, storage_reader=safe_shard_reader(Path(folder) / SHARDS),
                         planner=SafeEmptyPlanner(), no_dist=True)
    return {**state, **whole}


@contextlib.contextmanager
def shard_errors_named(shards: Path):
    """torch.distributed.checkpoint wraps what its reader or planner raised in a
    CheckpointException, a BaseException: turned into a CheckpointError (bad input, one
    `error:` line) that keeps the first line of the reason."""
    from torch.distributed.checkpoint.api import CheckpointException

    try:
        yield
    except CheckpointError:
        raise
    except (CheckpointException, Exception) as error:  # noqa: BLE001
        reasons = [line for line in str(error).splitlines() if "CheckpointError:" in line
                   or "cannot be loaded" in line]
        reason = reasons[0].split("CheckpointError:")[-1].strip() if reasons else \
            (str(error).strip().splitlines() or ["unreadable"])[-1]
        raise CheckpointError(f"the shards in {shards} cannot be loaded: {reason}") from error


# ------------------------------------------------ reading shards someone else wrote, safely
# torch.distributed.checkpoint unpickles a folder's `.metadata` with plain pickle.load and its
# non-tensor values with torch.load(weights_only=False): a folder someone sends would run
# code. Its metadata may name only these classes (DCP's own dataclasses, torch.Size, dtypes,
# layouts, paths); non-tensor values are read with weights_only=True.
_METADATA_CLASSES = {("torch.distributed.checkpoint.metadata", name) for name in (
    "Metadata", "MetadataIndex", "StorageMeta", "TensorProperties", "TensorStorageMetadata",
    "BytesStorageMetadata", "ChunkStorageMetadata", "_MEM_FORMAT_ENCODING")} | {
    ("torch.distributed.checkpoint.filesystem", "_StorageInfo"), ("torch", "Size"),
    ("torch.serialization", "_get_layout"), ("collections", "OrderedDict"),
    ("pathlib", "PosixPath"), ("pathlib", "PurePosixPath"), ("pathlib", "WindowsPath"),
    ("pathlib", "PureWindowsPath")}


class _MetadataUnpickler(pickle.Unpickler):
    def find_class(self, module: str, name: str):
        if (module, name) in _METADATA_CLASSES or (
                module == "torch" and isinstance(getattr(torch, name, None), torch.dtype)):
            return super().find_class(module, name)
        raise pickle.UnpicklingError(f"{module}.{name} is not a checkpoint metadata type")


def read_shard_metadata(path: Path):
    """A DCP `.metadata` file, unpickled with the allow-list above only."""
    try:
        with open(path, "rb") as handle:
            return _MetadataUnpickler(handle).load()
    except Exception as error:  # noqa: BLE001 - anything refused or broken: unusable
        raise CheckpointError(f"{path} cannot be loaded safely: {error}") from error


def _safe_load_bytes(planner, read_item, value) -> None:
    from torch.distributed.checkpoint._traverse import set_element

    try:
        loaded = torch.load(value, weights_only=True)
    except Exception as error:  # noqa: BLE001
        raise CheckpointError(f"a non-tensor value ({read_item.dest_index.fqn}) of a sharded "
                              f"checkpoint cannot be loaded safely: {error}") from error
    if planner.flatten_state_dict:
        set_element(planner.original_state_dict, planner.mappings[read_item.dest_index.fqn], loaded)
    else:
        planner.state_dict[read_item.dest_index.fqn] = loaded


def safe_shard_reader(folder: Path):
    """A torch.distributed.checkpoint FileSystemReader that reads `.metadata` with the
    allow-list above."""
    from torch.distributed.checkpoint import FileSystemReader
    from torch.distributed.checkpoint.metadata import StorageMeta

    class SafeReader(FileSystemReader):
        def read_metadata(self, *args, **kwargs):
            metadata = read_shard_metadata(Path(folder) / ".metadata")
            if getattr(metadata, "storage_meta", None) is None:
                metadata.storage_meta = StorageMeta()
            metadata.storage_meta.load_id = self.load_id
            return metadata

    return SafeReader(str(folder))


def safe_load_planner():
    """DCP's default load planner, reading non-tensor values with weights_only=True."""
    from torch.distributed.checkpoint import DefaultLoadPlanner

    class SafePlanner(DefaultLoadPlanner):
        load_bytes = _safe_load_bytes

    return SafePlanner()
