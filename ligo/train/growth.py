"""Growth inside a training run: the grown model together with the source run's AdamW state
mapped through the same growth, and the LiGO operator phase's loss (the large model's own
loss as a function of the operator). The operators themselves (ligo.operators) are pure
functions on tensors and know nothing of optimizers, checkpoints or losses."""
from __future__ import annotations

import json
import logging
from pathlib import Path

import torch
from torch import nn

from ligo.families import family_of
from ligo.operators import grow, grow_roles
from ligo.operators.learned import LiGO, skeleton
from ligo.roles import from_roles, to_roles
from ligo.train.checkpoint import indexed_optimizer_state, load_latest_valid, read_source_model, whole_state
from ligo.train.objective import LanguageModelingLoss
from ligo.train.optim import adam_state_from_names, named_adam_state

log = logging.getLogger("ligo.operators")


def grow_adam_state(small_model, small_state: dict, large_model, large_template: dict,
                    **options) -> dict:
    """Map an AdamW state_dict of `small_model` onto `large_model` through the same growth
    (same depth/width schemes and seed as the weights): exp_avg and exp_avg_sq are grown as
    moments (see ligo.operators.width.expand), `step` is kept. `large_template` is the
    state_dict of a fresh optimizer over `large_model` (for its param_groups)."""
    family = family_of(small_model.config)
    named = named_adam_state(small_model, small_state)
    params = dict(small_model.named_parameters())
    step = max((float(s["step"]) for s in named.values()), default=0.0)
    grown = {}
    for power, field in ((1, "exp_avg"), (2, "exp_avg_sq")):
        # parameters with no state yet (never stepped) have zero moments
        moments = {name: named[name][field] if name in named else torch.zeros_like(p.detach())
                   for name, p in params.items()}
        for key, role in family.tied.items():  # tied copies share their source's moments
            moments.setdefault(key, moments[family.keys[role].key])
        roles = grow_roles(to_roles(moments, family), small_model.config, large_model.config,
                           moment_power=power, **options)
        grown[field] = from_roles(roles, family)
    large_names = [n for n, _ in large_model.named_parameters()]
    named_large = {name: {"step": torch.tensor(step), "exp_avg": grown["exp_avg"][name],
                          "exp_avg_sq": grown["exp_avg_sq"][name]} for name in large_names}
    return adam_state_from_names(large_model, named_large, large_template)


def _final_step(run_dir: Path) -> int | None:
    """The step of a finished run's model.safetensors (its results.json), if recorded."""
    try:
        results = json.loads((run_dir / "results.json").read_text())
    except (OSError, ValueError):
        return None
    return results.get("step") if isinstance(results, dict) else None


def grow_for_training(source_dir: str | Path, large_config, reset_optimizer: bool = False,
                      info=None, **options):
    """The grown model for a training run, and the source run's AdamW state mapped onto it.

    Unless `reset_optimizer`, the newest valid checkpoint in `source_dir` (a finished or
    interrupted run's output folder) supplies both the weights and the moments, so the two
    match; without one, the folder's HF model is grown and the optimizer state is None.
    Under torch.distributed (`info`) rank 0 alone verifies that checkpoint for all ranks.
    Returns (model, map_state) where map_state(template) -> AdamW state_dict or None.
    """
    small_config, state = read_source_model(source_dir)
    found = None if reset_optimizer else load_latest_valid(Path(source_dir), info)
    final_step = _final_step(Path(source_dir))
    if found and final_step is not None and found[1]["progress"]["step"] != final_step:
        # the checkpoint at the final model's step is damaged: an older one would grow other
        # weights than the folder's model, which is what the user pointed at
        log.warning("the newest valid checkpoint in %s is %s (step %d), not the final model's "
                    "step %d: growing the final model (model.safetensors); AdamW starts from "
                    "zero", source_dir, found[0].name, found[1]["progress"]["step"], final_step)
        found = None
    family = family_of(small_config)
    small = family.build_class()(small_config)
    if found:
        found = (found[0], whole_state(*found))
    small.load_state_dict(found[1]["model"] if found else state)
    model = grow(small, large_config, **options)
    if not found or found[1].get("optimizer_saved") is False:  # none, or fresh after an event
        return model, None
    source_optimizer = found[1]["optimizer"]
    if found[1].get("sharded"):  # DCP keeps AdamW state by parameter name
        source_optimizer = indexed_optimizer_state(small, source_optimizer)
    return model, lambda template: grow_adam_state(small, source_optimizer, model, template, **options)


class LiGOLoss(nn.Module):
    """The large model's own pretraining loss as a function of the operator's parameters:
    the training loop (and DDP) see this module, whose only parameters are LiGO's."""

    def __init__(self, operator: LiGO, device: torch.device | str = "cpu"):
        super().__init__()
        self.operator = operator
        self.family = operator.family
        # in a list: not a submodule, so neither DDP nor state_dict sees its meta parameters
        self._target = [LanguageModelingLoss(skeleton(operator.large_config, device), self.family)]
        self._eval_weights = None

    def train(self, mode: bool = True):
        super().train(mode)
        self._target[0].train(mode)
        self._eval_weights = None  # training changes the operator: generate afresh
        return self

    def weights(self) -> dict[str, torch.Tensor]:
        """The generated weights; in eval mode without gradients they are generated once and
        reused for every evaluation batch until the module is put back in train mode."""
        if self.training or torch.is_grad_enabled():
            return self.operator()
        if self._eval_weights is None:
            self._eval_weights = self.operator()
        return self._eval_weights

    def forward(self, input_ids: torch.Tensor, labels: torch.Tensor) -> dict[str, torch.Tensor]:
        # under the caller's autocast the generation's matmuls run in bf16/fp16 too (3x faster
        # on CPU, measured): the large model's linear layers would cast the weights anyway;
        # `materialise` generates the final weights in full precision
        weights = self.weights()
        params = {f"model.{key}": value for key, value in weights.items()}
        head = self.family.head_attr + "."  # the loss module also holds the head as `head`
        params.update({f"head.{key[len(head):]}": value for key, value in weights.items()
                       if key.startswith(head)})
        return torch.func.functional_call(self._target[0], params, (input_ids, labels))
