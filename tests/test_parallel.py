"""FSDP2 (--parallelism fsdp) on CPU with gloo: the same training as DDP / one process, and
checkpoints that resume with another world size."""
import json
import re

import pytest
import torch
from safetensors.torch import load_file

from ligo.pretrain import main
from tests.conftest import CONFIGS, TRAINED_VOCAB, run_argv, torchrun, write_config

# float32 sums reduced in another order (reduce-scatter vs all-reduce, micro-batches) differ in
# the last bits; after 4 AdamW steps at lr 2e-4 that stays far below this
TOLERANCE = dict(rtol=0, atol=2e-6)


NO_DROPOUT = {"bert": dict(hidden_dropout_prob=0.0, attention_probs_dropout_prob=0.0),
              "gpt2": dict(resid_pdrop=0.0, embd_pdrop=0.0, attn_pdrop=0.0),
              "llama": dict(attention_dropout=0.0)}


def argv_for(tmp_path, out, small_corpus, cache_dir, per_device, accumulation, *extra, family="bert"):
    # GPT-2 and LLaMA: an 8k BPE trained on the corpus (once per cache, then read by every
    # rank), not the published 50k one whose head and optimizer state were most of the work
    vocab = {} if family == "bert" else {"vocab_size": TRAINED_VOCAB}
    config = write_config(tmp_path, family, **NO_DROPOUT[family], **vocab)
    argv = run_argv(tmp_path / out, family, small_corpus, cache_dir, "--max_steps", "4",
                    "--eval_steps", "4", "--ckpt_steps", "2", "--save_total_limit", "3",
                    "--gradient_accumulation_steps", str(accumulation), *extra, config=config,
                    tokenizer="published" if family == "bert" else "trained")
    argv[argv.index("--per_device_train_batch_size") + 1] = str(per_device)
    return argv


def assert_same_weights(a, b):
    a, b = load_file(a / "model.safetensors"), load_file(b / "model.safetensors")
    assert a.keys() == b.keys()
    for key in a:
        torch.testing.assert_close(b[key], a[key], **TOLERANCE, msg=key)


@pytest.mark.slow
def test_fsdp_training_equals_one_process_and_exports_a_plain_model(tmp_path, small_corpus,
                                                                    cache_dir):
    single = main(argv_for(tmp_path, "single", small_corpus, cache_dir, 8, 1))
    torchrun(argv_for(tmp_path, "fsdp", small_corpus, cache_dir, 2, 2, "--parallelism", "fsdp"))
    assert_same_weights(tmp_path / "single", tmp_path / "fsdp")
    fsdp = json.loads((tmp_path / "fsdp" / "results.json").read_text())
    assert abs(fsdp["eval_loss"] - single["eval_loss"]) < 1e-5
    from transformers import AutoModelForMaskedLM

    exported = AutoModelForMaskedLM.from_pretrained(tmp_path / "fsdp")
    assert exported.config.num_hidden_layers == 2


@pytest.mark.slow
def test_fsdp_checkpoint_resumes_with_another_world_size_and_back(tmp_path, small_corpus, cache_dir):
    main(argv_for(tmp_path, "straight", small_corpus, cache_dir, 8, 1))
    # 2 sharded processes for 2 steps, then 1 process to the end
    torchrun(argv_for(tmp_path, "two_then_one", small_corpus, cache_dir, 4, 1, "--parallelism",
                      "fsdp", "--stop_after_steps", "2"))
    main(argv_for(tmp_path, "two_then_one", small_corpus, cache_dir, 8, 1, "--should_continue"))
    assert_same_weights(tmp_path / "straight", tmp_path / "two_then_one")
    # 1 process for 2 steps, then 2 sharded processes to the end
    main(argv_for(tmp_path, "one_then_two", small_corpus, cache_dir, 8, 1, "--stop_after_steps", "2"))
    torchrun(argv_for(tmp_path, "one_then_two", small_corpus, cache_dir, 4, 1, "--parallelism",
                      "fsdp", "--should_continue"))
    assert_same_weights(tmp_path / "straight", tmp_path / "one_then_two")


def test_activation_checkpointing_trains_the_same_weights(tmp_path, small_corpus, cache_dir):
    main(argv_for(tmp_path, "plain", small_corpus, cache_dir, 8, 1))
    main(argv_for(tmp_path, "recompute", small_corpus, cache_dir, 8, 1, "--activation_checkpointing"))
    assert_same_weights(tmp_path / "plain", tmp_path / "recompute")


def test_unsupported_combinations_are_named(tmp_path, small_corpus, cache_dir):
    with pytest.raises(ValueError, match="--parallelism must be ddp or fsdp"):
        main(argv_for(tmp_path, "x", small_corpus, cache_dir, 8, 1, "--parallelism", "zero3"))
    with pytest.raises(ValueError, match="--stage_operator ligo runs with --parallelism ddp"):
        main(argv_for(tmp_path, "y", small_corpus, cache_dir, 8, 1, "--parallelism", "fsdp",
                      "--stages", "1,2", "--stage_steps", "2,2", "--stage_operator", "ligo"))


@pytest.mark.slow
@pytest.mark.parametrize("schedule", [
    ["--stages", "1,2", "--stage_steps", "2,2"],  # depth: stacking, moments mapped
    ["--double_at", "2:width"],  # width: staged training's doubling
])
@pytest.mark.parametrize("sharding", [(2, "--parallelism", "fsdp"),
                                      (4, "--tp_size", "2", "--checkpoint_format", "sharded")],
                         ids=["fsdp", "tp-sharded-checkpoints"])
def test_growth_schedule_sharded_equals_one_process(schedule, sharding, tmp_path, small_corpus,
                                                    cache_dir):
    """At a growth event the sharded model and AdamW state are gathered on every rank, grown,
    and sharded again (FSDP, or tensor parallelism); a run stopped after the event resumes."""
    main(argv_for(tmp_path, "single", small_corpus, cache_dir, 8, 1, *schedule))
    per_device, *flags = sharding
    sharded = argv_for(tmp_path, "sharded", small_corpus, cache_dir, per_device, 2, *schedule, *flags)
    if "--stages" in schedule:  # stop in stage 2, resume from its checkpoint
        torchrun(sharded + ["--stop_after_steps", "3"])
        assert not (tmp_path / "sharded" / "model.safetensors").exists()
        torchrun(sharded + ["--should_continue"])
    else:
        torchrun(sharded)
    results = json.loads((tmp_path / "sharded" / "results.json").read_text())
    assert [e["step"] for e in results["growth_events"]] == [2] and results["finished"]
    assert_same_weights(tmp_path / "single", tmp_path / "sharded")


@pytest.mark.slow
@pytest.mark.parametrize("family,sharded", [("bert", 24), ("roberta", 24), ("gpt2", 16), ("llama", 14)])
def test_tensor_parallel_layers_give_the_unsharded_logits_and_gradients(family, sharded):
    """Linear layers (BERT, RoBERTa, LLaMA with 4 query / 2 key-value heads: one group per
    rank) and GPT-2's Conv1D layers with the fused q|k|v."""
    done = torchrun([str(CONFIGS / f"{family}-tiny.json")], script="tests/tensor_parallel_check.py")
    assert f"TP_OK {sharded}" in done.stdout


def test_tensor_parallelism_is_refused_without_a_plan_or_with_heads_that_do_not_divide():
    import dataclasses

    from ligo.families import FAMILIES
    from ligo.models import build_model, load_config
    from ligo.parallel import apply_tensor_parallel

    class Mesh:
        def size(self):
            return 3

    config = load_config(CONFIGS / "gpt2-tiny.json")
    model = build_model(config, FAMILIES["gpt2"])
    with pytest.raises(ValueError, match="not available for gpt2 yet"):
        apply_tensor_parallel(model, dataclasses.replace(FAMILIES["gpt2"], tp_plan=None), Mesh())
    with pytest.raises(ValueError, match="2 attention heads do not divide over 3"):
        apply_tensor_parallel(model, FAMILIES["gpt2"], Mesh())


@pytest.mark.slow
def test_tensor_parallel_training_equals_one_process_and_resumes_on_one(tmp_path, small_corpus,
                                                                         cache_dir):
    """--tp_size 2 on 2 processes (one data-parallel group; activation checkpointing, whose
    recomputation repeats the collectives) trains the one-process weights; its checkpoint,
    written whole, resumes on one process."""
    single = main(argv_for(tmp_path, "single", small_corpus, cache_dir, 8, 2))
    torchrun(argv_for(tmp_path, "tp", small_corpus, cache_dir, 8, 2, "--tp_size", "2",
                      "--activation_checkpointing"))
    assert_same_weights(tmp_path / "single", tmp_path / "tp")
    tp = json.loads((tmp_path / "tp" / "results.json").read_text())
    assert abs(tp["eval_loss"] - single["eval_loss"]) < 1e-5
    torchrun(argv_for(tmp_path, "tp_then_one", small_corpus, cache_dir, 8, 2, "--tp_size", "2",
                      "--stop_after_steps", "2"))
    main(argv_for(tmp_path, "tp_then_one", small_corpus, cache_dir, 8, 2, "--should_continue"))
    assert_same_weights(tmp_path / "single", tmp_path / "tp_then_one")


@pytest.mark.slow
@pytest.mark.parametrize("family", ["bert", "gpt2", "llama"])
def test_fsdp_and_tensor_parallel_on_a_2d_mesh_equal_one_process(family, tmp_path, small_corpus,
                                                                 cache_dir, caplog):
    """4 processes: 2 data-parallel groups (FSDP) of 2 tensor-parallel ranks each; gradient
    clipping spans parameters on the 2-D and the 1-D mesh. GPT-2's fused q|k|v included, and
    LLaMA's grouped-query attention (one key/value head and its 2 query heads per rank). The
    evaluation scores the same blocks as one process, also when their number is odd (one
    data-parallel group then runs a padding forward)."""
    with caplog.at_level("INFO", logger="ligo"):
        single = main(argv_for(tmp_path, "single", small_corpus, cache_dir, 8, 1, "--max_grad_norm",
                               "0.05", family=family))
    torchrun(argv_for(tmp_path, "2d", small_corpus, cache_dir, 4, 1, "--max_grad_norm", "0.05",
                      "--parallelism", "fsdp", "--tp_size", "2", family=family), nproc=4)
    assert_same_weights(tmp_path / "single", tmp_path / "2d")
    two_d = json.loads((tmp_path / "2d" / "results.json").read_text())
    assert abs(two_d["eval_loss"] - single["eval_loss"]) < 1e-5
    rows = [json.loads(line) for line in (tmp_path / "single" / "metrics.jsonl").read_text().splitlines()]
    two_d_rows = [json.loads(line) for line in (tmp_path / "2d" / "metrics.jsonl").read_text().splitlines()]
    # the same label tokens scored: the same accuracy, the same unigram line
    assert [(r["accuracy"], r["below_unigram"] + r["loss"]) for r in rows if r["split"] == "eval"] == \
        pytest.approx([(r["accuracy"], r["below_unigram"] + r["loss"]) for r in two_d_rows if r["split"] == "eval"],
                      abs=1e-9)
    valid_blocks = int(re.search(r"(\d+) valid blocks", caplog.text).group(1))
    if family != "bert":  # 57 blocks with the 8k BPE (bert: 56), all scored (4 batches of 16)
        assert valid_blocks % 2 == 1 and valid_blocks <= 4 * 16
    clipped = [r["grad_norm"] for r in two_d_rows if r["split"] == "train"]
    assert clipped and min(clipped) > 0.05  # the clipping above was active


def assert_exports_the_weights_of(sharded_folder, full_folder, tmp_path):
    """python -m ligo.export turns the sharded checkpoint into an HF folder that
    AutoModelForMaskedLM loads, holding the weights the full checkpoint of that step holds."""
    from transformers import AutoModelForMaskedLM, AutoTokenizer

    from ligo.export import main as export
    from ligo.train.checkpoint import load_checkpoint

    export([str(sharded_folder), "--output_dir", str(tmp_path / "exported")])
    model = AutoModelForMaskedLM.from_pretrained(tmp_path / "exported")
    assert AutoTokenizer.from_pretrained(tmp_path / "exported").mask_token == "[MASK]"
    expected = load_checkpoint(full_folder)["model"]
    for key, value in model.state_dict().items():
        torch.testing.assert_close(value, expected[key], **TOLERANCE, msg=key)
    with pytest.raises(FileExistsError, match="is not empty"):
        export([str(sharded_folder), "--output_dir", str(tmp_path / "exported")])
    with pytest.raises(FileNotFoundError, match="holds no valid checkpoint"):
        export([str(tmp_path / "exported"), "--output_dir", str(tmp_path / "again")])


@pytest.mark.slow
def test_sharded_checkpoints_resume_with_another_world_size_and_parallelism(tmp_path, small_corpus,
                                                                            cache_dir):
    """--checkpoint_format sharded: every rank writes its shards (torch.distributed.checkpoint),
    nothing is gathered; FSDP on 2 -> 1 process, and 1 process -> TP on 2, equal an
    uninterrupted run."""
    main(argv_for(tmp_path, "straight", small_corpus, cache_dir, 8, 1))
    sharded = ["--checkpoint_format", "sharded"]
    torchrun(argv_for(tmp_path, "two_then_one", small_corpus, cache_dir, 4, 1, "--parallelism",
                      "fsdp", "--stop_after_steps", "2", *sharded))
    folder = tmp_path / "two_then_one" / "checkpoint-0000002"
    assert len(list((folder / "shards").glob("*.distcp"))) == 2  # one file per rank
    assert "model" not in torch.load(folder / "state.pt", weights_only=True)
    assert_exports_the_weights_of(folder, tmp_path / "straight" / "checkpoint-0000002", tmp_path)
    main(argv_for(tmp_path, "two_then_one", small_corpus, cache_dir, 8, 1, "--should_continue"))
    assert_same_weights(tmp_path / "straight", tmp_path / "two_then_one")
    main(argv_for(tmp_path, "one_then_tp", small_corpus, cache_dir, 8, 1, "--stop_after_steps", "2",
                  *sharded))
    torchrun(argv_for(tmp_path, "one_then_tp", small_corpus, cache_dir, 8, 1, "--tp_size", "2",
                      "--should_continue", *sharded))
    assert_same_weights(tmp_path / "straight", tmp_path / "one_then_tp")


def test_sharded_checkpoint_after_an_optimizer_reset_resumes_the_same(tmp_path, small_corpus,
                                                                      cache_dir):
    """Right after a growth event that resets AdamW the optimizer has no state yet; the sharded
    checkpoint leaves it out rather than let DCP create it with a zero-gradient step."""
    schedule = ["--stages", "1,2", "--stage_steps", "2,2", "--reset_optimizer", "--checkpoint_format",
                "sharded"]
    main(argv_for(tmp_path, "straight", small_corpus, cache_dir, 8, 1, *schedule))
    main(argv_for(tmp_path, "resumed", small_corpus, cache_dir, 8, 1, *schedule, "--stop_after_steps", "2"))
    state = torch.load(tmp_path / "resumed" / "checkpoint-0000002" / "state.pt", weights_only=True)
    assert state["optimizer_saved"] is False
    main(argv_for(tmp_path, "resumed", small_corpus, cache_dir, 8, 1, *schedule, "--should_continue"))
    assert_same_weights(tmp_path / "straight", tmp_path / "resumed")


def test_growth_reads_a_sharded_source_run_like_a_full_one(tmp_path, small_corpus, cache_dir):
    """The weights and AdamW moments a grown model starts from are the same whether the source
    run wrote full or sharded checkpoints."""
    from ligo.models import load_config
    from ligo.train.growth import grow_for_training
    from ligo.train.optim import build_optimizer

    for form in ("full", "sharded"):
        main(argv_for(tmp_path, form, small_corpus, cache_dir, 8, 1, "--checkpoint_format", form))
    large = load_config(write_config(tmp_path, "bert", num_hidden_layers=4))
    grown = {form: grow_for_training(tmp_path / form, large, depth="stack")
             for form in ("full", "sharded")}
    for key, value in grown["full"][0].state_dict().items():
        torch.testing.assert_close(grown["sharded"][0].state_dict()[key], value, rtol=0, atol=0)
    template = build_optimizer(grown["full"][0], 1e-3, 0.01, (0.9, 0.98), 1e-6).state_dict()
    full, sharded = grown["full"][1](template), grown["sharded"][1](template)
    assert full["state"].keys() == sharded["state"].keys() and full["state"]
    for index, moments in full["state"].items():
        for name, value in moments.items():
            torch.testing.assert_close(sharded["state"][index][name], value, rtol=0, atol=0)


def test_tensor_parallel_sizes_that_do_not_fit_are_named():
    from ligo.distributed import DistInfo
    from ligo.families import FAMILIES
    from ligo.parallel import parallelize, with_tensor_parallel

    with pytest.raises(ValueError, match="--tp_size 2 must divide the number of processes"):
        with_tensor_parallel(DistInfo(world_size=3), 2)
    with pytest.raises(ValueError, match="combine it with --parallelism fsdp"):
        parallelize(torch.nn.Linear(1, 1), torch.nn.Linear(1, 1), FAMILIES["bert"],
                    DistInfo(world_size=4, tp_size=2), "ddp")


@pytest.mark.slow
def test_a_grown_model_trains_the_same_under_fsdp(tmp_path, small_run, small_corpus, cache_dir):
    """Growth is built whole on each rank's CPU, then sharded; the mapped AdamW moments load
    into the sharded optimizer."""
    source = small_run("bert")
    config = write_config(tmp_path, "bert", num_hidden_layers=4, hidden_size=128,
                          num_attention_heads=4, intermediate_size=512, hidden_dropout_prob=0.0,
                          attention_probs_dropout_prob=0.0)

    def argv(out, per_device, *extra):
        args = run_argv(tmp_path / out, "bert", small_corpus, cache_dir, "--max_steps", "3",
                        "--eval_steps", "3", "--source_model_path", str(source), "--grow_scheme",
                        "stack", "--width_scheme", "bert2bert_aki", *extra, config=config)
        args[args.index("--per_device_train_batch_size") + 1] = str(per_device)
        return args

    main(argv("single", 8))
    torchrun(argv("fsdp", 4, "--parallelism", "fsdp"))
    assert_same_weights(tmp_path / "single", tmp_path / "fsdp")
