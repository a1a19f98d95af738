"""ligo.precision: --bf16 is refused where the device would run it in a slow fallback."""
from __future__ import annotations

import time

import pytest
import torch

from ligo import precision
from tests.conftest import run_argv


def _best_seconds(dtype: torch.dtype) -> float:
    a, b = torch.randn(256, 256, dtype=dtype), torch.randn(256, 1024, dtype=dtype)
    timings = []
    for _ in range(3):
        start = time.perf_counter()
        a @ b
        timings.append(time.perf_counter() - start)
    return min(timings)


def test_native_bfloat16_tells_whether_bf16_matmuls_run_at_float32_speed_or_far_below():
    """The claim the check rests on, measured on this CPU: without native bf16 a bf16 matmul
    is many times slower than float32 (218x seen on an AVX2-only EPYC); with it, close."""
    ratio = _best_seconds(torch.bfloat16) / _best_seconds(torch.float32)
    if precision.native_bfloat16("cpu"):
        assert ratio < 5, ratio
    else:
        assert ratio > 10, ratio


def test_check_bfloat16_refuses_bf16_only_where_it_is_not_native(monkeypatch):
    monkeypatch.setattr(precision, "native_bfloat16", lambda device="cpu": False)
    with pytest.raises(ValueError, match=r"--bf16: this CPU has no bfloat16 instructions.*drop --bf16"):
        precision.check_bfloat16(True, "cpu")
    precision.check_bfloat16(False, "cpu")  # float32: always fine
    monkeypatch.setattr(precision, "native_bfloat16", lambda device="cpu": True)
    precision.check_bfloat16(True, "cpu")


def test_a_benchmarks_bf16_auto_resolves_by_the_machine(monkeypatch):
    monkeypatch.setattr(precision, "native_bfloat16", lambda device="cpu": False)
    assert precision.bf16_flag("auto") == "false"
    assert precision.bf16_flag("true") == "true"  # asked for explicitly: the run decides
    monkeypatch.setattr(precision, "native_bfloat16", lambda device="cpu": True)
    assert precision.bf16_flag("auto") == "true" and precision.bf16_flag("false") == "false"
    with pytest.raises(ValueError, match="true, false or auto"):
        precision.bf16_flag("yes")


@pytest.mark.parametrize("command", ["pretrain", "grow"])
def test_runs_asked_for_bf16_on_a_cpu_without_it_stop_before_any_work(command, monkeypatch, tmp_path,
                                                                      small_corpus, cache_dir):
    from ligo.grow_train import main as grow_main
    from ligo.pretrain import main as pretrain_main

    monkeypatch.setattr(precision, "native_bfloat16", lambda device="cpu": False)
    out = tmp_path / "out"
    argv = run_argv(out, "bert", small_corpus, cache_dir, "--max_steps", "2")
    argv[argv.index("--bf16") + 1] = "true"
    main = pretrain_main
    if command == "grow":
        main = grow_main
        argv += ["--source_model_path", str(tmp_path / "no_source_needed_yet"), "--tune_depth"]
    with pytest.raises(ValueError, match="--bf16: this CPU has no bfloat16"):
        main(argv)
    assert not out.exists()


def test_glue_with_bf16_on_a_cpu_without_it_stops_before_any_work(monkeypatch, tmp_path, hf_model,
                                                                  shared_data):
    from ligo.glue import main

    monkeypatch.setattr(precision, "native_bfloat16", lambda device="cpu": False)
    out = tmp_path / "glue"
    with pytest.raises(ValueError, match="--bf16: this CPU has no bfloat16"):
        main([str(hf_model), "--task_dir", str(shared_data / "classify" / "movie_reviews"),
              "--output_dir", str(out), "--bf16", "--max_train_samples", "8"])
    assert not out.exists()


def test_bf16_auto_is_parsed_and_settled_by_the_device(monkeypatch):
    from ligo.config import DataArguments, ModelArguments, TrainingArguments, parse_args

    groups = (ModelArguments, DataArguments, TrainingArguments)
    *_, bare = parse_args(groups, ["--config_name", "c", "--output_dir", "o", "--bf16"])
    *_, auto = parse_args(groups, ["--config_name", "c", "--output_dir", "o", "--bf16", "auto"])
    assert bare.bf16 is True and auto.bf16 == "auto"
    monkeypatch.setattr(precision, "native_bfloat16", lambda device="cpu": False)
    assert precision.resolve_bfloat16("auto", "cpu") is False
    with pytest.raises(ValueError, match="--bf16: this CPU"):
        precision.resolve_bfloat16(True, "cpu")
    monkeypatch.setattr(precision, "native_bfloat16", lambda device="cpu": True)
    assert precision.resolve_bfloat16("auto", "cpu") is True
    assert precision.resolve_bfloat16("auto", "cpu", fp16=True) is False  # --fp16 asked for
    assert precision.resolve_bfloat16(False, "cpu") is False


def test_the_recipe_files_bf16_auto_trains_in_float32_on_a_cpu_without_bf16(
        monkeypatch, tmp_path, small_corpus, cache_dir, caplog):
    """configs/*_wiki.txt say bf16 = auto: on a CPU without bf16 a run trains in float32 and
    says so in its first log line, where `bf16 = true` would stop with the error above."""
    from ligo.pretrain import main

    monkeypatch.setattr(precision, "native_bfloat16", lambda device="cpu": False)
    argv = run_argv(tmp_path / "out", "bert", small_corpus, cache_dir, "--max_steps", "2",
                    "--eval_steps", "2")
    argv[argv.index("--bf16") + 1] = "auto"
    with caplog.at_level("INFO", logger="ligo"):
        assert main(argv)["finished"]
    assert any("global batch 8, float32," in r.getMessage() for r in caplog.records)


def test_a_gpu_that_only_emulates_bf16_does_not_count_as_native(monkeypatch):
    """V100/T4 emulate bf16 (torch.cuda.is_bf16_supported() says True by default); only
    hardware bf16 counts."""
    asked = []

    def is_bf16_supported(including_emulation=True):
        asked.append(including_emulation)
        return including_emulation  # an emulating GPU

    monkeypatch.setattr(torch.cuda, "is_bf16_supported", is_bf16_supported)
    assert precision.native_bfloat16("cuda") is False and asked == [False]
    with pytest.raises(ValueError, match="no bfloat16 units"):
        precision.check_bfloat16(True, "cuda")
