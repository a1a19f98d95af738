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


@pytest.mark.parametrize("family", ["bert", "gpt2"])
def test_head_and_loss_in_chunks_equal_one_chunk_with_the_same_gradients(family, monkeypatch):
    """Chunking the label tokens changes only the order of a sum (float64, every parameter)."""
    from ligo.train import objective

    config = load_config(CONFIGS / f"{family}-tiny.json")
    torch.manual_seed(0)
    model = build_model(config, FAMILIES[family]).double()
    ids = torch.randint(5, 2000, (3, 24))
    labels = ids.clone()
    if FAMILIES[family].objective == "mlm":
        labels[torch.rand(ids.shape) > 0.5] = -100
    results = []
    # one chunk; then 7 label tokens each, a short last one; then the same chunks with their
    # logits recomputed in the backward pass (what bounds the memory of a large head)
    for chunk, recompute_above in ((10 ** 9, 1 << 60), (7, 1 << 60), (7, 0)):
        monkeypatch.setattr(objective, "LOSS_CHUNK_TOKENS", chunk)
        monkeypatch.setattr(objective, "RECOMPUTE_LOGITS_ABOVE_BYTES", recompute_above)
        model.zero_grad()
        loss = LanguageModelingLoss(model, FAMILIES[family])
        torch.manual_seed(1)  # the same dropout masks in both runs
        out = loss.train()(ids, labels)
        out["loss_sum"].backward()
        with torch.no_grad():
            correct = loss.eval()(ids, labels)["correct"]
        results.append((out["loss_sum"].detach(), correct,
                        {n: p.grad.clone() for n, p in model.named_parameters()}))
    (loss_one, correct_one, grads_one), *others = results
    for loss_chunked, correct_chunked, grads_chunked in others:
        torch.testing.assert_close(loss_chunked, loss_one, rtol=1e-12, atol=1e-12)
        assert correct_chunked == correct_one
        for name, grad in grads_one.items():
            torch.testing.assert_close(grads_chunked[name], grad, rtol=1e-10, atol=1e-12, msg=name)


def test_a_batch_without_label_tokens_has_zero_loss():
    config = load_config(CONFIGS / "bert-tiny.json")
    model = build_model(config, FAMILIES["bert"])
    out = LanguageModelingLoss(model, FAMILIES["bert"])(torch.randint(5, 100, (2, 16)),
                                                        torch.full((2, 16), -100))
    assert out["loss_sum"].item() == 0.0 and out["tokens"].item() == 0
