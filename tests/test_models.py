"""Weights someone sends: a damaged file is named in one error, NaN/Inf weights are refused."""
import json

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
