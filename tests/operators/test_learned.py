"""LiGO (ligo.operators.learned): what it generates, where gradients go, saving and loading."""
import pytest
import torch

from ligo.families import FAMILIES
from ligo.operators import grow_state
from ligo.operators.learned import (
    DEPTH_INITS,
    WIDTH_INITS,
    LiGO,
    LiGOOptions,
    depth_init,
    load_operator,
    materialise,
    save_operator,
    width_init,
)
from ligo.roles import to_roles
from ligo.train.growth import LiGOLoss
from ligo.train.objective import LanguageModelingLoss
from tests.operators.conftest import FAMILY_NAMES, perturbed, tiny_config, trained_like_model, wide_config

DEPTH_ONLY = LiGOOptions(tune_width=False, depth_init="stackbert")


def small_state(family, layers=2):
    model = trained_like_model(family, tiny_config(family, num_hidden_layers=layers))
    return model, {k: v.detach() for k, v in model.state_dict().items()}


def assert_equal_states(a, b):
    assert a.keys() == b.keys()
    for key in a:
        assert torch.equal(a[key], b[key]), key


@pytest.mark.parametrize("family", FAMILY_NAMES)
def test_stackbert_init_without_noise_generates_exactly_the_stack_operator(family):
    model, state = small_state(family)
    target = tiny_config(family, num_hidden_layers=4)
    generated = LiGO(state, model.config, target, DEPTH_ONLY)()
    assert_equal_states(generated, grow_state(state, model.config, target, depth="stack"))


@pytest.mark.parametrize("family", FAMILY_NAMES)
@pytest.mark.parametrize("form", ["structured", "full"])
def test_identity_prefix_width_with_zero_new_rows_is_stack_padded_with_zeros(family, form):
    model, state = small_state(family)
    wide = wide_config(family, layers=4)
    operator = LiGO(state, model.config, wide, LiGOOptions(depth_init="stackbert", width_form=form))
    with torch.no_grad():
        for expansion in operator.width.parameters():
            old = expansion.shape[1]
            expansion[-(expansion.shape[0] - (old if form == "full" else 0)):] = 0.0
    # compared role by role: GPT-2 fuses q, k and v into one tensor
    generated = to_roles(operator(), FAMILIES[family])
    stacked = to_roles(grow_state(state, model.config, tiny_config(family, num_hidden_layers=4),
                                  depth="stack"), FAMILIES[family])
    pairs = [(r, generated.model[r], t) for r, t in stacked.model.items()] + [
        (f"{l}.{r}", generated.layers[l][r], t) for l, layer in enumerate(stacked.layers)
        for r, t in layer.items()]
    for name, big, small in pairs:
        block = tuple(slice(0, n) for n in small.shape)
        assert torch.equal(big[block], small), name
        rest = big.clone()
        rest[block] = 0.0
        assert not rest.any(), f"{name}: entries outside the source block are not zero"


@pytest.mark.parametrize("family", FAMILY_NAMES)
@pytest.mark.parametrize("layers", [(2, 4), (2, 3), (3, 5)])
def test_interlace_init_generates_exactly_the_interpolate_operator(family, layers):
    model, state = small_state(family, layers[0])
    target = tiny_config(family, num_hidden_layers=layers[1])
    options = LiGOOptions(tune_width=False, depth_init="interlace")
    assert_equal_states(LiGO(state, model.config, target, options)(),
                        grow_state(state, model.config, target, depth="interpolate"))


@pytest.mark.parametrize("family", FAMILY_NAMES)
@pytest.mark.parametrize("fixed", [("stack", "bert2bert_aki"), ("interpolate", "double"),
                                   ("insert", "net2net"), ("stack", "zero")])
def test_init_from_a_fixed_operator_starts_where_that_operator_ends(family, fixed):
    model, state = small_state(family)
    wide = wide_config(family, layers=4)
    operator = LiGO(state, model.config, wide, LiGOOptions(init_from=fixed, seed=3))
    expected = grow_state(state, model.config, wide, depth=fixed[0], width=fixed[1], seed=3)
    generated = operator()
    for key in expected:  # own + (fixed - own): one rounding in float64
        torch.testing.assert_close(generated[key], expected[key], rtol=0, atol=1e-14, msg=key)
    # and from there LiGO learns: the offset is constant, the expansions move the weights
    sum(value.sum() for value in generated.values()).backward()
    assert all(p.grad is not None for p in operator.width.parameters())


@pytest.mark.parametrize("family", FAMILY_NAMES)
@pytest.mark.parametrize("fixed", [("stack", "bert2bert_aki"), ("interpolate", "bert2bert_fpi")])
def test_init_from_a_split_fixed_operator_starts_where_that_split_operator_ends(family, fixed):
    """init_split_noise is the fixed operator's width_split_noise: the operator starts at the
    split weights (not at the equal copies), drawn with the same seed."""
    model, state = small_state(family)
    wide = wide_config(family, layers=4)
    generated = LiGO(state, model.config, wide, LiGOOptions(init_from=fixed, init_split_noise=0.5,
                                                              seed=3))()
    split = grow_state(state, model.config, wide, depth=fixed[0], width=fixed[1], seed=3,
                       width_options={"split_noise": 0.5})
    equal = grow_state(state, model.config, wide, depth=fixed[0], width=fixed[1], seed=3)
    for key in split:
        torch.testing.assert_close(generated[key], split[key], rtol=0, atol=1e-14, msg=key)
    assert any(not torch.allclose(split[k], equal[k], rtol=0, atol=1e-6) for k in split)
    with pytest.raises(ValueError, match="needs init_from"):
        LiGOOptions(init_split_noise=0.5)
    with pytest.raises(ValueError, match=">= 0"):
        LiGOOptions(init_from=fixed, init_split_noise=-0.1)
    with pytest.raises(ValueError, match="copies none"):  # a width operator without copies
        LiGO(state, model.config, wide, LiGOOptions(init_from=("stack", "zero"), init_split_noise=0.5))


@pytest.mark.parametrize("family", FAMILY_NAMES)
def test_a_residual_only_operator_trains_the_fixed_operators_model_as_ordinary_training_does(family):
    """bench/ligo_ablation.py's control (double_trained_25steps): no width or depth learned, a
    residual from 0 on top of a fixed operator's weights. Step after step its gradient is the
    model's own, so its steps move the generated weights exactly as steps on that model's
    parameters do. (Plain SGD here: Adam would too, but it blows the 1e-17 rounding noise of a
    gradient that is exactly zero in theory, a key bias's, up to a full step of either sign.)"""
    model, state = small_state(family)
    wide = wide_config(family, layers=4)
    operator = LiGO(state, model.config, wide, LiGOOptions(
        tune_width=False, tune_depth=False, tune_residual=True, residual_noise=0.0,
        init_from=("stack", "bert2bert_fpi"), init_split_noise=0.5, seed=3))
    assert {n.split(".")[0] for n, p in operator.named_parameters() if p.requires_grad} == {"residual"}
    large = materialise(operator).train()
    plain = LanguageModelingLoss(large, FAMILIES[family])
    functional = LiGOLoss(operator).train()
    optimisers = [torch.optim.SGD([p for p in m.parameters() if p.requires_grad], lr=0.1)
                  for m in (operator, large)]
    for step in range(3):
        ids = torch.randint(5, 1000, (2, 16), generator=torch.Generator().manual_seed(step))
        labels = torch.where(torch.rand(ids.shape, generator=torch.Generator().manual_seed(10 + step))
                             < 0.3, ids, -100)
        for loss, optimiser in zip((functional, plain), optimisers, strict=True):
            optimiser.zero_grad()
            torch.manual_seed(100 + step)  # the same dropout masks: one module tree, one order
            loss(ids, labels)["loss_sum"].backward()
            optimiser.step()
    generated, trained = operator(), large.state_dict()
    for key, value in generated.items():
        torch.testing.assert_close(value, trained[key], rtol=0, atol=1e-12, msg=key)
    start = grow_state(state, model.config, wide, depth="stack", width="bert2bert_fpi", seed=3,
                       width_options={"split_noise": 0.5})
    assert any(not torch.allclose(generated[k], start[k]) for k in start)  # it did train


@pytest.mark.parametrize("family", FAMILY_NAMES)
def test_gradients_reach_only_the_operator_parameters(family):
    model, state = small_state(family)
    operator = LiGO(state, model.config, wide_config(family, layers=4), LiGOOptions())
    trainable = {name for name, p in operator.named_parameters() if p.requires_grad}
    assert trainable and all(n.startswith(("width.", "depth.")) for n in trainable)
    assert all(not b.requires_grad for b in operator.small.buffers())
    ids = torch.randint(5, 1000, (2, 16), generator=torch.Generator().manual_seed(0))
    loss = LiGOLoss(operator).train()
    loss(ids, ids)["loss_sum"].backward()
    assert all(operator.get_parameter(n).grad is not None for n in trainable)
    assert [n for n, _ in loss.named_parameters()] == [f"operator.{n}" for n, _ in
                                                       operator.named_parameters()]
    assert not any(t.is_meta for t in loss.state_dict().values())  # the skeleton is hidden

    tuned = LiGO(state, model.config, wide_config(family, layers=4),
                 LiGOOptions(tune_small_model=True))
    assert any(n.startswith("small.") for n, _ in tuned.named_parameters())


@pytest.mark.parametrize("family", FAMILY_NAMES)
@pytest.mark.parametrize("options", [LiGOOptions(width_form="structured"), LiGOOptions(tie=False),
                                     LiGOOptions(tune_residual=True, depth_init="rand",
                                                 width_init="sel_noisy")])
def test_materialised_model_loss_equals_the_functional_loss(family, options):
    model, state = small_state(family)
    operator = perturbed(LiGO(state, model.config, wide_config(family, layers=3), options), 0.01)
    ids = torch.randint(5, 1000, (2, 16), generator=torch.Generator().manual_seed(1))
    labels = torch.where(torch.rand(ids.shape, generator=torch.Generator().manual_seed(2)) < 0.3,
                         ids, -100)
    functional = LiGOLoss(operator).eval()(ids, labels)
    large = materialise(operator).eval()
    plain = LanguageModelingLoss(large, FAMILIES[family]).eval()(ids, labels)
    torch.testing.assert_close(functional["loss_sum"], plain["loss_sum"], rtol=1e-12, atol=0)
    tied = FAMILIES[family].tied
    state_out = large.state_dict()
    for key, role in tied.items():  # tied input/output embeddings stay tied
        assert state_out[key].data_ptr() == state_out[FAMILIES[family].keys[role].key].data_ptr()


def test_tying_shares_one_residual_expansion_and_untying_gives_each_module_its_own():
    model, state = small_state("bert")
    wide = wide_config("bert", layers=3)
    tied = dict(LiGO(state, model.config, wide, LiGOOptions()).width.named_parameters())
    assert set(tied) == {"hidden"} | {f"l{l}_{m}" for l in range(3) for m in ("q", "k", "v", "ffn")}
    untied = dict(LiGO(state, model.config, wide, LiGOOptions(tie=False)).width.named_parameters())
    assert "hidden" not in untied and "l2_attn_out_in" in untied
    assert "model_embed_word_out" in untied and len(untied) > len(tied)


def _residual_writes(state, family) -> torch.Tensor:
    """(hidden, ...): every vector the model adds into its residual stream's hidden axis: the
    embedding tables' rows, each layer's attention-out and FFN-out columns and biases."""
    roles = to_roles(state, FAMILIES[family])
    writes = [roles.model[r].t() for r in ("embed.word", "embed.position", "embed.token_type")
              if r in roles.model]
    for layer in roles.layers:
        writes += [layer[r] if layer[r].dim() == 2 else layer[r][:, None]
                   for r in ("attn_out.weight", "ffn_out.weight", "attn_out.bias", "ffn_out.bias") if r in layer]
    return torch.cat(writes, dim=1)


@pytest.mark.parametrize("family", FAMILY_NAMES)
def test_tied_width_keeps_every_residual_write_in_the_hidden_expansions_span(family):
    """Why LiGO's operator cannot widen the residual stream: tied, every write into it goes
    through the one hidden expansion (D2 x D1), so, whatever the operator learns, the writes
    span at most the source's D1 dimensions (in a pre-norm decoder the stream itself stays
    there); untied, each module writes through its own expansion."""
    model, state = small_state(family)
    wide = wide_config(family, layers=3)
    ranks = {}
    for tie in (True, False):
        operator = perturbed(LiGO(state, model.config, wide, LiGOOptions(tie=tie)), 0.05)
        with torch.no_grad():
            writes = _residual_writes(operator(), family)  # float64, as the source
        assert writes.shape[0] == wide.hidden_size == 2 * model.config.hidden_size
        ranks[tie] = int(torch.linalg.matrix_rank(writes))
    assert ranks[True] == model.config.hidden_size < ranks[False] == wide.hidden_size


@pytest.mark.parametrize("family, confined", [("gpt2", True), ("llama", True), ("bert", False)])
def test_tied_width_confines_the_stream_of_a_pre_norm_model_not_of_a_post_norm_one(family, confined):
    """The writes' span (above) is the stream's in a pre-norm decoder: nothing else enters it.
    A post-norm model (BERT) puts the stream itself through LayerNorm, whose elementwise scale
    maps the D1 span to another one, and the next layer's writes add theirs: after the first
    layer the stream spans more than D1 dimensions (bench/unit_diversity.py measures both)."""
    model, state = small_state(family)
    wide = wide_config(family, layers=3)
    operator = perturbed(LiGO(state, model.config, wide, LiGOOptions()), 0.05)
    torch.manual_seed(1)
    ids = torch.randint(0, model.config.vocab_size, (4, 96))  # 384 tokens, more than the 128 units
    with torch.no_grad():
        states = materialise(operator).eval()(input_ids=ids, output_hidden_states=True).hidden_states
    # HF's last state is after a decoder's final norm: the layers' own outputs are the others
    ranks = [int(torch.linalg.matrix_rank(s.reshape(-1, wide.hidden_size), rtol=1e-9))
             for s in states[1:-1]]
    assert len(ranks) == 2 and states[1].dtype == torch.float64
    if confined:
        assert ranks == [model.config.hidden_size] * 2
    else:
        assert min(ranks) > model.config.hidden_size + 1


def test_eval_mode_generates_the_weights_once_and_training_afresh():
    model, state = small_state("bert")
    operator = LiGO(state, model.config, wide_config("bert", layers=3), LiGOOptions())
    loss = LiGOLoss(operator).eval()
    with torch.no_grad():
        first = loss.weights()
        assert loss.weights() is first
    loss.train()
    assert loss.weights() is not first


@pytest.mark.parametrize("scheme", DEPTH_INITS)
def test_depth_inits_mix_source_layers_with_coefficients_summing_to_one(scheme):
    coefficients = depth_init(scheme, 6, 3, 0.03, torch.Generator().manual_seed(0))
    assert coefficients.shape == (6, 3)
    torch.testing.assert_close(coefficients.sum(-1), torch.ones(6, dtype=torch.float64))
    if scheme.startswith("stackbert"):
        assert coefficients.argmax(-1).tolist() == [0, 1, 2, 0, 1, 2]
    if scheme.startswith("interlace"):
        assert coefficients.argmax(-1).tolist() == [0, 0, 1, 1, 2, 2]


@pytest.mark.parametrize("scheme", WIDTH_INITS)
def test_width_inits(scheme):
    rows = width_init(scheme, 5, 4, 0.03, torch.Generator().manual_seed(0))
    assert rows.shape == (5, 4)
    if scheme.startswith("sel"):  # each new unit selects one old unit (plus noise)
        assert (rows >= 0.99).sum(-1).tolist() == [1] * 5
        assert (rows.max() <= 1.03) and (scheme == "sel") == bool((rows[rows < 0.99] == 0).all())
    else:
        torch.testing.assert_close(rows.sum(-1), torch.ones(5, dtype=torch.float64))


def test_save_load_materialise_round_trip_is_exact_and_other_configs_are_refused(tmp_path):
    model, state = small_state("gpt2")
    wide = wide_config("gpt2", layers=4)
    operator = perturbed(LiGO(state, model.config, wide, LiGOOptions(init_from=("stack", "net2net"),
                                                                     tune_residual=True)), 0.01)
    save_operator(operator, tmp_path / "op", {"flops": 1.0})
    loaded = load_operator(tmp_path / "op", model.config, wide)
    assert_equal_states(materialise(loaded).state_dict(), materialise(operator).state_dict())

    with pytest.raises(ValueError, match="another target config: num_hidden_layers 4 .operator. vs 5"):
        load_operator(tmp_path / "op", model.config, wide_config("gpt2", layers=5))
    with pytest.raises(ValueError, match="another source config: hidden_size 64 .operator. vs 128"):
        load_operator(tmp_path / "op", wide_config("gpt2", layers=2), wide)
    with pytest.raises(FileNotFoundError, match="holds no LiGO operator"):
        load_operator(tmp_path / "nothing")
    (tmp_path / "op" / "ligo_operator.pt").write_bytes(b"truncated")
    with pytest.raises(ValueError, match="does not match the SHA-256 recorded"):
        load_operator(tmp_path / "op")


@pytest.mark.parametrize("options, target, message", [
    (LiGOOptions(tune_width=False), dict(layers=2), "depth does not change"),
    (LiGOOptions(tune_depth=False), dict(layers=2, hidden=64, heads=2, ffn=256), "width does not change"),
    (LiGOOptions(tune_width=False, tune_depth=False), dict(layers=4), "nothing to train"),
    (LiGOOptions(tune_width=False), dict(layers=4, ffn=128), "smaller than the source: ffn"),
])
def test_sizes_that_do_not_change_or_shrink_are_refused(options, target, message):
    model, state = small_state("bert")
    with pytest.raises(ValueError, match=message):
        LiGO(state, model.config, wide_config("bert", **target), options)


@pytest.mark.parametrize("field, value", [("depth_init", "stackbertt"), ("width_init", "select"),
                                          ("width_form", "dense")])
def test_unknown_schemes_are_named(field, value):
    with pytest.raises(ValueError, match=f"unknown LiGO .* {value!r}"):
        LiGOOptions(**{field: value})
