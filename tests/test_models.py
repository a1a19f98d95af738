"""Weights someone sends: a damaged file is named in one error, NaN/Inf weights are refused."""
import json
import math

import pytest
import torch
from safetensors.torch import load_file, save_file

from ligo.models import load_pretrained, read_model_dir


def test_a_truncated_weights_file_is_named(hf_model):
    from transformers import AutoModelForMaskedLM

    weights = hf_model / "model.safetensors"
    weights.write_bytes(weights.read_bytes()[: weights.stat().st_size // 2])
    with pytest.raises(ValueError, match=r"model\.safetensors cannot be read"):
        read_model_dir(hf_model)
    with pytest.raises(ValueError, match=r"model\.safetensors.*cannot be loaded"):
        load_pretrained(AutoModelForMaskedLM, hf_model)


def test_nan_weights_are_refused(hf_model):
    from transformers import AutoModelForMaskedLM

    weights = hf_model / "model.safetensors"
    state = load_file(weights)
    key = next(k for k in state if k.endswith("attention.self.query.weight"))
    state[key][0, 0] = float("nan")
    save_file(state, weights, metadata={"format": "pt"})
    with pytest.raises(ValueError, match=f"NaN or Inf in 1 tensors .{key}"):
        read_model_dir(hf_model)
    with pytest.raises(ValueError, match="NaN or Inf"):
        load_pretrained(AutoModelForMaskedLM, hf_model)


def test_a_damaged_or_nan_operator_is_refused(tmp_path):
    from ligo.fileio import sha256_file
    from ligo.operators.learned import DESCRIPTION_FILE, OPERATOR_FILE, load_operator
    from tests.operators.conftest import saved_operator

    op = saved_operator("bert", tmp_path / "op")
    saved = torch.load(op / OPERATOR_FILE, weights_only=True)
    name = next(k for k, v in saved.items() if v.is_floating_point())
    saved[name] = saved[name].clone().fill_(float("inf"))
    torch.save(saved, op / OPERATOR_FILE)  # changed bytes, old digest
    with pytest.raises(ValueError, match="does not match the SHA-256"):
        load_operator(op)
    description = json.loads((op / DESCRIPTION_FILE).read_text())
    description["sha256"] = sha256_file(op / OPERATOR_FILE)  # made to match again
    (op / DESCRIPTION_FILE).write_text(json.dumps(description))
    with pytest.raises(ValueError, match="NaN or Inf"):
        load_operator(op)


def test_sinusoidal_positions_are_vaswanis_table_at_the_given_std():
    from ligo.models import sinusoidal_positions

    table = sinusoidal_positions(50, 8, std=0.02)
    raw = torch.zeros(50, 8, dtype=torch.float64)
    for p in range(50):
        for i in range(4):
            raw[p, 2 * i] = math.sin(p / 10000 ** (2 * i / 8))
            raw[p, 2 * i + 1] = math.cos(p / 10000 ** (2 * i / 8))
    torch.testing.assert_close(table, raw * (0.02 / raw.std()), rtol=1e-12, atol=1e-15)
    assert table.std().item() == pytest.approx(0.02, rel=1e-12)
    assert sinusoidal_positions(5, 7, std=1.0).shape == (5, 7)  # an odd width: last is a sine


@pytest.mark.parametrize("family", ["bert", "roberta", "gpt2"])
def test_sinusoidal_init_fills_the_usable_rows_of_the_position_table(family):
    from ligo.families import FAMILIES
    from ligo.models import build_model, init_position_table, load_config, sinusoidal_positions
    from tests.conftest import CONFIGS

    config = load_config(CONFIGS / f"{family}-tiny.json")
    torch.manual_seed(0)
    model = build_model(config, FAMILIES[family])
    key = FAMILIES[family].keys["embed.position"].key
    before = model.get_parameter(key).detach().clone()
    init_position_table(model, FAMILIES[family], "random")
    assert torch.equal(model.get_parameter(key), before)  # random: the family's own init
    init_position_table(model, FAMILIES[family], "sinusoidal")
    table, offset = model.get_parameter(key), FAMILIES[family].position_offset
    expected = sinusoidal_positions(table.shape[0] - offset, table.shape[1], config.initializer_range)
    torch.testing.assert_close(table[offset:].double(), expected, rtol=1e-6, atol=1e-9)
    assert torch.equal(table[:offset], before[:offset])  # RoBERTa's padding rows stay
    assert table.requires_grad  # still a learned table


def test_a_model_without_a_position_table_refuses_sinusoidal_init():
    from ligo.families import FAMILIES
    from ligo.models import check_position_init

    check_position_init(FAMILIES["llama"], "random")  # the family's own init: nothing to refuse
    with pytest.raises(ValueError, match="no learned position table"):
        check_position_init(FAMILIES["llama"], "sinusoidal")
