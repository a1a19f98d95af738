"""ligo.lm_eval: sliding-window perplexity, masked-LM scores, LAMBADA-style accuracy."""
import json
from types import SimpleNamespace

import pytest
import torch

from ligo.data.tokenizer import load_tokenizer, save_hf_tokenizer
from ligo.families import FAMILIES
from ligo.lm_eval import lambada_accuracy, main, pseudo_log_likelihood, sliding_window_loss, window_plan
from ligo.train.objective import LanguageModelingLoss
from tests.conftest import TOKENIZERS, WIKI
from tests.operators.conftest import trained_like_model


@pytest.mark.parametrize("n, length, stride", [(100, 32, 32), (100, 32, 8), (33, 32, 16), (5, 32, 4)])
def test_every_token_after_the_first_is_scored_exactly_once(n, length, stride):
    scored = []
    for begin, end, first in window_plan(n, length, stride):
        assert end - begin <= length and begin <= first
        scored += range(max(first, begin + 1), end)
    window_starts = {b for b, _, _ in window_plan(n, length, stride)} if stride == length else {0}
    assert scored == [t for t in range(1, n) if t not in window_starts]


def test_a_stride_above_the_window_is_refused():
    with pytest.raises(ValueError, match="would leave tokens between windows unscored"):
        window_plan(100, 32, 33)


def test_stride_equal_to_the_window_is_the_plain_average_loss():
    model = trained_like_model("gpt2")
    ids = torch.randint(5, 1000, (150,), generator=torch.Generator().manual_seed(0))
    nll, count = sliding_window_loss(LanguageModelingLoss(model, FAMILIES["gpt2"]).eval(), ids, 64, 64)
    total, tokens = 0.0, 0
    with torch.no_grad():
        for chunk in ids.split(64):  # 64, 64, 22 tokens; each predicts len - 1
            total += model(input_ids=chunk[None], labels=chunk[None]).loss.item() * (len(chunk) - 1)
            tokens += len(chunk) - 1
    assert count == tokens == 147
    assert nll / count == pytest.approx(total / tokens, rel=1e-6)
    overlapping = sliding_window_loss(LanguageModelingLoss(model, FAMILIES["gpt2"]).eval(), ids, 64, 16)
    assert overlapping[1] == 149 and overlapping[0] / 149 != pytest.approx(nll / count, rel=1e-6)


def test_pseudo_log_likelihood_masks_one_token_at_a_time():
    model = trained_like_model("bert")
    block = torch.randint(1000, 2000, (12,), generator=torch.Generator().manual_seed(1))
    positions = torch.arange(1, 11)
    batched = pseudo_log_likelihood(LanguageModelingLoss(model, FAMILIES["bert"]).eval(), block, 103,
                                    positions, batch_size=4)
    expected = 0.0
    with torch.no_grad():
        for t in positions.tolist():
            masked = block.clone()
            masked[t] = 103
            log_probs = model(input_ids=masked[None]).logits[0, t].log_softmax(-1)
            expected -= log_probs[block[t]].item()
    assert batched == pytest.approx(expected, rel=1e-9)


class Oracle:
    """Stands in for a model: its top prediction is the right token (or, with shift=1, the wrong one)."""

    def __init__(self, truths: list[list[int]], causal: bool, shift: int = 0, vocab: int = 60000):
        self.truths, self.causal, self.shift, self.vocab = truths, causal, shift, vocab

    def __call__(self, input_ids):
        ids = input_ids[0].tolist()
        if self.causal:  # the passage whose tokens start with the input; predict the next ones
            truth = next(t for t in self.truths if t[:len(ids)] == ids)
            wanted = truth[1:len(ids) + 1]
        else:  # the passage whose context matches the unmasked part
            truth = next(t for t in self.truths if len(t) == len(ids) and t[:5] == ids[:5])
            wanted = truth
        logits = torch.zeros(len(ids), self.vocab)
        logits[torch.arange(len(wanted)), torch.tensor(wanted) + self.shift] = 1.0
        return SimpleNamespace(logits=logits[None])


@pytest.mark.parametrize("family", ["gpt2", "bert"])
def test_lambada_scores_the_last_word_at_the_right_positions(family, tmp_path, shared_data):
    from transformers import AutoTokenizer

    save_hf_tokenizer(load_tokenizer(TOKENIZERS[family], FAMILIES[family]), FAMILIES[family], tmp_path)
    tokenizer = AutoTokenizer.from_pretrained(tmp_path)
    passages = [line for line in WIKI.read_text().splitlines() if 20 < len(line.split()) < 60][:5]
    truths = []
    for passage in passages:
        context, _, word = passage.rpartition(" ")
        ctx = tokenizer(context, add_special_tokens=False)["input_ids"]
        target = tokenizer((" " if family == "gpt2" else "") + word, add_special_tokens=False)["input_ids"]
        truths.append(ctx + target if family == "gpt2"
                      else [tokenizer.cls_token_id] + ctx + target + [tokenizer.sep_token_id])
    causal = family == "gpt2"
    assert lambada_accuracy(Oracle(truths, causal), tokenizer, FAMILIES[family], passages, 512) == 1.0
    assert lambada_accuracy(Oracle(truths, causal, shift=1), tokenizer, FAMILIES[family], passages, 512) == 0.0


@pytest.mark.slow
@pytest.mark.parametrize("family", ["gpt2", "bert", "llama"])
def test_main_end_to_end(family, tmp_path, shared_data):
    model = trained_like_model(family).float()
    model.save_pretrained(tmp_path / "model")
    save_hf_tokenizer(load_tokenizer(TOKENIZERS[family], FAMILIES[family]), FAMILIES[family],
                      tmp_path / "model")
    held_out = tmp_path / "held_out.txt"
    held_out.write_text(WIKI.read_text()[:20_000])
    passages = tmp_path / "passages.txt"
    passages.write_text("\n".join(WIKI.read_text().splitlines()[1:40:4]) + "\n")
    extra = ["--pseudo_perplexity"] if family == "bert" else ["--stride", "32"]
    results = main([str(tmp_path / "model"), "--eval_files", str(held_out), "--max_length", "64",
                    "--lambada_file", str(passages), "--output_file", str(tmp_path / "r.json"), *extra])
    assert json.loads((tmp_path / "r.json").read_text()) == results
    assert 0.0 <= results["lambada_accuracy"] <= 1.0 and results["lambada_passages"] == 10
    key = "pseudo_perplexity" if family == "bert" else "perplexity"
    assert results[key] > 1.0 and results["tokens"] > 300
    with pytest.raises(ValueError, match="above the model's"):
        main([str(tmp_path / "model"), "--eval_files", str(held_out), "--max_length", "100000"])
    with pytest.raises(ValueError, match="nothing to evaluate"):
        main([str(tmp_path / "model")])


@pytest.mark.slow
@pytest.mark.parametrize("module", ["ligo.lm_eval", "ligo.glue", "ligo.grow_model", "ligo.grow_train"])
def test_every_command_reports_bad_input_in_one_line(module, tmp_path):
    import os
    import subprocess
    import sys

    from tests.conftest import REPO

    argv = {"ligo.lm_eval": [str(tmp_path / "missing"), "--eval_files", "x.txt"],
            "ligo.glue": [str(tmp_path / "missing"), "--output_dir", str(tmp_path / "o")],
            "ligo.grow_model": [str(tmp_path / "missing"), "--config_name", "c.json",
                                "--output_dir", str(tmp_path / "o")],
            "ligo.grow_train": ["--config_name", "configs/bert-12L-768H.json", "--output_dir",
                                str(tmp_path / "o"), "--source_model_path", str(tmp_path / "missing")],
            }[module]
    done = subprocess.run([sys.executable, "-m", module, *argv], capture_output=True, text=True,
                          cwd=REPO, env={**os.environ, "PYTHONPATH": str(REPO)})
    assert done.returncode == 1, done.stderr
    assert done.stderr.strip().splitlines()[-1].startswith("error: ")
    assert "Traceback" not in done.stderr
