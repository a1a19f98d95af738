"""Files someone sends are data, never code: a pickled payload planted in any file a loader
reads (with the SHA-256 digests recomputed, as an attacker would) does not run, and the error
names the file."""
import hashlib
import json
import pickle

import pytest
import torch

from ligo.distributed import DistInfo
from ligo.train import checkpoint as ckpt


class Payload:
    """Unpickling this creates the file `marker`: proof that code ran."""

    def __init__(self, marker):
        self.marker = str(marker)

    def __reduce__(self):
        return exec, (f"open({self.marker!r}, 'w').close()",)


def redigest(folder):
    """What an attacker does after planting: make meta.json's digests match again."""
    meta = json.loads((folder / "meta.json").read_text())
    digest = lambda path: hashlib.sha256(path.read_bytes()).hexdigest()  # noqa: E731
    meta["sha256"] = digest(folder / "state.pt")
    if "shards" in meta:
        meta["shards"] = {f.name: digest(f) for f in sorted((folder / "shards").iterdir())}
    (folder / "meta.json").write_text(json.dumps(meta))


def sharded(tmp_path, extra=None):
    tmp_path.mkdir(parents=True, exist_ok=True)
    shards = {"model": {"w": torch.ones(3)}, "optimizer": {"param_groups": [{"lr": 0.1}]},
              **(extra or {})}
    return ckpt.save_sharded_checkpoint(tmp_path, 1, {"step": 1}, shards, 2, DistInfo())


def test_the_payload_would_run_if_unpickled(tmp_path):
    pickle.loads(pickle.dumps(Payload(tmp_path / "marker")))
    assert (tmp_path / "marker").exists()  # so its absence below means something


def test_shard_metadata_is_read_with_an_allow_list(tmp_path, caplog):
    folder = sharded(tmp_path / "run")
    found, state = ckpt.load_latest_valid(tmp_path / "run")  # a genuine one reads, whole too
    assert ckpt.whole_state(found, state)["optimizer"]["param_groups"][0]["lr"] == 0.1
    (folder / "shards" / ".metadata").write_bytes(pickle.dumps(Payload(tmp_path / "marker")))
    redigest(folder)
    assert ckpt.load_latest_valid(tmp_path / "run") is None  # refused, so skipped
    assert "shards/.metadata cannot be loaded safely" in caplog.text
    with pytest.raises(ckpt.CheckpointError, match=r"\.metadata cannot be loaded safely"):
        ckpt.load_checkpoint(folder)
    with pytest.raises(ckpt.CheckpointError, match=r"\.metadata"):
        ckpt.whole_state(folder, {"sharded": True})
    assert not (tmp_path / "marker").exists()


def test_non_tensor_values_in_shards_are_read_weights_only(tmp_path):
    folder = sharded(tmp_path / "run", {"extra": Payload(tmp_path / "marker")})
    state = ckpt.load_checkpoint(folder)  # digests and metadata are genuine
    with pytest.raises(ckpt.CheckpointError, match="cannot be loaded"):
        ckpt.whole_state(folder, state)
    assert not (tmp_path / "marker").exists()


def test_state_file_is_read_weights_only(tmp_path):
    folder = ckpt.save_checkpoint(tmp_path, 1, {"step": 1}, keep_last=1)
    torch.save({"step": Payload(tmp_path / "marker")}, folder / "state.pt")
    redigest(folder)
    with pytest.raises(ckpt.CheckpointError, match=r"state\.pt cannot be loaded"):
        ckpt.load_checkpoint(folder)
    assert not (tmp_path / "marker").exists()


def test_export_of_a_planted_run_is_one_error_line(tmp_path):
    from ligo.export import main

    folder = sharded(tmp_path / "run")
    (folder / "shards" / ".metadata").write_bytes(pickle.dumps(Payload(tmp_path / "marker")))
    redigest(folder)
    with pytest.raises(ckpt.CheckpointError, match=r"\.metadata cannot be loaded safely"):
        main([str(folder), "--output_dir", str(tmp_path / "out")])
    assert isinstance(ckpt.CheckpointError("x"), ValueError)  # ligo.cli: `error: ...`
    assert not (tmp_path / "marker").exists()


def test_operator_and_json_files_are_data(tmp_path):
    from ligo.operators.learned import DESCRIPTION_FILE, OPERATOR_FILE, load_operator
    from tests.operators.conftest import saved_operator

    op = saved_operator("gpt2", tmp_path / "op")
    load_operator(op)  # genuine: loads
    torch.save({"w": Payload(tmp_path / "marker")}, op / OPERATOR_FILE)
    with pytest.raises(ValueError, match="does not match the SHA-256"):  # not even unpickled
        load_operator(op)
    description = json.loads((op / DESCRIPTION_FILE).read_text())
    description["sha256"] = hashlib.sha256((op / OPERATOR_FILE).read_bytes()).hexdigest()
    (op / DESCRIPTION_FILE).write_text(json.dumps(description))  # the attacker's digest
    with pytest.raises(ValueError, match=f"{OPERATOR_FILE} cannot be loaded"):
        load_operator(op)
    (op / DESCRIPTION_FILE).write_bytes(pickle.dumps(Payload(tmp_path / "marker")))
    with pytest.raises(ValueError, match=f"{DESCRIPTION_FILE} is not valid JSON"):
        load_operator(op)
    (tmp_path / "run").mkdir()
    folder = ckpt.save_checkpoint(tmp_path / "run", 1, {"step": 1}, keep_last=1)
    (folder / "meta.json").write_bytes(pickle.dumps(Payload(tmp_path / "marker")))
    with pytest.raises(ckpt.CheckpointError, match=r"meta\.json is not valid JSON"):
        ckpt.load_checkpoint(folder)
    assert not (tmp_path / "marker").exists()
