"""The LLaMA family (RMSNorm, SwiGLU, RoPE, grouped-query attention, untied lm_head): roles,
and which operators preserve its function exactly, in float64 with every parameter perturbed."""
import pytest
import torch

from ligo.families import FAMILIES, family_of
from ligo.operators import grow, grow_state
from ligo.roles import from_roles, to_roles
from tests.operators.conftest import logits, tiny_config, trained_like_model

LLAMA = FAMILIES["llama"]
# every exactness check here computes RMSNorm in float64 (see conftest.float64_rmsnorm)
pytestmark = pytest.mark.usefixtures("float64_rmsnorm")


def llama_config(**changes):
    """configs/llama-tiny.json: 2 layers, hidden 64, 4 query / 2 key-value heads (head size
    16), SwiGLU width 176, untied lm_head."""
    return tiny_config("llama", **changes)


def wide_llama(layers: int = 2, hidden: int = 128, heads: int = 8, kv_heads: int = 4, ffn: int = 352):
    """Default: llama-tiny with every width doubled (conftest.wide_config("llama"))."""
    return llama_config(num_hidden_layers=layers, hidden_size=hidden, num_attention_heads=heads,
                        num_key_value_heads=kv_heads, intermediate_size=ffn, head_dim=hidden // heads)


def test_roles_round_trip_every_key_and_name_the_swiglu_gate_and_untied_head():
    model = trained_like_model("llama", llama_config())
    state = model.state_dict()
    roles = to_roles(state, LLAMA)
    assert roles.num_layers == 2
    assert set(roles.layers[0]) == {"q.weight", "k.weight", "v.weight", "attn_out.weight",
                                    "ffn_gate.weight", "ffn_in.weight", "ffn_out.weight",
                                    "ln_attn.weight", "ln_ffn.weight"}
    assert roles.layers[0]["k.weight"].shape == (2 * 16, 64)  # 2 key/value heads of size 16
    assert {"embed.word", "final_ln.weight", "head.weight"} <= set(roles.model)
    back = from_roles(roles, LLAMA)
    assert back.keys() == state.keys()
    assert all(torch.equal(back[k], state[k]) for k in state)


@pytest.mark.parametrize("positions", [None, [1, 3]])
def test_identity_layers_leave_the_logits_unchanged(positions, token_ids):
    small = trained_like_model("llama", llama_config())
    big = grow(small, llama_config(num_hidden_layers=4), depth="identity",
               depth_options={"positions": positions})
    torch.testing.assert_close(logits(big, token_ids), logits(small, token_ids), rtol=0, atol=1e-10)


@pytest.mark.parametrize("width", ["double", "bert2bert_fpi"])
@pytest.mark.parametrize("depth", ["stack", "identity"])
def test_doubling_grouped_query_attention_keeps_each_query_head_on_its_key_value_head(
        width, depth, token_ids):
    """4 query / 2 key-value heads -> 8 / 4, hidden and SwiGLU width doubled: exact for
    `double` (block-diagonal) and for `bert2bert_fpi`, whose heads are copied at random, so
    a query head that read another group's key/value head would show in the logits."""
    small = trained_like_model("llama", llama_config())
    target = wide_llama(layers=2 if depth == "stack" else 4)
    big = grow(small, target, depth="identity" if depth == "identity" else "stack", width=width,
               seed=3)
    if depth == "stack":  # stacking 2 -> 2 layers is no depth change: width alone
        assert big.config.num_hidden_layers == 2
    assert big.model.layers[0].self_attn.k_proj.weight.shape == (4 * 16, 128)
    torch.testing.assert_close(logits(big, token_ids), logits(small, token_ids), rtol=0, atol=1e-10)


def test_fpi_copies_query_heads_only_from_the_group_their_key_value_head_copies():
    from ligo.operators.width import build_maps

    small, large = llama_config(), wide_llama(heads=12, kv_heads=6)  # 3 new key/value heads
    maps = build_maps(small, large, {"hidden": "round_robin", "ffn": "random", "heads": "random"},
                      torch.Generator().manual_seed(0))
    query = maps["attention"].view(12, 16)[:, 0] // 16  # the source head each target head copies
    kv = maps["kv_attention"].view(6, 16)[:, 0] // 16
    assert torch.equal(query[:4], torch.arange(4)) and torch.equal(kv[:2], torch.arange(2))
    for head in range(12):
        assert query[head] // 2 == kv[head // 2], (head, query.tolist(), kv.tolist())


def test_a_target_that_breaks_the_query_grouping_is_refused():
    small = trained_like_model("llama", llama_config())
    with pytest.raises(ValueError, match="group size must stay the same"):
        grow(small, wide_llama(heads=8, kv_heads=2), width="bert2bert_fpi")
    with pytest.raises(ValueError, match="head size must stay the same"):
        grow(small, wide_llama(heads=4, kv_heads=2), width="bert2bert_fpi")


def test_the_grown_model_loads_with_auto_classes_and_its_loss_is_ours(tmp_path, token_ids):
    from transformers import AutoModelForCausalLM

    from ligo.train.objective import LanguageModelingLoss

    big = grow(trained_like_model("llama", llama_config()), wide_llama(layers=4), width="double")
    big.save_pretrained(tmp_path)
    loaded = AutoModelForCausalLM.from_pretrained(tmp_path, dtype=torch.float64).eval()
    assert type(loaded).__name__ == "LlamaForCausalLM"
    theirs = loaded(input_ids=token_ids, labels=token_ids).loss
    ours = LanguageModelingLoss(loaded, LLAMA).eval()(token_ids, token_ids)
    # transformers' loss upcasts the logits to float32 (not to float64)
    torch.testing.assert_close(ours["loss_sum"] / ours["tokens"], theirs.double(), rtol=0, atol=1e-6)


def test_every_width_scheme_grows_it_to_the_target_shapes():
    small = trained_like_model("llama", llama_config())
    target = wide_llama(heads=12, kv_heads=6, ffn=400, hidden=192)
    expected = {k: v.shape for k, v in trained_like_model("llama", target).state_dict().items()}
    for width in ("net2net", "bert2bert_fpi", "bert2bert_aki", "zero", "random"):
        state = grow_state(small.state_dict(), small.config, target, width=width)
        assert {k: v.shape for k, v in state.items()} == expected, width


def test_ungroupable_heads_and_a_change_of_tying_are_refused_with_a_sentence():
    from ligo.models import config_from_dict

    values = llama_config().to_dict()
    with pytest.raises(ValueError, match="num_key_value_heads must divide"):
        config_from_dict({**values, "num_key_value_heads": 3})
    small = trained_like_model("llama", llama_config())
    with pytest.raises(ValueError, match="tie_word_embeddings differ"):
        grow(small, llama_config(num_hidden_layers=4, tie_word_embeddings=True))


TIED = {"tie_word_embeddings": True}


def test_tied_embeddings_round_trip_with_lm_head_as_the_input_embedding():
    model = trained_like_model("llama", llama_config(**TIED))
    assert model.lm_head.weight is model.model.embed_tokens.weight
    family = family_of(model.config)
    assert family.tied == {"lm_head.weight": "embed.word"} and family.name == "llama"
    roles = to_roles(model.state_dict(), family)
    assert "head.weight" not in roles.model
    back = from_roles(roles, family)
    assert back.keys() == model.state_dict().keys()
    assert back["lm_head.weight"] is back["model.embed_tokens.weight"]


@pytest.mark.parametrize("width", ["double", "bert2bert_fpi"])
def test_tied_embeddings_double_exactly_with_grouped_query_attention(width, token_ids, tmp_path):
    """A tied decoder reads the undivided input embedding, so the final RMSNorm's weight is
    divided by the copy counts instead of the decoder's input (as for GPT-2)."""
    from transformers import AutoModelForCausalLM

    small = trained_like_model("llama", llama_config(**TIED))
    target = llama_config(num_hidden_layers=4, hidden_size=128, num_attention_heads=8,
                          num_key_value_heads=4, intermediate_size=352, head_dim=16, **TIED)
    big = grow(small, target, depth="identity", width=width, seed=3)
    assert big.lm_head.weight is big.model.embed_tokens.weight
    torch.testing.assert_close(logits(big, token_ids), logits(small, token_ids), rtol=0, atol=1e-10)
    big.save_pretrained(tmp_path)
    loaded = AutoModelForCausalLM.from_pretrained(tmp_path, dtype=torch.float64).eval()
    assert loaded.lm_head.weight is loaded.model.embed_tokens.weight
    torch.testing.assert_close(logits(loaded, token_ids), logits(big, token_ids), rtol=0, atol=0)


def test_ligo_on_tied_embeddings_generates_stack_and_keeps_the_head_tied():
    from ligo.operators.learned import LiGO, LiGOOptions

    small = trained_like_model("llama", llama_config(**TIED))
    state = {k: v.detach() for k, v in small.state_dict().items()}
    target = llama_config(num_hidden_layers=4, **TIED)
    generated = LiGO(state, small.config, target, LiGOOptions(tune_width=False, depth_init="stackbert"))()
    expected = grow_state(state, small.config, target, depth="stack")
    assert generated.keys() == expected.keys()
    assert all(torch.equal(generated[k], expected[k]) for k in expected)
    assert generated["lm_head.weight"] is generated["model.embed_tokens.weight"]


def test_ligo_stackbert_init_generates_exactly_the_stack_operator():
    from ligo.operators.learned import LiGO, LiGOOptions

    small = trained_like_model("llama", llama_config())
    state = {k: v.detach() for k, v in small.state_dict().items()}
    target = llama_config(num_hidden_layers=4)
    generated = LiGO(state, small.config, target, LiGOOptions(tune_width=False, depth_init="stackbert"))()
    expected = grow_state(state, small.config, target, depth="stack")
    assert generated.keys() == expected.keys()
    assert all(torch.equal(generated[k], expected[k]) for k in expected)


@pytest.mark.parametrize("tie", [True, False])
def test_ligo_on_grouped_query_attention_starts_at_the_fixed_operator_and_trains_through_its_loss(
        tie, token_ids):
    """init_from (identity, double): the operator's model is exactly the doubled model with
    identity layers added, so its logits are the source's; its loss module gives the materialised model's loss, and the
    gradient reaches the expansions of the key/value heads and of attention-out."""
    from ligo.operators.learned import LiGO, LiGOOptions, materialise
    from ligo.train.growth import LiGOLoss
    from ligo.train.objective import LanguageModelingLoss

    small = trained_like_model("llama", llama_config())
    state = {k: v.detach() for k, v in small.state_dict().items()}
    operator = LiGO(state, small.config, wide_llama(layers=4),
                    LiGOOptions(init_from=("identity", "double"), tie=tie))
    model = materialise(operator).double().eval()
    torch.testing.assert_close(logits(model, token_ids), logits(small, token_ids), rtol=0, atol=1e-10)
    functional = LiGOLoss(operator).train()(token_ids, token_ids)
    direct = LanguageModelingLoss(model, LLAMA).eval()(token_ids, token_ids)
    torch.testing.assert_close(functional["loss_sum"], direct["loss_sum"], rtol=0, atol=1e-9)
    functional["loss_sum"].backward()
    names = {name for name, p in operator.width.named_parameters() if p.grad is not None
             and p.grad.abs().sum() > 0}
    assert any("_k" in name for name in names) and any("_v" in name for name in names), names
    if tie:
        assert any("attn_out" in name for name in names), names  # its own: V has fewer units


def test_staged_trainings_doubling_event_doubles_the_key_value_heads_too(token_ids):
    from ligo.growth_plan import GrowthEvent, doubled

    config = llama_config()
    changes = doubled(config, "both")
    assert changes["num_attention_heads"] == 8 and changes["num_key_value_heads"] == 4
    target = GrowthEvent(0, changes).target_config(config)
    small = trained_like_model("llama", config)
    big = grow(small, target, depth="identity", width="double", depth_options={"positions": [1, 3]})
    torch.testing.assert_close(logits(big, token_ids), logits(small, token_ids), rtol=0, atol=1e-10)


@pytest.mark.parametrize("width", ["net2net", "bert2bert_fpi"])
def test_heads_grow_at_a_fixed_hidden_size_exactly(width, token_ids):
    """LLaMA's head size is its own (head_dim), so the head count can grow while the hidden
    size stays: 4 query / 2 key-value heads of 16 -> 8 / 4 of 16 in a 64-wide model."""
    small = trained_like_model("llama", llama_config())
    target = llama_config(num_attention_heads=8, num_key_value_heads=4, head_dim=16)
    big = grow(small, target, width=width, seed=1)
    assert big.model.layers[0].self_attn.q_proj.weight.shape == (128, 64)
    torch.testing.assert_close(logits(big, token_ids), logits(small, token_ids), rtol=0, atol=1e-10)


@pytest.mark.parametrize("width", ["bert2bert_fpi", "net2net"])
def test_more_heads_at_a_fixed_hidden_size_are_exact(width, token_ids):
    """4 query / 2 key-value heads -> 8 / 4 (and 12 / 6) at hidden 64, head size 16: each new
    head copies a head of its group, attention-out's input columns divided by the copy counts."""
    small = trained_like_model("llama", llama_config())
    for heads in (8, 12):
        target = llama_config(num_attention_heads=heads, num_key_value_heads=heads // 2)
        big = grow(small, target, width=width, seed=5)
        assert big.model.layers[0].self_attn.q_proj.weight.shape == (heads * 16, 64)
        assert big.model.layers[0].self_attn.o_proj.weight.shape == (64, heads * 16)
        torch.testing.assert_close(logits(big, token_ids), logits(small, token_ids), rtol=0, atol=1e-10)


def mistral_config(**changes):
    import transformers

    values = dict(hidden_size=64, intermediate_size=176, num_hidden_layers=2, num_attention_heads=4,
                  num_key_value_heads=2, head_dim=16, vocab_size=1024, tie_word_embeddings=False,
                  sliding_window=8)
    return transformers.MistralConfig(**{**values, **changes})


def test_mistral_shares_the_family_and_grows_exactly(token_ids, tmp_path):
    """MistralForCausalLM: LLaMA's parameter names (its sliding window is a config setting,
    here 8 tokens, shorter than the 16-token input, so it matters)."""
    from transformers import AutoModelForCausalLM

    small = trained_like_model("mistral", mistral_config())
    family = family_of(small.config)
    assert family.name == "mistral" and family.keys == FAMILIES["llama"].keys
    roles = to_roles(small.state_dict(), family)
    assert from_roles(roles, family).keys() == small.state_dict().keys()
    target = mistral_config(num_hidden_layers=4, hidden_size=128, num_attention_heads=8,
                            num_key_value_heads=4, intermediate_size=352)
    for width in ("double", "bert2bert_fpi"):
        big = grow(small, target, depth="identity", width=width, seed=1)
        assert type(big).__name__ == "MistralForCausalLM" and big.config.sliding_window == 8
        torch.testing.assert_close(logits(big, token_ids), logits(small, token_ids), rtol=0, atol=1e-10)
    big.save_pretrained(tmp_path)
    loaded = AutoModelForCausalLM.from_pretrained(tmp_path, dtype=torch.float64)
    torch.testing.assert_close(logits(loaded, token_ids), logits(big, token_ids), rtol=0, atol=0)
