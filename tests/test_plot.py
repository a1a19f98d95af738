"""python -m ligo.plot: curves of several real runs in one PNG."""
import pytest

from ligo.plot import main, read_run
from ligo.pretrain import main as pretrain_main
from tests.conftest import run_argv


def test_two_runs_make_one_png_with_train_eval_and_unigram_lines(tmp_path, small_run, small_corpus,
                                                                 cache_dir):
    short = tmp_path / "short"
    pretrain_main(run_argv(short, "bert", small_corpus, cache_dir, "--max_steps", "10",
                           "--eval_steps", "5", "--logging_steps", "5", "--documents", "line"))
    long_run = small_run("bert")
    assert [r["step"] for r in read_run(short)["eval"]] == [5, 10]
    result = main([str(long_run), str(short), "--x", "flops", "--output", str(tmp_path / "c.png")])
    # per run a train and an eval line; both share the unigram line of the same eval set
    # (the session's small_run cuts documents by line too)
    assert result["lines"] == 2 + 2 + 1
    assert (tmp_path / "c.png").stat().st_size > 10_000
    with pytest.raises(FileNotFoundError, match="holds no metrics.jsonl"):
        main([str(tmp_path), "--output", str(tmp_path / "d.png")])
    with pytest.raises(ValueError, match="must be a .png file"):
        main([str(short), "--output", str(tmp_path)])
