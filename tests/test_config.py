import pytest

from ligo.config import DataArguments, ModelArguments, TrainingArguments, parse_args, read_argument_file

GROUPS = (ModelArguments, DataArguments, TrainingArguments)


def test_argument_file_is_read_and_command_line_overrides_it(tmp_path):
    args_file = tmp_path / "run.txt"
    args_file.write_text("# a comment\nlearning_rate = 3e-4\nbf16 = true\n"
                         "train_files = a.txt b.txt  # two files\nmax_steps = 10\n")
    model, data, train = parse_args(GROUPS, ["--config", str(args_file), "--config_name", "c.json",
                                             "--output_dir", "out", "--max_steps", "20"])
    assert train.learning_rate == 3e-4 and train.bf16 is True
    assert data.train_files == ["a.txt", "b.txt"]
    assert train.max_steps == 20  # the command line wins
    assert model.config_name == "c.json"


def test_boolean_flags_accept_bare_and_explicit_forms():
    _, _, bare = parse_args(GROUPS, ["--config_name", "c", "--output_dir", "o", "--bf16"])
    _, _, explicit = parse_args(GROUPS, ["--config_name", "c", "--output_dir", "o", "--bf16", "false"])
    assert bare.bf16 is True and explicit.bf16 is False


def test_malformed_argument_file_names_the_line(tmp_path):
    bad = tmp_path / "bad.txt"
    bad.write_text("max_steps = 3\nthis line has no equals sign\n")
    with pytest.raises(ValueError, match=r"bad.txt:2"):
        read_argument_file(bad)


@pytest.mark.parametrize("flags, message", [
    (["--bf16", "--fp16"], "one of --bf16 and --fp16"),
    (["--max_steps", "0"], r"--max_steps 0 is out of range: it must lie in \[1, inf\)"),
    (["--max_grad_norm", "-1"], r"--max_grad_norm -1 is out of range: it must lie in \(0, inf\)"),
    (["--max_grad_norm", "0"], "--max_grad_norm 0 is out of range"),
    (["--learning_rate", "0"], r"--learning_rate 0 is out of range: it must lie in \(0, 1\]"),
    (["--learning_rate", "-1e-4"], "--learning_rate -0.0001 is out of range"),
    (["--weight_decay", "-1"], "--weight_decay -1 is out of range"),
    (["--lr_scheduler_type", "poly", "--learning_rate", "1e-4", "--lr_end", "1e-3"],
     "--lr_end 0.001 must be below --learning_rate"),
    (["--mlm_probability", "0.0001"], "--mlm_probability 0.0001 is out of range"),
    (["--eval_max_batches", "0"], "--eval_max_batches 0 is out of range"),
    (["--stop_after_steps", "0"], "--stop_after_steps 0 is out of range"),
    (["--num_threads", "0"], "--num_threads 0 is out of range"),
    (["--num_threads", "-1"], "--num_threads -1 is out of range"),
    (["--dist_timeout_minutes", "0"], "--dist_timeout_minutes 0 is out of range"),
    (["--lr_scheduler_type", "step"], "--lr_scheduler_type must be"),
    (["--warmup_ratio", "1.5"], "--warmup_ratio"),
    (["--mlm_probability", "1.2"], "--mlm_probability"),
    (["--documents", "page"], "--documents"),
])
def test_bad_values_are_named(flags, message):
    with pytest.raises(ValueError, match=message):
        parse_args(GROUPS, ["--config_name", "c", "--output_dir", "o", *flags])


def test_warmup_ratio_becomes_steps():
    _, _, train = parse_args(GROUPS, ["--config_name", "c", "--output_dir", "o", "--max_steps", "200",
                                      "--warmup_ratio", "0.06"])
    assert train.num_warmup_steps == 12


def test_grow_scheme_may_name_a_width_operator():
    from ligo.config import GrowthArguments

    (growth,) = parse_args((GrowthArguments,), ["--grow_scheme", "bert2bert_aki"])
    assert growth.operator_options()["depth"] == "stack"
    assert growth.operator_options()["width"] == "bert2bert_aki"
    (both,) = parse_args((GrowthArguments,), ["--grow_scheme", "interpolate", "--width_scheme",
                                              "double", "--insert_positions", "1", "3"])
    assert (both.operator_options()["depth"], both.operator_options()["width"]) == ("interpolate", "double")
    assert both.insert_positions == [1, 3]
    (clash,) = parse_args((GrowthArguments,), ["--grow_scheme", "double", "--width_scheme", "zero"])
    with pytest.raises(ValueError, match="give one of them"):
        clash.operator_options()


def test_width_split_noise_reaches_the_operator_and_the_api_and_is_checked():
    from ligo.config import GrowthArguments

    (growth,) = parse_args((GrowthArguments,), ["--width_scheme", "bert2bert_fpi",
                                                "--width_split_noise", "0.1"])
    assert growth.operator_options()["width_options"] == {"noise_std": 0.0, "split_noise": 0.1}
    assert growth.api_options()["width_split_noise"] == 0.1
    with pytest.raises(ValueError, match="--width_split_noise -0.1 is out of range"):
        parse_args((GrowthArguments,), ["--width_scheme", "bert2bert_fpi", "--width_split_noise", "-0.1"])


def test_an_explicit_zero_warmup_wins_over_the_argument_files_ratio(tmp_path):
    # the LiGO after-growth recipe: --warmup_steps 0 on top of a file with warmup_ratio
    recipe = tmp_path / "run.txt"
    recipe.write_text("warmup_ratio = 0.06\nmax_steps = 100\n")
    base = ["--config", str(recipe), "--config_name", "c", "--output_dir", "o"]
    _, _, zero = parse_args(GROUPS, base + ["--warmup_steps", "0"])
    _, _, unset = parse_args(GROUPS, base)
    _, _, given = parse_args(GROUPS, base + ["--warmup_steps", "10"])
    assert zero.num_warmup_steps == 0
    assert unset.num_warmup_steps == 6
    assert given.num_warmup_steps == 10


def test_the_piecewise_schedule_honours_an_explicit_zero_warmup():
    from ligo.train.optim import LRSchedule

    assert LRSchedule("linear", total=100, warmup_steps=0, warmup_ratio=0.1)(0) == 1.0
    assert LRSchedule("linear", total=100, warmup_ratio=0.1)(0) == pytest.approx(0.1)
