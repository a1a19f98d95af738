"""The original LiGO repository's README commands (VITA-Group/LiGO), run as typed: only the
placeholders (paths), the model sizes, batch sizes and step counts are replaced, and the data
(train files, tokenizer, cache) is pointed at the test corpus. Users of LiGO know these."""
import json
import shlex

import pytest

from ligo.grow_train import main as grow_main
from ligo.pretrain import main as pretrain_main
from tests.conftest import CONFIGS, TOKENIZERS, write_config

# verbatim from the original README (the <...> placeholders are the README's own)
BERT_SMALL = ("python run_lm_distributed.py --config configs/bert_wiki.txt --config_name "
              "configs/bert-6L-512H.json --output_dir <output_path> --max_steps 400000 "
              "--warmup_steps 10000 --should_continue")
BERT_OPERATOR = ("python run_grow_distributed.py --config configs/bert_wiki.txt --config_name "
                 "configs/bert-12L-768H.json --output_dir <path_to_save_LiGO> --tune_width "
                 "--tune_depth --source_model_path <path_to_small_model> --fuse_init_scheme "
                 "stackbert_noisy rand --max_steps 100 --logging_steps 100 --ckpt_steps 100 "
                 "--should_continue")
BERT_GROWN = ("python run_lm_distributed.py --config configs/bert_wiki.txt --config_name "
              "configs/bert-12L-768H.json --output_dir <output_path> --grow_scheme ligo "
              "--source_model_path <path_to_small_model>  --pretrained_ligo_path "
              "<path_to_save_LiGO> --fuse_init_scheme stackbert_noisy rand --learning_rate 2e-4 "
              "--warmup_steps 0 --should_continue")
ROBERTA_SMALL = ("python run_lm_distributed.py --config configs/roberta_wiki.txt --config_name "
                 "configs/roberta-6L-512H.json --per_gpu_train_batch_size 64 "
                 "--gradient_accumulation_steps 4 --learning_rate 2e-4 --output_dir <output_path> "
                 "--should_continue")
ROBERTA_OPERATOR = ("python run_grow_distributed.py --config configs/roberta_wiki.txt "
                    "--config_name configs/roberta-12L-768H.json --per_gpu_train_batch_size 64 "
                    "--gradient_accumulation_steps 4 --learning_rate 2e-4 --output_dir "
                    "<path_to_save_LiGO> --tune_width --tune_depth --source_model_path "
                    "<path_to_small_model> --fuse_init_scheme stackbert_noisy rand --max_steps 100 "
                    "--logging_steps 100 --ckpt_steps 100 --should_continue")
ROBERTA_GROWN = ("python vlm/run_lm_distributed.py --config configs/roberta_wiki.txt --config_name "
                 "configs/roberta-12L-768H.json --per_gpu_train_batch_size 64 "
                 "--gradient_accumulation_steps 4 --output_dir <output_dir> --grow_scheme ligo "
                 "--source_model_path <path_to_small_model> --pretrained_ligo_path "
                 "<path_to_save_LiGO> --fuse_init_scheme stackbert_noisy rand --learning_rate 2e-4 "
                 "--warmup_steps 10000 --should_continue")
ENTRY_POINTS = {"run_lm_distributed.py": pretrain_main, "vlm/run_lm_distributed.py": pretrain_main,
                "run_grow_distributed.py": grow_main}
# sizes and step counts of a test: (original text, replacement)
SMALLER = [("--max_steps 400000", "--max_steps 6"), ("--warmup_steps 10000", "--warmup_steps 2"),
           ("--max_steps 100", "--max_steps 3"), ("--logging_steps 100", "--logging_steps 1"),
           ("--ckpt_steps 100", "--ckpt_steps 3"), ("--per_gpu_train_batch_size 64",
                                                    "--per_gpu_train_batch_size 4")]


def run_original(command: str, places: dict, data: list[str]):
    for original, replacement in SMALLER + list(places.items()):
        command = command.replace(original, replacement)
    python, script, *argv = shlex.split(command)
    assert python == "python" and "<" not in command, command
    return ENTRY_POINTS[script](argv + data)


@pytest.mark.slow
@pytest.mark.parametrize("family", ["bert", "roberta"])
def test_the_original_readme_commands_run_as_typed(family, tmp_path, small_corpus, cache_dir, capsys):
    small_config = CONFIGS / f"{family}-tiny.json"
    large_config = write_config(tmp_path, family, num_hidden_layers=4, hidden_size=128,
                                num_attention_heads=4, intermediate_size=512)
    data = ["--train_files", str(small_corpus), "--tokenizer_path", str(TOKENIZERS[family]),
            "--cache_dir", str(cache_dir), "--block_size", "64", "--eval_max_batches", "2",
            "--logging_steps", "1"]
    places = {f"configs/{family}-6L-512H.json": str(small_config),
              f"configs/{family}-12L-768H.json": str(large_config),
              f"configs/{family}_wiki.txt": str(CONFIGS / f"{family}_wiki.txt"),
              "<path_to_small_model>": str(tmp_path / "small"),
              "<path_to_save_LiGO>": str(tmp_path / "ligo_op")}
    small_command, operator_command, grown_command = (
        (BERT_SMALL, BERT_OPERATOR, BERT_GROWN) if family == "bert"
        else (ROBERTA_SMALL, ROBERTA_OPERATOR, ROBERTA_GROWN))
    # the RoBERTa scratch command has no --max_steps: its recipe's 2,000 steps are cut here
    small_data = data + ([] if "--max_steps" in small_command else ["--max_steps", "6"])
    small = run_original(small_command, {**places, "<output_path>": str(tmp_path / "small")}, small_data)
    assert small["finished"]
    if family == "roberta":  # the old batch flag is the per-process batch, with a note
        assert "--per_gpu_train_batch_size is the original LiGO name" in capsys.readouterr().err
        run = json.loads((tmp_path / "small" / "run.json").read_text())
        assert small["tokens"] == 6 * 4 * 4 * 64, run  # steps x batch x accumulation x block
    operator = run_original(operator_command, places, data)
    assert operator["finished"] and operator["step"] == 3
    output = "<output_path>" if family == "bert" else "<output_dir>"
    grown = run_original(grown_command, {**places, output: str(tmp_path / "grown")},
                         data + ["--max_steps", "2"])
    assert grown["finished"] and grown["growth_flops"] == operator["flops"]
    rows = [json.loads(line) for line in (tmp_path / "grown" / "metrics.jsonl").read_text().splitlines()]
    first_lr = next(row["lr"] for row in rows if row["split"] == "train")
    if family == "bert":  # --warmup_steps 0 wins over the recipe file's warmup_ratio 0.06
        assert first_lr == pytest.approx(2e-4)
    else:  # --warmup_steps 2 (10,000 in the original): the first step warms up
        assert first_lr == pytest.approx(1e-4)
