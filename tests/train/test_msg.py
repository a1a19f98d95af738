"""MSG (masked structural growth): at mask 0 the grown model computes the source's function
for every family and every kind of growth (hidden size, FFN units, heads, key/value heads,
layers), in float64 with every parameter perturbed; at mask 1 the masks are the identity and
removing them leaves an ordinary HF model."""
import math

import pytest
import torch

from ligo.operators import grow
from ligo.train.msg import MSGMasks, MSGRamp
from tests.operators.conftest import FAMILY_NAMES, logits, tiny_config, trained_like_model, wide_config

MSG_FAMILIES = [*FAMILY_NAMES, "llama"]

pytestmark = pytest.mark.usefixtures("float64_rmsnorm")  # LLaMA's source in float64 too


def grown(family, layers=4, **width):
    small = trained_like_model(family)
    target = wide_config(family, layers=layers, **width)
    return small, grow(small, target, depth="msg", width="msg", seed=1).double().eval()


@pytest.mark.parametrize("family", MSG_FAMILIES)
def test_at_mask_zero_the_grown_model_is_the_source(family, token_ids):
    small, big = grown(family)
    # without the masks the random new units change the function (that is MSG's point)
    assert (logits(big, token_ids) - logits(small, token_ids)).abs().max() > 1e-3
    masks = MSGMasks(big, small.config)
    assert masks.new_layers == [2, 3]
    torch.testing.assert_close(logits(big, token_ids), logits(small, token_ids), rtol=0, atol=1e-10)


@pytest.mark.parametrize("family", ["bert", "gpt2"])
def test_depth_alone_and_width_alone_are_exact_at_mask_zero(family, token_ids):
    small = trained_like_model(family)
    for target in (tiny_config(family, num_hidden_layers=5), wide_config(family, layers=2)):
        big = grow(small, target, depth="msg", width="msg", seed=2).double().eval()
        MSGMasks(big, small.config)
        torch.testing.assert_close(logits(big, token_ids), logits(small, token_ids), rtol=0, atol=1e-10)


@pytest.mark.parametrize("family", MSG_FAMILIES)
def test_at_mask_one_the_masks_are_the_identity_and_go_away(family, token_ids, tmp_path):
    from transformers import AutoConfig, AutoModelForCausalLM, AutoModelForMaskedLM

    small, big = grown(family)
    plain = logits(big, token_ids)
    masks = MSGMasks(big, small.config, value=0.5)
    halfway = logits(big, token_ids)
    assert (halfway - plain).abs().max() > 1e-3 and (halfway - logits(small, token_ids)).abs().max() > 1e-3
    masks.set(1.0)
    torch.testing.assert_close(logits(big, token_ids), plain, rtol=0, atol=1e-10)
    masks.remove()
    assert not masks.installed
    assert not any(m._forward_hooks for m in big.modules())
    assert not any("forward" in vars(m) for m in big.modules())  # the norms' own forward again
    torch.testing.assert_close(logits(big, token_ids), plain, rtol=0, atol=0)
    big.save_pretrained(tmp_path)
    auto = AutoModelForCausalLM if AutoConfig.from_pretrained(tmp_path).model_type in ("gpt2", "llama") \
        else AutoModelForMaskedLM
    loaded = auto.from_pretrained(tmp_path, dtype=torch.float64).eval()
    torch.testing.assert_close(logits(loaded, token_ids), plain, rtol=0, atol=0)


def test_mask_values_are_checked_and_the_state_round_trips():
    small, big = grown("gpt2")
    masks = MSGMasks(big, small.config)
    with pytest.raises(ValueError, match="between 0 and 1"):
        masks.set(1.5)
    masks.set(0.25)
    other = MSGMasks(grow(small, big.config, depth="msg", width="msg"), small.config)
    other.load_state_dict(masks.state_dict())
    assert other.value == 0.25 and torch.equal(other.masks["hidden"], masks.masks["hidden"])
    assert masks.masks["hidden"][:64].eq(1).all() and masks.masks["hidden"][64:].eq(0.25).all()


def test_the_ramp_moves_the_masks_each_step_removes_them_at_one_and_restores_its_position():
    small, big = grown("bert")
    masks = MSGMasks(big, small.config)
    ramp = MSGRamp(masks, ramp_steps=4)
    trainer = type("T", (), {})()
    trainer.progress = type("P", (), {"step": 0})()
    seen = []
    for step in range(1, 6):
        trainer.progress.step = step
        ramp.after_step(trainer, None)
        seen.append((masks.value, masks.installed))
    assert seen == [(0.25, True), (0.5, True), (0.75, True), (1.0, False), (1.0, False)]
    # a resumed run (fresh masks at 0) is put back where the checkpoint's step says
    again = MSGRamp(MSGMasks(grow(small, big.config, depth="msg", width="msg"), small.config), 4)
    again.restore(trainer, ramp.state(), {}, step=2)
    assert again.masks.value == 0.5 and again.masks.installed
    with pytest.raises(ValueError, match="same --msg_ramp_steps"):
        MSGRamp(again.masks, 8).restore(trainer, ramp.state(), {}, step=2)
    with pytest.raises(ValueError, match="at least 1"):
        MSGRamp(masks, 0)


def msg_argv(tmp_path, out, source, corpus, cache, *extra):
    from tests.conftest import TRAINED_VOCAB, run_argv, write_config

    config = write_config(tmp_path, "gpt2", n_layer=4, n_embd=128, n_head=4, n_inner=512,
                          vocab_size=TRAINED_VOCAB,  # and the source's own tokenizer
                          resid_pdrop=0.0, embd_pdrop=0.0, attn_pdrop=0.0)  # DDP: no dropout
    return run_argv(tmp_path / out, "gpt2", corpus, cache, "--source_model_path", str(source),
                    "--grow_scheme", "msg", "--msg_ramp_steps", "4", "--max_steps", "6",
                    "--eval_steps", "6", "--ckpt_steps", "2", *extra, config=config,
                    tokenizer=source)


@pytest.mark.slow
def test_an_msg_run_resumes_mid_ramp_exactly_and_saves_an_ordinary_model(
        tmp_path, small_run, small_corpus, cache_dir, caplog):
    from transformers import AutoModelForCausalLM

    from ligo.pretrain import main
    from tests.conftest import assert_resume_equals_straight

    source = small_run("gpt2")
    with caplog.at_level("INFO", logger="ligo"):  # resumed after step 2: at mask 0.5
        straight = assert_resume_equals_straight(
            lambda out, *extra: msg_argv(tmp_path, out, source, small_corpus, cache_dir, *extra),
            stop_after=2)
    assert straight["finished"]
    assert any("masks reached 1 at step 4" in r.getMessage() for r in caplog.records)
    loaded = AutoModelForCausalLM.from_pretrained(tmp_path / "straight")
    assert loaded.config.n_embd == 128 and loaded.config.n_layer == 4
    with pytest.raises(ValueError, match="must end before the run"):
        main(msg_argv(tmp_path, "long", source, small_corpus, cache_dir, "--msg_ramp_steps", "6"))


@pytest.mark.slow
def test_two_process_ddp_through_the_ramp_equals_one_process(tmp_path, small_run, small_corpus, cache_dir):
    from tests.conftest import assert_two_process_ddp_equals_one_process

    source = small_run("gpt2")
    assert_two_process_ddp_equals_one_process(
        lambda out: msg_argv(tmp_path, out, source, small_corpus, cache_dir))


def schedule_argv(tmp_path, corpus, cache):
    from tests.conftest import TRAINED_VOCAB, run_argv, write_config

    # an 8k BPE trained on the corpus (once per cache): the published 50k one's head was most
    # of each step
    config = write_config(tmp_path, "gpt2", resid_pdrop=0.0, embd_pdrop=0.0, attn_pdrop=0.0,
                          vocab_size=TRAINED_VOCAB)

    def argv(name, *extra):
        return run_argv(tmp_path / name, "gpt2", corpus, cache, "--max_steps", "8",
                        "--eval_steps", "100", "--ckpt_steps", "2", "--logging_steps", "1",
                        "--learning_rate", "1e-3", *extra, config=config, tokenizer="trained")
    return argv


def train_losses(run_dir):
    import json

    rows = [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines()]
    return {row["step"]: row["loss"] for row in rows if row["split"] == "train"}


@pytest.mark.slow
def test_an_msg_doubling_inside_a_schedule_keeps_the_loss_and_resumes_exactly(
        tmp_path, small_corpus, cache_dir, caplog):
    """gpt2-tiny doubles depth and width at step 3 under MSG's masks (ramp: 2 steps): step 4,
    the first of the grown model, has the loss the ungrown model has on that batch; stopped
    mid-ramp and resumed, the run ends as an uninterrupted one, an ordinary model."""
    from transformers import AutoModelForCausalLM

    from ligo.pretrain import main
    from tests.conftest import assert_resume_equals_straight

    argv = schedule_argv(tmp_path, small_corpus, cache_dir)
    msg = ("--double_at", "3:both", "--width_scheme", "msg", "--msg_ramp_steps", "2")
    with caplog.at_level("INFO", logger="ligo"):
        straight = assert_resume_equals_straight(lambda name, *extra: argv(name, *msg, *extra),
                                                 stop_after=4)
    assert [(e["step"], e["kind"]) for e in straight["growth_events"]] == [(3, "both")]
    assert any("masks reached 1 at step 5" in r.getMessage() for r in caplog.records)
    main(argv("plain", "--max_steps", "8", "--stop_after_steps", "4"))  # no growth, same LR curve
    grown, plain = train_losses(tmp_path / "straight"), train_losses(tmp_path / "plain")
    assert [grown[s] for s in (1, 2, 3)] == [plain[s] for s in (1, 2, 3)]
    assert grown[4] == pytest.approx(plain[4], abs=2e-5)  # the grown model at mask 0
    model = AutoModelForCausalLM.from_pretrained(tmp_path / "straight")
    assert (model.config.n_layer, model.config.n_embd) == (4, 128)
    with pytest.raises(ValueError, match="would still ramp at the next event"):
        main(argv("close", "--double_at", "3:width,4:depth", "--width_scheme", "msg",
                  "--msg_ramp_steps", "2"))
    with pytest.raises(ValueError, match="MSG in a growth schedule: with --double_at"):
        main(argv("heads", "--grow_when", "slope", "--width_scheme", "msg"))


@pytest.mark.slow
def test_progressive_stacking_with_msg_stages(tmp_path, small_corpus, cache_dir):
    from ligo.pretrain import main

    argv = schedule_argv(tmp_path, small_corpus, cache_dir)
    results = main(argv("stages", "--stages", "1,2", "--stage_steps", "3,5",
                        "--stage_operator", "msg", "--msg_ramp_steps", "2"))
    assert results["finished"] and [e["kind"] for e in results["growth_events"]] == ["stage"]
    losses = train_losses(tmp_path / "stages")
    assert all(math.isfinite(v) for v in losses.values())
    with pytest.raises(ValueError, match="must reach 1 before the run ends"):
        main(argv("late", "--stages", "1,2", "--stage_steps", "3,5", "--stage_operator", "msg",
                  "--msg_ramp_steps", "5"))
