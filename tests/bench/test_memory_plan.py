"""bench/memory_plan.py: the computed memory per GPU follows its own formula."""
import importlib.util

import pytest

from ligo.models import load_config
from tests.conftest import CONFIGS, REPO

spec = importlib.util.spec_from_file_location("memory_plan", REPO / "bench" / "memory_plan.py")
memory_plan = importlib.util.module_from_spec(spec)
spec.loader.exec_module(memory_plan)


def test_model_states_are_16_bytes_per_parameter_and_fsdp_divides_them():
    config = load_config(CONFIGS / "bert-12L-768H.json")
    one, eight = (memory_plan.plan(config, 128, 8, gpus) for gpus in (1, 8))
    assert one["parameters"] == pytest.approx(110e6, rel=0.01)
    states = 16 * one["parameters"] / 2 ** 30
    assert one["ddp"] - eight["ddp"] == 0  # DDP does not depend on the GPU count
    assert one["fsdp"] - eight["fsdp"] == pytest.approx(states - states / 8)
    assert eight["fsdp_ac"] < eight["fsdp"] < eight["ddp"]


def test_gpt2_large_sized_config_has_gpt2_larges_parameter_count():
    assert memory_plan.parameters(load_config(CONFIGS / "gpt2-36L-1280H.json")) == pytest.approx(
        774e6, rel=0.01)


def test_tensor_parallel_column_reduces_to_fsdp_at_tp_1_and_shrinks_with_tp():
    config = load_config(CONFIGS / "gpt2-36L-1280H.json")
    one, two, four = (memory_plan.plan(config, 1024, 8, 8, tp) for tp in (1, 2, 4))
    assert one["fsdp_tp_ac"] == pytest.approx(one["fsdp_ac"])
    assert four["fsdp_tp_ac"] < two["fsdp_tp_ac"] < one["fsdp_tp_ac"]
