"""MSG, masked structural growth (Yao et al., "Masked Structural Growth for 2x Faster Language
Model Pre-training", ICLR 2024; code: cofe-ai/MSG; used to train FLM-101B).

Every new structure of a grown model is multiplied by a mask that ramps from 0 to 1 over a
number of steps after growth, so that at mask 0 the grown model computes the source's
function whatever its new weights are (MSG initialises them at random: width scheme `msg`
is `random`'s weights, depth scheme `msg` is `stack`'s):

- new hidden dimensions: every norm (LayerNorm or RMSNorm) computes its statistics over the
  dimensions weighted by the mask (MSG's LayerNormEx) and its output is multiplied by the
  mask; in pre-norm families (GPT-2, LLaMA) everything that writes into the residual stream
  (the embeddings, attention-out, FFN-out) is masked too, as post-norm families (BERT,
  RoBERTa) mask it in the norm that follows;
- new FFN units: the FFN's input projection (before the activation; LLaMA: `up_proj`);
- new attention heads: the query, key and value outputs of the new (key/value) heads;
- new layers: a new layer's output is `m * layer(x) + (1 - m) * x`.

At mask 1 every mask is the identity (a norm over all dimensions with weight 1 is the plain
norm), and `remove()` takes them away: what is saved afterwards is an ordinary HF model.
The masks live in the training-time model only (hooks and per-instance norm forwards), never
in a checkpoint's weights; `MSGRamp` owns the ramp's position and restores it on resume.
"""
from __future__ import annotations

import logging

import torch
from torch import nn

from ligo.families import family_of
from ligo.models import ffn_size
from ligo.operators.width import _head_size, _kv_heads

log = logging.getLogger("ligo.msg")

NORM_ROLES = ("embed.ln", "final_ln", "head.ln")  # model-level norms over the hidden size
LAYER_NORM_ROLES = ("ln_attn", "ln_ffn")


def _module_path(key: str) -> str:
    return key.rsplit(".", 1)[0]  # "...LayerNorm.weight" -> "...LayerNorm"


class MSGMasks:
    """The masks of one grown model (`model`, grown from a model of `small_config` with
    `new_layers` the indices of its new layers), all at `value` (0: the source's function)."""

    def __init__(self, model: nn.Module, small_config, new_layers: list[int] | None = None,
                 value: float = 0.0):
        config = model.config
        self.model, self.family = model, family_of(config)
        if _head_size(small_config) != _head_size(config):
            raise ValueError(f"MSG grows whole heads: the head size must stay the same "
                             f"({_head_size(small_config)} -> {_head_size(config)})")
        if new_layers is None:
            new_layers = list(range(small_config.num_hidden_layers, config.num_hidden_layers))
        self.new_layers = list(new_layers)
        self.source_config = small_config  # what the masks are relative to (for a resume)
        device = next(model.parameters()).device
        head = _head_size(config)
        sizes = {"hidden": (small_config.hidden_size, config.hidden_size),
                 "ffn": (ffn_size(small_config), ffn_size(config)),
                 "heads": (small_config.num_attention_heads * head, config.num_attention_heads * head),
                 "kv_heads": (_kv_heads(small_config) * head, _kv_heads(config) * head)}
        # a mask per kind of unit: 1 on the source's units, `value` on the new ones
        self.old = {kind: old for kind, (old, _) in sizes.items()}
        self.masks = {kind: torch.ones(new, dtype=torch.float64, device=device)
                      for kind, (_, new) in sizes.items()}
        self.layer_mask = torch.ones((), dtype=torch.float64, device=device)
        self.value = None
        self._handles: list = []
        self._patched: list[nn.Module] = []
        self._install()
        self.set(value)

    # ------------------------------------------------------------------ the ramp's position
    def set(self, value: float) -> None:
        if not 0.0 <= value <= 1.0:
            raise ValueError(f"an MSG mask is between 0 and 1, not {value}")
        self.value = float(value)
        with torch.no_grad():
            for kind, mask in self.masks.items():
                mask[self.old[kind]:] = value  # in place: hooks (and compiled code) keep it
            self.layer_mask.fill_(value)

    def state_dict(self) -> dict:
        return {"value": self.value, "new_layers": self.new_layers,
                "source_config": self.source_config.to_dict()}

    def load_state_dict(self, state: dict) -> None:
        if list(state["new_layers"]) != self.new_layers:
            raise ValueError(f"MSG state of new layers {state['new_layers']}, this model's are "
                             f"{self.new_layers}")
        self.set(state["value"])

    @property
    def installed(self) -> bool:
        return bool(self._handles or self._patched)

    def remove(self) -> None:
        """Take every mask away (at mask 1 the model's function does not change)."""
        for handle in self._handles:
            handle.remove()
        for module in self._patched:
            del module.forward  # back to the class's own forward
        self._handles, self._patched = [], []

    # ------------------------------------------------------------------ where the masks go
    def _install(self) -> None:
        family, model = self.family, self.model
        keys = family.keys
        layers = model.get_submodule(family.layers_path)

        def layer_module(role: str, i: int) -> nn.Module:
            return model.get_submodule(_module_path(keys[f"{role}.weight"].key.format(i=i)))

        hidden = self.masks["hidden"]
        for role in NORM_ROLES:
            if f"{role}.weight" in keys:
                self._mask_norm(model.get_submodule(_module_path(keys[f"{role}.weight"].key)), hidden)
        pre_norm = family.pre_layernorm
        if pre_norm:  # the embeddings write the residual stream
            for role in ("embed.word", "embed.position"):
                if role in keys:
                    self._mask_output(model.get_submodule(_module_path(keys[role].key)), hidden)
        heads, kv_heads = self.masks["heads"], self.masks["kv_heads"]
        for i in range(len(layers)):
            for role in LAYER_NORM_ROLES:
                self._mask_norm(layer_module(role, i), hidden)
            if pre_norm:
                for role in ("attn_out", "ffn_out"):
                    self._mask_output(layer_module(role, i), hidden)
            self._mask_output(layer_module("ffn_in", i), self.masks["ffn"])
            if keys["q.weight"].key == keys["k.weight"].key:  # GPT-2's fused q|k|v projection
                self._mask_output(layer_module("q", i), lambda: torch.cat((heads, kv_heads, kv_heads)))
            else:
                self._mask_output(layer_module("q", i), heads)
                self._mask_output(layer_module("k", i), kv_heads)
                self._mask_output(layer_module("v", i), kv_heads)
        for i in self.new_layers:
            self._handles.append(layers[i].register_forward_hook(self._blend_layer, with_kwargs=True))

    def _mask_output(self, module: nn.Module, mask) -> None:
        """Multiply `module`'s output by `mask` (a tensor, or a function giving one)."""
        def hook(_module, _args, output):
            full = mask() if callable(mask) else mask
            return output * full.to(output.dtype)
        self._handles.append(module.register_forward_hook(hook))

    def _mask_norm(self, module: nn.Module, mask: torch.Tensor) -> None:
        """The norm's statistics weighted by `mask` (MSG's LayerNormEx), its output masked."""
        rms = not isinstance(module, nn.LayerNorm)
        eps = module.variance_epsilon if rms else module.eps

        def forward(x):
            dtype = torch.promote_types(x.dtype, torch.float32)  # as LayerNorm under autocast
            h, w = x.to(dtype), mask.to(dtype)
            count = w.sum()
            if rms:
                scale = torch.rsqrt((h.square() * w).sum(-1, keepdim=True) / count + eps)
                out = module.weight * (h * scale).to(x.dtype)
            else:
                mean = (h * w).sum(-1, keepdim=True) / count
                var = ((h - mean).square() * w).sum(-1, keepdim=True) / count
                out = (h - mean) * torch.rsqrt(var + eps) * module.weight + module.bias
            return out * w.to(out.dtype)

        module.forward = forward  # an instance attribute: `del module.forward` restores it
        self._patched.append(module)

    def _blend_layer(self, _module, args, kwargs, output):
        x = args[0] if args else kwargs["hidden_states"]
        m = self.layer_mask
        first = output[0] if isinstance(output, tuple) else output
        blended = m.to(first.dtype) * first + (1 - m).to(first.dtype) * x
        return (blended, *output[1:]) if isinstance(output, tuple) else blended


class MSGRamp:
    """The training loop's view of MSG after a one-off growth (ligo.train.loop.GrowthHook):
    after each optimizer step the masks move to (steps since growth) / ramp_steps; at 1 they
    are removed. Its state (the position) goes into every checkpoint, so a resumed run puts
    the masks back where they were."""

    stop = False

    def __init__(self, masks: MSGMasks, ramp_steps: int, start_step: int = 0):
        if ramp_steps < 1:
            raise ValueError(f"--msg_ramp_steps must be at least 1, not {ramp_steps}")
        self.masks, self.ramp_steps, self.start_step = masks, ramp_steps, start_step

    def value_at(self, step: int) -> float:
        return min(1.0, max(0, step - self.start_step) / self.ramp_steps)

    def after_step(self, trainer, logged) -> None:
        self.move_to(trainer.progress.step)
        return None  # not a growth event

    def move_to(self, step: int) -> None:
        """The masks where they are after `step` optimizer steps (removed at 1)."""
        if not self.masks.installed:
            return
        value = self.value_at(step)
        if value >= 1.0:
            self.masks.set(1.0)
            self.masks.remove()
            log.info("MSG: the masks reached 1 at step %d and were removed: an ordinary model "
                     "from here on", step)
        else:
            self.masks.set(value)

    def state(self) -> dict:
        return {"msg": {**self.masks.state_dict(), "ramp_steps": self.ramp_steps,
                        "start_step": self.start_step}}

    def restore(self, trainer, state: dict, config_dict: dict, step: int) -> None:
        msg = state["msg"]
        if (msg["ramp_steps"], msg["start_step"]) != (self.ramp_steps, self.start_step):
            raise ValueError(f"the checkpoint's MSG ramp ({msg['ramp_steps']} steps from step "
                             f"{msg['start_step']}) is not this run's ({self.ramp_steps} from "
                             f"{self.start_step}); resume with the same --msg_ramp_steps")
        self.move_to(step)
