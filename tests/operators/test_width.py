import pytest
import torch

from ligo.families import FAMILIES
from ligo.operators import grow
from ligo.operators.width import WIDTH_OPERATORS
from ligo.roles import expected_shapes, to_roles
from tests.operators.conftest import FAMILY_NAMES, logits, tiny_config, trained_like_model, wide_config

# (operator, which growth) -> exact? ; "double" = hidden/ffn/heads all x2, "ffn" = FFN only,
# "uneven" = hidden 64 -> 96 (3 heads), not a multiple
EXACT = {
    ("double", "double"): True, ("bert2bert_fpi", "double"): True, ("net2net", "double"): False,
    ("bert2bert_aki", "double"): False, ("zero", "double"): False, ("random", "double"): False,
    ("net2net", "ffn"): True, ("bert2bert_fpi", "ffn"): True, ("zero", "ffn"): True,
    ("bert2bert_aki", "ffn"): False, ("random", "ffn"): False,
    ("bert2bert_fpi", "uneven"): False,
}
TARGETS = {"double": dict(hidden=128, heads=4, ffn=512), "ffn": dict(hidden=64, heads=2, ffn=384),
           "uneven": dict(hidden=96, heads=3, ffn=384)}


@pytest.mark.parametrize("family", FAMILY_NAMES)
@pytest.mark.parametrize("width", list(WIDTH_OPERATORS))
def test_grown_model_has_the_target_keys_and_shapes_and_keeps_the_source_block(family, width):
    source = trained_like_model(family)
    target = wide_config(family, layers=3)
    grown = grow(source, target, depth="stack", width=width)
    assert {k: v.shape for k, v in grown.state_dict().items()} == expected_shapes(target, FAMILIES[family])
    # the vocabulary is never expanded and tied embeddings stay tied
    assert grown.get_output_embeddings().weight is grown.get_input_embeddings().weight
    small = to_roles(source.state_dict(), FAMILIES[family])
    big = to_roles(grown.state_dict(), FAMILIES[family])
    word_small, word_big = small.model["embed.word"], big.model["embed.word"]
    if width != "zero":  # zero growth keeps the source block too; checked below
        torch.testing.assert_close(word_big[:, :64], word_small)


@pytest.mark.parametrize("family", FAMILY_NAMES)
@pytest.mark.parametrize("width, growth", list(EXACT))
def test_function_preservation_claims(family, width, growth, token_ids):
    source = trained_like_model(family)
    grown = grow(source, wide_config(family, **TARGETS[growth]), width=width)
    error = (logits(source, token_ids) - logits(grown, token_ids)).abs().max().item()
    if EXACT[(width, growth)]:
        assert error < 1e-10, error
    else:
        assert error > 1e-4, error


@pytest.mark.parametrize("family", FAMILY_NAMES)
def test_width_and_depth_compose_exactly_for_gpt2_identity_plus_double(family, token_ids):
    source = trained_like_model(family)
    grown = grow(source, wide_config(family, layers=4), depth="identity", width="double")
    error = (logits(source, token_ids) - logits(grown, token_ids)).abs().max().item()
    assert (error < 1e-10) == FAMILIES[family].pre_layernorm, error


@pytest.mark.parametrize("family", FAMILY_NAMES)
def test_double_is_staged_trainings_block_diagonal_duplication(family):
    source = trained_like_model(family)
    grown = grow(source, wide_config(family), width="double")
    small = to_roles(source.state_dict(), FAMILIES[family])
    big = to_roles(grown.state_dict(), FAMILIES[family])
    for role in ("ffn_in.weight", "q.weight", "attn_out.weight"):
        w = small.layers[0][role]
        expected = torch.block_diag(w, w)  # [[W, 0], [0, W]]
        torch.testing.assert_close(big.layers[0][role], expected, rtol=0, atol=0)
    torch.testing.assert_close(big.layers[0]["ln_ffn.weight"], small.layers[0]["ln_ffn.weight"].repeat(2))
    torch.testing.assert_close(big.model["embed.word"], small.model["embed.word"].repeat(1, 2))
    last_ln = "final_ln.weight" if family == "gpt2" else "head.ln.weight"
    torch.testing.assert_close(big.model[last_ln], small.model[last_ln].repeat(2) / 2)


def test_zero_growth_gives_new_units_zero_outgoing_weights():
    source = trained_like_model("bert")
    grown = grow(source, wide_config("bert", hidden=64, heads=2, ffn=384), width="zero")
    small = to_roles(source.state_dict(), FAMILIES["bert"]).layers[0]
    big = to_roles(grown.state_dict(), FAMILIES["bert"]).layers[0]
    assert torch.equal(big["ffn_out.weight"][:, 256:], torch.zeros(64, 128, dtype=torch.float64))
    assert big["ffn_in.weight"][256:].abs().sum() > 0  # incoming weights: fresh init
    assert torch.equal(big["ffn_in.weight"][:256], small["ffn_in.weight"])


def test_aki_takes_new_units_from_the_next_layer():
    source = trained_like_model("bert")
    grown = grow(source, wide_config("bert", hidden=64, heads=2, ffn=384), width="bert2bert_aki")
    small = to_roles(source.state_dict(), FAMILIES["bert"]).layers
    big = to_roles(grown.state_dict(), FAMILIES["bert"]).layers
    new_rows = big[0]["ffn_in.weight"][256:]
    assert torch.equal(big[0]["ffn_in.weight"][:256], small[0]["ffn_in.weight"])
    # each new row is a row of layer 1's FFN-in (the next layer), not of layer 0's
    assert all(any(torch.equal(row, other) for other in small[1]["ffn_in.weight"]) for row in new_rows)
    assert not any(torch.equal(new_rows[0], other) for other in small[0]["ffn_in.weight"])


@pytest.mark.parametrize("change, message", [
    (dict(num_hidden_layers=1), "target is smaller than the source: layers 2 -> 1"),
    (dict(hidden_size=32, num_attention_heads=1), "target is smaller"),
    (dict(hidden_size=128, num_attention_heads=2), "head size must stay the same"),
    (dict(vocab_size=1000), "vocabulary is never grown"),
])
def test_bad_targets_are_named(change, message):
    with pytest.raises(ValueError, match=message):
        grow(trained_like_model("bert"), tiny_config("bert", **change), width="bert2bert_fpi")


def test_other_bad_requests_are_named():
    source = trained_like_model("bert")
    with pytest.raises(ValueError, match="cannot grow a bert model into a gpt2 config"):
        grow(source, tiny_config("gpt2", num_hidden_layers=4))
    with pytest.raises(ValueError, match="choose a width scheme"):
        grow(source, wide_config("bert"))
    with pytest.raises(ValueError, match="unknown width scheme 'wider'"):
        grow(source, wide_config("bert"), width="wider")
    with pytest.raises(ValueError, match="unknown depth scheme 'tower'"):
        grow(source, tiny_config("bert", num_hidden_layers=4), depth="tower")
    with pytest.raises(ValueError, match="`double` doubles every width, but hidden goes 64 -> 96"):
        grow(source, wide_config("bert", hidden=96, heads=3, ffn=512), width="double")


@pytest.mark.parametrize("width", list(WIDTH_OPERATORS))
def test_every_width_scheme_leaves_a_same_size_model_unchanged(width):
    source = trained_like_model("gpt2")
    same = grow(source, source.config, width=width)
    assert all(torch.equal(a, b) for a, b in zip(source.state_dict().values(),
                                                 same.state_dict().values(), strict=True))


def test_grow_accepts_a_state_dict_with_its_config(token_ids):
    source = trained_like_model("roberta")
    grown = grow(source.state_dict(), wide_config("roberta"), width="double",
                 small_config=source.config)
    torch.testing.assert_close(logits(grown, token_ids), logits(source, token_ids), rtol=0, atol=1e-10)
    with pytest.raises(ValueError, match="needs its config"):
        grow(source.state_dict(), wide_config("roberta"), width="double")


def test_net2net_noise_touches_only_entries_of_new_units():
    source = trained_like_model("bert")
    target = wide_config("bert", hidden=64, heads=2, ffn=384)
    plain = to_roles(grow(source, target, width="net2net").state_dict(), FAMILIES["bert"]).layers[0]
    noisy = to_roles(grow(source, target, width="net2net", width_options={"noise_std": 0.01})
                     .state_dict(), FAMILIES["bert"]).layers[0]
    diff = (noisy["ffn_in.weight"] - plain["ffn_in.weight"]).abs()
    assert diff[:256].max() == 0 and diff[256:].min() > 0  # old rows untouched, new rows noisy
    out_diff = (noisy["ffn_out.weight"] - plain["ffn_out.weight"]).abs()
    assert out_diff[:, :256].max() == 0 and out_diff[:, 256:].max() > 0
