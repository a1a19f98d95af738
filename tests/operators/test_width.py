import pytest
import torch

from ligo.families import FAMILIES
from ligo.operators import grow
from ligo.operators.width import COPYING, WIDTH_OPERATORS, split_shares
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


def test_split_shares_of_a_units_copies_sum_to_one_and_differ():
    index = torch.tensor([0, 1, 2, 0, 0, 1])  # unit 0 copied 3x, unit 1 twice, unit 2 once
    counts = torch.bincount(index)
    shares = split_shares((4, 6), 1, index, counts, 0.2, torch.Generator().manual_seed(0),
                          torch.float64)
    for unit in range(3):
        torch.testing.assert_close(shares[:, index == unit].sum(dim=1), torch.ones(4, dtype=torch.float64),
                                   rtol=0, atol=1e-15)
    assert (shares[:, 2] == 1).all()  # an uncopied unit keeps its whole weight
    assert (shares[:, [0, 3, 4]] - 1 / 3).abs().min() > 0  # the copies' shares are not equal
    assert not torch.equal(shares[0], shares[1])  # per entry, not per unit


# every growth that is exact with equal shares stays exact with random ones
SPLIT_EXACT = [(width, growth) for (width, growth), exact in EXACT.items() if exact and width in COPYING]


@pytest.mark.parametrize("family", FAMILY_NAMES)
@pytest.mark.parametrize("width, growth", SPLIT_EXACT)
def test_split_noise_keeps_exact_growth_exact(family, width, growth, token_ids):
    source = trained_like_model(family)
    target = wide_config(family, **TARGETS[growth])
    plain = grow(source, target, width=width).state_dict()
    split = grow(source, target, width=width, width_options={"split_noise": 0.3})
    error = (logits(source, token_ids) - logits(split, token_ids)).abs().max().item()
    assert error < 1e-10, error
    changed = [key for key, value in split.state_dict().items() if not torch.equal(value, plain[key])]
    assert changed  # ... with other weights than the equal split


def _twin_gap(model, source_rows: int) -> float:
    """Largest distance between a copied FFN unit's incoming weights and its original's
    (layer 0): 0 while the copies are twins."""
    rows = to_roles(model.state_dict(), FAMILIES["bert"]).layers[0]["ffn_in.weight"]
    gaps = torch.cdist(rows[source_rows:], rows[:source_rows],
                       compute_mode="donot_use_mm_for_euclid_dist").min(dim=1).values
    return gaps.max().item()


def _train(model, steps: int = 3):
    """A few SGD steps of masked LM on random tokens, no dropout (as the benchmark presets)."""
    torch.manual_seed(0)
    optimizer = torch.optim.SGD(model.parameters(), lr=0.5)
    model.eval()  # dropout off; gradients still flow
    for _ in range(steps):
        ids = torch.randint(0, model.config.vocab_size, (4, 16))
        loss = model(input_ids=ids, labels=ids).loss
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    return model


def test_copied_units_stay_twins_in_training_unless_their_shares_are_split():
    """Why split_noise exists: FPI's copies get the same gradients as their originals and never
    separate without dropout; with split shares they do, from the first step."""
    source = trained_like_model("bert")
    target = wide_config("bert", **TARGETS["ffn"])  # 256 -> 384 FFN units, 128 of them copies
    plain = grow(source, target, width="bert2bert_fpi")
    split = grow(source, target, width="bert2bert_fpi", width_options={"split_noise": 0.1})
    assert _twin_gap(plain, 256) == 0 and _twin_gap(split, 256) == 0  # copies at growth
    assert _twin_gap(_train(plain), 256) < 1e-12
    assert _twin_gap(_train(split), 256) > 1e-4


def test_split_noise_on_adam_moments_is_ignored():
    """Moments are mapped like the values (same seed, same maps) but never split."""
    from ligo.operators import grow_roles

    source = to_roles(trained_like_model("bert").state_dict(), FAMILIES["bert"]).map(lambda r, t: t.abs())
    target = wide_config("bert", **TARGETS["double"])
    small = tiny_config("bert")
    equal = grow_roles(source, small, target, width="bert2bert_fpi", moment_power=2)
    split = grow_roles(source, small, target, width="bert2bert_fpi", moment_power=2,
                       width_options={"split_noise": 0.3})
    for plain_layer, split_layer in zip(equal.layers, split.layers, strict=True):
        for role, tensor in plain_layer.items():
            assert torch.equal(tensor, split_layer[role]), role


@pytest.mark.parametrize("width, options, message", [
    ("zero", {"split_noise": 0.1}, "copies none"),
    ("random", {"split_noise": 0.1}, "copies none"),
    ("bert2bert_fpi", {"noise_std": 0.01}, "use width_split_noise"),
])
def test_noise_a_width_operator_would_ignore_is_an_error(width, options, message):
    with pytest.raises(ValueError, match=message):
        grow(trained_like_model("bert"), wide_config("bert", **TARGETS["double"]), width=width,
             width_options=options)


def test_the_public_api_splits_as_the_operator_does():
    import ligo

    source = trained_like_model("bert")
    target = wide_config("bert", **TARGETS["double"])
    api = ligo.grow(source, target, width="bert2bert_fpi", width_split_noise=0.3).state_dict()
    direct = grow(source, target, width="bert2bert_fpi", width_options={"split_noise": 0.3}).state_dict()
    assert all(torch.equal(value, direct[key]) for key, value in api.items())
