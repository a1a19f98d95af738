"""bench/memory.py: peak memory of a training step, measured in fresh processes."""
import importlib.util

import pytest

from tests.conftest import REPO

spec = importlib.util.spec_from_file_location("bench_memory", REPO / "bench" / "memory.py")
memory = importlib.util.module_from_spec(spec)
spec.loader.exec_module(memory)


def test_logits_size_of_a_gpt2_step():
    # 256 x 127 next tokens x 50,257 classes x 4 bytes
    assert memory.logits_gb({"vocab_size": 50257}, "gpt2", 256, 128) == pytest.approx(6.536, rel=1e-3)


@pytest.mark.slow
def test_a_tiny_step_is_measured_in_fresh_processes_and_tabled(tmp_path):
    report = memory.main(["--families", "gpt2", "--batches", "2", "--block", "16", "--losses",
                          "ligo", "transformers", "--output", str(tmp_path / "m.json")])
    assert [row["loss"] for row in report["rows"]] == ["ligo", "transformers"]
    assert all(row["peak_gb"] > 0.1 for row in report["rows"])  # torch alone is a few 100 MB
    table = memory.markdown(report)
    assert table.splitlines()[2].startswith("| gpt2 | 2 × 16 | 0.01 GB | ")
    assert table.count(" GB |") == 3  # the logits, ligo's peak, transformers' peak
