"""Every entry point answers --help with its flags (no 'the following arguments are required')."""
import importlib
import subprocess
import sys

import pytest

from tests.conftest import REPO

# module: flags its help must list
ENTRY_POINTS = {
    "ligo.pretrain": ["--config_name", "--grow_scheme", "--stages", "--warmup_steps",
                      "--per_device_train_batch_size", "--fuse_init_scheme"],
    "ligo.grow_train": ["--source_model_path", "--tune_width", "--fuse_init_scheme",
                        "--init_from_operator"],
    "ligo.grow_model": ["--config_name", "--output_dir", "--grow_scheme", "--width_scheme",
                        "--insert_positions", "--pretrained_ligo_path"],
    "ligo.export": ["checkpoint", "--output_dir"],
    "ligo.glue": ["model_dir", "--output_dir"],
    "ligo.lm_eval": ["model_dir", "--output_file"],
    "ligo.slope": ["run_dir", "--next"],
    "ligo.plot": ["runs", "--x", "--output"],
}


@pytest.mark.parametrize("module", sorted(ENTRY_POINTS))
def test_help_lists_the_flags(module, capsys):
    main = importlib.import_module(module).main
    with pytest.raises(SystemExit) as leaving:
        main(["--help"])
    assert leaving.value.code == 0
    text = capsys.readouterr().out
    missing = [flag for flag in ENTRY_POINTS[module] if flag not in text]
    assert not missing, f"{module} --help does not list {missing}"


@pytest.mark.slow
@pytest.mark.parametrize("script", ["run_lm_distributed.py", "run_grow_distributed.py"])
def test_the_scripts_answer_help(script):
    done = subprocess.run([sys.executable, str(REPO / script), "--help"], capture_output=True,
                          text=True, cwd=REPO, timeout=120)
    assert done.returncode == 0, done.stderr
    assert "--config_name" in done.stdout and "required" not in done.stderr


@pytest.mark.slow
def test_the_slope_command_answers_under_its_old_name_too():
    done = subprocess.run([sys.executable, "-m", "ligo.schedule", "--help"], capture_output=True,
                          text=True, cwd=REPO, timeout=120)
    assert done.returncode == 0, done.stderr
    assert "--next" in done.stdout and "ligo.slope" in done.stdout
