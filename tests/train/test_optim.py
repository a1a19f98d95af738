import pytest
import torch

from ligo.train.optim import build_optimizer, build_scheduler, lr_multiplier, param_groups


def test_no_weight_decay_on_biases_and_layernorm():
    model = torch.nn.Sequential(torch.nn.Linear(4, 4), torch.nn.LayerNorm(4))
    decay, no_decay = param_groups(model, 0.1)
    assert [p.shape for p in decay["params"]] == [torch.Size([4, 4])]
    assert len(no_decay["params"]) == 3 and no_decay["weight_decay"] == 0.0


@pytest.mark.parametrize("kind, step, expected", [
    ("linear", 0, 0.1), ("linear", 9, 1.0), ("linear", 10, 1.0), ("linear", 55, 0.5),
    ("linear", 100, 0.0), ("cosine", 55, 0.5), ("cosine", 100, 0.0), ("constant", 80, 1.0),
])
def test_schedules_warm_up_then_decay(kind, step, expected):
    assert lr_multiplier(step, kind, warmup=10, total=100) == pytest.approx(expected)


def test_poly_decays_to_lr_end():
    assert lr_multiplier(100, "poly", 0, 100, end_ratio=0.1, power=2.0) == pytest.approx(0.1)
    assert lr_multiplier(50, "poly", 0, 100, end_ratio=0.0, power=2.0) == pytest.approx(0.25)


def test_scheduler_drives_the_optimizer_lr():
    model = torch.nn.Linear(2, 2)
    optimizer = build_optimizer(model, 1e-3, 0.01, (0.9, 0.98), 1e-6)
    scheduler = build_scheduler(optimizer, "linear", warmup=4, total=8)
    seen = []
    for _ in range(8):
        seen.append(optimizer.param_groups[0]["lr"])
        optimizer.step()
        scheduler.step()
    assert seen == pytest.approx([2.5e-4, 5e-4, 7.5e-4, 1e-3, 1e-3, 7.5e-4, 5e-4, 2.5e-4])
