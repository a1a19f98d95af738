"""Growth inside one run: a list of growth events that the training loop applies.

Progressive stacking, progressive layer insertion and staged training (fixed or automatic)
are all the same thing here: at global step g the model is grown into a new config (by a
ligo.operators operator, or by LiGO after a short operator-training phase), the optimizer is
rebuilt (moments mapped, or reset) and the learning rate continues on a piecewise schedule.
The data order, step counter, tokens, FLOPs and wall-clock continue across events, so every
curve is one line on every axis.

LR schedule: a list of segments, one per event that changes it. A segment starting at global
step g evaluates the base schedule (warmup, then linear/cosine/... decay over `total`) at
position `position + (t - g)`; `rewarm` re-warms linearly from 0 to the value at
`position + rewarm` (staged training's restart, allenai/staged-training). Progressive
stacking starts a fresh segment per stage (position 0, the stage's own budget); staged
training keeps the run's schedule but may jump to the compute-equivalent position.

Automatic schedule (Shen et al. 2022, "Staged Training for Transformer Language Models"):
grow when the slope of log(smoothed training loss) against log(compute) rises above
-0.0575 before a depth growth, -0.0475 before a width growth (the stricter of the two before
both), and stop when it rises above -0.052 after the last one; the LR then restarts at the
compute-equivalent step: the current step divided by 1.412 (depth x2), 1.776 (width x2) or
2.455 (both).
"""
from __future__ import annotations

import copy
import logging
import math
from dataclasses import asdict, dataclass, field, replace

import numpy as np
import torch

from ligo.models import config_from_dict, ffn_size, model_from_state
from ligo.train.optim import lr_multiplier

log = logging.getLogger(__name__)

SLOPE_THRESHOLDS = {"depth": -0.0575, "width": -0.0475, "both": -0.0575}
STOP_SLOPE = -0.052
RESTART_CONSTANTS = {"depth": 1.412, "width": 1.776, "both": 2.455}


def auto_learning_rate(non_embedding_params: int) -> float:
    """Staged training's LR heuristic: LR(N) = 0.003239 - 0.0001395 log(N)."""
    return 0.003239 - 0.0001395 * math.log(non_embedding_params)


# ---------------------------------------------------------------- events
@dataclass
class GrowthEvent:
    step: int  # applied after this many optimizer steps
    changes: dict  # config attribute -> new value (num_hidden_layers, hidden_size, ...)
    depth: str = "stack"  # stack | interpolate | insert | identity | ligo
    width: str | None = None
    depth_options: dict = field(default_factory=dict)
    reset_optimizer: bool = False
    zero_new_layer_moments: bool = False  # PLI: the optimizer *gains* the new parameters
    segment: dict | None = None  # a new LR segment starting here (see LRSchedule)
    ligo_steps: int = 0  # depth == "ligo": operator training steps before materialising
    kind: str = ""  # depth, width, both, stage, insert: for logs and the restart constant

    def target_config(self, config):
        new = copy.deepcopy(config)
        for key, value in self.changes.items():
            setattr(new, key, value)
        return new


def doubled(config, what: str) -> dict:
    """Config changes of staged training's doubling: depth, width or both."""
    changes = {}
    if what in ("depth", "both"):
        changes["num_hidden_layers"] = 2 * config.num_hidden_layers
    if what in ("width", "both"):
        ffn_key = "n_inner" if config.model_type == "gpt2" else "intermediate_size"
        changes.update(hidden_size=2 * config.hidden_size,
                       num_attention_heads=2 * config.num_attention_heads,
                       **{ffn_key: 2 * ffn_size(config)})
    return changes


def staged_event(step: int, what: str, config, args, max_steps: int,
                 position: int | None = None, reset_optimizer: bool = False) -> GrowthEvent:
    """Staged training's doubling at `step`: width by `double` (block-diagonal, exact),
    depth by identity layers interleaved after their source, AdamW moments mapped."""
    layers = config.num_hidden_layers
    segment = {"start": step, "position": step if position is None else position,
               "rewarm": args.restart_warmup_steps}
    if args.reset_lr_scheduler:
        segment = {"start": step, "position": 0, "rewarm": 0,
                   "total": max_steps - step}
    return GrowthEvent(step=step, changes=doubled(config, what), kind=what,
                       depth="identity" if what in ("depth", "both") else "stack",
                       width="double" if what in ("width", "both") else None,
                       depth_options={"positions": [2 * i + 1 for i in range(layers)]}
                       if what in ("depth", "both") else {},
                       reset_optimizer=reset_optimizer, segment=segment)


def non_embedding_parameters(config) -> int:
    """N of the scaling laws: every parameter of the transformer layers."""
    from ligo.families import LAYER_ROLES, family_of
    from ligo.roles import expected_shapes, to_roles

    shapes = {k: torch.empty(s, device="meta") for k, s in
              expected_shapes(config, family_of(config)).items()}
    layers = to_roles(shapes, family_of(config)).layers
    return sum(layer[f"{m}.{k}"].numel() for layer in layers for m in LAYER_ROLES
               for k in ("weight", "bias"))


def final_config(config, events: list[GrowthEvent], auto_growth: list[str] | None = None):
    """The largest model a schedule trains (for --learning_rate auto)."""
    for event in events:
        config = event.target_config(config)
    for what in auto_growth or []:
        config = GrowthEvent(0, doubled(config, what)).target_config(config)
    return config


def plan_events(schedule, growth, config, max_steps: int, steps_per_epoch: int | None = None):
    """(first model's config, fixed events, the run's max_steps, the first LR segment's
    length or None) from the schedule arguments; every inconsistency is reported here,
    before training starts."""
    events: list[GrowthEvent] = []
    config = copy.deepcopy(config)
    if schedule.stages:
        if schedule.stage_epochs:
            if steps_per_epoch is None:
                raise ValueError("--stage_epochs needs the data: give --stage_steps")
            budgets = [max(1, round(e * steps_per_epoch)) for e in schedule.stage_epochs]
        else:
            budgets = list(schedule.stage_steps)
        if schedule.stages[-1] != config.num_hidden_layers:
            raise ValueError(f"--stages {','.join(map(str, schedule.stages))} ends at "
                             f"{schedule.stages[-1]} layers but --config_name has "
                             f"{config.num_hidden_layers}: the last stage is the config's model")
        config.num_hidden_layers = schedule.stages[0]
        start = budgets[0]
        for target, budget in zip(schedule.stages[1:], budgets[1:], strict=False):
            events.append(GrowthEvent(
                step=start, changes={"num_hidden_layers": target}, kind="stage",
                depth=schedule.stage_operator, reset_optimizer=True, ligo_steps=schedule.stage_ligo_steps,
                segment={"start": start, "position": 0, "rewarm": 0, "total": budget}))
            start += budget
        return config, events, start, budgets[0]
    if schedule.insert_patches:
        config.num_hidden_layers = schedule.initial_num_layers or config.num_hidden_layers
        layers = config.num_hidden_layers
        for fraction, index in schedule.insert_patches:
            if index > layers:
                raise ValueError(f"--insert_patches {fraction}:{index}: index {index} is out of "
                                 f"range, the model has {layers} layers then (0..{layers})")
            events.append(GrowthEvent(
                step=round(fraction * max_steps), changes={"num_hidden_layers": layers + 1},
                kind="insert", depth="insert", zero_new_layer_moments=True,
                depth_options={"positions": [index], "init": growth.insert_init,
                               "noise_std": growth.insert_noise_std}))
            layers += 1
        _check_steps(events, max_steps, "--insert_patches")
        return config, events, max_steps, None
    current = config  # staged training: --config_name is the first model, doubled at each event
    for number, (step, what) in enumerate(schedule.double_at or []):
        position = schedule.restart_steps[number] if schedule.restart_steps else None
        events.append(staged_event(step, what, current, schedule, max_steps, position,
                                   growth.reset_optimizer))
        current = events[-1].target_config(current)
    _check_steps(events, max_steps, "--double_at")
    return config, events, max_steps, None


def _check_steps(events: list[GrowthEvent], max_steps: int, flag: str) -> None:
    steps = [event.step for event in events]
    if any(not 0 < step < max_steps for step in steps) or len(set(steps)) != len(steps):
        raise ValueError(f"{flag}: the events fall on steps {steps}; each must be a different "
                         f"step inside the run (1..{max_steps - 1})")


# ---------------------------------------------------------------- learning rate
@dataclass
class LRSchedule:
    """Global step -> LR multiplier, piecewise over segments (see the module docstring).
    A segment's warmup is `warmup_steps` when given (0 included), else `warmup_ratio` of its
    own total."""

    kind: str
    total: int
    warmup_steps: int | None = None
    warmup_ratio: float = 0.0
    end_ratio: float = 0.0  # poly: lr_end / peak
    power: float = 1.0  # poly
    segments: list[dict] = field(default_factory=list)

    def segment_at(self, step: int) -> dict:
        segment = {"start": 0, "position": 0, "rewarm": 0, "total": self.total}
        for candidate in self.segments:
            if candidate["start"] <= step:
                segment = {"total": self.total, **candidate}
        return segment

    def warmup(self, segment: dict) -> int:
        if self.warmup_steps is not None:  # an explicit 0 means no warmup
            return self.warmup_steps
        return round(self.warmup_ratio * segment["total"])

    def warming_up(self, step: int) -> bool:
        """Inside a warmup or re-warm: the loss curve there says nothing about scaling."""
        segment = self.segment_at(step)
        warmup = self.warmup(segment)
        position = segment["position"] + step - segment["start"]
        return position < warmup or position < segment["position"] + segment["rewarm"]

    def __call__(self, step: int) -> float:
        segment = self.segment_at(step)
        warmup = self.warmup(segment)
        position = segment["position"] + step - segment["start"]

        def base(p):
            return lr_multiplier(p, self.kind, warmup, segment["total"], self.end_ratio, self.power)

        rewarm = segment["rewarm"]
        if rewarm and position < segment["position"] + rewarm:
            done = position - segment["position"] + 1
            return done / rewarm * base(segment["position"] + rewarm)
        return base(position)


def position_scheduler(optimizer, schedule: LRSchedule, step: int):
    """A LambdaLR over `optimizer` at global `step` of `schedule`."""
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, schedule)
    scheduler.last_epoch = step
    for group, base in zip(optimizer.param_groups, scheduler.base_lrs, strict=True):
        group["lr"] = base * schedule(step)
    scheduler._last_lr = [group["lr"] for group in optimizer.param_groups]
    return scheduler


# ---------------------------------------------------------------- the slope rule
def smooth(values: np.ndarray, weight: float = 0.9) -> np.ndarray:
    """Tensorboard's debiased exponential moving average."""
    out, last, norm = np.empty(len(values)), 0.0, 0.0
    for i, value in enumerate(values):  # a few hundred logged points, not tokens
        last = weight * last + (1 - weight) * value
        norm = weight * norm + (1 - weight)
        out[i] = last / norm
    return out


def loglog_slope(compute: np.ndarray, loss: np.ndarray, window: float = 0.5) -> float | None:
    """Least-squares slope of log(loss) against log(compute) over the last points whose
    compute lies within a factor `1 / (1 - window)`... i.e. the last `window` of log-compute
    range ending at the newest point. None with fewer than 3 points."""
    compute, loss = np.asarray(compute, float), np.asarray(loss, float)
    keep = (compute > 0) & (loss > 0)
    compute, loss = compute[keep], loss[keep]
    if len(compute) < 3:
        return None
    x, y = np.log(compute), np.log(loss)
    chosen = x >= x[-1] - window * (x[-1] - x[0])
    if chosen.sum() < 3:
        chosen[-3:] = True
    return float(np.polyfit(x[chosen], y[chosen], 1)[0])


@dataclass
class SlopeRule:
    """Fires the next growth of `order` when the smoothed log-log slope rises above its
    threshold; after the last growth, says stop above STOP_SLOPE.

    The rule is the paper's "the curve has flattened": a slope above the threshold counts only
    once the current model's curve has been steeper than it (`armed`). At the start of a run
    the loss sits near its initial value before it falls, a flat stretch whose slope is above
    every threshold; without this guard a short run grew there (bert-tiny, step 14 of 80)."""

    order: list[str]
    smoothing: float = 0.9
    window: float = 0.5
    min_points: int = 10
    history: list[tuple[float, float]] = field(default_factory=list)  # (flops, loss) logged
    since: int = 0  # history index where the current model's curve starts
    armed: bool = False  # the current curve has been steeper than the next threshold

    def observe(self, flops: float, loss: float) -> None:
        self.history.append((flops, loss))

    def slope(self) -> float | None:
        points = np.array(self.history[self.since:], dtype=float)
        if len(points) < self.min_points:
            return None
        return loglog_slope(points[:, 0], smooth(points[:, 1], self.smoothing), self.window)

    def decide(self, done: int) -> str | None:
        """'depth' / 'width' / 'both' (grow), 'stop', or None."""
        slope = self.slope()
        if slope is None:
            return None
        threshold = SLOPE_THRESHOLDS[self.order[done]] if done < len(self.order) else STOP_SLOPE
        if slope <= threshold:
            self.armed = True
            return None
        if not self.armed:
            return None
        return self.order[done] if done < len(self.order) else "stop"


def auto_event(step: int, what: str, config, args, max_steps: int,
               reset_optimizer: bool = False) -> GrowthEvent:
    return staged_event(step, what, config, args, max_steps,
                        round(step / RESTART_CONSTANTS[what]), reset_optimizer)


# ---------------------------------------------------------------- the runtime
class GrowthSchedule:
    """Applies growth events to a Trainer: fixed ones at their steps, automatic ones when
    the slope rule fires. `make_loss(model)`, `make_optimizer(model)` and `flops(config)` are
    the run's own builders, so a grown model is trained exactly like the first one."""

    def __init__(self, events: list[GrowthEvent], lr: LRSchedule, make_loss, make_optimizer,
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

    # ------------------------------------------------------------ deciding
    def after_step(self, trainer, logged: dict | None) -> GrowthEvent | None:
        """Called by the loop after every optimizer step (`logged`: the train values when
        this step logged them). Applies and returns the event due now, if any."""
        step = trainer.progress.step
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
                                   trainer.args.max_steps, self.reset_optimizer)
        if event is not None:
            self.apply(trainer, event)
        return event

    # ------------------------------------------------------------ growing
    def apply(self, trainer, event: GrowthEvent) -> None:
        from ligo.operators import grow
        from ligo.train.growth import grow_adam_state

        step = trainer.progress.step
        new_config = event.target_config(trainer.model.config)
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
        log.info("step %d: grew (%s) to %d layers, hidden %d, %.1fM parameters; AdamW %s; "
                 "LR %s", step, event.kind or event.depth, new_config.num_hidden_layers,
                 new_config.hidden_size, n_params / 1e6,
                 "reset" if event.reset_optimizer or event.depth == "ligo" else "moments mapped",
                 f"segment {event.segment}" if event.segment else "continues")

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

        trainer.model = model
        trainer.loss_module = self.make_loss(model)
        trainer.optimizer = self.make_optimizer(model)
        if optimizer_state is not None:
            checkpoint.load_full_state(model, trainer.optimizer, None, optimizer_state)
        trainer.scheduler = position_scheduler(trainer.optimizer, self.lr, trainer.progress.step)
        trainer.bare_loss = getattr(trainer.loss_module, "module", trainer.loss_module)
        trainer.flops_per_token = self.flops(model.config)

    def _ligo_phase(self, trainer, old_model, new_config, event: GrowthEvent):
        """Train a LiGO operator on the next `ligo_steps` global batches, then materialise.
        Its FLOPs and seconds are added to the run's; the main step counter does not move."""
        import time

        from ligo.operators.learned import LiGO, LiGOOptions, generation_flops, materialise
        from ligo.train.growth import LiGOLoss
        from ligo.train.loop import Progress

        old = old_model.config
        options = LiGOOptions(tune_depth=new_config.num_hidden_layers != old.num_hidden_layers,
                              tune_width=new_config.hidden_size != old.hidden_size
                              or ffn_size(new_config) != ffn_size(old), seed=self.growth_seed)
        state = {k: v.detach() for k, v in old_model.state_dict().items()}
        operator = LiGO(state, old, new_config, options).to(trainer.info.device)
        optimizer = self.make_optimizer(operator, lr=self.ligo_lr)
        steps = event.ligo_steps
        schedule = LRSchedule("linear", total=steps, warmup_steps=max(1, steps // 10))
        sub = replace(trainer, loss_module=self.wrap(LiGOLoss(operator, trainer.info.device)),
                      model=operator, optimizer=optimizer, growth=None, progress=Progress(),
                      scheduler=torch.optim.lr_scheduler.LambdaLR(optimizer, schedule))
        start = time.perf_counter()
        for index in range(steps):  # the batches the grown model is about to see
            sub.train_step(trainer.progress.step + index)
        micro_tokens = trainer.args.per_device_train_batch_size * trainer.train_blocks.block_size
        per_token = self.flops(new_config) + 3 * generation_flops(operator) / micro_tokens
        trainer.progress.flops += steps * sub.global_batch * trainer.train_blocks.block_size * per_token
        trainer.progress.seconds += time.perf_counter() - start
        log.info("step %d: trained a LiGO operator %d steps on the next batches (%.3g FLOPs)",
                 trainer.progress.step, steps, steps * sub.global_batch
                 * trainer.train_blocks.block_size * per_token)
        return materialise(operator)

    # ------------------------------------------------------------ checkpoints
    def state(self) -> dict:
        return {"fired": self.fired, "segments": self.lr.segments,
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
            trainer.scheduler = position_scheduler(trainer.optimizer, self.lr, step)


# ---------------------------------------------------------------- the schedule CLI
def when_to_grow(history: list[tuple[int, float, float]], order: list[str],
                 smoothing: float = 0.9, window: float = 0.5) -> dict:
    """Replay the slope rule over a logged run: [(step, flops, loss)] -> the step at which
    each threshold is first crossed, the slope there and the restart position."""
    rule = SlopeRule(order, smoothing, window)
    report = {"slopes": []}
    for step, flops, loss in history:
        rule.observe(flops, loss)
        slope = rule.slope()
        report["slopes"].append((step, slope))
        decision = rule.decide(0) if slope is not None else None
        if decision is None:
            continue
        key = "stop" if decision == "stop" else f"grow_{decision}"
        report[key] = {"step": step, "flops": flops, "slope": slope}
        if decision != "stop":
            report[key]["restart_step"] = round(step / RESTART_CONSTANTS[decision])
        break  # a later decision depends on the grown model's own curve
    return report


def main(argv: list[str] | None = None) -> dict:
    """python -m ligo.schedule RUN_DIR: when the automatic schedule would grow this run."""
    import argparse
    from pathlib import Path

    from ligo.train.events import read_scalars

    parser = argparse.ArgumentParser(description=main.__doc__)
    parser.add_argument("run_dir", help="a run's output_dir (or its tensorboard folder)")
    parser.add_argument("--next", default="depth", choices=("depth", "width", "both", "stop"),
                        help="which decision is next: a growth, or stop after the last one")
    parser.add_argument("--after_step", type=int, default=0,
                        help="ignore the curve up to this step (the warmup, as the run does)")
    parser.add_argument("--slope_smoothing", type=float, default=0.9)
    parser.add_argument("--slope_window", type=float, default=0.5)
    args = parser.parse_args(argv)
    folder = Path(args.run_dir)
    if (folder / "tensorboard").is_dir():
        folder = folder / "tensorboard"
    scalars = read_scalars(folder) if folder.is_dir() else {}
    if "train/loss" not in scalars or "train/flops" not in scalars:
        raise FileNotFoundError(f"no train/loss and train/flops scalars under {folder}")
    flops = dict(scalars["train/flops"])
    history = [(step, flops[step], loss) for step, loss in scalars["train/loss"]
               if step in flops and step > args.after_step]
    order = [] if args.next == "stop" else [args.next]
    report = when_to_grow(history, order, args.slope_smoothing, args.slope_window)
    last = next((s for s in reversed(report["slopes"]) if s[1] is not None), None)
    threshold = STOP_SLOPE if args.next == "stop" else SLOPE_THRESHOLDS[args.next]
    print(f"{len(history)} logged points; latest slope of log(loss) vs log(FLOPs): "
          f"{last[1]:.4f} at step {last[0]}" if last else "too few points for a slope yet")
    found = report.get("stop" if args.next == "stop" else f"grow_{args.next}")
    if found:
        extra = (f"; restart the LR schedule at step {found['restart_step']}"
                 if "restart_step" in found else "")
        print(f"{'stop' if args.next == 'stop' else 'grow ' + args.next} at step {found['step']} "
              f"({found['flops']:.3g} FLOPs, slope {found['slope']:.4f} > {threshold}){extra}")
    else:
        print(f"not yet: the slope has not risen above {threshold}")
    return report


if __name__ == "__main__":
    from ligo.cli import run

    run(main)
