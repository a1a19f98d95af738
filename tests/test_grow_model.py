"""Growth from a real trained checkpoint: `python -m ligo.grow_model` and
`run_lm_distributed.py --source_model_path` (grow, then pretrain)."""
import json

import pytest
import torch

from ligo.grow_model import main as grow_main
from ligo.pretrain import main as pretrain_main
from tests.conftest import run_argv, write_config


@pytest.fixture(scope="module")
def small_run(small_run):
    """bert-tiny (2 layers, hidden 64) pretrained 300 steps on real text."""
    return small_run("bert")


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


def test_resetting_the_optimizer_is_an_option(tmp_path, small_run, small_corpus, cache_dir, caplog):
    config = write_config(tmp_path, "bert", num_hidden_layers=4)
    for flag, expected in ((["--reset_optimizer"], "starts from zero"),
                           ([], "moments mapped from the source checkpoint")):
        caplog.clear()
        pretrain_main(run_argv(tmp_path / f"run{len(flag)}", "bert", small_corpus, cache_dir,
                               "--max_steps", "1", "--source_model_path", str(small_run), *flag,
                               config=config))
        assert expected in caplog.text
