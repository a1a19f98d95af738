"""bench/ligo_ablation.py: the equal-FLOPs comparison arithmetic and its table."""
import importlib.util
import sys

import pytest

from tests.conftest import REPO

sys.path.insert(0, str(REPO / "bench"))  # it imports bench/growth.py as `growth`
spec = importlib.util.spec_from_file_location("bench_ligo_ablation", REPO / "bench" / "ligo_ablation.py")
ablation = importlib.util.module_from_spec(spec)
spec.loader.exec_module(ablation)


def test_loss_at_flops_interpolates_along_the_fixed_operators_curve():
    curve = [{"flops": 10.0, "loss": 6.0}, {"flops": 20.0, "loss": 5.0}, {"flops": 40.0, "loss": 4.0}]
    assert ablation.loss_at_flops(curve, 15.0) == pytest.approx(5.5)
    assert ablation.loss_at_flops(curve, 30.0) == pytest.approx(4.5)
    assert ablation.loss_at_flops(curve, 5.0) == 6.0  # before the first eval: its loss
    assert ablation.loss_at_flops(curve, 50.0) is None  # beyond the curve: unknown


def test_the_table_says_by_how_much_the_operator_beats_the_fixed_operator():
    report = {"variants": {"from_stack": {
        "what": "init = stack + bert2bert_fpi exactly", "init_loss": 4.90, "end_loss": 4.70,
        "fixed_operator_loss": 4.90, "fixed_operator_loss_at_equal_flops": 4.75}}}
    table = ablation.markdown(report)
    assert "| from_stack: init = stack + bert2bert_fpi exactly | 4.9000 | 4.7000 | 4.9000 | 4.7500 | +0.0500 |" in table
    assert set(ablation.VARIANTS) >= {"paper", "sel", "sel_noisy", "from_stack", "paper_full", "paper_untied"}
