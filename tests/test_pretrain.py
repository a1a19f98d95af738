"""End-to-end: `main(argv)` of run_lm_distributed.py on tiny configs and real text."""
import json
import math
import os
import subprocess
import sys

import pytest
import torch
from safetensors.torch import load_file

from ligo.pretrain import main
from tests.conftest import GPT2_BPE, REPO, fast_precision, logged_losses, run_argv, write_config


@pytest.mark.slow
@pytest.mark.parametrize("family, auto_class", [("bert", "AutoModelForMaskedLM"),
                                                ("roberta", "AutoModelForMaskedLM"),
                                                ("gpt2", "AutoModelForCausalLM")])
def test_main_runs_end_to_end_and_exports_a_transformers_model(family, auto_class, tmp_path,
                                                               small_corpus, cache_dir):
    import transformers

    from ligo.train.events import read_scalars

    out = tmp_path / "run"
    results = main(run_argv(out, family, small_corpus, cache_dir, "--max_steps", "6",
                            "--eval_steps", "3", "--ckpt_steps", "3"))
    assert results["finished"] and results["step"] == 6
    assert results["tokens"] == 6 * 8 * 64
    assert results["flops"] == pytest.approx(results["tokens"] * results["flops_per_token"])
    model = getattr(transformers, auto_class).from_pretrained(out)
    tokenizer = transformers.AutoTokenizer.from_pretrained(out)
    with torch.no_grad():
        logits = model(**tokenizer("The history of the city", return_tensors="pt")).logits
    assert torch.isfinite(logits).all()
    assert sorted(p.name for p in out.glob("checkpoint-*")) == ["checkpoint-0000003",
                                                                "checkpoint-0000006"]
    scalars = read_scalars(out / "tensorboard")
    tags = set(scalars)
    for tag in ("train/loss", "train/lr", "train/grad_norm", "train/tokens_per_s", "train/tokens",
                "train/flops", "train/seconds", "eval/loss", "eval/ppl", "eval/accuracy",
                "eval_by_gflops/loss", "eval_by_tokens/loss"):
        assert tag in tags, tag
    assert len(logged_losses(out, "eval")) == 2
    assert [step for step, _ in scalars["eval/loss"]] == [3, 6]
    # the unigram line: recorded once, and every evaluation says how far below it the model is
    rows = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    unigram = [row["loss"] for row in rows if row["split"] == "unigram"]
    assert unigram == [pytest.approx(results["unigram_loss"])]
    assert 0 < results["unigram_loss"] < math.log(30522 if family == "bert" else 50257)
    assert all(row["below_unigram"] == pytest.approx(unigram[0] - row["loss"])
               for row in rows if row["split"] == "eval")
    assert scalars["unigram/loss"] == [(0, pytest.approx(unigram[0]))]
    assert "eval/below_unigram" in tags
    assert scalars["eval/loss"][-1][1] == pytest.approx(logged_losses(out, "eval")[-1], rel=1e-6)


@pytest.mark.slow
@pytest.mark.parametrize("family, steps, extra", [
    ("bert", 300, ["--learning_rate", "1e-3"]),
    ("gpt2", 150, ["--learning_rate", "2e-3", *fast_precision()]),
])
def test_loss_decreases_on_real_text(family, steps, extra, tmp_path, small_corpus, cache_dir):
    out = tmp_path / family
    main(run_argv(out, family, small_corpus, cache_dir, "--max_steps", str(steps),
                  "--eval_steps", str(steps // 6), "--warmup_steps", "20", "--documents", "line",
                  "--ckpt_steps", "1000", *extra))
    losses = logged_losses(out, "eval")
    uniform = math.log(30522 if family == "bert" else 50257)
    assert losses[-1] < losses[0] - 0.3, losses  # still improving after the first eval
    assert losses[-1] < uniform - 2.0, losses  # far better than guessing


def test_stop_at_eval_loss_ends_at_the_first_eval_that_reaches_it(tmp_path, small_corpus,
                                                                  cache_dir):
    """The stopped run is the full run up to its first eval at or below the target (same LR
    schedule), then ends normally: final checkpoint, exported model, results."""
    full, stopped = tmp_path / "full", tmp_path / "stopped"
    common = ("--max_steps", "12", "--eval_steps", "3", "--logging_steps", "3",
              "--learning_rate", "1e-3", "--ckpt_steps", "100")
    main(run_argv(full, "bert", small_corpus, cache_dir, *common))
    losses = logged_losses(full, "eval")
    target = losses[2]  # the eval at step 9; never reached before step 6 on a falling curve
    first = next(i for i, loss in enumerate(losses) if loss <= target)
    assert first < 3 and min(losses[:first], default=float("inf")) > target
    results = main(run_argv(stopped, "bert", small_corpus, cache_dir, *common,
                            "--stop_at_eval_loss", repr(target)))
    assert results["step"] == 3 * (first + 1) and results["finished"]
    assert logged_losses(stopped, "eval") == losses[:first + 1]
    assert (stopped / "model.safetensors").is_file()
    assert (stopped / f"checkpoint-{3 * (first + 1):07d}").is_dir()


def test_second_run_reuses_the_token_cache(tmp_path, small_corpus, caplog):
    cache = tmp_path / "cache"
    args = lambda name: run_argv(tmp_path / name, "bert", small_corpus, cache, "--max_steps", "1")
    main(args("a"))
    files = {p: p.stat().st_mtime_ns for p in cache.iterdir()}
    caplog.clear()
    main(args("b"))
    assert "reusing token cache" in caplog.text
    assert {p: p.stat().st_mtime_ns for p in cache.iterdir()} == files


@pytest.mark.slow
def test_default_corpus_and_trained_tokenizer_when_no_data_flags(tmp_path):
    out = tmp_path / "default"
    results = main(["--config", str(REPO / "configs" / "bert_wiki.txt"),
                    "--config_name", str(REPO / "configs" / "bert-tiny.json"),
                    "--output_dir", str(out), "--cache_dir", str(tmp_path / "cache"),
                    "--max_steps", "2", "--per_device_train_batch_size", "4",
                    "--eval_max_batches", "1", "--bf16", "false", "--disable_tqdm"])
    assert results["finished"]
    assert list((tmp_path / "cache").glob("bbcnews.*.bert-30522.tokenizer.json"))
    assert (out / "tokenizer.json").is_file()


# ------------------------------------------------------------------ interruption and resume
def run_process(argv, env_extra=None):
    env = {**os.environ, "PYTHONPATH": str(REPO), **(env_extra or {})}
    done = subprocess.run([sys.executable, str(REPO / "run_lm_distributed.py"), *argv],
                          capture_output=True, text=True, env=env, cwd=REPO)
    return done


def assert_same_weights(dir_a, dir_b):
    a, b = load_file(dir_a / "model.safetensors"), load_file(dir_b / "model.safetensors")
    assert a.keys() == b.keys()
    for key in a:
        assert torch.equal(a[key], b[key]), key


@pytest.mark.slow
@pytest.mark.parametrize("corrupt_latest", [False, True])
def test_kill_and_resume_equals_uninterrupted_training(tmp_path, small_corpus, cache_dir,
                                                       corrupt_latest):
    common = ["--max_steps", "8", "--ckpt_steps", "2", "--eval_steps", "4",
              "--save_total_limit", "3"]  # dropout stays on: RNG state must be restored too
    straight = tmp_path / "straight"
    main(run_argv(straight, "bert", small_corpus, cache_dir, *common))

    resumed = tmp_path / "resumed"
    first = run_process(run_argv(resumed, "bert", small_corpus, cache_dir, *common,
                                 "--stop_after_steps", "4"))
    assert first.returncode == 0, first.stderr
    assert not (resumed / "model.safetensors").exists()  # it really stopped half way
    assert json.loads((resumed / "results.json").read_text())["step"] == 4
    if corrupt_latest:  # the newest checkpoint is damaged: resume from the one before
        state = resumed / "checkpoint-0000004" / "state.pt"
        state.write_bytes(state.read_bytes()[:1000])
    second = run_process(run_argv(resumed, "bert", small_corpus, cache_dir, *common,
                                  "--should_continue"))
    assert second.returncode == 0, second.stderr
    expected_start = 2 if corrupt_latest else 4
    assert f"(step {expected_start})" in second.stderr
    if corrupt_latest:
        assert "skipping checkpoint at step 4" in second.stderr
    assert_same_weights(straight, resumed)
    assert logged_losses(straight, "eval")[-1] == logged_losses(resumed, "eval")[-1]


# ------------------------------------------------------------------ bad input
@pytest.mark.parametrize("change, error, message", [
    ({"model_type": "t5"}, ValueError, "unknown model type 't5'"),
    ({"model_type": "nonsense"}, ValueError, "unknown model type 'nonsense'"),
    ({"hidden_size": 60, "num_attention_heads": 7}, ValueError, "not divisible by 7 attention heads"),
    ({"max_position_embeddings": 32}, ValueError, "--block_size 64 is above the 32 positions"),
    ({"vocab_size": 1000}, ValueError, "tokenizer has 30522 tokens but the model's vocab_size is 1000"),
    ({"num_hidden_layers": 0}, ValueError, "num_hidden_layers must be a positive whole number, not 0"),
    ({"hidden_size": "64"}, ValueError, "hidden_size must be a positive whole number, not '64'"),
    ({"hidden_size": 0}, ValueError, "hidden_size must be a positive whole number, not 0"),
])
def test_bad_model_config_is_named(change, error, message, tmp_path, small_corpus, cache_dir):
    config = write_config(tmp_path, "bert", **change)
    with pytest.raises(error, match=message):
        main(run_argv(tmp_path / "out", "bert", small_corpus, cache_dir, "--max_steps", "1",
                      config=config))


def test_bad_data_and_paths_are_named(tmp_path, small_corpus, cache_dir):
    empty = tmp_path / "empty.txt"
    empty.write_text("")
    cases = [
        (["--train_files", str(tmp_path / "missing.txt")], FileNotFoundError, "does not exist"),
        (["--train_files", str(empty)], ValueError, "empty"),
        (["--config_name", str(tmp_path / "none.json")], FileNotFoundError, "model config"),
        (["--tokenizer_path", str(tmp_path / "vocab.txt")], FileNotFoundError, "tokenizer path"),
    ]
    for flags, error, message in cases:
        with pytest.raises(error, match=message):
            main(run_argv(tmp_path / "out", "bert", small_corpus, cache_dir, "--max_steps", "1",
                          *flags))


def test_wrong_tokenizer_for_the_model(tmp_path, small_corpus, cache_dir):
    argv = run_argv(tmp_path / "out", "bert", small_corpus, cache_dir, "--max_steps", "1")
    argv[argv.index("--tokenizer_path") + 1] = str(GPT2_BPE)
    with pytest.raises(ValueError, match="not a bert tokenizer"):
        main(argv)


def test_unwritable_output_dir(tmp_path, small_corpus, cache_dir):
    blocker = tmp_path / "a_file"
    blocker.write_text("not a folder")
    with pytest.raises(PermissionError, match="cannot create --output_dir"):
        main(run_argv(blocker / "out", "bert", small_corpus, cache_dir, "--max_steps", "1"))


def test_output_dir_of_another_run_is_protected(tmp_path, small_corpus, cache_dir):
    out = tmp_path / "out"
    main(run_argv(out, "bert", small_corpus, cache_dir, "--max_steps", "2", "--ckpt_steps", "1"))
    with pytest.raises(FileExistsError, match="already holds a run"):
        main(run_argv(out, "bert", small_corpus, cache_dir, "--max_steps", "2"))
    other = write_config(tmp_path, "bert", num_hidden_layers=1)
    with pytest.raises(ValueError, match="holds a different run .*model_config"):
        main(run_argv(out, "bert", small_corpus, cache_dir, "--max_steps", "2",
                      "--should_continue", config=other))
    assert len(list(out.glob("checkpoint-*"))) == 2  # nothing was deleted by the refusals
    assert (out / "model.safetensors").exists()
    results = main(run_argv(out, "bert", small_corpus, cache_dir, "--max_steps", "3",
                            "--stop_after_steps", "1", "--overwrite_output_dir"))
    assert results["step"] == 1 and not (out / "checkpoint-0000002").exists()
    # the replaced run's exported model is gone too: nothing in the folder mixes two runs
    assert not (out / "model.safetensors").exists()


@pytest.mark.slow
def test_command_line_reports_bad_input_in_one_line(tmp_path, small_corpus, cache_dir):
    config = write_config(tmp_path, "bert", hidden_size=60, num_attention_heads=7)
    done = run_process(run_argv(tmp_path / "out", "bert", small_corpus, cache_dir, config=config))
    assert done.returncode == 1
    assert done.stderr.strip().splitlines()[-1].startswith("error: ")
    assert "Traceback" not in done.stderr


def test_fp16_with_grad_scaler_trains(tmp_path, small_corpus, cache_dir):
    results = main(run_argv(tmp_path / "fp16", "bert", small_corpus, cache_dir, "--bf16", "false",
                            "--fp16", "--max_steps", "4", "--eval_steps", "4"))
    assert results["finished"] and math.isfinite(results["eval_loss"])
    state = torch.load(next((tmp_path / "fp16").glob("checkpoint-*")) / "state.pt",
                       weights_only=True)
    assert state["scaler"]["scale"] > 0  # the scaler really ran and was saved
    assert state["data_position"]["global_batch"] == 8
    assert state["progress"]["step"] == 4 and state["progress"]["flops"] > 0


@pytest.mark.slow
def test_redirected_logs_are_plain_lines_without_the_padding_warning(tmp_path, small_corpus,
                                                                     cache_dir, capfd, caplog):
    # GPT-2's pad id is its EOS, which separates documents inside a block: transformers would
    # warn that the blocks "may be padded" (they never are); and with stderr not a terminal
    # no progress bar writes carriage returns
    argv = [a for a in run_argv(tmp_path / "out", "gpt2", small_corpus, cache_dir, "--max_steps", "12",
                                "--logging_steps", "6", "--eval_steps", "12")
            if a != "--disable_tqdm"]
    main(argv)
    import logging  # the warning as transformers emits it, whether or not the blocks above hit it

    logging.getLogger("transformers.modeling_utils").warning(
        "We strongly recommend passing in an `attention_mask` since your input_ids may be padded.")
    out, err = capfd.readouterr()
    assert "\r" not in out + err
    assert "attention_mask" not in out + err
    assert "step 6/12 | loss" in out + err and "eval step 12/12" in out + err
    # what the run will do, and how long it will take at the speed of its first steps
    assert "the run: 12 steps, 6.14e+03 tokens" in caplog.text
    assert "s per step so far: about" in caplog.text


def test_resume_after_a_kill_cleans_stray_writes_and_repeated_metric_rows(tmp_path, small_corpus,
                                                                           cache_dir):
    out = tmp_path / "run"
    argv = run_argv(out, "bert", small_corpus, cache_dir, "--max_steps", "4", "--ckpt_steps", "2",
                    "--logging_steps", "1", "--eval_steps", "1", "--save_total_limit", "3")
    main(argv)
    # as if killed while writing the step-4 checkpoint: its rows are logged, it is not there
    import shutil

    shutil.rmtree(out / "checkpoint-0000004")
    (out / ".checkpoint-0000004.x1y2.tmp").mkdir()
    main(argv + ["--should_continue"])
    rows = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    keys = [(row["split"], row["step"]) for row in rows]
    assert len(keys) == len(set(keys)), keys  # each step once, though steps 3-4 ran twice
    assert ("train", 4) in keys and ("eval", 3) in keys and ("unigram", 0) in keys
    assert not list(out.glob(".checkpoint-*.tmp"))


def test_flags_that_cannot_apply_to_the_model_are_refused_before_work(tmp_path, small_corpus,
                                                                      cache_dir, small_run):
    with pytest.raises(ValueError, match="--whole_word_mask is for masked-LM models; gpt2"):
        main(run_argv(tmp_path / "a", "gpt2", small_corpus, cache_dir, "--whole_word_mask"))
    with pytest.raises(ValueError, match="--stages 1,4 ends at 4 layers but --config_name has 2"):
        main(run_argv(tmp_path / "b", "bert", small_corpus, cache_dir, "--stages", "1,4",
                      "--stage_steps", "2,2"))
    with pytest.raises(ValueError, match="holds a bert model of other shapes than --config_name .gpt2"):
        main(run_argv(tmp_path / "c", "gpt2", small_corpus, cache_dir, "--model_name_or_path",
                      str(small_run("bert"))))
    for name in "abc":
        assert not (tmp_path / name / "run.json").exists()


def test_evaluation_and_fine_tuning_flags_are_range_checked(tmp_path, small_run):
    from ligo.glue import main as glue_main
    from ligo.lm_eval import main as lm_eval_main

    model = str(small_run("bert"))
    for flags, message in ((["--stride", "0"], "--stride 0 is out of range"),
                           (["--max_length", "0"], "--max_length 0 is out of range"),
                           (["--batch_size", "0"], "--batch_size 0 is out of range")):
        with pytest.raises(ValueError, match=message):
            lm_eval_main([model, *flags])
    for flags, message in ((["--epochs", "0"], "--epochs 0 is out of range"),
                           (["--batch_size", "0"], "--batch_size 0 is out of range"),
                           (["--max_seq_length", "4096"], "--max_seq_length 4096 is above the 512")):
        with pytest.raises(ValueError, match=message):
            glue_main([model, "--task_dir", str(tmp_path), "--output_dir", str(tmp_path / "g"),
                       *flags])


def test_resuming_another_runs_checkpoint_is_refused_by_name(tmp_path, small_corpus, cache_dir):
    out = tmp_path / "run"
    main(run_argv(out, "bert", small_corpus, cache_dir, "--max_steps", "2", "--ckpt_steps", "1"))
    (out / "run.json").unlink()  # only the checkpoints tell whose run this is
    other = write_config(tmp_path, "bert", num_hidden_layers=1)
    with pytest.raises(ValueError, match=r"checkpoint-0000002 is a checkpoint of another run "
                                         r"\(differs in: model_config\)"):
        main(run_argv(out, "bert", small_corpus, cache_dir, "--max_steps", "3",
                      "--should_continue", config=other))


@pytest.mark.slow
def test_compile_trains_the_same_weights_as_eager(tmp_path, small_corpus, cache_dir):
    from safetensors.torch import load_file

    # no dropout: compiled code draws its own random masks
    config = write_config(tmp_path, "bert", hidden_dropout_prob=0.0, attention_probs_dropout_prob=0.0)
    weights = {}
    for mode, extra in (("eager", []), ("compiled", ["--compile"])):
        main(run_argv(tmp_path / mode, "bert", small_corpus, cache_dir, "--max_steps", "3",
                      "--learning_rate", "1e-3", *extra, config=config))
        weights[mode] = load_file(tmp_path / mode / "model.safetensors")
    for key, tensor in weights["eager"].items():
        torch.testing.assert_close(weights["compiled"][key], tensor, rtol=1e-4, atol=1e-5, msg=key)


def test_position_init_sinusoidal_starts_the_table_from_sinusoids(tmp_path, small_corpus,
                                                                   cache_dir, hf_model):
    from ligo.models import sinusoidal_positions

    out = tmp_path / "sinus"
    main(run_argv(out, "bert", small_corpus, cache_dir, "--max_steps", "2", "--eval_steps", "2",
                  "--learning_rate", "1e-4", "--position_init", "sinusoidal"))
    table = load_file(out / "model.safetensors")["bert.embeddings.position_embeddings.weight"]
    start = sinusoidal_positions(*table.shape, std=0.02).float()
    # two AdamW steps of 1e-4 move each entry by at most ~2e-4 of the table's 0.02 std
    assert (table - start).abs().max() < 5e-4
    assert json.loads((out / "run.json").read_text())["position_init"] == "sinusoidal"
    with pytest.raises(ValueError, match="initialises a model trained from scratch"):
        main(run_argv(tmp_path / "loaded", "bert", small_corpus, cache_dir, "--max_steps", "1",
                      "--model_name_or_path", str(hf_model), "--position_init", "sinusoidal"))
    with pytest.raises(ValueError, match="no learned position table"):
        main(run_argv(tmp_path / "llama", "llama", small_corpus, cache_dir, "--max_steps", "1",
                      "--position_init", "sinusoidal"))
    with pytest.raises(ValueError, match="--position_init must be one of random, sinusoidal"):
        main(run_argv(tmp_path / "bad", "bert", small_corpus, cache_dir, "--max_steps", "1",
                      "--position_init", "sine"))
    assert not (tmp_path / "loaded").exists() and not (tmp_path / "llama").exists()
