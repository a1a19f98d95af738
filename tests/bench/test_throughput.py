"""bench/throughput.py: ligo's loop against transformers.Trainer, per family and precision."""
import importlib.util
import sys

import pytest
import torch

from tests.conftest import REPO

sys.path.insert(0, str(REPO / "bench"))
spec = importlib.util.spec_from_file_location("bench_throughput", REPO / "bench" / "throughput.py")
throughput = importlib.util.module_from_spec(spec)
spec.loader.exec_module(throughput)


def test_ratios_use_each_precisions_own_peak_and_the_trainer_of_the_same_pair():
    result = throughput.add_ratios({
        "matmul_peak_flops": {"bf16": 1e12, "fp32": 5e11},
        "rows": [{"family": "gpt2", "precision": p, "loop": loop, "tokens_per_s": t,
                  "useful_flops_per_token": 1e8}
                 for p, loop, t in (("bf16", "ligo", 3000.0), ("bf16", "transformers.Trainer", 1000.0),
                                    ("fp32", "ligo", 1000.0), ("fp32", "transformers.Trainer", 800.0))]})
    rows = {(r["precision"], r["loop"]): r for r in result["rows"]}
    assert rows["bf16", "ligo"]["fraction_of_peak"] == pytest.approx(0.3)
    assert rows["fp32", "ligo"]["fraction_of_peak"] == pytest.approx(0.2)
    assert rows["bf16", "ligo"]["over_trainer"] == pytest.approx(3.0)
    assert rows["fp32", "ligo"]["over_trainer"] == pytest.approx(1.25)
    assert rows["fp32", "transformers.Trainer"]["over_trainer"] == 1.0


@pytest.mark.slow
def test_a_tiny_run_measures_every_family_and_loop_and_tables_them(tmp_path, small_corpus):
    result = throughput.main(["--families", "gpt2", "bert", "--precisions", "fp32", "--compile",
                              "--size", "tiny", "--train_files", str(small_corpus), "--seq_len", "32",
                              "--batch_size", "4", "--warmup", "1", "--steps", "2",
                              "--output", str(tmp_path / "t.json")])
    assert [(r["family"], r["loop"]) for r in result["rows"]] == [
        ("gpt2", "ligo"), ("gpt2", "transformers.Trainer"),
        ("bert", "ligo"), ("bert", "transformers.Trainer")]
    for row in result["rows"]:
        assert row["tokens_per_s"] > 0 and 0 < row["fraction_of_peak"] < 1, row
        assert row["useful_flops_per_token"] > 0
    table = throughput.markdown_table(result)
    assert table.count("\n| ") == 4 and "| bert | fp32 | `transformers.Trainer` |" in table
    with pytest.raises(SystemExit):
        throughput.main(["--steps", "3", "--warmup", "2"])  # steps not a multiple of warmup


def test_matmul_peak_times_the_device_it_is_given():
    rate = throughput.matmul_peak(torch.float32, torch.device("cpu"), sizes=(64, 128), repeats=2)
    assert 1e6 < rate < 1e15


def _machine_table(machine: dict) -> str:
    return throughput.markdown_table({
        "machine": machine, "matmul_peak_flops": {"bf16": 1e12},
        "settings": {"size": "12L-768H", "seq_len": 128, "batch_size": 128, "warmup_steps": 5,
                     "timed_steps": 20},
        "rows": [{"family": "bert", "precision": "bf16", "loop": "ligo", "tokens_per_s": 1000.0,
                  "useful_flops_per_token": 1e8, "fraction_of_peak": 0.1, "over_trainer": 1.0}]})


def test_the_table_names_the_gpu_it_ran_on_and_old_files_their_cpu():
    common = {"cpu": "Some Xeon", "cores": 16, "torch_threads": 16, "torch": "2.11", "transformers": "5"}
    gpu = _machine_table({**common, "device": "NVIDIA H100 80GB HBM3"})
    assert "Machine: NVIDIA H100 80GB HBM3 (host: Some Xeon, 16 cores)" in gpu and "threads" not in gpu
    for machine in (common, {**common, "device": "Some Xeon"}):  # before the field; a CPU run
        assert "Machine: Some Xeon, 16 cores, 16 threads" in _machine_table(machine)
