import pytest
import torch

from ligo.families import FAMILIES
from ligo.models import build_model, load_config
from ligo.train.objective import LanguageModelingLoss
from tests.conftest import CONFIGS


@pytest.mark.parametrize("family", ["bert", "roberta", "gpt2"])
def test_loss_equals_the_transformers_loss(family):
    config = load_config(CONFIGS / f"{family}-tiny.json")
    torch.manual_seed(0)
    model = build_model(config, FAMILIES[family]).double().eval()
    ids = torch.randint(5, 2000, (3, 24))
    labels = ids.clone()
    if FAMILIES[family].objective == "mlm":
        labels[torch.rand(ids.shape) > 0.3] = -100
    reference = model(input_ids=ids, labels=labels).loss
    out = LanguageModelingLoss(model, FAMILIES[family])(ids, labels)
    ours = out["loss_sum"] / out["tokens"]
    assert ours.dtype == torch.float64  # no silent downcast of a float64 model
    # transformers' causal-LM loss upcasts to float32 even for a float64 model
    tolerance = 1e-12 if reference.dtype == torch.float64 else 1e-6
    torch.testing.assert_close(ours, reference.double(), rtol=tolerance, atol=tolerance)


def test_only_masked_positions_reach_the_head():
    config = load_config(CONFIGS / "bert-tiny.json")
    model = build_model(config, FAMILIES["bert"])
    seen = []
    model.cls.register_forward_hook(lambda module, inputs, output: seen.append(inputs[0].shape))
    labels = torch.full((2, 16), -100)
    labels[0, 3] = labels[1, 7] = 5
    LanguageModelingLoss(model, FAMILIES["bert"])(torch.randint(5, 100, (2, 16)), labels)
    assert seen == [torch.Size([2, 64])]
