import pytest
import torch

from ligo.families import FAMILIES, ROLE_AXES
from ligo.roles import check_state_matches_config, from_roles, to_roles
from tests.operators.conftest import FAMILY_NAMES, tiny_config, trained_like_model


@pytest.mark.parametrize("family", FAMILY_NAMES)
def test_state_dict_to_roles_and_back_is_lossless(family):
    model = trained_like_model(family)
    state = model.state_dict()
    roles = to_roles(state, FAMILIES[family])
    back = from_roles(roles, FAMILIES[family])
    assert back.keys() == state.keys()
    assert all(torch.equal(back[k], state[k]) for k in state)
    for layer in roles.layers:
        for role, tensor in layer.items():
            assert tensor.ndim == len(ROLE_AXES[role]), role


def test_gpt2_fused_qkv_and_conv1d_become_linear_roles():
    model = trained_like_model("gpt2")
    roles = to_roles(model.state_dict(), FAMILIES["gpt2"])
    attn = model.transformer.h[1].attn.c_attn
    x = torch.randn(3, 64, dtype=torch.float64)
    q, k, v = attn(x).split(64, dim=-1)
    layer = roles.layers[1]
    torch.testing.assert_close(x @ layer["q.weight"].T + layer["q.bias"], q)
    torch.testing.assert_close(x @ layer["v.weight"].T + layer["v.bias"], v)
    ffn = model.transformer.h[1].mlp.c_fc
    torch.testing.assert_close(x @ layer["ffn_in.weight"].T + layer["ffn_in.bias"], ffn(x))


def test_no_operator_needs_family_keys():
    """The families with biases map the same layer roles (token types only where the family has
    them); LLaMA maps its own list (SwiGLU's gate, no biases); every role has named axes."""
    for family in FAMILIES.values():
        layer_roles = {r for r, p in family.keys.items() if "{i}" in p.key}
        assert layer_roles == set(family.layer_params())
        if family.biases:
            assert layer_roles == {r for r in ROLE_AXES if r.split(".")[0] in
                                   ("q", "k", "v", "attn_out", "ffn_in", "ffn_out", "ln_attn", "ln_ffn")}
        assert set(family.keys) <= set(ROLE_AXES)
    assert set(FAMILIES["llama"].layer_params()) == {
        f"{m}.weight" for m in ("q", "k", "v", "attn_out", "ffn_gate", "ffn_in", "ffn_out",
                                "ln_attn", "ln_ffn")}


def test_checkpoint_that_does_not_match_its_config_is_named():
    state = trained_like_model("bert").state_dict()
    wrong = tiny_config("bert", num_hidden_layers=3)
    with pytest.raises(ValueError, match="does not match its config .*missing bert.encoder.layer.2"):
        check_state_matches_config(state, wrong, FAMILIES["bert"])
    narrow = tiny_config("bert", intermediate_size=128)
    with pytest.raises(ValueError, match=r"intermediate.dense.weight is \(256, 64\), the config implies \(128, 64\)"):
        check_state_matches_config(state, narrow, FAMILIES["bert"])
