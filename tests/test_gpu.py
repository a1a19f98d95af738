"""On a GPU: the loop, growth and LiGO's operator run there, and compute what the CPU does.
Skipped without one; on a machine with CUDA: `LIGO_TEST_GPU=1 pytest tests/test_gpu.py`
(the rest of the suite keeps the GPUs hidden: tests/conftest.py)."""
import json
import math

import pytest
import torch
from safetensors.torch import load_file

from ligo.grow_train import main as grow_main
from ligo.pretrain import main
from tests.conftest import launch_torchrun, logged_losses, run_argv, torchrun, write_config

pytestmark = pytest.mark.skipif(not torch.cuda.is_available(),
                                reason="needs a GPU (LIGO_TEST_GPU=1 on a machine with CUDA)")


def test_the_first_steps_on_the_gpu_compute_what_the_cpu_computes(tmp_path, small_corpus, cache_dir,
                                                                   monkeypatch):
    # float32 without TF32 (torch's default for matmuls) and no dropout: the two devices differ
    # only in summation order
    config = write_config(tmp_path, "bert", hidden_dropout_prob=0.0, attention_probs_dropout_prob=0.0)
    argv = ("--max_steps", "3", "--logging_steps", "1", "--learning_rate", "1e-3", "--warmup_steps", "0")
    main(run_argv(tmp_path / "gpu", "bert", small_corpus, cache_dir, *argv, config=config))
    with monkeypatch.context() as patch:
        patch.setattr(torch.cuda, "is_available", lambda: False)
        main(run_argv(tmp_path / "cpu", "bert", small_corpus, cache_dir, *argv, config=config))
    assert logged_losses(tmp_path / "gpu", "train") == pytest.approx(logged_losses(tmp_path / "cpu", "train"),
                                                                     rel=1e-4)
    gpu, cpu = (load_file(tmp_path / device / "model.safetensors") for device in ("gpu", "cpu"))
    for key, tensor in cpu.items():
        torch.testing.assert_close(gpu[key], tensor, rtol=1e-3, atol=1e-4, msg=key)


def test_bf16_training_on_the_gpu_learns_beyond_token_frequencies(tmp_path, small_corpus, cache_dir):
    out = tmp_path / "run"
    results = main(run_argv(out, "gpt2", small_corpus, cache_dir, "--max_steps", "300", "--eval_steps", "50",
                            "--per_device_train_batch_size", "32",
                            "--learning_rate", "2e-3", "--warmup_steps", "20", "--bf16", "true",
                            "--documents", "line", "--ckpt_steps", "1000"))
    losses = logged_losses(out, "eval")
    assert results["finished"] and losses[-1] < losses[0] - 0.2, losses
    assert losses[-1] < results["unigram_loss"] - 0.3, (losses, results["unigram_loss"])


def test_a_ligo_operator_trains_and_grows_on_the_gpu(tmp_path, small_run, small_corpus, cache_dir):
    source = small_run("bert")
    config = write_config(tmp_path, "bert", num_hidden_layers=4, hidden_size=128, num_attention_heads=4,
                          intermediate_size=512)
    common = run_argv(tmp_path / "op", "bert", small_corpus, cache_dir, "--source_model_path", str(source),
                      "--learning_rate", "1e-3", "--documents", "line", config=config)
    operator = grow_main([*common, "--tune_width", "--tune_depth", "--max_steps", "20", "--eval_steps", "20"])
    assert operator["eval_loss"] < operator["init_eval_loss"], operator
    grown = main(run_argv(tmp_path / "grown", "bert", small_corpus, cache_dir, "--grow_scheme", "ligo",
                          "--source_model_path", str(source), "--pretrained_ligo_path", str(tmp_path / "op"),
                          "--max_steps", "20", "--eval_steps", "20", "--warmup_steps", "0",
                          "--learning_rate", "1e-3", config=config))
    assert grown["finished"] and math.isfinite(grown["eval_loss"]), grown


@pytest.mark.parametrize("parallelism", ["ddp", "fsdp"])
def test_torchrun_on_one_gpu_with_nccl(parallelism, tmp_path, small_corpus, cache_dir):
    out = tmp_path / parallelism
    torchrun(run_argv(out, "bert", small_corpus, cache_dir, "--max_steps", "20", "--eval_steps", "20",
                      "--parallelism", parallelism), nproc=1, cpu=False)
    assert json.loads((out / "results.json").read_text())["finished"]


def test_more_processes_than_gpus_ends_in_one_error_line(tmp_path, small_corpus, cache_dir):
    nproc = torch.cuda.device_count() + 1
    done = launch_torchrun(run_argv(tmp_path / "run", "bert", small_corpus, cache_dir, "--max_steps", "2"),
                           nproc=nproc, cpu=False)
    assert done.returncode != 0
    assert f"error: torchrun started {nproc} processes on this node" in done.stderr, done.stderr[-3000:]
