"""bench/twins.py: copied units are found; noisy copies and a random init have none."""
import importlib.util
import json

import pytest

from tests.conftest import REPO, run_argv, write_config

spec = importlib.util.spec_from_file_location("bench_twins", REPO / "bench" / "twins.py")
twins = importlib.util.module_from_spec(spec)
spec.loader.exec_module(twins)


def test_copied_units_are_twins_and_noise_or_random_init_leaves_none(tmp_path, hf_model):
    import ligo

    large = write_config(tmp_path, "bert", num_hidden_layers=4, hidden_size=128,
                         num_attention_heads=4, intermediate_size=512)
    ligo.grow(hf_model, large, depth="stack", width="bert2bert_fpi").save_pretrained(tmp_path / "fpi")
    ligo.grow(hf_model, large, depth="stack", width="net2net",
              width_noise_std=0.01).save_pretrained(tmp_path / "noisy")
    rows = twins.main([str(hf_model), str(tmp_path / "fpi"), str(tmp_path / "noisy"),
                       "--output", str(tmp_path / "twins.json")])
    random_init, fpi, noisy = rows
    assert random_init["hidden_dims"] == [0, 64] and all(t == 0 for t, _ in random_init["ffn_units"])
    # every new unit is a copy: it and its original both have a twin (64 -> 128, 256 -> 512)
    assert fpi["hidden_dims"][0] >= 64 and fpi["hidden_dims"][1] == 128
    assert len(fpi["ffn_units"]) == 4 and all(t >= 256 and n == 512 for t, n in fpi["ffn_units"])
    assert noisy["hidden_dims"][0] == 0 and all(t == 0 for t, _ in noisy["ffn_units"])
    assert json.loads((tmp_path / "twins.json").read_text())["models"] == rows


def test_bad_input_is_refused(tmp_path, hf_model):
    with pytest.raises(SystemExit):
        twins.main([str(tmp_path)])  # no model there
    with pytest.raises(SystemExit):
        twins.main([str(hf_model), "--tolerance", "0"])


def test_a_run_stopped_before_its_final_model_is_read_from_its_newest_checkpoint(
        tmp_path, small_corpus, cache_dir):
    from ligo.pretrain import main as pretrain_main

    stopped = tmp_path / "stopped"
    pretrain_main(run_argv(stopped, "bert", small_corpus, cache_dir, "--max_steps", "6",
                           "--stop_after_steps", "2", "--ckpt_steps", "10"))
    assert not (stopped / "config.json").exists()
    (row,) = twins.main([str(stopped)])
    assert row["hidden_dims"] == [0, 64] and len(row["ffn_units"]) == 2
