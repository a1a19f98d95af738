"""Layer drop and token drop: what is dropped is not computed, and what is computed is
exactly the model on what remains (float64, every parameter perturbed, against a reference
computed layer by layer); decisions depend on (seed, step) only, so DDP equals one process and
a resumed run an uninterrupted one; the FLOPs count only what ran."""
import json
import math

import pytest
import torch

from ligo.data.collators import IGNORE_INDEX
from ligo.families import family_of
from ligo.models import model_from_state
from ligo.roles import from_roles, to_roles
from ligo.train.drop import Drops, LayerDrop, StepDrops, TokenDrop
from ligo.train.flops import layer_training_flops_per_token, training_flops_per_token
from tests.operators.conftest import tiny_config, trained_like_model

FAMILIES = ["bert", "gpt2", "llama"]
pytestmark = pytest.mark.usefixtures("float64_rmsnorm")


def model_of(family, layers=6):
    return trained_like_model(family, tiny_config(family, num_hidden_layers=layers))


def plan(layers, dropped=(), token_rate=None, batch=2, seq_len=16, seed=0):
    token = TokenDrop(rate=token_rate, seed=seed) if token_rate else None
    return StepDrops(num_layers=layers, dropped_layers=list(dropped), token_drop=token,
                     token_scores=token.scores(3, batch, seq_len) if token else None)


def hidden_with(model, ids, step_plan, labels):
    family = family_of(model.config)
    with torch.no_grad(), step_plan.applied(model, family.layers_path, labels, slice(0, len(ids))):
        return model.base_model(input_ids=ids).last_hidden_state


def reference_hidden(model, ids, running, middle=(), kept=None):
    """The base model's last hidden state computed layer by layer: only the layers `running`
    (indices), the ones in `middle` on the positions `kept` (B, K) alone."""
    family, base = family_of(model.config).name, model.base_model
    batch, seq_len = ids.shape
    positions = torch.arange(seq_len).expand(batch, seq_len)
    if family == "bert":
        h, final = base.embeddings(input_ids=ids), (lambda x: x)
    elif family == "gpt2":
        h, final = base.wte(ids) + base.wpe(positions), base.ln_f
    else:
        h, final = base.embed_tokens(ids), base.norm
    layers = model.get_submodule(family_of(model.config).layers_path)
    middle = [i for i in running if i in middle]
    with torch.no_grad():
        for i in running:
            where = positions
            if i in middle:
                if i == middle[0]:
                    entered = h
                    h = h.gather(1, kept[..., None].expand(-1, -1, h.shape[-1]))
                where = kept
            extra = {"position_embeddings": base.rotary_emb(h, where)} if family == "llama" else {}
            out = layers[i](h, **extra)
            h = out[0] if isinstance(out, tuple) else out
            if middle and i == middle[-1]:
                h = entered.scatter(1, kept[..., None].expand(-1, -1, h.shape[-1]), h)
        return final(h)


@pytest.mark.parametrize("family", FAMILIES)
def test_dropped_layers_are_not_run_and_the_rest_is_the_model_without_them(family, token_ids):
    model = model_of(family, layers=4)
    labels = token_ids.clone()
    step_plan = plan(4, dropped=[1, 2])
    calls = []
    layers = model.get_submodule(family_of(model.config).layers_path)
    handles = [layer.register_forward_hook(lambda m, a, o, i=i: calls.append(i))
               for i, layer in enumerate(layers)]
    dropped = hidden_with(model, token_ids, step_plan, labels)
    assert calls == [0, 3]  # the skipped layers never ran
    for handle in handles:
        handle.remove()
    # the same as a two-layer model holding layers 0 and 3
    roles = to_roles(model.state_dict(), family_of(model.config))
    roles.layers = [roles.layers[0], roles.layers[3]]
    small = model_from_state(tiny_config(family, num_hidden_layers=2),
                             from_roles(roles, family_of(model.config))).eval()
    with torch.no_grad():
        expected = small.base_model(input_ids=token_ids).last_hidden_state
    torch.testing.assert_close(dropped, expected, rtol=0, atol=1e-12)
    assert len(model.get_submodule(family_of(model.config).layers_path)) == 4  # put back


@pytest.mark.parametrize("family", FAMILIES)
def test_middle_layers_see_only_the_kept_positions(family, token_ids):
    model = model_of(family, layers=6)
    labels = torch.full_like(token_ids, IGNORE_INDEX)
    labels[:, [2, 9]] = token_ids[:, [2, 9]]  # two labelled positions per sequence
    step_plan = plan(6, token_rate=0.5)
    assert step_plan.token_layers == [3, 4]  # [L/2, L-1): the last layer sees every position
    kept = step_plan.token_drop.kept_positions(step_plan.token_scores, labels)
    assert kept.shape == (2, 8) and bool((kept[:, 1:] > kept[:, :-1]).all())
    assert all({2, 9} <= set(row.tolist()) for row in kept)  # labelled positions kept first
    got = hidden_with(model, token_ids, step_plan, labels)
    expected = reference_hidden(model, token_ids, range(6), middle=[3, 4], kept=kept)
    torch.testing.assert_close(got, expected, rtol=0, atol=1e-12)
    # and it is not the full model's function (dropping changed what the kept tokens saw)
    with torch.no_grad():
        full = model.base_model(input_ids=token_ids).last_hidden_state
    assert (got - full).abs().max() > 1e-4
    layers = model.get_submodule(family_of(model.config).layers_path)
    assert not any(layer._forward_pre_hooks or layer._forward_hooks for layer in layers)


@pytest.mark.parametrize("family", ["gpt2", "llama"])
def test_layer_and_token_drop_together(family, token_ids):
    model = model_of(family, layers=6)
    step_plan = plan(6, dropped=[1], token_rate=0.25)
    assert step_plan.running_layers == [0, 2, 3, 4, 5] and step_plan.token_layers == [3, 4]
    kept = step_plan.token_drop.kept_positions(step_plan.token_scores, token_ids)
    got = hidden_with(model, token_ids, step_plan, token_ids)
    expected = reference_hidden(model, token_ids, [0, 2, 3, 4, 5], middle=[3, 4], kept=kept)
    torch.testing.assert_close(got, expected, rtol=0, atol=1e-12)


def test_decisions_depend_on_seed_and_step_only_and_follow_the_schedule():
    drop = LayerDrop(rate=0.5, ramp_steps=100, seed=3)
    assert drop.rate_at(0) == 0.0 and drop.dropped(0, 6) == []
    assert drop.rate_at(100) == pytest.approx(0.5 * (1 - math.exp(-1)))
    assert drop.dropped(700, 6) == LayerDrop(rate=0.5, ramp_steps=100, seed=3).dropped(700, 6)
    constant = LayerDrop(rate=0.5, seed=3)
    counts = torch.zeros(4)
    for step in range(4000):
        for i in constant.dropped(step, 4):
            counts[i] += 1
    # layer i of 4 is dropped with probability i/4 x 0.5
    torch.testing.assert_close(counts / 4000, torch.tensor([0.125, 0.25, 0.375, 0.5]), atol=0.03, rtol=0)
    token = TokenDrop(rate=0.5, seed=3)
    assert torch.equal(token.scores(5, 8, 16), TokenDrop(rate=0.5, seed=3).scores(5, 8, 16))
    assert not torch.equal(token.scores(5, 8, 16), token.scores(6, 8, 16))
    # more labelled positions than K: K of them, the rest dropped like any other
    labels = torch.arange(16).repeat(2, 1)
    assert token.kept_positions(token.scores(5, 2, 16), labels).shape == (2, 8)


def test_saved_flops_are_those_of_what_did_not_run():
    config = tiny_config("gpt2", num_hidden_layers=6)
    full = training_flops_per_token(config, 16)
    three_layers = training_flops_per_token(tiny_config("gpt2", num_hidden_layers=3), 16)
    assert plan(6, dropped=[0, 2, 5]).saved_flops_per_token(config, 16) == pytest.approx(full - three_layers)
    # token drop: two middle layers on 8 of 16 positions (attention over 8, not 16)
    saved = plan(6, token_rate=0.5).saved_flops_per_token(config, 16)
    per_layer, on_eight = layer_training_flops_per_token(config, 16), layer_training_flops_per_token(config, 8)
    assert saved == pytest.approx(2 * (per_layer - 0.5 * on_eight))
    assert plan(2, token_rate=0.5).token_layers == []  # two layers: no middle, nothing saved
    assert plan(2, token_rate=0.5).saved_flops_per_token(config, 16) == 0.0


def drop_argv(tmp_path, corpus, cache, family="gpt2"):
    from tests.conftest import run_argv, write_config

    no_dropout = ({"resid_pdrop": 0.0, "embd_pdrop": 0.0, "attn_pdrop": 0.0} if family == "gpt2"
                  else {"hidden_dropout_prob": 0.0, "attention_probs_dropout_prob": 0.0})
    config = write_config(tmp_path, family, num_hidden_layers=4, **no_dropout)

    def argv(name, *extra):
        return run_argv(tmp_path / name, family, corpus, cache, "--max_steps", "6",
                        "--eval_steps", "6", "--ckpt_steps", "2", "--layer_drop", "0.6",
                        "--token_drop", "0.5", *extra, config=config)
    return argv


@pytest.mark.slow
@pytest.mark.parametrize("family", ["gpt2", "bert"])
def test_a_dropping_run_resumes_exactly_and_counts_only_computed_flops(
        family, tmp_path, small_corpus, cache_dir):
    from ligo.models import load_config
    from tests.conftest import assert_resume_equals_straight

    argv = drop_argv(tmp_path, small_corpus, cache_dir, family)
    results = assert_resume_equals_straight(argv, stop_after=3)
    config = load_config(tmp_path / "straight" / "config.json")
    seed = json.loads((tmp_path / "straight" / "run.json").read_text())["seed"]
    drops = Drops(layer_drop=LayerDrop(rate=0.6, seed=seed), token_drop=TokenDrop(rate=0.5, seed=seed))
    plans = [drops.for_step(step, 4, 8, 64) for step in range(6)]
    assert any(p.dropped_layers for p in plans)
    tokens = 8 * 64
    expected = sum(tokens * (results["flops_per_token"] - p.saved_flops_per_token(config, 64))
                   for p in plans)
    assert results["flops"] == pytest.approx(expected, rel=1e-12)
    assert results["flops"] < 6 * tokens * results["flops_per_token"]  # the 50k head: most of it


@pytest.mark.slow
def test_two_process_ddp_with_drops_equals_one_process(tmp_path, small_corpus, cache_dir):
    from tests.conftest import assert_two_process_ddp_equals_one_process

    assert_two_process_ddp_equals_one_process(drop_argv(tmp_path, small_corpus, cache_dir))


def test_drops_are_refused_where_untested_and_out_of_range(tmp_path, small_corpus, cache_dir):
    from ligo.grow_train import main as grow_main
    from ligo.pretrain import main

    argv = drop_argv(tmp_path, small_corpus, cache_dir)
    with pytest.raises(ValueError, match="--parallelism ddp"):
        main(argv("fsdp", "--parallelism", "fsdp"))
    with pytest.raises(ValueError, match="without --compile"):
        main(argv("compiled", "--compile"))
    with pytest.raises(ValueError, match=r"--token_drop 1 is out of range"):
        main(argv("all", "--token_drop", "1"))
    with pytest.raises(ValueError, match="not in the operator's"):
        grow_main(argv("operator", "--source_model_path", str(tmp_path)))


@pytest.mark.slow
def test_drops_follow_a_growth_schedule_and_resume_exactly(tmp_path, small_corpus, cache_dir):
    """bert-tiny doubles its depth (2 -> 4 layers) at step 3: from then on the drops act on the
    grown model's layers; stopped after the event and resumed, the run ends as an
    uninterrupted one."""
    from tests.conftest import assert_resume_equals_straight, run_argv

    def argv(name, *extra):
        return run_argv(tmp_path / name, "bert", small_corpus, cache_dir, "--max_steps", "6",
                        "--double_at", "3:depth", "--eval_steps", "100", "--ckpt_steps", "2",
                        "--learning_rate", "1e-3", "--layer_drop", "0.6", "--token_drop", "0.5",
                        *extra)
    straight = assert_resume_equals_straight(argv, stop_after=4)
    assert [e["step"] for e in straight["growth_events"]] == [3]
