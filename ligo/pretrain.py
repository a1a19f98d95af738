"""Pretrain a BERT, RoBERTa or GPT-2 model from scratch (or from given weights).

    python run_lm_distributed.py --config configs/bert_wiki.txt \
        --config_name configs/bert-6L-512H.json --output_dir out/
    torchrun --nproc_per_node 2 run_lm_distributed.py ...   # data parallel

Stages: arguments -> model config -> corpus -> tokenizer -> token cache -> model ->
training loop -> HF-format model + tokenizer in output_dir.
"""
from __future__ import annotations

import json
import logging
import os
import shutil
import sys
from dataclasses import dataclass
from pathlib import Path

import torch

from ligo import distributed, parallel
from ligo.cli import run, run_distributed
from ligo.config import DataArguments, GrowthArguments, ModelArguments, ScheduleArguments, TrainingArguments
from ligo.data.corpus import resolve_corpus
from ligo.data.pipeline import LMData, align_config_with_tokenizer, build_lm_data, obtain_tokenizer
from ligo.data.tokenizer import save_hf_tokenizer
from ligo.families import Family, family_of
from ligo.fileio import atomic_write_text, refuse_foreign_output, refuse_output_holding_inputs
from ligo.growth_plan import final_config, non_embedding_parameters, plan_events
from ligo.models import (
    build_model,
    check_block_size,
    check_position_init,
    check_weights_fit,
    init_position_table,
    load_config,
    model_from_state,
)
from ligo.operators.learned import grow_with_operator
from ligo.schedule import GrowthSchedule
from ligo.slope import SlopeRule, auto_learning_rate
from ligo.train import checkpoint
from ligo.train.checkpoint import list_checkpoints, load_latest_valid, read_source_model
from ligo.train.drop import Drops, LayerDrop, TokenDrop
from ligo.train.flops import training_flops_per_token
from ligo.train.growth import grow_for_training
from ligo.train.loop import Trainer
from ligo.train.metrics import MetricsLogger, relative_to_unigram
from ligo.train.msg import MSGMasks, MSGRamp
from ligo.train.objective import LanguageModelingLoss
from ligo.train.optim import LRSchedule, build_optimizer, build_scheduler, position_scheduler

log = logging.getLogger("ligo")
RUN_FILE = "run.json"
# what a run writes besides checkpoints; --overwrite_output_dir removes exactly these
OWN_OUTPUTS = ("tensorboard", "metrics.jsonl", RUN_FILE, "results.json", "config.json",
               "generation_config.json", "model.safetensors", "tokenizer.json",
               "tokenizer_config.json", "special_tokens_map.json", "ligo_operator.pt",
               "ligo_operator.json")


def prepare_output_dir(args: TrainingArguments, identity: dict, info) -> None:
    """Refuse to mix two runs in one folder; never delete anything not asked to."""
    out = Path(args.output_dir)
    if out.exists() and not out.is_dir():
        raise NotADirectoryError(f"--output_dir {out} is a file")
    try:
        out.mkdir(parents=True, exist_ok=True)
    except OSError as error:
        raise PermissionError(f"cannot create --output_dir {out}: {error.strerror}") from error
    if not os.access(out, os.W_OK):
        raise PermissionError(f"--output_dir {out} is not writable")
    run_file = out / RUN_FILE
    has_run = run_file.exists() or list_checkpoints(out)
    if has_run and args.should_continue:
        if run_file.exists():
            try:
                previous = json.loads(run_file.read_text())
            except (json.JSONDecodeError, UnicodeDecodeError) as error:
                raise ValueError(f"{run_file} is not valid JSON ({error}); it is not a run "
                                 "this package wrote") from None
            current = json.loads(json.dumps(identity))  # as it was recorded: tuples become lists
            changed = sorted(k for k in current if previous.get(k) != current[k])
            if changed:
                raise ValueError(f"--output_dir {out} holds a different run (differs in: "
                                 f"{', '.join(changed)}); use another folder")
    elif has_run and not args.overwrite_output_dir:
        raise FileExistsError(f"--output_dir {out} already holds a run; pass --should_continue "
                              "to resume it or --overwrite_output_dir to replace it")
    elif has_run and info.is_main:
        for _, folder in list_checkpoints(out):
            shutil.rmtree(folder)
        for name in OWN_OUTPUTS:
            path = out / name
            shutil.rmtree(path) if path.is_dir() else path.unlink(missing_ok=True)
    if info.is_main:
        for stray in out.glob(".checkpoint-*.tmp"):  # left by a write that was killed
            shutil.rmtree(stray, ignore_errors=True)
            log.info("removed %s (a checkpoint write that never finished)", stray)
    distributed.barrier(info)
    if info.is_main:
        atomic_write_text(run_file, json.dumps(identity, indent=1, sort_keys=True))


def cli(argv: list[str] | None = None) -> None:
    """Console entry (run_lm_distributed.py, ligo-pretrain): `main` via ligo.cli.run."""
    run(main, argv)


def main(argv: list[str] | None = None) -> dict:
    return run_distributed(pretrain, (ModelArguments, DataArguments, TrainingArguments,
                                      GrowthArguments, ScheduleArguments), argv, __doc__)


@dataclass
class RunSetup:
    """What every run on the large model's own loss shares: config, data, identity."""

    config: object
    family: Family
    tokenizer: object
    data: LMData
    identity: dict


def prepare_run(model_args: ModelArguments, data_args: DataArguments,
                train_args: TrainingArguments, info: distributed.DistInfo,
                tokenizer_path: str | None = None, extra_identity: dict | None = None,
                inputs: dict | None = None) -> RunSetup:
    """Arguments -> model config, corpus, tokenizer, output folder, token blocks.
    `inputs` (flag -> path): more folders the run reads, never to be its output folder."""
    refuse_output_holding_inputs(train_args.output_dir, {
        "--config_name": model_args.config_name or None,
        "--model_name_or_path": model_args.model_name_or_path,
        "--tokenizer_path": model_args.tokenizer_path, "--train_files": data_args.train_files,
        **(inputs or {})})
    out = Path(train_args.output_dir)
    if not ((out / RUN_FILE).exists() or list_checkpoints(out)):  # a run: prepare_output_dir
        # a run writes run.json before anything else, so without one nothing here is a run's
        # own, whatever the names (a model folder holds config.json and model.safetensors too)
        refuse_foreign_output(out, lambda name: False, train_args.overwrite_output_dir,
                              "a run's (there is no run.json)")
    if train_args.num_threads:
        torch.set_num_threads(train_args.num_threads)
    config = load_config(model_args.config_name or model_args.model_name_or_path)
    family = family_of(config)
    check_block_size(config, family, data_args.block_size)
    if model_args.model_name_or_path:
        check_weights_fit(config, model_args.model_name_or_path)
    if data_args.whole_word_mask and family.objective != "mlm":
        raise ValueError(f"--whole_word_mask is for masked-LM models; {family.name} learns the "
                         "next token: drop it")

    corpus = resolve_corpus(data_args.train_files, data_args.documents, data_args.dataset_name,
                            data_args.dataset_config_name, data_args.text_column)
    tok = obtain_tokenizer(model_args.tokenizer_path or tokenizer_path, corpus, family,
                           config.vocab_size, data_args.cache_dir, info)
    ids = align_config_with_tokenizer(config, family, tok, data_args.block_size)
    identity = {"model_config": config.to_diff_dict(), "corpus": corpus.key(),
                "tokenizer_vocab": tok.get_vocab_size(with_added_tokens=True),
                "block_size": data_args.block_size, "seed": train_args.seed,
                "global_batch_size": train_args.per_device_train_batch_size
                * info.dp_size * train_args.gradient_accumulation_steps, **(extra_identity or {})}
    identity["model_config"].pop("transformers_version", None)
    prepare_output_dir(train_args, identity, info)
    if info.is_main:  # from the start, so a checkpoint exported mid-run (ligo.export) has it
        save_hf_tokenizer(tok, family, train_args.output_dir)
    data = build_lm_data(corpus, tok, ids, family, block_size=data_args.block_size,
                         valid_percent=data_args.validation_split_percentage,
                         cache_dir=data_args.cache_dir, mlm_probability=data_args.mlm_probability,
                         whole_word_mask=data_args.whole_word_mask, seed=train_args.seed, info=info,
                         progress=not train_args.disable_tqdm)
    return RunSetup(config, family, tok, data, identity)


def optimizer_builder(train_args: TrainingArguments):
    """model (, lr) -> AdamW with the run's settings."""
    def make(model: torch.nn.Module, lr: float | None = None) -> torch.optim.Optimizer:
        return build_optimizer(model, lr or train_args.learning_rate, train_args.weight_decay,
                               (train_args.adam_beta1, train_args.adam_beta2), train_args.adam_epsilon)
    return make


def build_trainer(*, loss_module: torch.nn.Module, model: torch.nn.Module, setup: RunSetup,
                  train_args: TrainingArguments, info: distributed.DistInfo,
                  flops_per_token: float, map_optimizer_state=None, growth=None,
                  end_step: int | None = None) -> Trainer:
    """AdamW over `model`'s trainable parameters, its schedule, and the loop; resumed from
    the newest valid checkpoint with --should_continue. With a growth schedule
    (ligo.schedule.GrowthSchedule) the LR follows its piecewise schedule. `end_step`: the
    run's length when a schedule plans it (default --max_steps). Another growth hook (MSG's
    ramp) leaves the LR schedule as it is."""
    optimizer = optimizer_builder(train_args)(model)
    if isinstance(growth, GrowthSchedule):
        scheduler = position_scheduler(optimizer, growth.lr, 0)
    else:
        scheduler = build_scheduler(optimizer, train_args.lr_scheduler_type,
                                    train_args.num_warmup_steps, train_args.max_steps,
                                    train_args.lr_end, train_args.poly_power)
    if map_optimizer_state is not None:  # a plain-format AdamW state, whatever the sharding
        template = {"param_groups": optimizer.state_dict()["param_groups"]}
        checkpoint.load_full_state(model, optimizer, None, map_optimizer_state(template))
    scaler = torch.amp.GradScaler(info.device.type, enabled=train_args.fp16)
    trainer = Trainer(loss_module=loss_module, model=model, optimizer=optimizer,
                      scheduler=scheduler, scaler=scaler, train_blocks=setup.data.train,
                      valid_blocks=setup.data.valid, collator=setup.data.collator, args=train_args,
                      info=info, flops_per_token=flops_per_token, run_identity=setup.identity,
                      metrics=MetricsLogger(train_args.output_dir, info.is_main), growth=growth,
                      end_step=end_step)
    trainer.unigram_loss = trainer.compute_unigram_loss(
        setup.tokenizer.get_vocab_size(with_added_tokens=True))
    log.info("unigram line of the eval set: %.4f nats (the loss of predicting every label by "
             "its training frequency; a model that has learned nothing more sits there)",
             trainer.unigram_loss)
    if train_args.should_continue:
        found = load_latest_valid(Path(train_args.output_dir), info)
        if found:
            check_same_run(found[0], found[1], setup.identity)
            trainer.load_state(found[1], found[0])
            log.info("resuming from %s (step %d)", found[0], trainer.progress.step)
        else:
            log.info("--should_continue: no valid checkpoint in %s, starting fresh",
                     train_args.output_dir)
    if train_args.should_continue:  # rows the killed process wrote past its last checkpoint
        trainer.metrics.drop_after(trainer.progress.step)
    if trainer.progress.step == 0:  # once per run, for tensorboard and readers of metrics.jsonl
        trainer.metrics.log("unigram", {"loss": trainer.unigram_loss}, 0, 0, 0.0, 0.0)
    return trainer


def check_same_run(folder: Path, state: dict, identity: dict) -> None:
    """A checkpoint records its run's identity: resuming another run's checkpoint (another
    model, corpus, batch ...) is refused by name, not by a shape-mismatch traceback."""
    try:
        recorded = json.loads(state.get("run") or "{}")
    except (TypeError, json.JSONDecodeError):
        raise ValueError(f"{folder} records no readable run identity; it was not written by "
                         "this package") from None
    current = json.loads(json.dumps(identity))  # as it was recorded: tuples become lists
    changed = sorted(k for k in current if k in recorded and recorded[k] != current[k])
    if changed:
        raise ValueError(f"{folder} is a checkpoint of another run (differs in: "
                         f"{', '.join(changed)}); resume in its own folder or choose another "
                         "--output_dir")


def learned_line(evaluation: dict, unigram: float) -> str:
    """'eval loss X, unigram Y: Z nats below' (what a run learned beyond frequencies)."""
    return (f"eval loss {evaluation['loss']:.4f}, unigram {unigram:.4f}: "
            f"{relative_to_unigram(unigram - evaluation['loss'])}")


def run_results(trainer: Trainer, evaluation: dict, **extra) -> dict:
    progress = trainer.progress
    return {"step": progress.step, "tokens": progress.tokens, "flops": progress.flops,
            "train_seconds": progress.seconds, "finished": progress.step >= trainer.end_step,
            "unigram_loss": trainer.unigram_loss, **extra, **{f"eval_{k}": v for k, v in evaluation.items()}}


def require_plain_ddp(train_args: TrainingArguments, info: distributed.DistInfo, what: str) -> None:
    """`what` (a feature that changes the computed model from step to step) is tested with
    plain DDP only: refused under FSDP, tensor parallelism and torch.compile."""
    if info.tp_size > 1 or train_args.parallelism != "ddp" or train_args.compile:
        raise ValueError(f"{what}: run it with --parallelism ddp, without --tp_size and without "
                         "--compile (not tested with them)")


def build_drops(train_args: TrainingArguments, info: distributed.DistInfo) -> Drops | None:
    """--layer_drop / --token_drop (ligo.train.drop), refused where untested."""
    if not (train_args.layer_drop or train_args.token_drop):
        return None
    require_plain_ddp(train_args, info, "--layer_drop and --token_drop change which layers and "
                                        "positions run at every step")
    layer = (LayerDrop(rate=train_args.layer_drop, ramp_steps=train_args.layer_drop_ramp_steps,
                       seed=train_args.seed) if train_args.layer_drop else None)
    token = TokenDrop(rate=train_args.token_drop, seed=train_args.seed) if train_args.token_drop else None
    return Drops(layer_drop=layer, token_drop=token)


def pretrain(model_args: ModelArguments, data_args: DataArguments,
             train_args: TrainingArguments, growth: GrowthArguments,
             schedule: ScheduleArguments, info: distributed.DistInfo) -> dict:
    info = parallel.with_tensor_parallel(info, train_args.tp_size)
    drops = build_drops(train_args, info)
    extra_identity = {}
    if drops is not None:  # a resumed run must drop as the run did
        extra_identity["drops"] = {"layer_drop": train_args.layer_drop, "token_drop": train_args.token_drop,
                                   "layer_drop_ramp_steps": train_args.layer_drop_ramp_steps}
    uses_msg = growth.msg or bool(schedule.stages and schedule.stage_operator == "msg")
    if uses_msg:
        require_plain_ddp(train_args, info, "MSG's masks cover whole heads and hidden units and "
                                            "change every step")
        if not growth.grows and not schedule.active:
            raise ValueError("MSG grows a trained model: give --source_model_path, or grow inside "
                             "the run with --double_at (or --stages with --stage_operator msg)")
        if not schedule.active and growth.msg_ramp_steps >= train_args.max_steps:
            raise ValueError(f"--msg_ramp_steps {growth.msg_ramp_steps} must end before the run "
                             f"(--max_steps {train_args.max_steps}): the saved model is the one "
                             "without masks")
    if schedule.active:
        if train_args.parallelism != "ddp" and schedule.stages and schedule.stage_operator == "ligo":
            raise ValueError("--stage_operator ligo runs with --parallelism ddp for now (the "
                             "operator's training is not sharded yet); stack and interpolate "
                             "transitions work under fsdp")
        if growth.grows:
            raise ValueError("a growth schedule (--stages, --insert_patches, --double_at, "
                             "--grow_when) starts from --config_name; it cannot be combined "
                             "with --source_model_path or --pretrained_ligo_path")
        extra_identity["schedule"] = {k: v for k, v in vars(schedule).items() if v}
        if uses_msg:  # the ramp is part of the schedule
            extra_identity["schedule"]["msg_ramp_steps"] = growth.msg_ramp_steps
        if not schedule.stage_epochs:  # check the events now, before anything is written
            plan_events(schedule, growth, load_config(model_args.config_name), train_args.max_steps)
    if model_args.position_init != "random":  # before any work
        if growth.grows or model_args.model_name_or_path:
            raise ValueError(f"--position_init {model_args.position_init} initialises a model "
                             "trained from scratch; a grown or loaded model keeps its own "
                             "position table: drop the flag")
        check_position_init(family_of(load_config(model_args.config_name)), model_args.position_init)
        extra_identity["position_init"] = model_args.position_init
    if growth.grows:
        growth.check_operator_init()  # before any work
        source = growth.source_model_path and str(Path(growth.source_model_path).resolve())
        extra_identity["grown_from"] = {"source": source, **growth.operator_options()}
    # a grown model keeps its tokenizer (run_grow_distributed.py saves it with the operator)
    setup = prepare_run(model_args, data_args, train_args, info,
                        growth.source_model_path or growth.pretrained_ligo_path, extra_identity,
                        inputs={"--source_model_path": growth.source_model_path,
                                "--pretrained_ligo_path": growth.pretrained_ligo_path})
    config, family, data = setup.config, setup.family, setup.data

    events, lr_schedule, max_steps = [], None, train_args.max_steps
    if schedule.active:  # the first model and the events that grow it
        steps_per_epoch = max(1, len(data.train) // (train_args.per_device_train_batch_size
                                                     * info.dp_size
                                                     * train_args.gradient_accumulation_steps))
        config, events, max_steps, first_total = plan_events(
            schedule, growth, config, train_args.max_steps, steps_per_epoch)
        log.info("growth schedule: start with %d layers, hidden %d; %d planned events%s; %d steps",
                 config.num_hidden_layers, config.hidden_size, len(events),
                 " + automatic (slope rule)" if schedule.grow_when else "", max_steps)
    if train_args.learning_rate == "auto":
        largest = final_config(config, events, schedule.auto_growth if schedule.grow_when else None)
        n = non_embedding_parameters(largest)
        train_args.learning_rate = auto_learning_rate(n)
        log.info("--learning_rate auto: %.3g for N = %.3gM non-embedding parameters",
                 train_args.learning_rate, n / 1e6)
    if schedule.active:
        lr_schedule = LRSchedule(train_args.lr_scheduler_type, first_total or max_steps,
                                 train_args.warmup_steps, train_args.warmup_ratio or 0.0,
                                 train_args.lr_end / train_args.learning_rate, train_args.poly_power)

    torch.manual_seed(train_args.seed)  # identical initial weights on every rank
    map_source_optimizer, growth_cost = None, {}
    if growth.grow_scheme == "ligo":
        model, growth_cost = grow_with_operator(growth.pretrained_ligo_path, config,
                                                growth.source_model_path)
        log.info("materialised the LiGO operator in %s into %s (its training: %.3g FLOPs, "
                 "%.0fs); AdamW starts from zero", growth.pretrained_ligo_path,
                 model_args.config_name, growth_cost.get("flops", 0.0), growth_cost.get("seconds", 0.0))
    elif growth.source_model_path:
        model, map_source_optimizer = grow_for_training(
            growth.source_model_path, config, growth.reset_optimizer, info=info,
            **growth.operator_options())
        log.info("grew %s into %s (%s%s); AdamW %s", growth.source_model_path,
                 model_args.config_name, growth.grow_scheme,
                 (f" + {growth.width_scheme}" if growth.width_scheme else "")
                 + (f", copies' shares split by {growth.width_split_noise:g}"
                    if growth.width_split_noise else ""),
                 "moments mapped from the source checkpoint" if map_source_optimizer
                 else "starts from zero")
    else:
        model = build_model(config, family, model_args.model_name_or_path)
        init_position_table(model, family, model_args.position_init)
    model = model.to(info.device)
    msg_ramp = None
    if growth.msg and not schedule.active:  # the masks go on before any wrapping: hooks on the bare HF modules
        small_config = read_source_model(growth.source_model_path)[0]
        msg_ramp = MSGRamp(MSGMasks(model, small_config), growth.msg_ramp_steps)
        log.info("MSG: masks over the new structures of %s, from 0 to 1 over %d steps",
                 model_args.config_name, growth.msg_ramp_steps)
    # different dropout masks per data-parallel rank; the same within a tensor-parallel group,
    # whose ranks must drop the same entries of the activations they all hold
    torch.manual_seed(train_args.seed + info.dp_rank)
    def wrap(module):
        return distributed.wrap_data_parallel(module, info)

    def make_loss(grown):
        loss = parallel.parallelize(LanguageModelingLoss(grown, family), grown, family, info,
                                    train_args.parallelism, train_args.bf16,
                                    train_args.activation_checkpointing)
        if train_args.compile:  # the transformer body; the chunked head stays eager
            grown.base_model.compile()
        return loss

    def flops(model_config):
        return training_flops_per_token(model_config, data_args.block_size, data.head_fraction,
                                        family.head_transform)

    schedule_runtime = None
    if lr_schedule is not None:
        rule = SlopeRule(schedule.auto_growth, schedule.slope_smoothing, schedule.slope_window) \
            if schedule.grow_when else None
        schedule_runtime = GrowthSchedule(
            events, lr_schedule, make_loss=make_loss, make_optimizer=optimizer_builder(train_args),
            flops=flops, wrap=wrap, growth_seed=growth.growth_seed, rule=rule, args=schedule,
            ligo_lr=schedule.stage_ligo_learning_rate, reset_optimizer=growth.reset_optimizer)
    flops_per_token = flops(config)
    trainer = build_trainer(loss_module=make_loss(model), model=model, setup=setup,
                            train_args=train_args, info=info, flops_per_token=flops_per_token,
                            map_optimizer_state=map_source_optimizer,
                            growth=schedule_runtime or msg_ramp,
                            end_step=max_steps)
    model = trainer.model  # a resumed schedule may have rebuilt it at a later stage
    trainer.drops = drops
    if drops is not None:
        log.info("%s (FLOPs count only what is computed)",
                 drops.describe(model.config.num_hidden_layers, data_args.block_size))
    if trainer.progress.step == 0:  # the operator's training is part of this run's cost
        trainer.charge(flops=float(growth_cost.get("flops", 0.0)),
                       seconds=float(growth_cost.get("seconds", 0.0)))
    n_params = sum(p.numel() for p in model.parameters())
    tokens = max_steps * trainer.global_batch * data_args.block_size
    precision = "bf16 autocast" if train_args.bf16 else "fp16 autocast" if train_args.fp16 else "float32"
    log.info("%s: %.1fM parameters, %d train / %d valid blocks of %d tokens, global batch %d, %s, "
             "%.3g training FLOPs per token; the run: %d steps, %.3g tokens (%.2f epochs), %.3g "
             "FLOPs%s", family.name, n_params / 1e6, len(data.train), len(data.valid),
             data_args.block_size, trainer.global_batch, precision, flops_per_token, max_steps,
             tokens, tokens / max(1, len(data.train) * data_args.block_size),
             tokens * flops_per_token, " (before growth events)" if schedule.active else "")

    evaluation = trainer.fit() or trainer.evaluate()
    if schedule_runtime is not None and schedule_runtime.msg_ramp is not None:
        msg_ramp = schedule_runtime.msg_ramp  # ended (--stop_at_eval_loss) inside a ramp
    if msg_ramp is not None and msg_ramp.masks.installed:
        log.warning("MSG: the run ended at mask %.3f, before the ramp's end: the saved weights "
                    "without masks are not the model that was evaluated", msg_ramp.masks.value)
    model, n_params = trainer.model, sum(p.numel() for p in trainer.model.parameters())
    if schedule_runtime is not None:
        growth_cost["events"] = schedule_runtime.fired
    results = run_results(trainer, evaluation, parameters=n_params,
                          flops_per_token=trainer.flops_per_token,
                          growth_events=growth_cost.get("events", []),
                          growth_flops=float(growth_cost.get("flops", 0.0)),
                          growth_seconds=float(growth_cost.get("seconds", 0.0)))
    if results["finished"] and parallel.is_sharded(model):  # export: gather, then a plain model
        state = checkpoint.full_model_state(model)  # collective
        if info.is_main:
            model = model_from_state(model.config, state)
    if info.is_main:
        if results["finished"]:
            model.save_pretrained(train_args.output_dir)
            save_hf_tokenizer(setup.tokenizer, family, train_args.output_dir)
        atomic_write_text(Path(train_args.output_dir) / "results.json", json.dumps(results, indent=1))
        log.info("%s at step %d (ppl %.1f, %.3g FLOPs, %.0fs of training; %s): %s",
                 "finished" if results["finished"] else "stopped", trainer.progress.step,
                 evaluation["ppl"], trainer.progress.flops, trainer.progress.seconds,
                 f"model saved to {train_args.output_dir}" if results["finished"]
                 else "resume with --should_continue", learned_line(evaluation, trainer.unigram_loss))
    trainer.metrics.close()
    return results


if __name__ == "__main__":
    cli(sys.argv[1:])
