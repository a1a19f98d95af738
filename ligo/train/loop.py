"""The training loop: global batches -> micro-batches -> optimizer steps, with periodic
evaluation, logging and checkpoints. Model-agnostic: it sees a loss module and blocks."""
from __future__ import annotations

import contextlib
import json
import logging
import math
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Protocol

import numpy as np
import torch

from ligo import distributed, parallel
from ligo.config import TrainingArguments
from ligo.data.blocks import BatchOrder, TokenBlocks
from ligo.data.collators import IGNORE_INDEX
from ligo.data.unigram import unigram_cross_entropy, unigram_log_probabilities
from ligo.train import checkpoint
from ligo.train.drop import Drops, StepDrops
from ligo.train.metrics import MetricsLogger, format_line

log = logging.getLogger(__name__)


@torch.no_grad()
def block_loss_totals(loss_module, blocks: TokenBlocks, collator, indices: np.ndarray,
                      batch_size: int, device: torch.device,
                      autocast=contextlib.nullcontext) -> torch.Tensor:
    """(summed loss, label tokens, correct predictions) over blocks[indices], float64. An
    index of -1 is padding: a forward that scores nothing (all ranks of a sharded model must
    run as many forwards).

    The collator is keyed by block index, so every evaluation masks the same positions and
    successive losses differ only because the model did. `loss_module` must be in eval mode.
    """
    totals = torch.zeros(3, dtype=torch.float64, device=device)
    for start in range(0, len(indices), batch_size):
        part = indices[start:start + batch_size]
        padding = part < 0
        part = np.where(padding, 0, part)
        batch = collator(blocks.batch(part), part)
        if padding.any():  # (a new tensor: a causal LM's labels may be its input_ids)
            batch["labels"] = batch["labels"].masked_fill(torch.from_numpy(padding)[:, None], IGNORE_INDEX)
        with autocast():
            out = loss_module(batch["input_ids"].to(device), batch["labels"].to(device))
        totals += torch.stack([out["loss_sum"].double(), out["tokens"].double(),
                               out["correct"].double()])
    return totals


@dataclass
class Progress:
    step: int = 0  # optimizer steps done
    tokens: int = 0  # input tokens consumed (all ranks)
    flops: float = 0.0  # analytic training FLOPs spent (all ranks)
    seconds: float = 0.0  # wall-clock spent in training steps, summed over restarts


# after this many steps of a process the log says how long the rest will take
ESTIMATE_AFTER_STEPS = 10


def _duration(seconds: float) -> str:
    if seconds < 90:
        return f"{seconds:.0f} s"
    if seconds < 5400:
        return f"{seconds / 60:.0f} min"
    return f"{seconds / 3600:.1f} h"


class GrowthHook(Protocol):
    """What the loop asks of a growth schedule (ligo.schedule.GrowthSchedule)."""

    stop: bool  # the automatic schedule ends the run at the current step

    def after_step(self, trainer: Trainer, logged: dict | None) -> object | None:
        """After every optimizer step: grow now (through `trainer.install`) if an event is due;
        the event applied, or None."""

    def state(self) -> dict:
        """What a checkpoint records of the schedule."""

    def restore(self, trainer: Trainer, state: dict, config_dict: dict, step: int) -> None:
        """Before a checkpoint is loaded: the architecture of that step."""


@dataclass(kw_only=True)
class Trainer:
    """Everything one training run needs; `fit` runs it. A growth schedule changes the
    trained model only through `install`, and spends extra compute only through
    `train_other` and `charge`."""

    loss_module: torch.nn.Module  # LanguageModelingLoss, possibly wrapped for data parallelism
    model: torch.nn.Module  # the bare model (for state dicts)
    optimizer: torch.optim.Optimizer
    scheduler: torch.optim.lr_scheduler.LRScheduler
    scaler: torch.amp.GradScaler
    train_blocks: TokenBlocks
    valid_blocks: TokenBlocks
    collator: object
    args: TrainingArguments
    info: distributed.DistInfo
    flops_per_token: float
    run_identity: dict
    metrics: MetricsLogger
    progress: Progress = field(default_factory=Progress)
    growth: GrowthHook | None = None  # growth events mid-run
    # the eval set's unigram cross-entropy (ligo.data.unigram): evaluations report how far
    # below it the model is, i.e. what it has learned beyond token frequencies
    unigram_loss: float | None = None
    # the run ends after this step (default --max_steps); --stop_at_eval_loss and the
    # automatic schedule's stop move it earlier; the LR schedule keeps the full budget
    end_step: int | None = None
    # layer drop / token drop (ligo.train.drop) in the model's own steps, not in train_other's
    drops: Drops | None = None

    def __post_init__(self):
        args, info = self.args, self.info
        self.end_step = args.max_steps if self.end_step is None else self.end_step
        self.global_batch = (args.per_device_train_batch_size * info.dp_size
                             * args.gradient_accumulation_steps)
        self.order = BatchOrder(len(self.train_blocks), self.global_batch, args.seed)
        self.autocast_dtype = (torch.bfloat16 if args.bf16 else torch.float16 if args.fp16
                               else None)
        self.bare_loss = getattr(self.loss_module, "module", self.loss_module)

    # ---------------------------------------------------------------- batches
    def micro_batches(self, step: int) -> list[dict[str, torch.Tensor]]:
        """This rank's micro-batches of global batch `step` (the same on the ranks of a
        tensor-parallel group)."""
        blocks, keys = self.order.global_indices(step)
        batches = []
        for micro in range(self.args.gradient_accumulation_steps):
            part = self.micro_rows(micro)
            batch = self.collator(self.train_blocks.batch(blocks[part]), keys[part])
            batches.append({k: v.to(self.info.device, non_blocking=True) for k, v in batch.items()})
        return batches

    def micro_rows(self, micro: int) -> slice:
        """The rows of the global batch that micro-batch `micro` of this rank holds."""
        size = self.args.per_device_train_batch_size
        start = (micro * self.info.dp_size + self.info.dp_rank) * size
        return slice(start, start + size)

    def label_tokens(self, batch: dict[str, torch.Tensor]) -> torch.Tensor:
        labels = batch["labels"]
        if self.bare_loss.family.objective == "clm":
            return torch.tensor(labels[:, 1:].numel(), device=labels.device)
        return (labels != IGNORE_INDEX).sum()

    def autocast(self):
        if self.autocast_dtype is None:
            return contextlib.nullcontext()
        return torch.autocast(self.info.device.type, dtype=self.autocast_dtype)

    # ---------------------------------------------------------------- what growth changes
    def install(self, *, model: torch.nn.Module, loss_module: torch.nn.Module,
                optimizer: torch.optim.Optimizer, scheduler: torch.optim.lr_scheduler.LRScheduler,
                flops_per_token: float) -> None:
        """Train `model` from the next step on (after a growth event, or a resumed one):
        its loss module, optimizer, LR scheduler and FLOPs per token replace the current ones."""
        self.model, self.loss_module, self.optimizer = model, loss_module, optimizer
        self.scheduler, self.flops_per_token = scheduler, flops_per_token
        self.bare_loss = getattr(loss_module, "module", loss_module)

    def set_scheduler(self, scheduler: torch.optim.lr_scheduler.LRScheduler) -> None:
        self.scheduler = scheduler

    def charge(self, *, flops: float, seconds: float) -> None:
        """Count compute spent outside the loop's own steps (a LiGO operator's training) on
        the run's FLOPs and seconds axes; the step and token counters do not move."""
        self.progress.flops += flops
        self.progress.seconds += seconds

    def train_other(self, *, loss_module: torch.nn.Module, model: torch.nn.Module,
                    optimizer: torch.optim.Optimizer,
                    scheduler: torch.optim.lr_scheduler.LRScheduler, first_step: int,
                    steps: int) -> None:
        """Train another module (a LiGO operator through its loss) on this run's global
        batches `first_step` .. `first_step + steps - 1`, with this run's precision, gradient
        scaling and clipping; the run's own model, optimizer and progress stay as they are."""
        for step in range(first_step, first_step + steps):
            self._train_step(step, loss_module, model, optimizer, scheduler)

    # ---------------------------------------------------------------- one step
    def train_step(self, step: int) -> dict[str, torch.Tensor]:
        plan = None
        if self.drops is not None:
            plan = self.drops.for_step(step, self.model.config.num_hidden_layers,
                                       self.global_batch, self.train_blocks.block_size)
        return self._train_step(step, self.loss_module, self.model, self.optimizer,
                                self.scheduler, plan)

    def _train_step(self, step: int, loss_module, model, optimizer, scheduler,
                    plan: StepDrops | None = None) -> dict[str, torch.Tensor]:
        loss_module.train()
        batches = self.micro_batches(step)
        layers_path = self.bare_loss.family.layers_path
        skipped = plan.skipped_parameters(model, layers_path) if plan else []
        global_tokens = distributed.all_reduce_sum(
            torch.stack([self.label_tokens(b) for b in batches]).sum().double(), self.info)
        # DDP / FSDP average gradients over the data-parallel ranks; multiplying by their
        # number makes the result the gradient of (sum of losses over the global batch) /
        # (label tokens in it)
        scale = self.info.dp_size / global_tokens.clamp(min=1)
        loss_sum = torch.zeros((), dtype=torch.float64, device=self.info.device)
        for index, batch in enumerate(batches):
            last = index == len(batches) - 1
            with parallel.no_sync(loss_module, model, last or not self.info.enabled):
                dropping = (plan.applied(model, layers_path, batch["labels"], self.micro_rows(index))
                            if plan else contextlib.nullcontext())
                with self.autocast(), dropping:
                    out = loss_module(batch["input_ids"], batch["labels"])
                loss = out["loss_sum"] * scale.to(out["loss_sum"].dtype)
                if skipped and self.info.enabled:  # DDP waits for every parameter's gradient
                    loss = loss + 0.0 * sum(p.sum() for p in skipped)
                self.scaler.scale(loss).backward()
            loss_sum += out["loss_sum"].detach().double()
        for p in skipped:  # no gradient, as without DDP: AdamW leaves a skipped layer alone
            p.grad = None
        lr = optimizer.param_groups[0]["lr"]  # the rate this step uses
        self.scaler.unscale_(optimizer)
        grad_norm = parallel.clip_grad_norm_(model.parameters(), self.args.max_grad_norm)
        self.scaler.step(optimizer)
        self.scaler.update()
        optimizer.zero_grad(set_to_none=True)
        scheduler.step()
        saved = (plan.saved_flops_per_token(model.config, self.train_blocks.block_size)
                 if plan else 0.0)
        return {"loss_sum": loss_sum, "label_tokens": global_tokens, "grad_norm": grad_norm,
                "lr": lr, "saved_flops_per_token": saved}

    # ---------------------------------------------------------------- evaluation
    def eval_blocks(self) -> int:
        """How many validation blocks an evaluation scores (blocks 0 .. n-1, over all ranks)."""
        return min(len(self.valid_blocks), self.args.eval_max_batches
                   * self.args.per_device_eval_batch_size * self.info.dp_size)

    def compute_unigram_loss(self, vocab_size: int) -> float:
        """The unigram line of the blocks and labels `evaluate` scores (no model involved;
        every rank computes it whole, which costs a count of the training stream)."""
        objective = self.bare_loss.family.objective
        never = self.collator.special_ids.tolist() if objective == "mlm" else ()
        log_p = unigram_log_probabilities(self.train_blocks.stream, vocab_size, never)
        return unigram_cross_entropy(log_p, self.valid_blocks, self.collator,
                                     np.arange(self.eval_blocks()), objective)

    @torch.no_grad()
    def evaluate(self, loss_module: torch.nn.Module | None = None) -> dict[str, float]:
        """Eval loss, perplexity and accuracy of the run's model, or of `loss_module` (another
        model's LanguageModelingLoss, e.g. a baseline) on the same evaluation blocks."""
        loss_module = self.bare_loss if loss_module is None else loss_module
        loss_module.eval()
        ranks = self.info.dp_size
        blocks = self.eval_blocks()
        mine = np.arange(self.info.dp_rank, blocks, ranks)  # strided shard per rank
        if parallel.is_sharded(self.model):
            # sharded forwards are collective: every rank runs as many, the short shares
            # padded with forwards that score nothing, so that the blocks scored (and the loss)
            # do not depend on the number of ranks
            mine = np.pad(mine, (0, -(-blocks // ranks) - len(mine)), constant_values=-1)
        totals = block_loss_totals(loss_module, self.valid_blocks, self.collator, mine,
                                   self.args.per_device_eval_batch_size, self.info.device,
                                   self.autocast)
        loss_sum, tokens, correct = distributed.all_reduce_sum(totals, self.info).tolist()
        loss = loss_sum / max(tokens, 1)
        values = {"loss": loss, "ppl": math.exp(min(loss, 50.0)), "accuracy": correct / max(tokens, 1)}
        if self.unigram_loss is not None:
            values["below_unigram"] = self.unigram_loss - loss
        return values

    # ---------------------------------------------------------------- checkpoints
    def loop_state(self) -> dict:
        """All but the model and optimizer (collective: the RNG of every rank)."""
        rng = torch.get_rng_state()
        all_rng = [rng]
        if self.info.enabled:
            all_rng = [None] * self.info.world_size
            torch.distributed.all_gather_object(all_rng, rng)
        extra = {} if self.growth is None else {"growth": self.growth.state()}
        if hasattr(self.model, "config"):  # an HF model (not a LiGO operator): for ligo.export
            extra["model_config"] = self.model.config.to_dict()
        return {**extra,
                "scheduler": self.scheduler.state_dict(), "scaler": self.scaler.state_dict(),
                "rng": all_rng,
                "cuda_rng": torch.cuda.get_rng_state() if torch.cuda.is_available() else None,
                "progress": asdict(self.progress), "run": json.dumps(self.run_identity),
                # informational: the position is a function of (seed, step, global batch)
                "data_position": {"epoch": self.progress.step // self.order.steps_per_epoch,
                                  "batch_in_epoch": self.progress.step % self.order.steps_per_epoch,
                                  "global_batch": self.global_batch, "seed": self.args.seed}}

    def load_state(self, state: dict, folder: Path | None = None) -> None:
        """Continue from a checkpoint `state` (read from `folder`), full or sharded, written
        by any world size and parallelism."""
        if self.growth is not None and "growth" in state:  # the architecture of that step
            self.growth.restore(self, state["growth"], state["model_config"],
                                state["progress"]["step"])
        checkpoint.restore_model_and_optimizer(state, folder, self.model, self.optimizer)
        self.scheduler.load_state_dict(state["scheduler"])
        self.scaler.load_state_dict(state["scaler"])
        if len(state["rng"]) == self.info.world_size:
            torch.set_rng_state(state["rng"][self.info.rank])
        else:
            log.warning("checkpoint was written by %d processes, now %d: dropout RNG reseeded",
                        len(state["rng"]), self.info.world_size)
            torch.manual_seed(self.args.seed + self.info.dp_rank + state["progress"]["step"])
        self.progress = Progress(**state["progress"])

    def save(self) -> None:
        """checkpoint-<step>/ of the run (collective: every rank takes part)."""
        checkpoint.save_run(Path(self.args.output_dir), self.progress.step, model=self.model,
                            optimizer=self.optimizer, loop_state=self.loop_state(),
                            sharded=self.args.checkpoint_format == "sharded",
                            keep_last=self.args.save_total_limit, info=self.info)

    # ---------------------------------------------------------------- the loop
    def fit(self) -> dict[str, float]:
        from tqdm import tqdm

        from ligo.progress import interactive

        args, info = self.args, self.info
        bar = tqdm(total=self.end_step, initial=self.progress.step, unit="step",
                   disable=not info.is_main or args.disable_tqdm or not interactive(),
                   dynamic_ncols=True)
        tokens_per_step = self.global_batch * self.train_blocks.block_size
        interval = {"loss_sum": 0.0, "label_tokens": 0.0, "seconds": 0.0, "steps": 0}
        steps_this_process, own_seconds = 0, 0.0
        last_eval: dict[str, float] = {}
        while self.progress.step < self.end_step:
            start = time.perf_counter()
            out = self.train_step(self.progress.step)
            seconds = time.perf_counter() - start
            self.progress.step += 1
            self.progress.tokens += tokens_per_step
            # what was computed: layer drop and token drop (ligo.train.drop) compute less
            self.progress.flops += tokens_per_step * (self.flops_per_token - out["saved_flops_per_token"])
            self.progress.seconds += seconds
            steps_this_process += 1
            interval["loss_sum"] += out["loss_sum"].item()
            interval["label_tokens"] += out["label_tokens"].item()
            interval["seconds"] += seconds
            interval["steps"] += 1
            bar.update(1)
            step = self.progress.step
            own_seconds += seconds
            if steps_this_process == ESTIMATE_AFTER_STEPS and info.is_main and step < self.end_step:
                per_step = own_seconds / steps_this_process
                log.info("%.2f s per step so far: about %s of training to go for the remaining "
                         "%d steps (evaluations and checkpoints not counted)", per_step,
                         _duration(per_step * (self.end_step - step)), self.end_step - step)
            logged = None
            if step % args.logging_steps == 0 or step == self.end_step:
                totals = distributed.all_reduce_sum(  # on the device: nccl has no CPU tensors
                    torch.tensor([interval["loss_sum"]], dtype=torch.float64, device=info.device), info)
                values = {"loss": totals.item() / max(interval["label_tokens"], 1),
                          "lr": out["lr"],  # used by the step just logged
                          "grad_norm": float(out["grad_norm"]),
                          "tokens_per_s": interval["steps"] * tokens_per_step / interval["seconds"],
                          "tokens": self.progress.tokens, "flops": self.progress.flops,
                          "seconds": self.progress.seconds, "epoch": self.order.epoch(step)}
                self.metrics.log("train", values, step, self.progress.tokens, self.progress.flops,
                                 self.progress.seconds)
                bar.set_postfix(loss=f"{values['loss']:.3f}")
                if info.is_main:
                    bar.write(format_line(step, self.end_step, values))
                interval = dict.fromkeys(interval, 0.0)
                logged = values
            if step % args.eval_steps == 0 or step == self.end_step:
                last_eval = self.evaluate()
                self.metrics.log("eval", last_eval, step, self.progress.tokens, self.progress.flops,
                                 self.progress.seconds)
                if info.is_main:
                    bar.write("eval " + format_line(step, self.end_step, last_eval))
                if (args.stop_at_eval_loss is not None and step < self.end_step
                        and last_eval["loss"] <= args.stop_at_eval_loss):
                    log.info("eval loss %.4f reached --stop_at_eval_loss %.4f at step %d: ending "
                             "the run here", last_eval["loss"], args.stop_at_eval_loss, step)
                    self.end_step = step  # the LR schedule keeps the full budget
            grew = self.growth is not None and self.growth.after_step(self, logged) is not None
            stopping = args.stop_after_steps is not None and steps_this_process >= args.stop_after_steps
            if self.growth is not None and self.growth.stop and step < self.end_step:
                self.end_step = step  # the automatic schedule ends the run here
                last_eval = self.evaluate()
                self.metrics.log("eval", last_eval, step, self.progress.tokens, self.progress.flops,
                                 self.progress.seconds)
            # right after a growth event too: a resume never has to redo a growth
            if step % args.ckpt_steps == 0 or step == self.end_step or stopping or grew:
                self.save()
            if stopping and step < self.end_step:
                log.info("stopping after %d steps as asked (--stop_after_steps); resume with "
                         "--should_continue", steps_this_process)
                break
        bar.close()
        return last_eval
