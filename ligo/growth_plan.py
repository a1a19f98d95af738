"""Growth events of one run, planned before training starts: progressive stacking
(--stages), progressive layer insertion (--insert_patches) and staged training's doublings
(--double_at, or automatic ones from ligo.slope). Each event says at which global step the
model grows into which config, by which operator, and what happens to AdamW and the LR
schedule (see ligo.train.optim.LRSchedule); ligo.schedule applies them."""
from __future__ import annotations

import copy
from dataclasses import dataclass, field

import torch

from ligo.models import ffn_size
from ligo.slope import restart_position


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
    # MSG (ligo.train.msg): the new structures' masks ramp from 0 to 1 over this many steps
    # after the event (0: no masks)
    msg_ramp_steps: int = 0

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
        if getattr(config, "num_key_value_heads", None):  # grouped-query attention: same groups
            changes["num_key_value_heads"] = 2 * config.num_key_value_heads
    return changes


def staged_event(step: int, what: str, config, args, max_steps: int,
                 position: int | None = None, reset_optimizer: bool = False,
                 msg_ramp_steps: int = 0) -> GrowthEvent:
    """Staged training's doubling at `step`: width by `double` (block-diagonal, exact),
    depth by identity layers interleaved after their source, AdamW moments mapped. With
    `msg_ramp_steps`, MSG's instead: random new units and layers stacked on top, under masks
    that ramp from 0 (the same function) to 1 over that many steps."""
    layers = config.num_hidden_layers
    segment = {"start": step, "position": step if position is None else position,
               "rewarm": args.restart_warmup_steps}
    if args.reset_lr_scheduler:
        segment = {"start": step, "position": 0, "rewarm": 0,
                   "total": max_steps - step}
    if msg_ramp_steps:
        return GrowthEvent(step=step, changes=doubled(config, what), kind=what,
                           depth="msg" if what in ("depth", "both") else "stack",
                           width="msg" if what in ("width", "both") else None,
                           reset_optimizer=reset_optimizer, segment=segment,
                           msg_ramp_steps=msg_ramp_steps)
    return GrowthEvent(step=step, changes=doubled(config, what), kind=what,
                       depth="identity" if what in ("depth", "both") else "stack",
                       width="double" if what in ("width", "both") else None,
                       depth_options={"positions": [2 * i + 1 for i in range(layers)]}
                       if what in ("depth", "both") else {},
                       reset_optimizer=reset_optimizer, segment=segment)


def heads_events(grow_heads_at: list[tuple[int, int]], config, args,
                 reset_optimizer: bool = False) -> list[GrowthEvent]:
    """Head growth at a fixed hidden size: at each (step, heads), the query heads grow to
    `heads` and the key/value heads with them (the group size kept); heads are copied with
    their output projection divided by the copy counts (`bert2bert_fpi`: exact), AdamW moments
    mapped, the LR schedule goes on where it was (re-warmed over --restart_warmup_steps)."""
    head_dim = getattr(config, "head_dim", None)
    if config.model_type not in ("llama", "mistral") or not head_dim:
        raise ValueError(f"--grow_heads_at grows heads at a fixed hidden size, which needs a head "
                         f"size of its own (LLaMA's head_dim); in {config.model_type} the head "
                         "size is hidden / heads: grow heads with the hidden size (--double_at "
                         "width)")
    kv_heads = getattr(config, "num_key_value_heads", None) or config.num_attention_heads
    group = config.num_attention_heads // kv_heads
    events, heads = [], config.num_attention_heads
    for step, target in grow_heads_at:
        if target <= heads or target % group:
            raise ValueError(f"--grow_heads_at {step}:{target}: the query heads must grow (now "
                             f"{heads}) to a multiple of the group size {group} (query heads "
                             "per key/value head)")
        events.append(GrowthEvent(
            step=step, changes={"num_attention_heads": target, "num_key_value_heads": target // group},
            kind="heads", depth="stack", width="bert2bert_fpi", reset_optimizer=reset_optimizer,
            segment={"start": step, "position": step, "rewarm": args.restart_warmup_steps}))
        heads = target
    return events


def non_embedding_parameters(config) -> int:
    """N of the scaling laws: every parameter of the transformer layers."""
    from ligo.families import family_of
    from ligo.roles import expected_shapes, to_roles

    shapes = {k: torch.empty(s, device="meta") for k, s in
              expected_shapes(config, family_of(config)).items()}
    layers = to_roles(shapes, family_of(config)).layers
    return sum(tensor.numel() for layer in layers for tensor in layer.values())


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
    msg_ramp = growth.msg_ramp_steps if growth.msg else 0
    if growth.msg and not (schedule.double_at or schedule.stages):
        raise ValueError("MSG in a growth schedule: with --double_at, or --stages with "
                         "--stage_operator msg (not yet with --insert_patches, --grow_heads_at or "
                         "--grow_when)")
    if schedule.stages and growth.msg and schedule.stage_operator != "msg":
        raise ValueError("--stages grows depth with --stage_operator; for MSG's masked layers "
                         "give --stage_operator msg")
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
                segment={"start": start, "position": 0, "rewarm": 0, "total": budget},
                msg_ramp_steps=growth.msg_ramp_steps if schedule.stage_operator == "msg" else 0))
            start += budget
        _check_msg_ramps(events, start)
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
    if schedule.grow_heads_at:
        events = heads_events(schedule.grow_heads_at, config, schedule, growth.reset_optimizer)
        _check_steps(events, max_steps, "--grow_heads_at")
        return config, events, max_steps, None  # --config_name is the first model
    current = config  # staged training: --config_name is the first model, doubled at each event
    for number, (step, what) in enumerate(schedule.double_at or []):
        position = schedule.restart_steps[number] if schedule.restart_steps else None
        events.append(staged_event(step, what, current, schedule, max_steps, position,
                                   growth.reset_optimizer, msg_ramp))
        current = events[-1].target_config(current)
    _check_steps(events, max_steps, "--double_at")
    _check_msg_ramps(events, max_steps)
    return config, events, max_steps, None


def _check_msg_ramps(events: list[GrowthEvent], max_steps: int) -> None:
    """An MSG ramp must end (its masks removed) before the next event grows the model again,
    and before the run ends (the saved model is the one without masks)."""
    for event, following in zip(events, [*events[1:], None], strict=False):
        if not event.msg_ramp_steps:
            continue
        end = event.step + event.msg_ramp_steps
        if following is not None and following.step < end:
            raise ValueError(f"--msg_ramp_steps {event.msg_ramp_steps}: the masks of the event at "
                             f"step {event.step} would still ramp at the next event (step "
                             f"{following.step}); shorten the ramp or space the events")
        if end >= max_steps:
            raise ValueError(f"--msg_ramp_steps {event.msg_ramp_steps}: the masks of the event at "
                             f"step {event.step} must reach 1 before the run ends (step {max_steps})")


def _check_steps(events: list[GrowthEvent], max_steps: int, flag: str) -> None:
    steps = [event.step for event in events]
    if any(not 0 < step < max_steps for step in steps) or len(set(steps)) != len(steps):
        raise ValueError(f"{flag}: the events fall on steps {steps}; each must be a different "
                         f"step inside the run (1..{max_steps - 1})")


def auto_event(step: int, what: str, config, args, max_steps: int,
               reset_optimizer: bool = False) -> GrowthEvent:
    return staged_event(step, what, config, args, max_steps,
                        restart_position(step, what), reset_optimizer)
