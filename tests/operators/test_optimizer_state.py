"""Mapping AdamW moments through a growth operator (staged training's optimizer transfer)."""
import pytest
import torch

from ligo.families import FAMILIES
from ligo.operators import grow
from ligo.train.growth import grow_adam_state
from ligo.train.objective import LanguageModelingLoss
from ligo.train.optim import build_optimizer, named_adam_state
from tests.operators.conftest import trained_like_model, wide_config


def no_dropout(model):
    for module in model.modules():
        if isinstance(module, torch.nn.Dropout):
            module.p = 0.0
    return model.train()


def adam_step(model, optimizer, family, ids, labels):
    out = LanguageModelingLoss(model, FAMILIES[family])(ids, labels)
    (out["loss_sum"] / out["tokens"]).backward()
    optimizer.step()
    optimizer.zero_grad()


@pytest.mark.parametrize("family", ["bert", "gpt2", "llama"])
def test_mapped_moments_commute_with_an_adamw_step_for_double(family, float64_rmsnorm):
    """Grow (weights + moments) then step == step then grow the moments: the mapped state is
    exactly the state the grown model would have accumulated (double is function-preserving,
    so its gradients are the source gradients divided by the output units' copy counts)."""
    ids = torch.randint(5, 1000, (4, 16), generator=torch.Generator().manual_seed(1))
    labels = ids.clone()
    labels[:, ::3] = -100
    small = no_dropout(trained_like_model(family))
    small_opt = build_optimizer(small, 1e-3, 0.01, (0.9, 0.98), 1e-6)
    for _ in range(2):
        adam_step(small, small_opt, family, ids, labels)
    big = no_dropout(grow(small, wide_config(family), width="double"))
    big_opt = build_optimizer(big, 1e-3, 0.01, (0.9, 0.98), 1e-6)
    big_opt.load_state_dict(grow_adam_state(small, small_opt.state_dict(), big,
                                            big_opt.state_dict(), width="double"))
    adam_step(small, small_opt, family, ids, labels)
    adam_step(big, big_opt, family, ids, labels)
    predicted = named_adam_state(big, grow_adam_state(small, small_opt.state_dict(), big,
                                                      big_opt.state_dict(), width="double"))
    actual = named_adam_state(big, big_opt.state_dict())
    assert predicted.keys() == actual.keys() == dict(big.named_parameters()).keys()
    for name in actual:
        assert float(actual[name]["step"]) == float(predicted[name]["step"]) == 3.0
        for field in ("exp_avg", "exp_avg_sq"):
            torch.testing.assert_close(actual[name][field], predicted[name][field],
                                       rtol=1e-9, atol=1e-15, msg=f"{name} {field}")


def stepped_small_bert(seed: int):
    """A small BERT after one AdamW step, and its optimizer."""
    small = no_dropout(trained_like_model("bert"))
    optimizer = build_optimizer(small, 1e-3, 0.0, (0.9, 0.98), 1e-6)
    ids = torch.randint(5, 1000, (2, 16), generator=torch.Generator().manual_seed(seed))
    adam_step(small, optimizer, "bert", ids, ids)
    return small, optimizer


def grown_and_mapped(small, optimizer, target, **options):
    """(source state, mapped state of the grown model), both by parameter name."""
    big = grow(small, target, **options)
    template = build_optimizer(big, 1e-3, 0.0, (0.9, 0.98), 1e-6).state_dict()
    mapped = grow_adam_state(small, optimizer.state_dict(), big, template, **options)
    return named_adam_state(small, optimizer.state_dict()), named_adam_state(big, mapped)


def test_doubled_hidden_matrix_gets_first_moment_halved_and_second_quartered():
    small, optimizer = stepped_small_bert(seed=2)
    source, mapped = grown_and_mapped(small, optimizer, wide_config("bert"), width="double")
    key = "bert.encoder.layer.0.attention.output.dense.weight"  # hidden x hidden
    m, v = source[key]["exp_avg"], source[key]["exp_avg_sq"]
    doubled = lambda t: torch.cat([torch.cat([t, t], 1), torch.cat([t, t], 1)], 0)
    torch.testing.assert_close(mapped[key]["exp_avg"], doubled(m) / 2)
    torch.testing.assert_close(mapped[key]["exp_avg_sq"], doubled(v) / 4)


def test_new_parameters_start_with_zero_moments():
    small, optimizer = stepped_small_bert(seed=3)
    source, mapped = grown_and_mapped(small, optimizer,
                                      wide_config("bert", layers=3, hidden=64, heads=2, ffn=256),
                                      depth="insert", depth_options={"positions": [1], "init": "random"})
    new = "bert.encoder.layer.1.intermediate.dense.weight"
    assert torch.equal(mapped[new]["exp_avg"], torch.zeros_like(mapped[new]["exp_avg"]))
    moved = "bert.encoder.layer.2.intermediate.dense.weight"  # source layer 1, shifted up
    assert torch.equal(mapped[moved]["exp_avg"],
                       source["bert.encoder.layer.1.intermediate.dense.weight"]["exp_avg"])
