import pytest
import torch
import torch.nn.functional as F

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
    model.cls.predictions.transform.register_forward_hook(
        lambda module, inputs, output: seen.append(inputs[0].shape))
    labels = torch.full((2, 16), -100)
    labels[0, 3] = labels[1, 7] = 5
    LanguageModelingLoss(model, FAMILIES["bert"])(torch.randint(5, 100, (2, 16)), labels)
    assert seen == [torch.Size([2, 64])]


def _batch(family: str, vocab: int):
    ids = torch.randint(5, vocab, (3, 24), generator=torch.Generator().manual_seed(2))
    labels = ids.clone()
    if FAMILIES[family].objective == "mlm":
        labels[torch.rand(ids.shape, generator=torch.Generator().manual_seed(3)) > 0.5] = -100
    return ids, labels


def _reference_loss_sum(model, family: str, ids, labels) -> torch.Tensor:
    """The unfused loss: the head module's logits, then F.cross_entropy (sum over labels)."""
    hidden = model.base_model(input_ids=ids).last_hidden_state
    if FAMILIES[family].objective == "clm":
        hidden, labels = hidden[:, :-1], labels[:, 1:]
    selected = labels != -100
    logits = getattr(model, FAMILIES[family].head_attr)(hidden[selected])
    if logits.dtype != torch.float64:
        logits = logits.float()  # what F.cross_entropy needs under autocast
    return torch.nn.functional.cross_entropy(logits, labels[selected], reduction="sum")


@pytest.mark.parametrize("family", ["bert", "roberta", "gpt2", "llama"])
def test_fused_head_and_loss_have_the_unfused_gradients_in_any_chunking(family, monkeypatch,
                                                                         float64_rmsnorm):
    """The vocabulary projection and softmax fused, in chunks of label tokens and blocks of
    rows, give the loss, accuracy and every parameter's gradient of head(x) + cross_entropy
    (float64, every parameter perturbed, so a missed bias or transform shows)."""
    from ligo.train import objective

    config = load_config(CONFIGS / f"{family}-tiny.json")
    torch.manual_seed(0)
    model = build_model(config, FAMILIES[family]).double().eval()  # eval: no dropout masks
    with torch.no_grad():
        for parameter in model.parameters():
            parameter.add_(torch.randn_like(parameter) * 0.05)
    ids, labels = _batch(family, 2000)
    model.zero_grad()
    reference = _reference_loss_sum(model, family, ids, labels)
    reference.backward()
    expected = {n: p.grad.clone() for n, p in model.named_parameters() if p.grad is not None}
    with torch.no_grad():
        hidden = model.base_model(input_ids=ids).last_hidden_state
        if FAMILIES[family].objective == "clm":
            hidden, shifted = hidden[:, :-1], labels[:, 1:]
        else:
            shifted = labels
        logits = getattr(model, FAMILIES[family].head_attr)(hidden[shifted != -100])
        expected_correct = (logits.argmax(-1) == shifted[shifted != -100]).sum()
    # one chunk, one softmax block; chunks of 7 label tokens (a short last one) in blocks of
    # 1 row; chunks of 7 in blocks of 3 rows (a short last block in every chunk)
    for chunk, block_rows in ((10 ** 9, 10 ** 9), (7, 1), (7, 3)):
        monkeypatch.setattr(objective, "LOSS_CHUNK_TOKENS", chunk)
        monkeypatch.setattr(objective, "SOFTMAX_BLOCK_BYTES", block_rows * config.vocab_size * 4)
        model.zero_grad()
        loss = LanguageModelingLoss(model, FAMILIES[family]).train()
        model.eval()  # the loss module in training mode, the model without dropout
        out = loss(ids, labels)
        out["loss_sum"].backward()
        torch.testing.assert_close(out["loss_sum"], reference.detach(), rtol=1e-12, atol=1e-12)
        assert set(expected) == {n for n, p in model.named_parameters() if p.grad is not None}
        for name, grad in expected.items():
            torch.testing.assert_close(model.get_parameter(name).grad, grad, rtol=1e-10,
                                       atol=1e-12, msg=name)
        with torch.no_grad():
            evaluated = loss.eval()(ids, labels)
        assert evaluated["correct"] == expected_correct
        torch.testing.assert_close(evaluated["loss_sum"], reference.detach(), rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("family", ["bert", "gpt2"])
def test_fused_loss_under_bf16_autocast_matches_the_unfused_one(family):
    """Under autocast the projection runs in bfloat16 and the softmax in float32, as
    F.cross_entropy(logits.float()) does: loss and float32 gradients agree to bf16 rounding."""
    config = load_config(CONFIGS / f"{family}-tiny.json")
    torch.manual_seed(0)
    model = build_model(config, FAMILIES[family]).eval()
    ids, labels = _batch(family, 2000)
    results = []
    for fused in (False, True):
        model.zero_grad()
        with torch.autocast("cpu", dtype=torch.bfloat16):
            if fused:
                loss_module = LanguageModelingLoss(model, FAMILIES[family]).train()
                model.eval()
                loss = loss_module(ids, labels)["loss_sum"]
            else:
                loss = _reference_loss_sum(model, family, ids, labels)
        loss.backward()
        assert loss.dtype == torch.float32
        results.append((loss.detach(), {n: p.grad.clone() for n, p in model.named_parameters()
                                        if p.grad is not None}))
    (loss_ref, grads_ref), (loss_fused, grads_fused) = results
    torch.testing.assert_close(loss_fused, loss_ref, rtol=1e-3, atol=0)
    assert grads_fused.keys() == grads_ref.keys()
    for name, grad in grads_ref.items():
        assert grads_fused[name].dtype == torch.float32
        scale = grad.abs().max().clamp_min(1e-6)
        assert (grads_fused[name] - grad).abs().max() <= 0.05 * scale, name


def test_training_step_keeps_no_logits_for_backward(monkeypatch):
    """What autograd saves for backward holds no (label tokens x vocabulary) tensor: the
    head's memory does not grow with batch x vocabulary (GPT-2's 50k head at batch 256 needed
    > 20 GB of logits before)."""
    from ligo.train import objective

    monkeypatch.setattr(objective, "LOSS_CHUNK_TOKENS", 16)
    config = load_config(CONFIGS / "gpt2-tiny.json")
    model = build_model(config, FAMILIES["gpt2"])
    ids = torch.randint(5, config.vocab_size, (16, 64))
    saved = []
    with torch.autograd.graph.saved_tensors_hooks(lambda t: saved.append(t.numel()) or t, lambda t: t):
        LanguageModelingLoss(model, FAMILIES["gpt2"]).train()(ids, ids)["loss_sum"].backward()
    label_tokens = 16 * 63
    assert max(saved) < label_tokens * config.vocab_size / 4
    assert max(saved) >= config.vocab_size * config.n_embd  # the decoder's gradient, kept


@pytest.mark.parametrize("family", ["bert", "roberta", "gpt2", "llama"])
def test_features_before_decoder_are_what_the_head_projects(family):
    from ligo.train.objective import features_before_decoder

    config = load_config(CONFIGS / f"{family}-tiny.json")
    model = build_model(config, FAMILIES[family]).double().eval()
    head = getattr(model, FAMILIES[family].head_attr)
    hidden = torch.randn(5, config.hidden_size, dtype=torch.float64)
    projected = model.get_output_embeddings()(features_before_decoder(FAMILIES[family], head, hidden))
    torch.testing.assert_close(projected, head(hidden), rtol=1e-12, atol=1e-12)


def test_a_batch_without_label_tokens_has_zero_loss():
    config = load_config(CONFIGS / "bert-tiny.json")
    model = build_model(config, FAMILIES["bert"])
    out = LanguageModelingLoss(model, FAMILIES["bert"])(torch.randint(5, 100, (2, 16)),
                                                        torch.full((2, 16), -100))
    assert out["loss_sum"].item() == 0.0 and out["tokens"].item() == 0


def test_the_softmax_runs_in_cache_blocks_on_a_cpu_and_in_one_pass_per_chunk_on_a_gpu(monkeypatch):
    """Cache blocking is a CPU optimisation; on a GPU every block is ~13 kernel launches."""
    from torch.profiler import ProfilerActivity, profile

    from ligo.train import objective

    assert objective.softmax_block_rows("cpu", 50257, 1024) == 20  # 4 MiB of float32 rows
    assert objective.softmax_block_rows("cuda", 50257, 1024) == 1024
    logits = torch.randn(100, 50257, dtype=torch.float64)
    targets = torch.randint(0, 50257, (100,))
    reference = F.cross_entropy(logits, targets, reduction="sum")
    exps, rule = {}, objective.softmax_block_rows
    for device_type in ("cpu", "cuda"):  # the cuda rule, on CPU tensors
        monkeypatch.setattr(objective, "softmax_block_rows", lambda _, v, r, d=device_type: rule(d, v, r))
        with profile(activities=[ProfilerActivity.CPU]) as prof:
            loss = objective._softmax_in_place(logits.clone(), targets, torch.float64, gradient=True)
        torch.testing.assert_close(loss, reference, rtol=1e-12, atol=1e-12)
        exps[device_type] = sum(e.count for e in prof.key_averages() if e.key == "aten::exp_")
    assert exps == {"cpu": 5, "cuda": 1}  # 100 rows: blocks of 20 on a CPU, one pass on a GPU
