"""Growth schedules inside one run (ligo.schedule): progressive stacking, progressive layer
insertion, staged training (fixed and automatic)."""
import json
import math
from types import SimpleNamespace

import numpy as np
import pytest
import torch
from safetensors.torch import load_file

from ligo.config import ScheduleArguments
from ligo.families import FAMILIES
from ligo.growth_plan import GrowthEvent, auto_event
from ligo.models import load_config
from ligo.operators import grow_state
from ligo.pretrain import main
from ligo.roles import to_roles
from ligo.schedule import GrowthSchedule
from ligo.slope import (
    RESTART_CONSTANTS,
    SLOPE_THRESHOLDS,
    STOP_SLOPE,
    SlopeRule,
    auto_learning_rate,
    loglog_slope,
    when_to_grow,
)
from ligo.slope import main as schedule_main
from ligo.train.checkpoint import load_checkpoint
from ligo.train.optim import LRSchedule, build_optimizer, lr_multiplier, named_adam_state
from tests.conftest import (
    CONFIGS,
    assert_resume_equals_straight,
    assert_same_weights,
    run_argv,
    torchrun,
    write_config,
)


def records(folder, split="train"):
    lines = (folder / "metrics.jsonl").read_text().splitlines()
    return [r for r in map(json.loads, lines) if r["split"] == split]


def test_two_stage_stacking_stacks_the_stage_one_weights_and_follows_each_stages_lr(
        tmp_path, small_corpus, cache_dir):
    (tmp_path / "c").mkdir()
    one_layer = write_config(tmp_path / "c", "bert", num_hidden_layers=1)
    common = ("--learning_rate", "1e-3", "--warmup_steps", "2", "--logging_steps", "1",
              "--eval_steps", "100", "--ckpt_steps", "100")
    # stage 1 alone: a plain 1-layer run of the stage's 6 steps
    main(run_argv(tmp_path / "plain", "bert", small_corpus, cache_dir, *common, "--max_steps", "6",
                  config=one_layer))
    staged = main(run_argv(tmp_path / "staged", "bert", small_corpus, cache_dir, *common,
                           "--stages", "1,2", "--stage_steps", "6,4"))
    assert staged["step"] == 10 and staged["finished"]
    assert [e["step"] for e in staged["growth_events"]] == [6]
    # at the transition the model is the stage-1 model stacked, exactly
    at_transition = load_checkpoint(tmp_path / "staged" / "checkpoint-0000006")["model"]
    plain = load_file(tmp_path / "plain" / "model.safetensors")
    family = FAMILIES["bert"]
    plain.setdefault("cls.predictions.decoder.weight", plain["bert.embeddings.word_embeddings.weight"])
    plain.setdefault("cls.predictions.decoder.bias", plain["cls.predictions.bias"])
    expected = grow_state(plain, load_config(one_layer), load_config(CONFIGS / "bert-tiny.json"),
                          depth="stack")
    for key, value in expected.items():
        assert torch.equal(at_transition[key], value), key
    assert len(to_roles(at_transition, family).layers) == 2
    # each stage its own schedule: warmup 2 then linear decay to 0 over the stage's budget
    logged = {r["step"]: r["lr"] for r in records(tmp_path / "staged")}
    for step, lr in logged.items():  # logged at `step`: the rate step number `step` used
        start, budget = (0, 6) if step <= 6 else (6, 4)
        assert lr == pytest.approx(1e-3 * lr_multiplier(step - 1 - start, "linear", 2, budget)), step
    assert logged[6] < logged[5] and logged[7] == pytest.approx(0.5e-3)  # re-warm at stage 2
    flops = [r["flops"] for r in records(tmp_path / "staged")]
    assert all(b > a for a, b in zip(flops, flops[1:], strict=False))  # one FLOPs axis across stages
    marker = records(tmp_path / "staged", "growth")
    assert marker[0]["step"] == 6 and marker[0]["num_layers"] == 2


@pytest.mark.slow
def test_resume_in_the_middle_of_stage_two_equals_uninterrupted(tmp_path, small_corpus, cache_dir):
    argv = lambda out, *extra: run_argv(tmp_path / out, "gpt2", small_corpus, cache_dir,  # noqa: E731
                                        "--stages", "1,2", "--stage_steps", "4,4", "--eval_steps",
                                        "100", "--ckpt_steps", "100", "--learning_rate", "1e-3",
                                        *extra)
    assert_resume_equals_straight(argv, stop_after=6)


def test_progressive_layer_insertion_puts_each_new_layer_at_its_index(tmp_path, small_corpus,
                                                                     cache_dir):
    results = main(run_argv(tmp_path / "pli", "bert", small_corpus, cache_dir, "--max_steps", "8",
                            "--initial_num_layers", "2", "--insert_patches", "0.25:0,0.5:3",
                            "--eval_steps", "100", "--ckpt_steps", "100", "--save_total_limit", "5"))
    assert [e["step"] for e in results["growth_events"]] == [2, 4]
    family = FAMILIES["bert"]
    first = to_roles(load_checkpoint(tmp_path / "pli" / "checkpoint-0000002")["model"], family).layers
    assert len(first) == 3  # a copy of its neighbour above (index 0 has none below)
    assert all(torch.equal(first[0][r], first[1][r]) for r in first[0])
    second = to_roles(load_checkpoint(tmp_path / "pli" / "checkpoint-0000004")["model"], family).layers
    assert len(second) == 4 and all(torch.equal(second[3][r], second[2][r]) for r in second[3])
    from transformers import AutoModelForMaskedLM

    assert AutoModelForMaskedLM.from_pretrained(tmp_path / "pli").config.num_hidden_layers == 4


def test_after_insertion_old_parameters_keep_their_moments_and_new_ones_start_at_zero():
    from tests.operators.conftest import trained_like_model

    model = trained_like_model("bert").float().train()
    optimizer = build_optimizer(model, 1e-3, 0.01, (0.9, 0.98), 1e-6)
    for _ in range(2):
        model(input_ids=torch.randint(5, 900, (2, 12))).logits.sum().backward()
        optimizer.step()
        optimizer.zero_grad()
    before = named_adam_state(model, optimizer.state_dict())
    trainer = SimpleNamespace(model=model, optimizer=optimizer, info=SimpleNamespace(device="cpu"),
                              progress=SimpleNamespace(step=2, tokens=0, flops=0.0, seconds=0.0),
                              metrics=SimpleNamespace(log=lambda *a, **k: None))
    trainer.install = lambda **parts: vars(trainer).update(parts)  # as Trainer.install
    schedule = GrowthSchedule(
        [], LRSchedule("linear", 10), make_loss=lambda m: m,
        make_optimizer=lambda m, lr=None: build_optimizer(m, 1e-3, 0.01, (0.9, 0.98), 1e-6),
        flops=lambda c: 1.0, wrap=lambda m: m)
    schedule.apply(trainer, GrowthEvent(step=2, changes={"num_hidden_layers": 3}, depth="insert",
                                        depth_options={"positions": [1], "init": "copy"},
                                        zero_new_layer_moments=True))
    assert trainer.model.config.num_hidden_layers == 3
    after = named_adam_state(trainer.model, trainer.optimizer.state_dict())
    renamed = {"layer.1.": "layer.2."}  # source layer 1 now sits at index 2
    for name, state in before.items():
        new_name = name.replace("layer.1.", renamed["layer.1."])
        for field in ("exp_avg", "exp_avg_sq"):
            assert torch.equal(after[new_name][field], state[field]), (name, field)
    for name, state in after.items():
        if ".layer.1." in name:
            assert not state["exp_avg"].any() and not state["exp_avg_sq"].any(), name


def power_law(compute, a=40.0, alpha=0.3, floor=2.0):
    return a * compute ** -alpha + floor


@pytest.mark.parametrize("what", ["depth", "width"])
def test_the_slope_rule_fires_where_the_formula_says(what):
    a, alpha, floor = 40.0, 0.3, 2.0
    threshold = SLOPE_THRESHOLDS[what]
    # d log L / d log C = -alpha x / (x + floor), x = a C^-alpha: solve for the threshold
    x = -threshold * floor / (alpha + threshold)
    expected = (a / x) ** (1 / alpha)
    compute = np.geomspace(expected / 1000, expected * 100, 2000)
    rule = SlopeRule([what], smoothing=0.0, window=0.004)  # a trailing fit lags by ~half a window
    fired = None
    for c in compute:
        rule.observe(c, power_law(c, a, alpha, floor))
        if rule.decide(0) == what:
            fired = c
            break
    assert fired == pytest.approx(expected, rel=0.03)
    # the exact slope at a point agrees with the estimator
    c = compute[:50]
    assert loglog_slope(c, power_law(c)) == pytest.approx(
        -alpha * (a * c[-1] ** -alpha) / (a * c[-1] ** -alpha + floor), rel=0.05)
    # after the last growth the same curve says stop above -0.052
    stop_rule = SlopeRule([what], smoothing=0.0, window=0.004)
    decisions = []
    for c in compute:
        stop_rule.observe(c, power_law(c))
        decisions.append(stop_rule.decide(1))
    stop_at = compute[decisions.index("stop")]
    x_stop = -STOP_SLOPE * floor / (alpha + STOP_SLOPE)
    assert stop_at == pytest.approx((a / x_stop) ** (1 / alpha), rel=0.03)


def test_automatic_growth_restarts_at_the_compute_equivalent_step():
    from tests.operators.conftest import tiny_config

    args = ScheduleArguments(grow_when="slope")
    for what, constant in RESTART_CONSTANTS.items():
        event = auto_event(1000, what, tiny_config("gpt2"), args, 5000)
        assert event.segment["position"] == round(1000 / constant) and event.step == 1000
    both = auto_event(10, "both", tiny_config("gpt2"), args, 50)
    assert both.changes["num_hidden_layers"] == 4 and both.changes["hidden_size"] == 128
    assert both.changes["n_inner"] == 512 and both.width == "double"


def test_staged_lr_rewarms_from_the_restart_position():
    schedule = LRSchedule("linear", total=100, warmup_steps=10,
                          segments=[{"start": 50, "position": 30, "rewarm": 5}])
    assert schedule(49) == pytest.approx(lr_multiplier(49, "linear", 10, 100))
    target = lr_multiplier(35, "linear", 10, 100)  # the base value where the re-warm ends
    assert [schedule(s) for s in range(50, 55)] == pytest.approx([target * k / 5 for k in range(1, 6)])
    assert schedule(60) == pytest.approx(lr_multiplier(40, "linear", 10, 100))
    # the slope rule ignores the curve while the LR (re-)warms
    assert schedule.warming_up(5) and schedule.warming_up(52) and not schedule.warming_up(60)


@pytest.mark.slow
def test_staged_training_run_doubles_width_then_depth(tmp_path, small_corpus, cache_dir):
    results = main(run_argv(tmp_path / "staged", "gpt2", small_corpus, cache_dir, "--max_steps", "9",
                            "--double_at", "3:width,6:depth", "--restart_warmup_steps", "2",
                            "--restart_steps", "2,4", "--learning_rate", "1e-3",
                            "--lr_scheduler_type", "linear", "--warmup_ratio", "0",
                            "--eval_steps", "100", "--logging_steps", "1"))
    assert [(e["step"], e["kind"]) for e in results["growth_events"]] == [(3, "width"), (6, "depth")]
    from transformers import AutoModelForCausalLM

    grown = AutoModelForCausalLM.from_pretrained(tmp_path / "staged")
    assert grown.config.n_embd == 128 and grown.config.n_layer == 4
    lrs = {r["step"]: r["lr"] for r in records(tmp_path / "staged")}
    # after the width growth at step 3 the schedule re-warms over 2 steps from position 2
    assert lrs[4] == pytest.approx(0.5 * 1e-3 * lr_multiplier(2 + 2, "linear", 0, 9))
    assert lrs[5] == pytest.approx(1e-3 * lr_multiplier(2 + 2, "linear", 0, 9))
    from ligo.train.events import read_scalars

    scalars = read_scalars(tmp_path / "staged" / "tensorboard")
    assert [s for s, _ in scalars["growth/event"]] == [3, 6]
    assert "train_by_seconds/loss" in scalars


def test_auto_learning_rate():
    assert auto_learning_rate(85_000_000) == pytest.approx(0.003239 - 0.0001395 * math.log(85e6))
    args = ScheduleArguments()
    assert not args.active


@pytest.mark.parametrize("flags, message", [
    (dict(stages=["3,2"], stage_steps=["1,1"]), "must be increasing"),
    (dict(stages=["1,2"], stage_steps=["1,1,1"]), "has 2 stages but --stage_steps has 3"),
    (dict(stages=["1,2"]), "exactly one of --stage_steps and --stage_epochs"),
    (dict(insert_patches=["0.5:1,0.2:1"]), "fractions must increase"),
    (dict(insert_patches=["1.5:1"]), r"must lie in \(0, 1\)"),
    (dict(insert_patches=["0.5"]), "is not FRACTION:INDEX"),
    (dict(double_at=["10:deep"]), "is not STEP:depth|width|both"),
    (dict(double_at=["10:depth"], restart_steps=["1,2"]), "2 values for 1 --double_at"),
    (dict(stages=["1,2"], stage_steps=["1,1"], grow_when="slope"), "choose one growth schedule"),
    (dict(stages=["1,2"], stage_steps=["1,1"], stage_operator="net2net"), "stack, interpolate, ligo or msg"),
])
def test_bad_schedules_are_named(flags, message):
    with pytest.raises(ValueError, match=message):
        ScheduleArguments(**flags)


def test_insertion_index_out_of_range_stops_before_training(tmp_path, small_corpus, cache_dir):
    with pytest.raises(ValueError, match="index 5 is out of range, the model has 2 layers"):
        main(run_argv(tmp_path / "o", "bert", small_corpus, cache_dir, "--max_steps", "4",
                      "--initial_num_layers", "2", "--insert_patches", "0.5:5"))
    with pytest.raises(ValueError, match="fall on steps .3, 3.; each must be a different step"):
        main(run_argv(tmp_path / "o", "bert", small_corpus, cache_dir, "--max_steps", "4",
                      "--initial_num_layers", "2", "--insert_patches", "0.7:1,0.8:1"))
    with pytest.raises(ValueError, match="fall on steps .10.;"):
        main(run_argv(tmp_path / "o", "bert", small_corpus, cache_dir, "--max_steps", "4",
                      "--double_at", "10:depth"))
    assert not (tmp_path / "o").exists() or not any((tmp_path / "o").iterdir())  # nothing written
    assert not (tmp_path / "o" / "metrics.jsonl").exists()


def test_schedule_cli_reads_a_runs_log_and_says_when_to_grow(tmp_path, capsys):
    from ligo.train.metrics import MetricsLogger

    logger = MetricsLogger(tmp_path, True)
    compute = np.geomspace(1e3, 1e9, 300)
    for step, c in enumerate(compute, start=1):
        logger.log("train", {"loss": power_law(c), "flops": c}, step, step, c)
    logger.close()
    report = schedule_main([str(tmp_path), "--next", "depth", "--slope_smoothing", "0"])
    replay = when_to_grow([(s, c, power_law(c)) for s, c in enumerate(compute, start=1)],
                          ["depth"], 0.0)
    assert report["grow_depth"]["step"] == replay["grow_depth"]["step"]
    assert report["grow_depth"]["restart_step"] == round(report["grow_depth"]["step"] / 1.412)
    assert "grow depth at step" in capsys.readouterr().out
    with pytest.raises(FileNotFoundError, match="no train/loss"):
        schedule_main([str(tmp_path / "empty")])


def test_ligo_transition_between_stages_trains_an_operator_and_counts_its_flops(
        tmp_path, small_corpus, cache_dir):
    argv = lambda out, op: run_argv(tmp_path / out, "bert", small_corpus, cache_dir,  # noqa: E731
                                    "--stages", "1,2", "--stage_epochs", "0.02,0.02",
                                    "--stage_operator", op, "--stage_ligo_steps", "3",
                                    "--eval_steps", "100", "--ckpt_steps", "100")
    stacked, learned = main(argv("stack", "stack")), main(argv("ligo", "ligo"))
    # stage budgets from epochs: 1253 blocks / global batch 8 = 156 steps an epoch -> 3 + 3
    assert learned["step"] == stacked["step"] == 6
    operator_flops = learned["flops"] - stacked["flops"]
    per_token = 3 * 2 * 2 * 64 * 64 * 4  # at least the q/k/v/out matmuls of 2 layers, fwd+bwd
    assert operator_flops > 3 * 8 * 64 * per_token
    layers = to_roles(load_checkpoint(tmp_path / "ligo" / "checkpoint-0000003")["model"],
                      FAMILIES["bert"]).layers
    assert not torch.equal(layers[0]["q.weight"], layers[1]["q.weight"])  # mixed, not copied


@pytest.mark.slow
def test_two_process_ddp_across_a_growth_event_equals_one_process(tmp_path, small_corpus, cache_dir):
    config = write_config(tmp_path, "bert", hidden_dropout_prob=0.0, attention_probs_dropout_prob=0.0)

    def argv(out, per_device, accumulation):
        args = run_argv(tmp_path / out, "bert", small_corpus, cache_dir, "--stages", "1,2",
                        "--stage_steps", "2,2", "--eval_steps", "100", "--ckpt_steps", "100",
                        "--gradient_accumulation_steps", str(accumulation), config=config)
        args[args.index("--per_device_train_batch_size") + 1] = str(per_device)
        return args

    main(argv("single", 8, 1))
    torchrun(argv("ddp", 2, 2))
    assert_same_weights(tmp_path / "single", tmp_path / "ddp", atol=2e-6)


def test_reset_lr_scheduler_starts_the_schedule_over_on_the_remaining_steps():
    from ligo.growth_plan import staged_event
    from tests.operators.conftest import tiny_config

    args = ScheduleArguments(double_at=["40:depth"], reset_lr_scheduler=True)
    event = staged_event(40, "depth", tiny_config("bert"), args, 100)
    assert event.segment == {"start": 40, "position": 0, "rewarm": 0, "total": 60}
    schedule = LRSchedule("linear", total=100, warmup_steps=5, segments=[event.segment])
    assert schedule(40) == pytest.approx(lr_multiplier(0, "linear", 5, 60))
    assert schedule(99) == pytest.approx(lr_multiplier(59, "linear", 5, 60))
    assert event.depth == "identity" and event.depth_options["positions"] == [1, 3]


def test_on_a_real_curve_the_slope_rule_grows_only_after_the_loss_has_bent(small_run):
    """bert-tiny's real training curve (300 steps, logged every 5): its flat start, before the
    loss falls, must not count as "flattened". With a short fitting window (3 points, as a
    short run logging every step gets) the unguarded rule grew there, at step 15."""
    rows = [json.loads(line) for line in (small_run("bert") / "metrics.jsonl").read_text().splitlines()]
    curve = [(r["step"], r["flops"], r["loss"]) for r in rows if r["split"] == "train"]
    start, lowest = curve[0][2], min(loss for *_, loss in curve)
    bent = next(step for step, _, loss in curve if loss <= start - 0.5 * (start - lowest))

    def first_growth(rule):
        for step, flops, loss in curve:
            rule.observe(flops, loss)
            if rule.decide(0) == "depth":
                return step
        return None

    unguarded = first_growth(SlopeRule(["depth"], min_points=3, armed=True))  # the old rule
    guarded = first_growth(SlopeRule(["depth"], min_points=3))
    assert unguarded is not None and unguarded < bent, (unguarded, bent)
    assert guarded is None or guarded > bent, (guarded, bent)


@pytest.mark.slow
def test_staged_training_doubles_a_grouped_query_llama_and_saves_an_hf_model(tmp_path, small_corpus,
                                                                            cache_dir):
    """llama-tiny (4 query / 2 key-value heads) doubled in width (8 / 4 heads, moments mapped)
    and then in depth inside one run."""
    results = main(run_argv(tmp_path / "staged", "llama", small_corpus, cache_dir, "--max_steps", "6",
                            "--double_at", "2:width,4:depth", "--learning_rate", "1e-3",
                            "--eval_steps", "100", "--logging_steps", "1"))
    assert [(e["step"], e["kind"]) for e in results["growth_events"]] == [(2, "width"), (4, "depth")]
    from transformers import AutoModelForCausalLM

    grown = AutoModelForCausalLM.from_pretrained(tmp_path / "staged")
    assert (grown.config.hidden_size, grown.config.num_hidden_layers) == (128, 4)
    assert (grown.config.num_attention_heads, grown.config.num_key_value_heads) == (8, 4)


@pytest.mark.slow
def test_a_head_growth_event_resumes_bit_exactly_and_keeps_the_hidden_size(tmp_path, small_corpus,
                                                                           cache_dir):
    """llama-tiny (hidden 64, 4 query / 2 key-value heads of size 16) grows to 8 / 4 heads at
    step 3, hidden size unchanged; stopped at step 4 and resumed, it ends with the weights of
    an uninterrupted run."""
    from transformers import AutoModelForCausalLM

    argv = lambda out, *extra: run_argv(tmp_path / out, "llama", small_corpus, cache_dir,  # noqa: E731
                                        "--max_steps", "6", "--grow_heads_at", "3:8",
                                        "--eval_steps", "100", "--ckpt_steps", "2",
                                        "--learning_rate", "1e-3", *extra)
    straight = assert_resume_equals_straight(argv, stop_after=4)
    assert [(e["step"], e["kind"]) for e in straight["growth_events"]] == [(3, "heads")]
    grown = AutoModelForCausalLM.from_pretrained(tmp_path / "straight")
    assert (grown.config.hidden_size, grown.config.head_dim) == (64, 16)
    assert (grown.config.num_attention_heads, grown.config.num_key_value_heads) == (8, 4)


def test_head_growth_is_refused_where_the_head_size_follows_the_hidden_size():
    from ligo.config import GrowthArguments
    from ligo.growth_plan import plan_events

    schedule = ScheduleArguments(grow_heads_at=["2:4"])
    with pytest.raises(ValueError, match="grow heads with the hidden size"):
        plan_events(schedule, GrowthArguments(), load_config(CONFIGS / "gpt2-tiny.json"), 10)
    llama = load_config(CONFIGS / "llama-tiny.json")  # 4 query / 2 key-value heads
    with pytest.raises(ValueError, match="multiple of the group size 2"):
        plan_events(ScheduleArguments(grow_heads_at=["2:7"]), GrowthArguments(), llama, 10)
    with pytest.raises(ValueError, match="is not STEP:HEADS"):
        ScheduleArguments(grow_heads_at=["2:x"])
    with pytest.raises(ValueError, match="choose one growth schedule"):
        ScheduleArguments(grow_heads_at=["2:8"], double_at=["4:width"])
