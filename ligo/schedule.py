"""Growth inside one run: the runtime that applies growth events (ligo.growth_plan) to the
training loop, fixed ones at their steps and automatic ones when the slope rule (ligo.slope)
fires. At global step g the model is grown into a new config (by a ligo.operators operator,
or by LiGO after a short operator-training phase), the optimizer is rebuilt (moments mapped,
or reset) and the learning rate continues on a piecewise schedule (ligo.train.optim.LRSchedule).
The data order, step counter, tokens, FLOPs and wall-clock continue across events, so every
curve is one line on every axis.
"""
from __future__ import annotations

import logging
from dataclasses import asdict

import torch

from ligo.growth_plan import GrowthEvent, auto_event
from ligo.models import config_from_dict, ffn_size, model_from_state
from ligo.slope import STOP_SLOPE, SlopeRule
from ligo.train.msg import MSGMasks, MSGRamp
from ligo.train.optim import LRSchedule, position_scheduler

log = logging.getLogger(__name__)


class GrowthSchedule:
    """Applies growth events to a Trainer: fixed ones at their steps, automatic ones when
    the slope rule fires. `make_loss(model)`, `make_optimizer(model)` and `flops(config)` are
    the run's own builders, so a grown model is trained exactly like the first one."""

    def __init__(self, events: list[GrowthEvent], lr: LRSchedule, *, make_loss, make_optimizer,
                 flops, wrap, growth_seed: int = 0, rule: SlopeRule | None = None, args=None,
                 ligo_lr: float = 1e-3, reset_optimizer: bool = False):
        self.planned = sorted(events, key=lambda e: e.step)
        self.pending = list(self.planned)
        self.fired: list[dict] = []
        self.lr, self.rule, self.args = lr, rule, args
        self.make_loss, self.make_optimizer, self.flops = make_loss, make_optimizer, flops
        self.wrap = wrap  # the data-parallel wrapper alone (for the LiGO phase's loss)
        self.growth_seed, self.ligo_lr = growth_seed, ligo_lr
        self.reset_optimizer = reset_optimizer  # for automatic events
        self.stop = False
        # MSG: the masks of the last event's new structures while they ramp up
        self.msg_ramp: MSGRamp | None = None

    # ------------------------------------------------------------ deciding
    def after_step(self, trainer, logged: dict | None) -> GrowthEvent | None:
        """Called by the loop after every optimizer step (`logged`: the train values when
        this step logged them). Applies and returns the event due now, if any."""
        step = trainer.progress.step
        if self.msg_ramp is not None:  # before any event: a ramp ends before the next event
            self.msg_ramp.move_to(step)
            if not self.msg_ramp.masks.installed:
                self.msg_ramp = None
        event = None
        if self.pending and self.pending[0].step == step:
            event = self.pending.pop(0)
        elif self.rule is not None and logged is not None and not self.lr.warming_up(step):
            self.rule.observe(logged["flops"], logged["loss"])
            decision = self.rule.decide(len(self.fired))
            if decision == "stop":
                log.info("slope of log(loss) vs log(compute) above %.4f after the last growth: "
                         "stopping at step %d", STOP_SLOPE, step)
                self.stop = True
            elif decision is not None:
                event = auto_event(step, decision, trainer.model.config, self.args,
                                   trainer.end_step, self.reset_optimizer)
        if event is not None:
            self.apply(trainer, event)
        return event

    # ------------------------------------------------------------ growing
    def apply(self, trainer, event: GrowthEvent) -> None:
        from ligo.operators import grow
        from ligo.train.growth import grow_adam_state

        step = trainer.progress.step
        old_config = trainer.model.config
        new_config = event.target_config(old_config)
        options = {"depth": event.depth, "width": event.width, "seed": self.growth_seed,
                   "depth_options": event.depth_options}
        mapped = None  # the grown model's AdamW state, when moments are mapped
        if event.depth == "ligo":
            new_model = self._ligo_phase(trainer, trainer.model, new_config, event)
        else:
            old_model, old_optimizer_state = self._whole(trainer)
            new_model = grow(old_model, new_config, **options)
            if not event.reset_optimizer:
                moment_options = options
                if event.zero_new_layer_moments:  # new layers start with zero moments
                    moment_options = {**options, "depth_options": {**event.depth_options,
                                                                   "init": "random"}}
                template = self.make_optimizer(new_model).state_dict()
                mapped = grow_adam_state(old_model, old_optimizer_state, new_model, template,
                                         **moment_options)
        new_model = new_model.to(trainer.info.device)
        if event.msg_ramp_steps:  # on the bare model, before the loss module wraps it
            self._start_msg(new_model, old_config, step, event.msg_ramp_steps)
        if event.segment is not None:
            self.lr.segments.append(event.segment)
        self._install(trainer, new_model, mapped)
        self.fired.append(asdict(event))
        n_params = sum(p.numel() for p in new_model.parameters())
        trainer.metrics.log("growth", {"event": float(len(self.fired)),
                                       "num_layers": new_config.num_hidden_layers,
                                       "hidden_size": new_config.hidden_size,
                                       "parameters": n_params}, step, trainer.progress.tokens,
                            trainer.progress.flops, trainer.progress.seconds)
        if self.rule is not None:
            self.rule.since = len(self.rule.history)  # the new model's curve starts here
            self.rule.armed = False
        log.info("step %d: grew (%s) to %d layers, hidden %d, %d heads, %.1fM parameters; "
                 "AdamW %s; LR %s", step, event.kind or event.depth, new_config.num_hidden_layers,
                 new_config.hidden_size, new_config.num_attention_heads, n_params / 1e6,
                 "reset" if event.reset_optimizer or event.depth == "ligo" else "moments mapped",
                 f"segment {event.segment}" if event.segment else "continues")

    def _start_msg(self, model, source_config, start_step: int, ramp_steps: int,
                   new_layers: list[int] | None = None) -> None:
        self.msg_ramp = MSGRamp(MSGMasks(model, source_config, new_layers), ramp_steps, start_step)
        log.info("step %d: MSG masks over the new structures, from 0 to 1 over %d steps",
                 start_step, ramp_steps)

    @staticmethod
    def _whole(trainer):
        """The model and its AdamW state as one process would hold them: a sharded (FSDP)
        model is gathered onto every rank as a plain model (collective), then grown there."""
        from ligo import parallel
        from ligo.train import checkpoint

        model = trainer.model
        if not parallel.is_sharded(model):
            return model, trainer.optimizer.state_dict()
        model_state, optimizer_state = checkpoint.full_state(model, trainer.optimizer, every_rank=True)
        return model_from_state(model.config, model_state), optimizer_state

    def _install(self, trainer, model, optimizer_state: dict | None = None) -> None:
        """The training loop's model, loss module, optimizer (loaded with `optimizer_state`
        when given) and scheduler. The loss module comes first: under FSDP it shards the
        model, and the optimizer must hold the sharded parameters."""
        from ligo.train import checkpoint

        loss_module = self.make_loss(model)
        optimizer = self.make_optimizer(model)
        if optimizer_state is not None:
            checkpoint.load_full_state(model, optimizer, None, optimizer_state)
        trainer.install(model=model, loss_module=loss_module, optimizer=optimizer,
                        scheduler=position_scheduler(optimizer, self.lr, trainer.progress.step),
                        flops_per_token=self.flops(model.config))

    def _ligo_phase(self, trainer, old_model, new_config, event: GrowthEvent):
        """Train a LiGO operator on the next `ligo_steps` global batches, then materialise.
        Its FLOPs and seconds are added to the run's; the main step counter does not move."""
        import time

        from ligo.operators.learned import LiGO, LiGOOptions, generation_flops, materialise
        from ligo.train.growth import LiGOLoss

        old = old_model.config
        options = LiGOOptions(tune_depth=new_config.num_hidden_layers != old.num_hidden_layers,
                              tune_width=new_config.hidden_size != old.hidden_size
                              or ffn_size(new_config) != ffn_size(old), seed=self.growth_seed)
        state = {k: v.detach() for k, v in old_model.state_dict().items()}
        operator = LiGO(state, old, new_config, options).to(trainer.info.device)
        optimizer = self.make_optimizer(operator, lr=self.ligo_lr)
        steps = event.ligo_steps
        schedule = LRSchedule("linear", total=steps, warmup_steps=max(1, steps // 10))
        start = time.perf_counter()
        trainer.train_other(  # on the batches the grown model is about to see
            loss_module=self.wrap(LiGOLoss(operator, trainer.info.device)), model=operator,
            optimizer=optimizer, scheduler=torch.optim.lr_scheduler.LambdaLR(optimizer, schedule),
            first_step=trainer.progress.step, steps=steps)
        micro_tokens = trainer.args.per_device_train_batch_size * trainer.train_blocks.block_size
        per_token = self.flops(new_config) + 3 * generation_flops(operator) / micro_tokens
        flops = steps * trainer.global_batch * trainer.train_blocks.block_size * per_token
        trainer.charge(flops=flops, seconds=time.perf_counter() - start)
        log.info("step %d: trained a LiGO operator %d steps on the next batches (%.3g FLOPs)",
                 trainer.progress.step, steps, flops)
        return materialise(operator)

    # ------------------------------------------------------------ checkpoints
    def state(self) -> dict:
        msg = self.msg_ramp.state()["msg"] if self.msg_ramp is not None else None
        return {"fired": self.fired, "segments": self.lr.segments, "msg": msg,
                "history": self.rule.history if self.rule else [],
                "since": self.rule.since if self.rule else 0, "stop": self.stop,
                "armed": self.rule.armed if self.rule else False}

    def restore(self, trainer, state: dict, config_dict: dict, step: int) -> None:
        """Before the trainer loads a checkpoint: the events fired by then, and the model,
        optimizer and scheduler rebuilt at the checkpoint's architecture."""
        from ligo.families import family_of

        self.fired = list(state["fired"])
        self.lr.segments = [dict(s) for s in state["segments"]]
        self.pending = [e for e in self.planned if e.step > step]
        self.stop = state.get("stop", False)
        if self.rule is not None:
            self.rule.history = [tuple(p) for p in state["history"]]
            self.rule.since = state["since"]
            self.rule.armed = state.get("armed", True)  # older checkpoints: the rule as it was
        config = config_from_dict(config_dict, "the checkpoint's model config")
        if config.to_diff_dict() != trainer.model.config.to_diff_dict():
            with torch.random.fork_rng(devices=[]):  # weights come from the checkpoint
                model = family_of(config).build_class()(config)
            model = model.to(trainer.info.device)
            self._install(trainer, model)
        else:
            trainer.set_scheduler(position_scheduler(trainer.optimizer, self.lr, step))
        msg = state.get("msg")
        if msg:  # mid-ramp: the masks back on the rebuilt model, where they were
            source = config_from_dict(msg["source_config"], "the checkpoint's MSG source config")
            self._start_msg(trainer.model, source, msg["start_step"], msg["ramp_steps"],
                            msg["new_layers"])
            self.msg_ramp.move_to(step)


if __name__ == "__main__":  # the command line moved to ligo.slope; this name keeps working
    from ligo.cli import run
    from ligo.slope import main

    run(main)
