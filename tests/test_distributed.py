"""Data parallelism changes how a global batch is computed, never what is computed."""
import pytest
import torch
from safetensors.torch import load_file

from ligo.pretrain import main
from tests.conftest import run_argv, torchrun, write_config

# float32 sums reduced in a different order (gloo all-reduce, micro-batches) differ in the last
# bits; after 4 AdamW steps at lr 2e-4 that stays far below this
TOLERANCE = dict(rtol=0, atol=2e-6)


def weights(folder):
    return load_file(folder / "model.safetensors")


def assert_close_weights(a, b):
    assert a.keys() == b.keys()
    for key in a:
        torch.testing.assert_close(a[key], b[key], **TOLERANCE, msg=key)


def no_dropout_config(folder):
    return write_config(folder, "bert", hidden_dropout_prob=0.0, attention_probs_dropout_prob=0.0)


def common(tmp_path, small_corpus, cache_dir, out, per_device, accumulation, config):
    argv = run_argv(tmp_path / out, "bert", small_corpus, cache_dir, "--max_steps", "4",
                    "--eval_steps", "4", "--ckpt_steps", "4", config=config)
    argv[argv.index("--per_device_train_batch_size") + 1] = str(per_device)
    return argv + ["--gradient_accumulation_steps", str(accumulation)]


@pytest.mark.slow
def test_two_process_gloo_ddp_equals_one_process_on_the_same_global_batch(tmp_path, small_corpus,
                                                                           cache_dir):
    config = no_dropout_config(tmp_path)
    single = main(common(tmp_path, small_corpus, cache_dir, "single", 8, 1, config))
    done = torchrun(common(tmp_path, small_corpus, cache_dir, "ddp", 2, 2, config))  # 2 x 2 x 2
    assert "global batch 8" in done.stderr
    before = weights(tmp_path / "single")
    assert_close_weights(before, weights(tmp_path / "ddp"))
    import json
    ddp_results = json.loads((tmp_path / "ddp" / "results.json").read_text())
    assert abs(ddp_results["eval_loss"] - single["eval_loss"]) < 1e-5
    assert ddp_results["tokens"] == single["tokens"]


def test_gradient_accumulation_equals_one_big_batch(tmp_path, small_corpus, cache_dir):
    config = no_dropout_config(tmp_path)
    main(common(tmp_path, small_corpus, cache_dir, "big", 8, 1, config))
    main(common(tmp_path, small_corpus, cache_dir, "accumulated", 2, 4, config))
    assert_close_weights(weights(tmp_path / "big"), weights(tmp_path / "accumulated"))


def test_the_process_group_timeout_is_the_flag(monkeypatch):
    """--dist_timeout_minutes reaches init_process_group (a stopped rank fails the run after
    it, instead of hanging for torch's 30-minute default)."""
    import datetime

    from ligo import distributed
    from ligo.cli import run_distributed
    from ligo.config import TrainingArguments

    seen = {}
    monkeypatch.setenv("WORLD_SIZE", "2")
    monkeypatch.setattr(distributed.dist, "is_initialized", lambda: False)
    monkeypatch.setattr(distributed.dist, "init_process_group",
                        lambda backend, timeout: seen.update(timeout=timeout))
    monkeypatch.setattr(distributed.dist, "get_rank", lambda: 0)
    monkeypatch.setattr(distributed.dist, "get_world_size", lambda: 2)
    monkeypatch.setattr(distributed, "shutdown", lambda info: None)
    run_distributed(lambda args, info: None, (TrainingArguments,),
                    ["--output_dir", "o", "--dist_timeout_minutes", "7"], "")
    assert seen["timeout"] == datetime.timedelta(minutes=7)


def test_more_processes_than_gpus_is_refused_in_one_line(monkeypatch):
    """torchrun --nproc_per_node 2 on a one-GPU machine: an `error:` naming both fixes, not
    CUDA's 'invalid device ordinal' from the second process."""
    from ligo import distributed

    for name, value in (("WORLD_SIZE", "2"), ("LOCAL_RANK", "1"), ("LOCAL_WORLD_SIZE", "2")):
        monkeypatch.setenv(name, value)
    monkeypatch.setattr(distributed.torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(distributed.torch.cuda, "device_count", lambda: 1)
    with pytest.raises(ValueError, match=r"started 2 processes on this node but it has 1 GPU\(s\): use "
                                         r"--nproc_per_node 1, or CUDA_VISIBLE_DEVICES="):
        distributed.init_distributed()
