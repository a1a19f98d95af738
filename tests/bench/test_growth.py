"""bench/growth.py: the savings arithmetic, and a does-it-run check of every method (--quick)."""
import importlib.util
import json

import pytest

from tests.conftest import REPO

spec = importlib.util.spec_from_file_location("bench_growth", REPO / "bench" / "growth.py")
growth = importlib.util.module_from_spec(spec)
spec.loader.exec_module(growth)


def curve(*points):
    return [{"step": i, "tokens": i, "flops": f, "seconds": s, "loss": l}
            for i, (f, s, l) in enumerate(points)]


def test_cost_to_reach_interpolates_between_eval_points():
    points = curve((10, 1, 5.0), (20, 2, 4.0), (30, 3, 3.0))
    assert growth.cost_to_reach(points, 3.5, "flops") == pytest.approx(25)
    assert growth.cost_to_reach(points, 5.5, "seconds") == 1  # reached at the first point
    assert growth.cost_to_reach(points, 2.0, "flops") is None


def test_savings_reuse_and_end_to_end():
    runs = {"scratch": {"curve": curve((100, 10, 4.0), (200, 20, 3.0))},
            "small": {"curve": curve((10, 1, 5.0)), "results": {"flops": 40, "train_seconds": 4}},
            "stack": {"curve": curve((60, 6, 3.5), (100, 10, 3.0))},
            "pli": {"curve": curve((100, 10, 3.5), (300, 30, 3.2))}}
    summary = growth.summarise(runs)
    assert summary["goal_eval_loss"] == 3.0
    stack = summary["methods"]["stack"]
    assert stack["reuse_flops_savings"] == pytest.approx(0.5)  # 100 vs 200
    assert stack["end_to_end_flops_savings"] == pytest.approx(1 - 140 / 200)  # + small's 40
    assert stack["reuse_seconds_savings"] == pytest.approx(0.5)
    assert summary["methods"]["pli"]["reached_goal"] is False
    assert summary["methods"]["pli"]["reuse_flops_savings"] is None


def test_quick_benchmark_runs_every_method(tmp_path, shared_data):
    results = growth.main(["--quick", "--workdir", str(tmp_path / "work")])
    assert set(results["runs"]) == set(growth.METHODS)
    assert results["runs"]["ligo"]["results"]["growth_flops"] > 0
    assert results["runs"]["progressive"]["growth_at"]["flops"]  # a marker at the stage change
    saved = json.loads((tmp_path / "work" / "growth_quick.json").read_text())
    assert saved["summary"]["methods"]["scratch"]["reuse_flops_savings"] == 0.0
    assert "| ligo |" in growth.markdown(saved)
    assert all((tmp_path / "work" / f"growth_bert_loss_vs_{axis}.png").stat().st_size > 10_000
               for axis in ("flops", "seconds"))
