"""bench/pretraining_transfer.py: the same fine-tuning for a run's checkpoints and a random init."""
import importlib.util
import json

import pytest

from tests.conftest import REPO, SHARED

spec = importlib.util.spec_from_file_location("bench_transfer", REPO / "bench" / "pretraining_transfer.py")
transfer = importlib.util.module_from_spec(spec)
spec.loader.exec_module(transfer)


def test_table_reports_each_checkpoint_against_random_init():
    result = {"random_init": {"score": 0.6, "majority_dev_accuracy": 0.511},
              "pretrained": [{"step": 100, "eval_loss": 6.5, "score": 0.55, "tokens": 1e6, "train_seconds": 120},
                             {"step": 200, "eval_loss": None, "score": 0.65}]}
    lines = transfer.markdown_table(result).splitlines()
    assert lines[2] == "| random init | 0 | | | | 60.0 | |"
    assert lines[3] == "| pretrained | 100 | 1.0 M | 2.0 | 6.50 | 55.0 | -5.0 |"
    assert lines[4] == "| pretrained | 200 |  |  |  | 65.0 | +5.0 |"
    assert lines[5] == "| majority class | | | | | 51.1 | |"


@pytest.mark.slow
def test_fresh_run_fine_tunes_every_checkpoint_and_a_random_init_of_the_same_model(tmp_path, shared_data):
    out = tmp_path / "transfer"
    result = transfer.main(["--output_dir", str(out), "--steps", "10", "20",
                            "--config_overrides", "vocab_size=2048,hidden_dropout_prob=0",
                            "--train_files", str(SHARED / "corpus" / "news.txt"),
                            "--pretrain_args", "--documents line --block_size 32 --bf16 false",
                            "--learning_rates", "1e-3", "--seeds", "1", "--epochs", "1",
                            "--max_train_samples", "64"])
    assert [row["step"] for row in result["pretrained"]] == [10, 20]
    assert all(row["eval_loss"] > 0 for row in result["pretrained"])
    assert json.loads((out / "transfer.json").read_text()) == result
    assert (out / "transfer.md").read_text() == transfer.markdown_table(result)
    assert result["pretraining"]["config_overrides"].startswith("vocab_size=2048")
    assert result["pretraining"]["train_files"] == [str(SHARED / "corpus" / "news.txt")]
    assert all(row["tokens"] > 0 and row["train_seconds"] > 0 for row in result["pretrained"])
    # the baseline is ligo.glue's random init of the same model (its architecture and tokenizer)
    baseline = json.loads((out / "glue-random-init" / "results.json").read_text())
    assert baseline["random_init"] is True and baseline["model"] == str(out / "model-10")
    # every model was fine-tuned with the same sweep
    for folder in ("glue-random-init", "glue-10", "glue-20"):
        runs = json.loads((out / folder / "results.json").read_text())["tasks"]["movie_reviews"]["runs"]
        assert [(r["learning_rate"], r["seed"]) for r in runs] == [(1e-3, 1)]
    # a later call reuses the run (no new pretraining) and still knows how it was pretrained
    stamp = (out / "pretrain" / "metrics.jsonl").stat().st_mtime_ns
    again = transfer.main(["--output_dir", str(tmp_path / "again"), "--pretrained_run", str(out / "pretrain"),
                           "--steps", "20", "--learning_rates", "1e-3", "--seeds", "1", "--epochs", "1",
                           "--max_train_samples", "32"])
    assert (out / "pretrain" / "metrics.jsonl").stat().st_mtime_ns == stamp
    assert again["pretraining"]["flags"] == result["pretraining"]["flags"]
    assert [row["step"] for row in again["pretrained"]] == [20]
