import json

import pytest
import torch

from ligo.train import checkpoint as ckpt


def state(value: float) -> dict:
    return {"weights": torch.full((3,), value), "progress": {"step": int(value)}}


def test_save_then_load_round_trips(tmp_path):
    folder = ckpt.save_checkpoint(tmp_path, 5, state(5.0), keep_last=2)
    assert folder.name == "checkpoint-0000005"
    assert torch.equal(ckpt.load_checkpoint(folder)["weights"], torch.full((3,), 5.0))


def test_only_the_last_k_are_kept(tmp_path):
    for step in (1, 2, 3, 4):
        ckpt.save_checkpoint(tmp_path, step, state(step), keep_last=2)
    assert [s for s, _ in ckpt.list_checkpoints(tmp_path)] == [3, 4]


def test_crash_mid_write_leaves_the_previous_checkpoint_usable(tmp_path, monkeypatch):
    ckpt.save_checkpoint(tmp_path, 1, state(1.0), keep_last=3)

    def dying_save(obj, path):
        with open(path, "wb") as handle:
            handle.write(b"half a checkpoint")
        raise KeyboardInterrupt("killed mid-write")

    monkeypatch.setattr(ckpt.torch, "save", dying_save)
    with pytest.raises(KeyboardInterrupt):
        ckpt.save_checkpoint(tmp_path, 2, state(2.0), keep_last=3)
    assert [s for s, _ in ckpt.list_checkpoints(tmp_path)] == [1]
    assert not [p for p in tmp_path.iterdir() if p.name.endswith(".tmp")]
    folder, loaded = ckpt.load_latest_valid(tmp_path)
    assert loaded["progress"]["step"] == 1


@pytest.mark.parametrize("damage", ["truncate", "flip", "no_meta", "bad_meta"])
def test_corrupt_checkpoint_is_reported_and_skipped(tmp_path, caplog, damage):
    ckpt.save_checkpoint(tmp_path, 1, state(1.0), keep_last=3)
    latest = ckpt.save_checkpoint(tmp_path, 2, state(2.0), keep_last=3)
    data = (latest / "state.pt").read_bytes()
    if damage == "truncate":
        (latest / "state.pt").write_bytes(data[: len(data) // 2])
    elif damage == "flip":
        (latest / "state.pt").write_bytes(data[:-10] + bytes(10))
    elif damage == "no_meta":
        (latest / "meta.json").unlink()
    else:
        (latest / "meta.json").write_text("{not json")
    with pytest.raises(ckpt.CheckpointError):
        ckpt.load_checkpoint(latest)
    folder, loaded = ckpt.load_latest_valid(tmp_path)
    assert loaded["progress"]["step"] == 1
    assert "skipping checkpoint at step 2" in caplog.text


@pytest.mark.parametrize("rank", [0, 1])
def test_under_distributed_only_rank_0_hashes_and_every_rank_takes_its_choice(tmp_path, monkeypatch,
                                                                            rank):
    """Rank 0 skips the damaged newest checkpoint; rank 1 loads the folder rank 0 broadcast
    without hashing anything (it would not have to see the damage itself)."""
    from ligo.distributed import DistInfo

    ckpt.save_checkpoint(tmp_path, 1, state(1.0), keep_last=3)
    latest = ckpt.save_checkpoint(tmp_path, 2, state(2.0), keep_last=3)
    (latest / "state.pt").write_bytes((latest / "state.pt").read_bytes()[:-10] + bytes(10))
    broadcast = []
    monkeypatch.setattr(ckpt.distributed, "broadcast_object",
                        lambda value, info: broadcast.append(value) or str(tmp_path / "checkpoint-0000001"))
    if rank == 1:
        monkeypatch.setattr(ckpt, "sha256_file", lambda path: pytest.fail(f"rank 1 hashed {path}"))
    folder, loaded = ckpt.load_latest_valid(tmp_path, DistInfo(rank=rank, world_size=2))
    assert folder.name == "checkpoint-0000001" and loaded["progress"]["step"] == 1
    assert broadcast == [str(tmp_path / "checkpoint-0000001") if rank == 0 else None]
    monkeypatch.setattr(ckpt.distributed, "broadcast_object", lambda value, info: None)
    assert ckpt.load_latest_valid(tmp_path, DistInfo(rank=rank, world_size=2)) is None  # none valid


def test_no_checkpoint_at_all(tmp_path):
    assert ckpt.load_latest_valid(tmp_path) is None


def test_meta_records_the_digest(tmp_path):
    folder = ckpt.save_checkpoint(tmp_path, 7, state(7.0), keep_last=1)
    meta = json.loads((folder / "meta.json").read_text())
    assert meta["step"] == 7 and len(meta["sha256"]) == 64


def test_sharded_checkpoint_round_trips_checks_every_shard_and_reads_whole(tmp_path, caplog):
    """One process writes torch.distributed.checkpoint shards (no process group needed); a
    damaged shard makes that checkpoint invalid and the previous one is used."""
    from ligo.distributed import DistInfo

    for step in (1, 2):
        shards = {"model": {"w": torch.full((3,), float(step))}}
        ckpt.save_sharded_checkpoint(tmp_path, step, {"step": step}, shards, 3, DistInfo())
    folder = tmp_path / "checkpoint-0000002"
    meta = json.loads((folder / "meta.json").read_text())
    assert meta["shards"] and all((folder / "shards" / name).is_file() for name in meta["shards"])
    found_folder, state = ckpt.load_latest_valid(tmp_path)
    assert found_folder == folder and state["sharded"] and "model" not in state
    assert torch.equal(ckpt.whole_state(folder, state)["model"]["w"], torch.full((3,), 2.0))
    damaged = next(f for f in (folder / "shards").iterdir() if f.suffix == ".distcp")
    damaged.write_bytes(damaged.read_bytes()[:-4])
    found_folder, state = ckpt.load_latest_valid(tmp_path)
    assert found_folder.name == "checkpoint-0000001" and state["step"] == 1
    assert "does not match its recorded SHA-256" in caplog.text
    assert not list(tmp_path.glob(".*.tmp"))  # nothing left half-written
