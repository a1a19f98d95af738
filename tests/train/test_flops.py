import pytest
import transformers

from ligo.models import load_config
from ligo.train.flops import forward_flops_per_token, training_flops_per_token
from tests.conftest import CONFIGS


def test_bert_tiny_matches_a_hand_count():
    config = load_config(CONFIGS / "bert-tiny.json")  # L=2, H=64, F=256, V=30522
    # per layer: QKVO 8*64*64 = 32768; scores + values 4*128*64 = 32768; FFN 4*64*256 = 65536
    layers = 2 * (32768 + 32768 + 65536)
    # MLM head on 15% of tokens: transform 2*64*64 = 8192, decoder 2*64*30522 = 3906816
    head = 0.15 * (8192 + 3906816)
    assert forward_flops_per_token(config, 128, 0.15, head_transform=True) == pytest.approx(layers + head)
    assert training_flops_per_token(config, 128, 0.15, True) == pytest.approx(3 * (layers + head))


def test_gpt2_uses_4h_ffn_and_full_head():
    config = load_config(CONFIGS / "gpt2-tiny.json")  # n_inner null -> 4H
    per_layer = 8 * 64 * 64 + 4 * 256 * 64 + 4 * 64 * 256
    assert forward_flops_per_token(config, 256) == pytest.approx(2 * per_layer + 2 * 64 * 50257)


def test_bert_base_is_close_to_the_6n_rule():
    config = transformers.BertConfig()  # bert-base: 85M non-embedding parameters
    non_embedding = 12 * (4 * 768 * 768 + 2 * 768 * 3072)
    flops = training_flops_per_token(config, seq_len=128, head_fraction=0.0)
    assert flops == pytest.approx(6 * non_embedding, rel=0.05)  # attention adds ~3% at T=128


def test_llama_counts_grouped_key_value_projections_and_the_swiglu_gate():
    config = load_config(CONFIGS / "llama-tiny.json")  # H=64, 4 q / 2 kv heads of 16, F=176
    per_layer = (2 * 2 * 64 * 64  # q and o
                 + 2 * 2 * 64 * 32  # k and v: 2 heads x 16
                 + 2 * 2 * 128 * 64  # scores and values at T=128
                 + 2 * 3 * 64 * 176)  # gate, up, down
    assert forward_flops_per_token(config, 128) == pytest.approx(2 * per_layer + 2 * 64 * 50257)
