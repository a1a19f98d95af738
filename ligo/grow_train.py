"""Train a LiGO operator on the large model's own pretraining loss (run_grow_distributed.py).

    python run_grow_distributed.py --config configs/bert_wiki.txt \
        --config_name configs/bert-12L-768H.json --output_dir OP_DIR \
        --source_model_path SMALL_DIR --tune_width --tune_depth \
        --fuse_init_scheme stackbert_noisy rand --max_steps 100
    torchrun --nproc_per_node 8 run_grow_distributed.py ...   # data parallel

The loss is the large architecture's MLM or CLM loss, computed with the operator's output as
the model's weights (torch.func.functional_call); only the operator's parameters learn.
OP_DIR then holds ligo_operator.pt, ligo_operator.json (configs, options, training cost) and
the source's tokenizer. Grow and pretrain with
    run_lm_distributed.py ... --grow_scheme ligo --pretrained_ligo_path OP_DIR
"""
from __future__ import annotations

import json
import logging
import sys
from dataclasses import asdict
from pathlib import Path

import torch

from ligo import distributed
from ligo.cli import run, run_distributed
from ligo.config import DataArguments, LiGOArguments, ModelArguments, TrainingArguments
from ligo.data.tokenizer import save_hf_tokenizer
from ligo.fileio import atomic_write_text
from ligo.models import load_config, model_from_state
from ligo.operators.learned import LiGO, check_ligo_growth, generation_flops, save_operator
from ligo.pretrain import build_trainer, learned_line, prepare_run, run_results
from ligo.train.checkpoint import read_source_model
from ligo.train.flops import training_flops_per_token
from ligo.train.growth import LiGOLoss
from ligo.train.objective import LanguageModelingLoss

log = logging.getLogger("ligo.grow_train")
# the operator trains for ~100 steps: its warmup must be a part of them
DEFAULT_WARMUP_RATIO = 0.1


def cli(argv: list[str] | None = None) -> None:
    run(main, argv)


def main(argv: list[str] | None = None) -> dict:
    return run_distributed(train_operator, (ModelArguments, DataArguments, TrainingArguments,
                                            LiGOArguments), argv, __doc__)


def fixed_operator(options) -> tuple[str, str]:
    """(depth, width) of the fixed operator a LiGO operator is compared with: the one it
    starts from, or stack + bert2bert_fpi (StackBERT), the init it starts near."""
    if options.init_from:
        return options.init_from[0], options.init_from[1] or "bert2bert_fpi"
    return "stack", "bert2bert_fpi"


def reference_losses(trainer, small_config, small_state, setup, device, options) -> dict[str, float]:
    """Eval loss, on the run's own eval blocks, of the source and of the fixed operator that
    LiGO generalises (`fixed_operator(options)`: the one it starts from, with its split, or
    stack + bert2bert_fpi, the StackBERT init it starts near): what the operator's training
    has to beat to be worth its FLOPs."""
    import ligo

    depth, width = fixed_operator(options)
    small = model_from_state(small_config, small_state)
    fixed = ligo.grow(small, setup.config, depth=depth, width=width, seed=options.seed,
                      width_split_noise=options.init_split_noise)
    losses = {name: trainer.evaluate(LanguageModelingLoss(model, setup.family).to(device))["loss"]
              for name, model in (("source", small), ("fixed_operator", fixed))}
    del fixed  # a whole large model: not kept beside the operator's training
    return losses


def train_operator(model_args: ModelArguments, data_args: DataArguments,
                   train_args: TrainingArguments, ligo_args: LiGOArguments,
                   info: distributed.DistInfo) -> dict:
    if (train_args.parallelism != "ddp" or train_args.tp_size != 1
            or train_args.checkpoint_format != "full"):
        raise ValueError("LiGO operator training runs with --parallelism ddp, no --tp_size and "
                         "full checkpoints (the operator is small; the large model is only a "
                         "meta-device skeleton)")
    if model_args.position_init != "random":
        raise ValueError("--position_init initialises a model trained from scratch; the "
                         "operator grows the source's own position table: drop the flag")
    if train_args.layer_drop or train_args.token_drop:
        raise ValueError("--layer_drop and --token_drop act in the grown model's own training "
                         "(run_lm_distributed.py --grow_scheme ligo ...), not in the operator's")
    if train_args.warmup_ratio is None:
        train_args.warmup_ratio = DEFAULT_WARMUP_RATIO
    options = ligo_args.options()
    small_config, small_state = read_source_model(ligo_args.source_model_path)
    check_ligo_growth(small_config, load_config(model_args.config_name), options)  # before any work
    source = str(Path(ligo_args.source_model_path).resolve())
    setup = prepare_run(model_args, data_args, train_args, info, ligo_args.source_model_path,
                        {"ligo": {"source": source, **asdict(options)}},
                        inputs={"--source_model_path": ligo_args.source_model_path})

    torch.manual_seed(train_args.seed)
    operator = LiGO(small_state, small_config, setup.config, options).to(info.device)
    loss_module = LiGOLoss(operator, info.device)
    # every micro-batch generates the weights once (forward and backward: 3x)
    micro_tokens = train_args.per_device_train_batch_size * data_args.block_size
    flops_per_token = (training_flops_per_token(setup.config, data_args.block_size,
                                                setup.data.head_fraction, setup.family.head_transform)
                       + 3 * generation_flops(operator) / micro_tokens)
    trainer = build_trainer(loss_module=distributed.wrap_data_parallel(loss_module, info),
                            model=operator, setup=setup, train_args=train_args, info=info,
                            flops_per_token=flops_per_token)
    trainable = sum(p.numel() for p in operator.parameters() if p.requires_grad)
    fixed_name = " + ".join(fixed_operator(options)) + (
        f", copies split by {options.init_split_noise:g}" if options.init_split_noise else "")
    init = (f"exactly {fixed_name}'s weights (--init_from_operator)" if options.init_from
            else " ".join(ligo_args.fuse_init_scheme))
    log.info("LiGO %s -> %s: %.2fM trainable parameters (%s), init %s; %d train blocks, global "
             "batch %d, %.3g FLOPs per token", ligo_args.source_model_path, model_args.config_name,
             trainable / 1e6, ", ".join(k for k in ("width", "depth", "residual", "small_model")
                                        if getattr(options, f"tune_{k}")),
             init, len(setup.data.train), trainer.global_batch, flops_per_token)
    references = reference_losses(trainer, small_config, small_state, setup, info.device, options)
    initial = trainer.evaluate() if trainer.progress.step == 0 else {}
    if initial:
        log.info("eval loss at the start: source %.4f, fixed operator (%s) %.4f, the operator's "
                 "init %.4f", references["source"], fixed_name, references["fixed_operator"],
                 initial["loss"])
    evaluation = trainer.fit() or trainer.evaluate()
    log.info("eval loss at the end: the operator %.4f, %+.4f vs the fixed operator (%s) %.4f "
             "(source %.4f); the operator phase pays for itself only if its gain beats what %d "
             "steps of the large model would bring", evaluation["loss"],
             evaluation["loss"] - references["fixed_operator"], fixed_name,
             references["fixed_operator"], references["source"], trainer.progress.step)
    results = run_results(trainer, evaluation, operator_parameters=trainable,
                          flops_per_token=flops_per_token, init_eval_loss=initial.get("loss"),
                          source_eval_loss=references["source"],
                          fixed_operator_eval_loss=references["fixed_operator"],
                          fixed_operator=fixed_name)
    if info.is_main:
        out = Path(train_args.output_dir)
        if results["finished"]:
            save_operator(operator, out, {"flops": trainer.progress.flops,
                                          "seconds": trainer.progress.seconds,
                                          "steps": trainer.progress.step,
                                          "tokens": trainer.progress.tokens})
            save_hf_tokenizer(setup.tokenizer, setup.family, out)
        atomic_write_text(out / "results.json", json.dumps(results, indent=1))
        log.info("operator %s at step %d: %s (at init %s); %s",
                 "trained" if results["finished"] else "stopped", trainer.progress.step,
                 learned_line(evaluation, trainer.unigram_loss),
                 f"{initial['loss']:.4f}" if initial else "n/a",
                 f"saved to {out}" if results["finished"] else "resume with --should_continue")
    trainer.metrics.close()
    return results


if __name__ == "__main__":
    cli(sys.argv[1:])
