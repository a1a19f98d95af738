"""No command writes into or deletes a folder the user did not hand over as output: a folder
holding something else is refused unless --overwrite_output_dir, an input folder always."""
import json

import pytest

from ligo.pretrain import main as pretrain_main
from tests.conftest import run_argv


def snapshot(folder):
    return {p.relative_to(folder): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}


def test_pretraining_into_a_model_folder_is_refused(hf_model, small_corpus, cache_dir):
    before = snapshot(hf_model)
    with pytest.raises(FileExistsError, match=r"not a run's .*config\.json.*--overwrite_output_dir"):
        pretrain_main(run_argv(hf_model, "bert", small_corpus, cache_dir, "--max_steps", "1"))
    assert snapshot(hf_model) == before


def test_a_folder_that_is_also_an_input_is_refused_even_with_overwrite(tmp_path, small_run,
                                                                      small_corpus, cache_dir):
    source = small_run("bert")
    before = snapshot(source)
    with pytest.raises(ValueError, match="is also an input .--source_model_path"):
        pretrain_main(run_argv(source, "bert", small_corpus, cache_dir, "--max_steps", "1",
                               "--source_model_path", str(source), "--overwrite_output_dir"))
    from ligo.export import main as export_main
    from ligo.grow_model import main as grow_model_main

    with pytest.raises(ValueError, match="is also an input .source"):
        grow_model_main([str(source), "--config_name", str(source / "config.json"),
                         "--output_dir", str(source), "--overwrite_output_dir"])
    checkpoint = next(source.glob("checkpoint-*"))
    with pytest.raises(ValueError, match="is also an input .checkpoint"):
        export_main([str(checkpoint), "--output_dir", str(source), "--overwrite_output_dir"])
    with pytest.raises(ValueError, match="is also an input .--train_files"):
        pretrain_main(run_argv(small_corpus.parent, "bert", small_corpus, cache_dir,
                               "--overwrite_output_dir"))
    assert snapshot(source) == before


def test_glue_does_not_replace_a_runs_results(tmp_path, hf_model):
    from ligo.glue import main as glue_main

    run = tmp_path / "run"
    run.mkdir()
    (run / "run.json").write_text("{}")
    (run / "results.json").write_text(json.dumps({"eval_loss": 4.2}))
    before = snapshot(run)
    with pytest.raises(FileExistsError, match=r"not an earlier GLUE sweep's .*run\.json"):
        glue_main([str(hf_model), "--task_dir", str(tmp_path), "--output_dir", str(run)])
    with pytest.raises(ValueError, match="is also an input .model_dir"):
        glue_main([str(hf_model), "--task_dir", str(tmp_path), "--output_dir", str(hf_model),
                   "--overwrite_output_dir"])
    assert snapshot(run) == before


def test_a_planted_run_json_is_data_and_named(tmp_path, small_corpus, cache_dir):
    import pickle

    out = tmp_path / "run"
    out.mkdir()
    marker = tmp_path / "marker"
    payload = pickle.dumps(type("P", (), {"__reduce__": lambda self: (exec, (f"open({str(marker)!r}, 'w')",))})())
    (out / "run.json").write_bytes(payload)
    with pytest.raises(ValueError, match=r"run\.json is not valid JSON"):
        pretrain_main(run_argv(out, "bert", small_corpus, cache_dir, "--max_steps", "1",
                               "--should_continue"))
    assert not marker.exists()
