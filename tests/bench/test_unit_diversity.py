"""bench/unit_diversity.py: effective rank of known matrices; copies and tied LiGO keep a grown
model's residual stream at its source's width, the exact doubling's activations have the
source's spectrum, random new units and untied LiGO spread it."""
import importlib.util
import json

import pytest
import torch

from tests.conftest import REPO, SHARED, TRAINED_VOCAB, write_config
from tests.operators.conftest import perturbed

spec = importlib.util.spec_from_file_location("bench_unit_diversity", REPO / "bench" / "unit_diversity.py")
diversity = importlib.util.module_from_spec(spec)
spec.loader.exec_module(diversity)

TEXT = SHARED / "corpus" / "wiki.txt"


def _orthonormal_centred(rows: int, cols: int) -> torch.Tensor:
    """(rows, cols) with orthonormal columns of mean 0: cols equally used directions."""
    values = torch.randn(rows, cols, generator=torch.Generator().manual_seed(0), dtype=torch.float64)
    return torch.linalg.qr(values - values.mean(dim=0)).Q


def test_effective_rank_counts_equally_used_directions_and_ignores_copies_and_offsets():
    def rank(matrix):
        return diversity.effective_rank(diversity.singular_values(matrix))

    basis = _orthonormal_centred(200, 8)
    assert rank(basis) == pytest.approx(8, abs=1e-9)
    # copied columns add no direction, a constant offset is centred away
    assert rank(torch.cat([basis, basis], dim=1) + 3.0) == pytest.approx(8, abs=1e-9)
    # but a direction copied more often than the others carries more of the spectrum
    assert rank(torch.cat([basis, basis[:, :1]], dim=1)) < 8 - 1e-3
    assert diversity.numerical_rank(diversity.singular_values(torch.cat([basis, 2 * basis], dim=1))) == 8
    # one direction used 99 times as much as the other: close to 1, not 2
    assert 1.0 < rank(basis[:, :2] * torch.tensor([99.0, 1.0], dtype=torch.float64)) < 1.1
    constant = diversity.singular_values(torch.ones(10, 4))
    assert diversity.effective_rank(constant) == 0.0 and diversity.numerical_rank(constant) == 0


def _ligo_model(source, wider, tie: bool):
    """LiGO's generated model with its parameters moved off their init (as if trained)."""
    from ligo.models import load_config
    from ligo.operators.learned import LiGO, LiGOOptions, materialise
    from ligo.train.checkpoint import read_source_model

    config, state = read_source_model(source)
    return materialise(perturbed(LiGO(state, config, load_config(wider), LiGOOptions(tie=tie, tune_depth=False)),
                                 0.05))


def test_copies_and_tied_ligo_keep_the_source_width_and_random_units_spread_it(tmp_path, small_run):
    import ligo

    source = small_run("gpt2")  # 2 layers, hidden 64, ffn 256, trained
    wider = write_config(tmp_path, "gpt2", vocab_size=TRAINED_VOCAB, n_embd=128, n_head=4)
    ligo.grow(source, wider, depth="stack", width="double").save_pretrained(tmp_path / "double")
    ligo.grow(source, wider, depth="stack", width="double",
              width_split_noise=0.5).save_pretrained(tmp_path / "split")
    ligo.grow(source, wider, depth="stack", width="random").save_pretrained(tmp_path / "random")
    _ligo_model(source, wider, tie=True).save_pretrained(tmp_path / "tied")
    _ligo_model(source, wider, tie=False).save_pretrained(tmp_path / "untied")
    names = ("double", "split", "random", "tied", "untied")
    rows = diversity.main([str(source), *(str(tmp_path / name) for name in names),
                           "--text_file", str(TEXT), "--tokens", "1024", "--block_size", "64",
                           "--labels", "source", *names, "--output", str(tmp_path / "diversity.json")])
    source_row, double, split, random, tied, untied = rows
    assert double["hidden_size"] == 128 and double["ffn_size"] == 512 and double["tokens"] == 1024
    assert len(double["residual_effective_rank"]) == len(double["ffn_effective_rank"]) == 2
    # the exact doubling computes the source's function on copies: the same spectrum, the same
    # rank, per layer (the last state, after ln_f, is the source's halved: the tied head reads
    # both copies); splitting the copies' shares is exact too, its split lying in ln_f's scale
    assert double["residual_effective_rank"] == pytest.approx(source_row["residual_effective_rank"], rel=1e-6)
    for grown in (double, split):
        assert grown["residual_numerical_rank"] == source_row["residual_numerical_rank"]
        assert max(grown["residual_numerical_rank"]) <= 64
        assert grown["residual_effective_rank"][:-1] == pytest.approx(source_row["residual_effective_rank"][:-1],
                                                                      rel=1e-6)
        assert grown["ffn_effective_rank"] == pytest.approx(source_row["ffn_effective_rank"], rel=1e-6)
    assert split["residual_effective_rank"][-1] != pytest.approx(source_row["residual_effective_rank"][-1],
                                                                 rel=1e-6)
    # random new units are not in the source's span
    assert min(random["residual_numerical_rank"]) > 64
    assert min(random["ffn_effective_rank"]) > max(double["ffn_effective_rank"])
    # LiGO, tied: the stream before the final norm stays in the hidden expansion's 64 columns
    # (the last state is after GPT-2's ln_f); untied, each layer writes through its own
    assert tied["residual_numerical_rank"][0] <= 64 < untied["residual_numerical_rank"][0]
    assert [row["label"] for row in rows] == ["source", *names]
    assert json.loads((tmp_path / "diversity.json").read_text())["models"] == rows


def test_bad_input_is_refused(tmp_path, hf_model):
    for argv in ([str(tmp_path), "--text_file", str(TEXT)],  # no model there
                 [str(hf_model), "--text_file", str(tmp_path / "missing.txt")],
                 [str(hf_model), "--text_file", str(TEXT), "--tokens", "10"],  # fewer than a block
                 [str(hf_model), "--text_file", str(TEXT), "--block_size", "100000", "--tokens", "100000"],
                 [str(hf_model), "--text_file", str(TEXT), "--output", str(tmp_path)],
                 [str(hf_model), "--text_file", str(TEXT), "--labels", "a", "b"]):  # one per model
        with pytest.raises(SystemExit):
            diversity.main(argv)
