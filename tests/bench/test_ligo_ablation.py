"""bench/ligo_ablation.py: the equal-FLOPs comparison arithmetic and its table."""
import importlib.util
import json
import sys
from pathlib import Path

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
    assert "| from_stack: init = stack + bert2bert_fpi exactly | 4.9000 | 4.7000 | 4.9000 | 4.7500 (stack) | +0.0500 |" in table
    assert "savings" not in table  # no --grown: no savings column
    assert set(ablation.VARIANTS) >= {"paper", "sel", "sel_noisy", "from_stack", "from_bert2bert",
                                      "paper_full", "paper_untied"}


def test_the_grown_table_shows_each_variants_savings_beside_the_fixed_rows():
    row = {"init_loss": 5.0, "end_loss": 4.7, "fixed_operator_loss": 5.0,
           "fixed_operator_loss_at_equal_flops": 4.8, "fixed_row": "bert2bert"}
    report = {"seed": 2, "goal_eval_loss": 4.4, "variants": {
        "from_bert2bert": {"what": "w", **row, "reuse_flops_savings": 0.423, "distance_to_goal": 0.0},
        "paper": {"what": "p", **row, "reuse_flops_savings": None, "distance_to_goal": 0.0312}},
        "growth_rows_savings": {"stack": None, "bert2bert": 0.4}}
    table = ablation.markdown(report)
    assert "| from_bert2bert: w | 5.0000 | 4.7000 | 5.0000 | 4.8000 (bert2bert) | +0.1000 | 42.3% |" in table
    assert "| not reached (0.031 short) |" in table
    assert "on seed 2 (goal 4.4000): stack not reached, bert2bert 40.0%." in table
    # with the rows' distances (files from before they were recorded have none)
    report["growth_rows_distance"] = {"stack": 0.1234, "bert2bert": 0.0}
    assert "stack not reached (0.123 short), bert2bert 40.0%." in ablation.markdown(report)


def test_each_variant_is_compared_with_the_fixed_row_it_starts_from():
    assert {name: ablation.fixed_row(name) for name in ("from_bert2bert", "from_bert2bert_10steps",
                                                       "from_bert2bert_25steps", "from_stack", "paper",
                                                       "from_double", "from_double_25steps")} == {
        "from_bert2bert": "bert2bert", "from_bert2bert_10steps": "bert2bert",
        "from_bert2bert_25steps": "bert2bert", "from_stack": "stack", "paper": "stack",
        "from_double": "double", "from_double_25steps": "double"}
    # every variant that starts from a fixed operator names one the growth benchmark has a row of
    assert all(ablation.fixed_row(name) in ablation.growth.METHODS for name in ablation.VARIANTS)


def test_variants_from_a_copying_operator_start_from_its_split():
    assert ablation.variant_flags("from_bert2bert", 0.5)[-2:] == ["--width_split_noise", "0.5"]
    assert "--width_split_noise" not in ablation.variant_flags("from_bert2bert", 0.0)
    assert "--width_split_noise" not in ablation.variant_flags("paper", 0.5)  # its own init


def test_grown_needs_results_of_the_same_recipe(tmp_path):
    source = tmp_path / "small"
    source.mkdir()
    (source / "config.json").write_text("{}")
    with pytest.raises(SystemExit, match="--source_run .* holds no trained model"):
        ablation.main(["--preset", "gpt2", "--source_run", str(tmp_path / "missing")])
    with pytest.raises(SystemExit, match="--grown needs --growth_results"):
        ablation.main(["--preset", "gpt2", "--source_run", str(source), "--grown"])
    with pytest.raises(SystemExit, match="--width_split_noise -1.0: must be >= 0"):
        ablation.main(["--preset", "gpt2", "--source_run", str(source), "--width_split_noise", "-1"])
    runs = {"scratch": {"curve": []}, "stack": {"curve": []}}
    results = {"setup": {"preset": "gpt2", "source": "gpt2-2L-128H-8k.json", "target": "gpt2-4L-256H-8k.json",
                         "steps": 1200, "batch_size": 32, "block_size": 128, "grown_learning_rate": 0.002,
                         "grown_warmup_steps": 40, "grown_steps": 600, "eval_steps": 40,
                         "eval_max_batches": 8, "bf16": "true"},
               "seeds": {"1": {"runs": runs, "summary": {}}}}
    (tmp_path / "growth.json").write_text(json.dumps(results))
    with pytest.raises(SystemExit, match="recipe differs: grown_steps 600 there, 800 here"):
        ablation.main(["--preset", "gpt2", "--source_run", str(source), "--grown", "--variants", "paper",
                       "--growth_results", str(tmp_path / "growth.json")])
    with pytest.raises(SystemExit, match="no gpt2 bert2bert run for seed 1"):
        ablation.main(["--preset", "gpt2", "--source_run", str(source), "--variants", "from_bert2bert",
                       "--growth_results", str(tmp_path / "growth.json")])


def _fake_pretrain(monkeypatch, points) -> list:
    """ligo.pretrain.main replaced by one that writes these (step, flops, eval loss) points as
    the run's metrics; returns the list the argvs it is called with go to."""
    import ligo.pretrain

    seen = []

    def fake_pretrain(argv):
        seen.append(argv)
        out = Path(argv[argv.index("--output_dir") + 1])
        out.mkdir(parents=True)
        (out / "metrics.jsonl").write_text("".join(json.dumps(
            {"split": "eval", "step": step, "tokens": 1, "flops": flops, "train_seconds": 1.0, "loss": loss})
            + "\n" for step, flops, loss in points))

    monkeypatch.setattr(ligo.pretrain, "main", fake_pretrain)
    return seen


def test_grown_savings_trains_the_operators_model_to_the_goal_and_counts_its_flops(tmp_path, monkeypatch):
    """--grown: the `ligo` row's command on the variant's operator, stopping at scratch's final
    loss; savings as the growth benchmark computes them (the curve starts at the operator's FLOPs)."""
    seen = _fake_pretrain(monkeypatch, ((40, 30.0, 5.0), (80, 50.0, 4.0)))
    args = type("Args", (), {"preset": "gpt2", "train_files": ["corpus"], "cache_dir": "cache",
                             "eval_max_batches": 8, "bf16": "true", "position_init": None,
                             "tokenizer_path": None, "seed": 1})
    scratch = [{"step": 100, "flops": 50.0, "seconds": 1.0, "loss": 5.0},
               {"step": 200, "flops": 100.0, "seconds": 2.0, "loss": 4.5}]
    row = ablation.grown_savings(args, tmp_path / "paper", tmp_path / "small", scratch)
    argv = seen[0]
    assert argv[argv.index("--pretrained_ligo_path") + 1] == str(tmp_path / "paper")
    assert argv[argv.index("--output_dir") + 1] == str(tmp_path / "paper-grown")
    assert float(argv[argv.index("--stop_at_eval_loss") + 1]) == 4.5
    # the goal 4.5 is crossed half way from 30 to 50 FLOPs: 40 against scratch's 100
    assert row == {"grown_final_loss": 4.0, "grown_steps_run": 80, "reuse_flops_savings": pytest.approx(0.6),
                   "distance_to_goal": 0.0}


def _parse_operator_run(tmp_path, preset: str, extra: list[str]):
    """(training, LiGO) arguments of the preset's operator run with `extra` flags after its own."""
    from ligo.config import DataArguments, LiGOArguments, ModelArguments, TrainingArguments, parse_args

    args = type("Args", (), {"preset": preset, "train_files": ["corpus"], "cache_dir": "cache",
                             "eval_max_batches": 8, "bf16": "true", "ligo_steps": 100,
                             "ligo_learning_rate": 1e-3, "ligo_width_form": ablation.VARIANTS_WIDTH_FORM})
    base = ablation.growth.operator_flags(args, 1, tmp_path / "op", tmp_path / "small")
    _, _, training, options = parse_args((ModelArguments, DataArguments, TrainingArguments, LiGOArguments),
                                         base + extra)
    return training, options


def test_a_batch_variant_runs_its_operator_on_fewer_sequences_and_as_many_steps(tmp_path):
    """The variant's flags follow the preset's operator flags: its batch is the one parsed."""
    preset, _ = _parse_operator_run(tmp_path, "gpt2", [])
    training, options = _parse_operator_run(tmp_path, "gpt2", ablation.variant_flags("paper_batch8", 0.5))
    assert preset.per_device_train_batch_size == 32
    assert (training.per_device_train_batch_size, training.max_steps) == (8, 100)
    assert options.fuse_init_scheme == ["stackbert_noisy", "rand"]
    training, options = _parse_operator_run(tmp_path, "gpt2", ablation.variant_flags("from_bert2bert_batch8", 0.5))
    assert training.per_device_train_batch_size == 8 and options.width_split_noise == 0.5


def test_the_constant_lr_variant_runs_its_operator_without_decay(tmp_path):
    preset, _ = _parse_operator_run(tmp_path, "bert", [])
    assert preset.lr_scheduler_type == "linear"  # the preset's: decays to 0
    flags = ablation.variant_flags("from_double_25steps_constant_lr", 0.5)
    training, options = _parse_operator_run(tmp_path, "bert", flags)
    assert (training.lr_scheduler_type, training.max_steps) == ("constant", 25)
    assert options.init_from_operator == ["stack", "double"] and options.width_split_noise == 0.5
    assert ablation.fixed_row("from_double_25steps_constant_lr") == "double"


def test_the_depth_only_variant_and_the_no_operator_control_train_what_they_say(tmp_path):
    """depth_only: the doubling's width expansions stay fixed, the depth coefficients learn;
    the control: neither learns, only a residual from 0 (double's own weights, trained as an
    ordinary model: tests/operators/test_learned.py checks that equivalence)."""
    _, options = _parse_operator_run(tmp_path, "bert", ablation.variant_flags("from_double_25steps_depth_only", 0.5))
    learned = options.options()
    assert (learned.tune_width, learned.tune_depth, learned.tune_residual) == (False, True, False)
    assert learned.init_from == ("stack", "double") and learned.init_split_noise == 0.5
    training, options = _parse_operator_run(tmp_path, "bert", ablation.variant_flags("double_trained_25steps", 0.5))
    control = options.options()
    assert (control.tune_width, control.tune_depth, control.tune_residual) == (False, False, True)
    assert control.residual_noise == 0.0 and control.init_from == ("stack", "double")
    assert training.max_steps == 25
    assert {ablation.fixed_row(n) for n in ("from_double_25steps_depth_only", "double_trained_25steps")} == {"double"}


def test_the_paper_variants_change_only_what_they_name(tmp_path):
    """Operator LR, warmup, steps, full width, untied, a learned residual: each on the paper's
    init, the rest the preset's operator run (LR 1e-3, 10 % warmup, 100 steps, structured tied
    expansions, no residual)."""
    def settings(name: str) -> dict:
        training, options = _parse_operator_run(tmp_path, "bert", ablation.variant_flags(name, 0.5))
        learned = options.options()
        assert (learned.depth_init, learned.width_init) == ("stackbert_noisy", "rand")
        return {"learning_rate": training.learning_rate, "warmup_steps": training.warmup_steps,
                "max_steps": training.max_steps, "width_form": learned.width_form, "tie": learned.tie,
                "batch": training.per_device_train_batch_size, "residual": learned.tune_residual,
                "residual_noise": learned.residual_noise}

    preset, _ = _parse_operator_run(tmp_path, "bert", [])
    assert (preset.learning_rate, preset.warmup_steps, preset.max_steps) == (1e-3, None, 100)
    paper = settings("paper")
    assert paper == {"learning_rate": 1e-3, "warmup_steps": None, "max_steps": 100,
                     "width_form": "structured", "tie": True, "batch": 32, "residual": False,
                     "residual_noise": 0.01}
    changed = {name: {key: value for key, value in settings(name).items() if value != paper[key]}
               for name in ("paper_lr1e-2", "paper_warmup0", "paper_500steps", "paper_1000steps", "paper_full",
                            "paper_untied", "paper_batch8", "paper_full_batch8", "paper_full_residual",
                            "paper_full_25steps_batch8", "paper_full_batch4", "paper_full_init_only")}
    assert changed == {"paper_lr1e-2": {"learning_rate": 1e-2}, "paper_warmup0": {"warmup_steps": 0},
                       "paper_500steps": {"max_steps": 500}, "paper_1000steps": {"max_steps": 1000},
                       "paper_full": {"width_form": "full"},
                       "paper_untied": {"tie": False}, "paper_batch8": {"batch": 8},
                       "paper_full_batch8": {"width_form": "full", "batch": 8},
                       "paper_full_residual": {"width_form": "full", "residual": True},
                       "paper_full_25steps_batch8": {"width_form": "full", "max_steps": 25, "batch": 8},
                       "paper_full_batch4": {"width_form": "full", "batch": 4},
                       "paper_full_init_only": {"width_form": "full", "max_steps": 1, "batch": 1,
                                                "learning_rate": 1e-12}}
    for name in ablation.VARIANTS:  # every variant's flags are ones the operator run accepts
        _parse_operator_run(tmp_path, "bert", ablation.variant_flags(name, 0.5))


def test_the_variants_change_the_official_structured_operator_unless_they_name_a_form(tmp_path, monkeypatch):
    """ligo's default width form is full; each variant (and every committed ablation) is one
    change of the official code's structured operator, the paper_full* ones name full."""
    from ligo.config import DataArguments, LiGOArguments, ModelArguments, TrainingArguments, parse_args

    operator_runs = {}

    def fake_grow(argv):
        operator_runs[Path(argv[argv.index("--output_dir") + 1]).name] = argv
        return dict.fromkeys(("flops", "train_seconds", "step", "source_eval_loss",
                              "fixed_operator_eval_loss", "init_eval_loss", "eval_loss"), 1.0)

    monkeypatch.setattr("ligo.grow_train.main", fake_grow)
    source = tmp_path / "small"
    source.mkdir()
    (source / "config.json").write_text("{}")
    ablation.main(["--preset", "bert", "--source_run", str(source), "--variants", "paper", "paper_full",
                   "from_double", "--workdir", str(tmp_path / "work"), "--output", str(tmp_path / "r.json")])
    groups = (ModelArguments, DataArguments, TrainingArguments, LiGOArguments)
    forms = {name: parse_args(groups, argv)[3].options().width_form for name, argv in operator_runs.items()}
    assert forms == {"paper": "structured", "paper_full": "full", "from_double": "structured"}
    assert LiGOArguments(source_model_path="small").width_form == "full"


def test_a_fixed_row_rerun_is_the_growth_row_with_its_split_redrawn(tmp_path, monkeypatch):
    """--fixed_row_reruns: the growth benchmark's own command for the row (same seed, so the
    same data order, same recipe, stopping at the goal) plus --growth_seed K, its savings by the
    benchmark's arithmetic."""
    seen = _fake_pretrain(monkeypatch, ((40, 20.0, 5.0), (80, 40.0, 4.5)))
    args = type("Args", (), {"preset": "bert", "train_files": ["corpus"], "cache_dir": "cache",
                             "eval_max_batches": 8, "bf16": "true", "position_init": None,
                             "tokenizer_path": None, "seed": 6, "workdir": str(tmp_path),
                             "width_split_noise": 0.5})
    for name in ("source", "target", "steps", "small_steps", "learning_rate", "warmup_steps",
                 "grown_learning_rate", "grown_warmup_steps", "eval_steps", "batch_size", "block_size"):
        setattr(args, name, None)
    scratch = [{"step": 100, "flops": 50.0, "seconds": 1.0, "loss": 5.0},
               {"step": 200, "flops": 100.0, "seconds": 2.0, "loss": 4.5}]
    row = ablation.fixed_row_rerun(args, "double", 2, tmp_path / "small", scratch)
    argv = seen[0]
    growth_row = ablation.growth.method_argv("double", args, tmp_path, tmp_path / "small", 4.5, seed=6,
                                             out=tmp_path / "double-growth_seed2")
    assert argv == growth_row + ["--growth_seed", "2"]
    assert argv[argv.index("--width_scheme") + 1] == "double" and "--width_split_noise" in argv
    assert row == {"growth_seed": 2, "grown_final_loss": 4.5, "grown_steps_run": 80,
                   "reuse_flops_savings": pytest.approx(0.6), "distance_to_goal": 0.0}
    table = ablation.markdown({"seed": 6, "goal_eval_loss": 4.5, "variants": {},
                               "growth_rows_savings": {"double": 0.615},
                               "fixed_row_reruns": {"double": [row, {**row, "growth_seed": 3,
                                                                     "reuse_flops_savings": None,
                                                                     "distance_to_goal": 0.05}]}})
    assert ("double again, its split re-drawn (same source, data order and recipe): growth seed 2 "
            "60.0%, growth seed 3 not reached (0.050 short); the growth row (seed 0): 61.5%.") in table


def test_fixed_row_reruns_are_checked_before_any_work(tmp_path):
    source = tmp_path / "small"
    source.mkdir()
    (source / "config.json").write_text("{}")
    base = ["--preset", "bert", "--source_run", str(source)]
    with pytest.raises(SystemExit, match="--fixed_row_reruns -1: must be >= 0"):
        ablation.main(base + ["--fixed_row_reruns", "-1"])
    with pytest.raises(SystemExit, match="add --grown"):
        ablation.main(base + ["--fixed_row_reruns", "2"])
    with pytest.raises(SystemExit, match="--rerun_rows names the rows --fixed_row_reruns K retrains"):
        ablation.main(base + ["--grown", "--rerun_rows", "double"])
    with pytest.raises(SystemExit, match="nothing to run"):
        ablation.main(base + ["--variants", "--grown", "--growth_results", "x.json"])
    with pytest.raises(SystemExit):  # not a fixed row
        ablation.main(base + ["--rerun_rows", "ligo"])


def test_reruns_alone_train_each_asked_row_k_times_and_land_in_the_report(tmp_path, monkeypatch):
    source = tmp_path / "small"
    source.mkdir()
    (source / "config.json").write_text("{}")
    scratch = [{"step": 100, "flops": 50.0, "seconds": 1.0, "loss": 5.0},
               {"step": 200, "flops": 100.0, "seconds": 2.0, "loss": 4.5}]
    results = {"setup": {"preset": "bert"}, "seeds": {"6": {"runs": {"scratch": {"curve": scratch},
                                                                     "double": {"curve": scratch}},
                                                            "summary": {"goal_eval_loss": 4.5, "methods": {
                                                                "double": {"reuse_flops_savings": 0.615,
                                                                           "distance_to_goal": 0.0}}}}}}
    (tmp_path / "growth.json").write_text(json.dumps(results))
    monkeypatch.setattr(ablation, "check_same_recipe", lambda args, setup: None)
    calls = []
    monkeypatch.setattr(ablation, "fixed_row_rerun", lambda args, row, growth_seed, source_dir, curve: calls.append(
        (row, growth_seed, curve[-1]["loss"])) or {"growth_seed": growth_seed, "reuse_flops_savings": 0.6,
                                                   "distance_to_goal": 0.0})
    report = ablation.main(["--preset", "bert", "--seed", "6", "--source_run", str(source), "--grown",
                            "--growth_results", str(tmp_path / "growth.json"), "--variants",
                            "--fixed_row_reruns", "2", "--rerun_rows", "double",
                            "--output", str(tmp_path / "out.json")])
    assert calls == [("double", 1, 4.5), ("double", 2, 4.5)]
    assert [run["growth_seed"] for run in report["fixed_row_reruns"]["double"]] == [1, 2]
    assert json.loads((tmp_path / "out.json").read_text())["fixed_row_reruns"] == report["fixed_row_reruns"]


def test_the_full_width_quarter_batch_start_from_bert2bert_changes_only_width_and_batch(tmp_path):
    def settings(name: str) -> dict:
        training, options = _parse_operator_run(tmp_path, "gpt2", ablation.variant_flags(name, 0.5))
        return {**vars(training), **vars(options)}

    base, variant = settings("from_bert2bert"), settings("from_bert2bert_full_batch8")
    assert base["init_from_operator"] == variant["init_from_operator"] == ["stack", "bert2bert_aki"]
    assert {key: (base[key], value) for key, value in variant.items() if base[key] != value} == {
        "width_form": ("structured", "full"), "per_device_train_batch_size": (32, 8)}
    assert ablation.fixed_row("from_bert2bert_full_batch8") == "bert2bert"
