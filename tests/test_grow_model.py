"""Growth from a real trained checkpoint: `python -m ligo.grow_model` and
`run_lm_distributed.py --source_model_path` (grow, then pretrain)."""
import json

import pytest
import torch

from ligo.grow_model import main as grow_main
from ligo.pretrain import main as pretrain_main
from tests.conftest import TRAINED_VOCAB, fast_precision, run_argv, write_config


@pytest.fixture(scope="module")
def small_run(small_run):
    """bert-tiny (2 layers, hidden 64) pretrained 300 steps on real text."""
    return small_run("bert")


@pytest.mark.slow
def test_grow_model_cli_writes_a_loadable_function_preserving_checkpoint(tmp_path, small_run):
    from transformers import AutoModelForMaskedLM, AutoTokenizer

    config = write_config(tmp_path, "bert", hidden_size=128, num_attention_heads=4,
                          intermediate_size=512)
    out = grow_main([str(small_run), "--config_name", str(config), "--output_dir",
                     str(tmp_path / "grown"), "--width_scheme", "double"])
    small = AutoModelForMaskedLM.from_pretrained(small_run).eval()
    grown = AutoModelForMaskedLM.from_pretrained(out).eval()
    tokenizer = AutoTokenizer.from_pretrained(out)
    ids = tokenizer("The history of the city", return_tensors="pt")["input_ids"]
    with torch.no_grad():
        torch.testing.assert_close(grown(ids).logits, small(ids).logits, rtol=1e-4, atol=1e-4)
    assert json.loads((out / "growth.json").read_text())["width"] == "double"
    with pytest.raises(FileExistsError, match="not empty"):
        grow_main([str(small_run), "--config_name", str(config), "--output_dir", str(out),
                   "--width_scheme", "double"])


def test_source_whose_weights_do_not_match_its_config_is_named(tmp_path, small_run):
    import shutil

    broken = tmp_path / "broken"
    shutil.copytree(small_run, broken, ignore=shutil.ignore_patterns("checkpoint-*"))
    config = json.loads((broken / "config.json").read_text())
    config["num_hidden_layers"] = 3
    (broken / "config.json").write_text(json.dumps(config))
    target = write_config(tmp_path, "bert", num_hidden_layers=6)
    with pytest.raises(ValueError, match="does not match its config .*missing"):
        grow_main([str(broken), "--config_name", str(target), "--output_dir", str(tmp_path / "o")])
    with pytest.raises(ValueError, match="cannot grow a bert model into a gpt2 config"):
        grow_main([str(small_run), "--config_name", str(write_config(tmp_path, "gpt2")),
                   "--output_dir", str(tmp_path / "o2")])


@pytest.mark.slow
@pytest.mark.parametrize("scheme, target", [
    (["--grow_scheme", "stack"], dict(num_hidden_layers=4)),
    (["--grow_scheme", "stack", "--width_scheme", "bert2bert_aki"],
     dict(num_hidden_layers=4, hidden_size=128, num_attention_heads=4, intermediate_size=512)),
])
def test_growth_then_training_beats_training_from_scratch(scheme, target, tmp_path, small_run,
                                                          small_corpus, cache_dir):
    config = write_config(tmp_path, "bert", **target)
    steps = ["--max_steps", "60", "--eval_steps", "60", "--learning_rate", "5e-4",
             "--warmup_steps", "5", "--documents", "line"]
    scratch = pretrain_main(run_argv(tmp_path / "scratch", "bert", small_corpus, cache_dir, *steps,
                                     config=config))
    grown = pretrain_main(run_argv(tmp_path / "grown", "bert", small_corpus, cache_dir, *steps,
                                   "--source_model_path", str(small_run), *scheme, config=config))
    assert grown["eval_loss"] < scratch["eval_loss"] - 0.2, (grown["eval_loss"], scratch["eval_loss"])
    run = json.loads((tmp_path / "grown" / "run.json").read_text())
    assert run["grown_from"]["depth"] == "stack"


@pytest.mark.slow
def test_a_grown_llama_trains_better_than_the_same_model_from_scratch(tmp_path, small_corpus,
                                                                    cache_dir):
    """llama-tiny (4 query / 2 key-value heads) pretrained briefly, grown to 4 layers and
    twice the width (8 / 4 heads) by stacking and doubling, then trained as long as the same
    model from scratch: it ends lower. An 8k BPE trained on the corpus: with the published
    50k vocabulary the head was most of the test's 208 s (one AVX2 thread, float32)."""
    steps = ["--eval_steps", "1000", "--learning_rate", "2e-3", "--warmup_steps", "10",
             "--documents", "line", *fast_precision()]
    small = write_config(tmp_path / "small", "llama", vocab_size=TRAINED_VOCAB)
    source = tmp_path / "source"
    pretrain_main(run_argv(source, "llama", small_corpus, cache_dir, "--max_steps", "150", *steps,
                           config=small, tokenizer="trained"))
    config = write_config(tmp_path, "llama", num_hidden_layers=4, hidden_size=128,
                          num_attention_heads=8, num_key_value_heads=4, intermediate_size=352,
                          head_dim=16, vocab_size=TRAINED_VOCAB)
    scratch = pretrain_main(run_argv(tmp_path / "scratch", "llama", small_corpus, cache_dir,
                                     "--max_steps", "50", *steps, config=config, tokenizer="trained"))
    grown = pretrain_main(run_argv(tmp_path / "grown", "llama", small_corpus, cache_dir,
                                   "--max_steps", "50", *steps, "--source_model_path", str(source),
                                   "--grow_scheme", "stack", "--width_scheme", "double",
                                   config=config, tokenizer="trained"))
    assert grown["eval_loss"] < scratch["eval_loss"] - 0.2, (grown["eval_loss"], scratch["eval_loss"])


def test_resetting_the_optimizer_is_an_option(tmp_path, small_run, small_corpus, cache_dir, caplog):
    config = write_config(tmp_path, "bert", num_hidden_layers=4)
    for flag, expected in ((["--reset_optimizer"], "starts from zero"),
                           ([], "moments mapped from the source checkpoint")):
        caplog.clear()
        pretrain_main(run_argv(tmp_path / f"run{len(flag)}", "bert", small_corpus, cache_dir,
                               "--max_steps", "1", "--source_model_path", str(small_run), *flag,
                               config=config))
        assert expected in caplog.text


def test_split_copies_are_logged_and_recorded_in_the_runs_identity(tmp_path, small_run, small_corpus,
                                                                     cache_dir, caplog):
    config = write_config(tmp_path, "bert", num_hidden_layers=4, hidden_size=128,
                          num_attention_heads=4, intermediate_size=512)
    pretrain_main(run_argv(tmp_path / "run", "bert", small_corpus, cache_dir, "--max_steps", "1",
                           "--source_model_path", str(small_run), "--width_scheme", "bert2bert_fpi",
                           "--width_split_noise", "0.5", config=config))
    assert "(stack + bert2bert_fpi, copies' shares split by 0.5)" in caplog.text
    grown_from = json.loads((tmp_path / "run" / "run.json").read_text())["grown_from"]
    assert grown_from["width_options"]["split_noise"] == 0.5


def test_a_damaged_newest_source_checkpoint_grows_the_final_model_not_an_older_step(
        tmp_path, small_corpus, cache_dir, caplog):
    from safetensors.torch import load_file

    source = tmp_path / "source"
    pretrain_main(run_argv(source, "bert", small_corpus, cache_dir, "--max_steps", "4",
                           "--ckpt_steps", "2", "--save_total_limit", "3", "--learning_rate", "1e-3"))
    state = source / "checkpoint-0000004" / "state.pt"
    state.write_bytes(state.read_bytes()[:-100])  # the final step's checkpoint is damaged
    config = write_config(tmp_path, "bert", num_hidden_layers=4)
    out = tmp_path / "grown"
    pretrain_main(run_argv(out, "bert", small_corpus, cache_dir, "--max_steps", "1",
                           "--source_model_path", str(source), "--learning_rate", "1e-30",
                           config=config))
    assert "not the final model's step 4: growing the final model" in caplog.text
    final = load_file(source / "model.safetensors")
    grown = load_file(out / "model.safetensors")
    key = "bert.encoder.layer.1.output.dense.weight"
    torch.testing.assert_close(grown["bert.encoder.layer.3.output.dense.weight"], final[key],
                               rtol=0, atol=1e-25)


def test_a_stopped_run_is_a_growth_source_and_evaluation_says_to_export_it(
        tmp_path, small_corpus, cache_dir, caplog):
    from ligo.lm_eval import main as lm_eval_main

    stopped = tmp_path / "stopped"
    pretrain_main(run_argv(stopped, "bert", small_corpus, cache_dir, "--max_steps", "6",
                           "--stop_after_steps", "2", "--ckpt_steps", "10"))
    assert not (stopped / "config.json").exists() and (stopped / "checkpoint-0000002").is_dir()
    config = write_config(tmp_path, "bert", num_hidden_layers=4)
    grow_main([str(stopped), "--config_name", str(config), "--output_dir", str(tmp_path / "g")])
    assert "using its newest valid checkpoint checkpoint-0000002 (step 2)" in caplog.text
    results = pretrain_main(run_argv(tmp_path / "t", "bert", small_corpus, cache_dir, "--max_steps",
                                     "1", "--source_model_path", str(stopped), config=config))
    assert results["finished"]
    with pytest.raises(ValueError, match=r"python -m ligo.export .*stopped"):
        lm_eval_main([str(stopped)])
