"""bench/grown_recipe.py: recipes from the command line, the per-run summary and the table;
bench/growth.py's --grown_steps reaching the grown runs' command lines."""
import importlib.util
import sys
from pathlib import Path

import pytest

from tests.conftest import REPO

sys.path.insert(0, str(REPO / "bench"))  # it imports bench/growth.py as `growth`
spec = importlib.util.spec_from_file_location("bench_grown_recipe", REPO / "bench" / "grown_recipe.py")
recipes = importlib.util.module_from_spec(spec)
spec.loader.exec_module(recipes)


def test_a_recipe_is_lr_warmup_and_an_optional_schedule_length():
    assert recipes.parse_recipe("1e-3:40") == {"lr": 1e-3, "warmup": 40, "schedule_steps": None}
    assert recipes.parse_recipe("2e-3:0:800") == {"lr": 2e-3, "warmup": 0, "schedule_steps": 800}
    assert recipes.recipe_name(recipes.parse_recipe("2e-3:40:800")) == "lr0.002-warmup40-schedule800"
    for bad in ("1e-3", "fast:40", "1e-3:40:800:1", "-1e-3:40", "1e-3:-1", "1e-3:40:0"):
        with pytest.raises(SystemExit, match="error: recipe"):
            recipes.parse_recipe(bad)


def test_a_run_is_summarised_at_fixed_distances_after_growth_and_at_the_goal():
    curve = [{"step": s, "flops": 10.0 * s + 100.0, "loss": loss}
             for s, loss in ((40, 5.0), (80, 4.8), (120, 4.6), (160, 4.4))]
    row = recipes.summarise_run(curve, goal=4.5, scratch_flops=2000.0)
    assert row["loss_40_steps_after"] == 5.0 and row["loss_120_steps_after"] == 4.6
    assert row["reached_goal_at_step"] == 160 and row["final_loss"] == 4.4
    assert row["flops_to_goal"] == pytest.approx(1500.0)  # halfway from 4.6 (1300) to 4.4 (1700)
    assert row["reuse_flops_savings"] == pytest.approx(0.25)
    short = recipes.summarise_run(curve[:2], goal=4.5, scratch_flops=2000.0)
    assert short["reuse_flops_savings"] is None and short["loss_120_steps_after"] is None
    table = recipes.markdown({"goal_eval_loss": 4.5, "preset": "gpt2", "seed": 1, "recipes": {
        "lr0.002-warmup40": {"methods": {"stack": row, "ligo": short}}}})
    assert "| lr0.002-warmup40 | stack | 5.0000 | 4.6000 | 160 | 25.0 % |" in table
    assert "| lr0.002-warmup40 | ligo | 5.0000 | — | — | — |" in table


def test_grown_steps_sets_only_the_grown_runs_schedule(tmp_path, monkeypatch):
    growth = recipes.growth
    args = type("Args", (), {})()
    for name in ("source", "target", "steps", "tokenizer_path", "small_steps", "learning_rate",
                 "warmup_steps", "grown_learning_rate", "grown_warmup_steps", "eval_steps",
                 "batch_size", "block_size"):
        setattr(args, name, None)
    args.preset, args.grown_steps, args.train_files = "gpt2", 700, ["corpus.txt"]
    args.cache_dir, args.eval_max_batches, args.bf16 = str(tmp_path / "cache"), 8, "true"
    assert growth.recipe(args)["grown_steps"] == 700 and growth.recipe(args)["steps"] == 1200
    seen = {}

    def fake_pretrain(argv):  # records the command line instead of training
        out = argv[argv.index("--output_dir") + 1]
        seen[Path(out).name] = argv[argv.index("--max_steps") + 1]
        Path(out).mkdir(parents=True, exist_ok=True)

    monkeypatch.setattr("ligo.pretrain.main", fake_pretrain)
    for method in ("scratch", "stack"):
        growth.run_method(method, args, tmp_path, tmp_path / "small")
    assert seen == {"scratch": "1200", "stack": "700"}
    args.grown_steps = None
    assert growth.recipe(args)["grown_steps"] == 800  # the preset's (its committed recipe)
    args.preset = "llama"
    assert growth.recipe(args)["grown_steps"] == 1200  # none in the preset: scratch's schedule


def test_a_full_width_ligo_row_is_a_row_of_its_own_beside_the_structured_ones(tmp_path, monkeypatch):
    """LiGO rows of the default full width form are labelled `-full` (the plain labels of an
    existing report ran structured, before --ligo_width_form), and the operator gets the form."""
    import json

    growth = recipes.growth
    seed_dir = tmp_path / "gpt2-seed1"
    for run in ("scratch", "small"):
        (seed_dir / run).mkdir(parents=True)
        (seed_dir / run / "results.json").write_text("{}")
    (seed_dir / "scratch" / "metrics.jsonl").write_text(json.dumps(
        {"split": "eval", "step": 40, "tokens": 1, "flops": 100.0, "loss": 4.5}) + "\n")
    operators = {}

    def fake_run(method, args, work, small_dir, goal=None, *, out, operator_dir, **_):
        if method.startswith("ligo"):
            operators[out.name] = growth.operator_argv(args, 1, operator_dir, small_dir, method)
        out.mkdir(parents=True)
        (out / "metrics.jsonl").write_text(json.dumps(
            {"split": "eval", "step": 40, "tokens": 1, "flops": 50.0, "loss": 4.4}) + "\n")

    monkeypatch.setattr(growth, "run_method", fake_run)
    base = ["--seed_dir", str(seed_dir), "--recipes", "2e-3:40", "--methods", "stack", "ligo"]
    report = recipes.main(base + ["--output", str(tmp_path / "a.json")])
    assert set(report["recipes"]["lr0.002-warmup40"]["methods"]) == {"stack-split0.5", "ligo-full"}
    recipes.main(base + ["--methods", "ligo", "--ligo_width_form", "structured",
                         "--output", str(tmp_path / "b.json")])
    forms = {label: argv[argv.index("--width_form") + 1] for label, argv in operators.items()}
    assert forms == {"ligo-full": "full", "ligo": "structured"}
