"""MSG (masked structural growth): at mask 0 the grown model computes the source's function
for every family and every kind of growth (hidden size, FFN units, heads, key/value heads,
layers), in float64 with every parameter perturbed; at mask 1 the masks are the identity and
removing them leaves an ordinary HF model."""
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
    from tests.conftest import run_argv, write_config

    config = write_config(tmp_path, "gpt2", n_layer=4, n_embd=128, n_head=4, n_inner=512,
                          resid_pdrop=0.0, embd_pdrop=0.0, attn_pdrop=0.0)  # DDP: no dropout
    return run_argv(tmp_path / out, "gpt2", corpus, cache, "--source_model_path", str(source),
                    "--grow_scheme", "msg", "--msg_ramp_steps", "4", "--max_steps", "6",
                    "--eval_steps", "6", "--ckpt_steps", "2", *extra, config=config)


@pytest.mark.slow
def test_an_msg_run_resumes_mid_ramp_exactly_and_saves_an_ordinary_model(
        tmp_path, small_run, small_corpus, cache_dir, caplog):
    from safetensors.torch import load_file
    from transformers import AutoModelForCausalLM

    from ligo.pretrain import main

    source = small_run("gpt2")
    with caplog.at_level("INFO", logger="ligo"):
        straight = main(msg_argv(tmp_path, "straight", source, small_corpus, cache_dir))
    assert straight["finished"]
    assert any("masks reached 1 at step 4" in r.getMessage() for r in caplog.records)
    first = main(msg_argv(tmp_path, "resumed", source, small_corpus, cache_dir, "--stop_after_steps", "2"))
    assert not first["finished"] and first["step"] == 2  # stopped at mask 0.5
    main(msg_argv(tmp_path, "resumed", source, small_corpus, cache_dir, "--should_continue"))
    a, b = load_file(tmp_path / "straight" / "model.safetensors"), load_file(tmp_path / "resumed" / "model.safetensors")
    assert all(torch.equal(a[k], b[k]) for k in a)
    loaded = AutoModelForCausalLM.from_pretrained(tmp_path / "straight")
    assert loaded.config.n_embd == 128 and loaded.config.n_layer == 4
    with pytest.raises(ValueError, match="must end before the run"):
        main(msg_argv(tmp_path, "long", source, small_corpus, cache_dir, "--msg_ramp_steps", "6"))


@pytest.mark.slow
def test_two_process_ddp_through_the_ramp_equals_one_process(tmp_path, small_run, small_corpus, cache_dir):
    from safetensors.torch import load_file

    from ligo.pretrain import main
    from tests.conftest import torchrun

    source = small_run("gpt2")
    main(msg_argv(tmp_path, "single", source, small_corpus, cache_dir))
    argv = msg_argv(tmp_path, "ddp", source, small_corpus, cache_dir)
    argv[argv.index("--per_device_train_batch_size") + 1] = "4"  # 2 processes x 4 = 8
    torchrun(argv)
    a, b = load_file(tmp_path / "single" / "model.safetensors"), load_file(tmp_path / "ddp" / "model.safetensors")
    for key in a:
        torch.testing.assert_close(a[key], b[key], rtol=0, atol=2e-6, msg=key)
