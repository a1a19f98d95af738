import pytest
import torch

from ligo.families import FAMILIES
from ligo.operators import grow
from ligo.operators.depth import DEPTH_OPERATORS, insert, stack
from ligo.roles import expected_shapes, to_roles
from tests.operators.conftest import FAMILY_NAMES, logits, tiny_config, trained_like_model


def layers_of(model, family):
    return to_roles(model.state_dict(), FAMILIES[family]).layers


@pytest.mark.parametrize("family", FAMILY_NAMES)
@pytest.mark.parametrize("depth", list(DEPTH_OPERATORS))
def test_grown_model_has_the_target_keys_and_shapes(family, depth):
    target = tiny_config(family, num_hidden_layers=5)
    grown = grow(trained_like_model(family), target, depth=depth)
    assert {k: v.shape for k, v in grown.state_dict().items()} == expected_shapes(target, FAMILIES[family])
    assert type(grown).__name__ == FAMILIES[family].model_class


@pytest.mark.parametrize("family", FAMILY_NAMES)
@pytest.mark.parametrize("depth", list(DEPTH_OPERATORS))
def test_growing_to_the_same_size_returns_the_input(family, depth):
    source = trained_like_model(family)
    same = grow(source, source.config, depth=depth)
    before, after = source.state_dict(), same.state_dict()
    assert all(torch.equal(before[k], after[k]) for k in before)


@pytest.mark.parametrize("family", FAMILY_NAMES)
def test_stack_3_to_6_puts_source_layer_i_at_i_and_3_plus_i(family):
    source = trained_like_model(family, tiny_config(family, num_hidden_layers=3))
    grown = grow(source, tiny_config(family, num_hidden_layers=6), depth="stack")
    small, big = layers_of(source, family), layers_of(grown, family)
    for i in range(3):
        for target in (i, 3 + i):
            assert all(torch.equal(big[target][r], small[i][r]) for r in small[i]), (i, target)
    assert not torch.equal(big[1]["q.weight"], big[2]["q.weight"])


def test_stack_to_a_non_multiple_and_interpolate_order():
    layers = [{"w": torch.tensor([float(i)])} for i in range(3)]
    assert [l["w"].item() for l in stack(layers, 7)] == [0, 1, 2, 0, 1, 2, 0]
    interpolated = DEPTH_OPERATORS["interpolate"](layers, 6)
    assert [l["w"].item() for l in interpolated] == [0, 0, 1, 1, 2, 2]
    assert [l["w"].item() for l in DEPTH_OPERATORS["interpolate"](layers, 5)] == [0, 0, 1, 1, 2]


def test_insert_places_new_layers_at_the_requested_indices():
    layers = [{"w": torch.tensor([float(i)])} for i in range(3)]
    copied = insert(layers, 5, positions=[0, 3])
    # new layer 0 copies the layer above it; new layer 3 copies the layer below (source 1... now at 2)
    assert [l["w"].item() for l in copied] == [0, 0, 1, 1, 2]
    fresh = [{"w": torch.tensor([100.0 + j])} for j in range(5)]
    random = insert(layers, 5, positions=[1, 4], init="random", fresh=fresh)
    assert [l["w"].item() for l in random] == [0, 101, 1, 2, 104]
    noisy = insert(layers, 4, positions=[2], init="copy_noise", noise_std=0.1,
                   generator=torch.Generator().manual_seed(0))
    assert noisy[2]["w"].item() != 1.0 and abs(noisy[2]["w"].item() - 1.0) < 0.5
    assert noisy[1]["w"].item() == 1.0  # the copied layer itself is untouched


def test_bad_insert_positions_are_named():
    layers = [{"w": torch.zeros(1)} for _ in range(2)]
    with pytest.raises(ValueError, match="inserts 2 layers, but 1 positions"):
        insert(layers, 4, positions=[1])
    with pytest.raises(ValueError, match="distinct target indices"):
        insert(layers, 4, positions=[1, 9])
    with pytest.raises(ValueError, match="copy, random or copy_noise"):
        insert(layers, 3, positions=[0], init="zeros")


@pytest.mark.parametrize("family", FAMILY_NAMES)
def test_identity_layers_preserve_gpt2_exactly_and_post_ln_families_only_approximately(family, token_ids):
    source = trained_like_model(family)
    grown = grow(source, tiny_config(family, num_hidden_layers=4), depth="identity",
                 depth_options={"positions": [1, 3]})
    error = (logits(source, token_ids) - logits(grown, token_ids)).abs().max().item()
    if FAMILIES[family].pre_layernorm:  # x + attn(ln(x)) with a zero output projection is x
        assert error < 1e-10
    else:  # post-LN: the new layer outputs LN(x), not x (see ligo/operators/depth.py)
        assert error > 1e-6


def test_package_level_grow_accepts_a_folder_and_a_config_path(tmp_path):
    import ligo
    from tests.conftest import write_config

    source = trained_like_model("bert")
    source.save_pretrained(tmp_path / "small")
    grown = ligo.grow(tmp_path / "small", write_config(tmp_path, "bert", num_hidden_layers=4))
    assert grown.config.num_hidden_layers == 4
    assert torch.equal(grown.bert.encoder.layer[2].output.dense.weight,
                       source.bert.encoder.layer[0].output.dense.weight)


def test_grow_is_reproducible_and_leaves_the_callers_rng_alone():
    source = trained_like_model("bert")
    target = tiny_config("bert", num_hidden_layers=4)
    options = dict(depth="insert", depth_options={"positions": [1, 3], "init": "random"}, seed=7)
    torch.manual_seed(123)
    expected_next = torch.rand(3)
    torch.manual_seed(123)
    a = grow(source, target, **options)
    assert torch.equal(torch.rand(3), expected_next)  # global RNG stream unchanged by grow
    b = grow(source, target, **options)
    assert all(torch.equal(x, y) for x, y in zip(a.state_dict().values(), b.state_dict().values(), strict=True))
