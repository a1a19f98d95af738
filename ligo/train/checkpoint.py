"""Training checkpoints that survive crashes.

A checkpoint is a folder `checkpoint-<step>/` with `state.pt` (everything needed to continue:
model, optimizer, scheduler, scaler, RNG states, step, tokens, FLOPs, seconds) and
`meta.json` (the step and the SHA-256 of every file). A sharded checkpoint
(--checkpoint_format sharded) keeps the model and optimizer out of state.pt, in `shards/`,
written by every rank with torch.distributed.checkpoint. It is written into a temporary folder,
flushed to disk and renamed into place, so a crash mid-write leaves at most a stray
temporary folder, never a half-written checkpoint under a valid name. Loading checks the
digest; a corrupt or partial checkpoint is reported and the previous one used instead.

Model and optimizer states are gathered and loaded here whatever the parallelism: full
(unsharded) model and optimizer state, gathered with torch.distributed.checkpoint's
state-dict API, the optimizer state indexed like a plain AdamW's; or each rank's shards keyed
by name, for DCP's own files. Either resumes with another world size or another parallelism.
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
from ligo.families import family_of
from ligo.fileio import sha256_file
from ligo.models import check_finite, config_from_dict, read_model_dir
from ligo.parallel import is_sharded
from ligo.train.optim import adam_state_from_names, named_adam_state, named_param_groups

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
    keyed by parameter name (see indexed_optimizer_state)."""
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



# ---------------------------------------------------------------- a run folder's model
def read_source_model(path: str | Path):
    """(config, state dict) of a model folder (ligo.models.read_model_dir) or of a run
    folder without a final model (stopped or killed): its newest valid checkpoint's model."""
    path = Path(path)
    if not (path / "config.json").is_file() and path.is_dir():
        found = newest_checkpoint_model(path)
        if found is not None:
            return found
    return read_model_dir(path)


def newest_checkpoint_model(run_dir: Path):
    """(config, state dict) from the newest valid checkpoint of a run that has no final model
    yet (stopped with --stop_after_steps, or killed); None if it has no checkpoint."""
    from ligo.roles import check_state_matches_config

    if not list_checkpoints(run_dir):
        return None
    found = load_latest_valid(run_dir)
    if found is None:
        raise ValueError(f"{run_dir} has no final model and none of its checkpoints is valid")
    folder, state = found
    config, weights = checkpoint_model(folder, state, "use a finished run's folder")
    family = family_of(config)
    for key, role in family.tied.items():
        weights.setdefault(key, weights[family.keys[role].key])
    check_state_matches_config(weights, config, family, what=f"the model in {folder}")
    check_finite(weights, f"the model in {folder}")
    log.info("%s has no final model: using its newest valid checkpoint %s "
                                   "(step %d)", run_dir, folder.name, state["progress"]["step"])
    return config, weights


def checkpoint_model(folder: Path, state: dict, advice: str):
    """(config, model weights) of a loaded checkpoint (full or sharded); `advice` ends the
    error for checkpoints written before the model config was recorded."""
    if "model_config" not in state:
        raise ValueError(f"{folder} was written before checkpoints recorded the model config; "
                         f"{advice}")
    return config_from_dict(state["model_config"], folder), whole_state(folder, state)["model"]


def require_model_folder(path: str | Path) -> None:
    """For commands that load with transformers' from_pretrained: a run folder without its
    final model is named, with the command that makes one."""
    path = Path(path)
    if path.is_dir() and not (path / "config.json").is_file() and list_checkpoints(path):
        raise ValueError(f"{path} is a run without a final model (stopped or killed); write one "
                         f"from its newest checkpoint first: python -m ligo.export {path} "
                         f"--output_dir {path}-model")


# ---------------------------------------------------------------- model and optimizer state, any parallelism
def full_state(model: torch.nn.Module, optimizer: torch.optim.Optimizer,
               every_rank: bool = False) -> tuple[dict, dict]:
    """(model state dict, AdamW state dict) unsharded, in the plain format (collective
    under FSDP: every rank calls it). Gathered into CPU memory on rank 0 only (for a
    checkpoint), or with `every_rank` on every rank, on its device (to grow it there)."""
    if not is_sharded(model):
        return model.state_dict(), optimizer.state_dict()
    from torch.distributed.checkpoint.state_dict import StateDictOptions, get_state_dict

    if not optimizer.state:
        # a fresh optimizer (right after a growth event that resets AdamW): get_state_dict
        # would create its state by a zero-gradient step, which counts as Adam's first step
        return full_model_state(model, every_rank), optimizer.state_dict()
    model_state, optim_state = get_state_dict(
        model, optimizer,
        options=StateDictOptions(full_state_dict=True, cpu_offload=not every_rank))
    if "state" not in optim_state:  # gathered on rank 0 only (cpu_offload): others save nothing
        return model_state, {}
    return model_state, adam_state_from_names(model, optim_state["state"], optimizer.state_dict())


def full_model_state(model: torch.nn.Module, every_rank: bool = False) -> dict:
    """The unsharded model state dict (collective under FSDP), in CPU memory on rank 0 only,
    or with `every_rank` on every rank."""
    if not is_sharded(model):
        return model.state_dict()
    from torch.distributed.checkpoint.state_dict import StateDictOptions, get_model_state_dict

    return get_model_state_dict(model, options=StateDictOptions(full_state_dict=True,
                                                                cpu_offload=not every_rank))


@contextlib.contextmanager
def _own_kernels(optimizer: torch.optim.Optimizer):
    """Loading a state dict overwrites each group's settings; keep the optimizer's own kernel
    choice (a state saved by a fused AdamW loads into a per-parameter one, as tensor
    parallelism needs, and back)."""
    kernels = [{k: group[k] for k in ("fused", "foreach") if k in group}
               for group in optimizer.param_groups]
    yield
    for group, kernel in zip(optimizer.param_groups, kernels, strict=True):
        group.update(kernel)


def load_full_state(model: torch.nn.Module, optimizer: torch.optim.Optimizer,
                    model_state: dict | None, optim_state: dict) -> None:
    """The inverse of `full_state`, for any parallelism and world size (model_state None:
    the optimizer only)."""
    with _own_kernels(optimizer):
        _load_full_state(model, optimizer, model_state, optim_state)


def sharded_state(model: torch.nn.Module, optimizer: torch.optim.Optimizer) -> dict:
    """This rank's shards of the model and AdamW state, keyed by parameter name, for
    `torch.distributed.checkpoint.save` (collective under FSDP / TP). A fresh optimizer is
    left out: DCP would create its state by a zero-gradient step."""
    from torch.distributed.checkpoint.state_dict import get_model_state_dict, get_state_dict

    if not optimizer.state:
        return {"model": get_model_state_dict(model)}
    model_state, optim_state = get_state_dict(model, optimizer)
    return {"model": model_state, "optimizer": optim_state}


def load_sharded_state(model: torch.nn.Module, optimizer: torch.optim.Optimizer, path,
                       with_optimizer: bool) -> None:
    """Read a `sharded_state` written by any world size and parallelism into this rank's
    shards (DCP reads the pieces each rank needs)."""
    import torch.distributed.checkpoint as dcp
    from torch.distributed.checkpoint.state_dict import (
        get_model_state_dict,
        get_state_dict,
        set_model_state_dict,
        set_state_dict,
    )

    with _own_kernels(optimizer), shard_errors_named(path):
        if not with_optimizer:
            state = {"model": get_model_state_dict(model)}
            dcp.load(state, storage_reader=safe_shard_reader(path), planner=safe_load_planner())
            set_model_state_dict(model, state["model"])
            return
        model_state, optim_state = get_state_dict(model, optimizer)  # templates to read into
        state = {"model": model_state, "optimizer": optim_state}
        dcp.load(state, storage_reader=safe_shard_reader(path), planner=safe_load_planner())
        set_state_dict(model, optimizer, model_state_dict=state["model"],
                       optim_state_dict=state["optimizer"])


def indexed_optimizer_state(model: torch.nn.Module, by_name: dict) -> dict:
    """An AdamW state keyed by parameter name (DCP's layout) in the plain layout, indexed in
    `named_param_groups` order."""
    decay, no_decay = named_param_groups(model)
    index = {name: i for i, name in enumerate(decay + no_decay)}
    groups = [{**group, "params": [index[n] for n in group["params"]]}
              for group in by_name["param_groups"]]
    return adam_state_from_names(model, by_name["state"], {"param_groups": groups})


def _load_full_state(model, optimizer, model_state, optim_state) -> None:
    if not is_sharded(model):
        if model_state is not None:
            model.load_state_dict(model_state)
        optimizer.load_state_dict(optim_state)
        return
    from torch.distributed.checkpoint.state_dict import (
        StateDictOptions,
        set_model_state_dict,
        set_optimizer_state_dict,
        set_state_dict,
    )

    if not optim_state["state"]:  # saved fresh: loading it through DCP would create state
        if model_state is not None:
            set_model_state_dict(model, model_state, options=StateDictOptions(full_state_dict=True))
        optimizer.load_state_dict(optim_state)
        return

    decay, no_decay = named_param_groups(model)
    names = decay + no_decay
    by_name = {"state": named_adam_state(model, optim_state),
               "param_groups": [{**group, "params": [names[i] for i in group["params"]]}
                                for group in optim_state["param_groups"]]}
    options = StateDictOptions(full_state_dict=True)
    if model_state is None:
        set_optimizer_state_dict(model, optimizer, by_name, options=options)
    else:
        set_state_dict(model, optimizer, model_state_dict=model_state, optim_state_dict=by_name,
                       options=options)


# ---------------------------------------------------------------- a run's checkpoint, whole
def save_run(output_dir: Path, step: int, *, model: torch.nn.Module,
             optimizer: torch.optim.Optimizer, loop_state: dict, sharded: bool, keep_last: int,
             info: distributed.DistInfo) -> Path:
    """checkpoint-<step>/ holding `loop_state` (the loop's own state: scheduler, RNG,
    progress, ...) with the model and AdamW state: gathered whole on rank 0 (full), or each
    rank's shards (sharded). Collective: every rank calls it."""
    if sharded:  # every rank writes its own shards
        shards = sharded_state(model, optimizer)
        state = {**loop_state, "optimizer_saved": "optimizer" in shards}
        path = save_sharded_checkpoint(output_dir, step, state, shards, keep_last, info)
        if info.is_main:
            log.info("saved %s (sharded)", path)
        return path
    model_state, optimizer_state = full_state(model, optimizer)
    path = output_dir / f"checkpoint-{step:07d}"
    if info.is_main:
        path = save_checkpoint(output_dir, step, {**loop_state, "model": model_state,
                                                  "optimizer": optimizer_state}, keep_last)
        log.info("saved %s", path)
    distributed.barrier(info)
    return path


def restore_model_and_optimizer(state: dict, folder: Path | None, model: torch.nn.Module,
                                optimizer: torch.optim.Optimizer) -> None:
    """The model and AdamW state of a checkpoint `state` read from `folder` (full or
    sharded, written by any world size and parallelism) into this rank's model and optimizer."""
    if state.get("sharded"):
        load_sharded_state(model, optimizer, Path(folder) / SHARDS, state["optimizer_saved"])
    else:
        load_full_state(model, optimizer, state["model"], state["optimizer"])
