"""bench/loop_parity.py: the comparison of two loops over seeds."""
import importlib.util

import pytest

from tests.conftest import REPO

spec = importlib.util.spec_from_file_location("bench_loop_parity", REPO / "bench" / "loop_parity.py")
parity = importlib.util.module_from_spec(spec)
spec.loader.exec_module(parity)


def test_compare_gives_means_spreads_and_whether_the_difference_is_within_them():
    curves = {"ligo": {"1": [{"step": 50, "loss": 6.0}, {"step": 100, "loss": 5.0}],
                       "2": [{"step": 50, "loss": 6.2}, {"step": 100, "loss": 5.2}]},
              "transformers": {"1": [{"step": 50, "loss": 6.1}, {"step": 100, "loss": 5.5}],
                               "2": [{"step": 50, "loss": 6.3}, {"step": 100, "loss": 5.7}]}}
    rows = parity.compare(curves)
    assert [row["step"] for row in rows] == [50, 100]
    assert rows[0]["ligo"]["mean"] == pytest.approx(6.1)
    assert rows[0]["ligo"]["std"] == pytest.approx(0.02 ** 0.5)  # sample std of 6.0, 6.2
    assert rows[0]["difference"] == pytest.approx(-0.1)
    assert rows[0]["within_spread"]  # 0.1 <= sqrt(0.02 + 0.02) = 0.2
    assert rows[1]["difference"] == pytest.approx(-0.5)
    assert not rows[1]["within_spread"]  # 0.5 > 0.2
    table = parity.markdown({"comparison": rows, "command": "c", "setup": {
        "preset": "bert", "target": "t.json", "steps": 100, "batch_size": 32, "block_size": 128,
        "learning_rate": 1e-3, "warmup_steps": 10, "bf16": "true", "seeds": [1, 2]}})
    assert "| 100 | 5.100 ± 0.141 | 5.600 ± 0.141 | -0.500 | no |" in table
