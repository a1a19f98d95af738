"""Layer drop and token drop: training steps that compute less of the model.

LiGO's official code trains its grown models with both and reports extra savings (+4.7 and
+7.4 points), but its layer drop replaces a layer's output per sample *after* computing it,
which saves no compute. Here what is dropped is never computed, and the run's FLOPs count
only what was:

- **layer drop** (progressive layer dropping, Zhang & He, NeurIPS 2020): at every optimizer
  step layer i of L (1-based) is skipped, for the whole global batch, with probability
  (i / L) * rate(t), rate(t) = P * (1 - exp(-t / ramp)): deeper layers are dropped more, and
  more so as training goes on (PLD's schedule; ramp 0: P from the first step). A skipped layer
  is the identity on the residual stream, and its parameters get no gradient that step (AdamW
  leaves them, their moments and their weight decay alone, as in PLD).
- **token drop** (Hou et al., "Token Dropping for Efficient BERT Pretraining", ACL 2022): the
  middle layers, [n/2, n-1) of the n that run, see only K = T - round(P * T) positions of each
  sequence; the others skip them, carried from the first middle layer's input to the last
  layer, which again sees every position (Hou et al.'s layout). Labelled positions (MLM's
  masked tokens) are kept first, the rest of the K at random; Hou et al. rank the unlabelled
  ones by their running MLM loss instead, random-LTD (Yao et al. 2022) at random, as here. A
  causal LM labels every position: its K are random, and every position is still predicted,
  by the last layer.

Both draw their randomness from (seed, step) alone: every data-parallel rank takes the same
decisions over the same global batch, however many ranks share it, and a resumed run takes
the ones of an uninterrupted run. Neither acts in evaluation.
"""
from __future__ import annotations

import contextlib
import math
from dataclasses import dataclass

import torch
from torch import nn

from ligo.data.collators import IGNORE_INDEX
from ligo.train.flops import layer_training_flops_per_token

LAYER_DRAWS, TOKEN_DRAWS = 1, 2  # separate random streams of one step


def _generator(seed: int, step: int, stream: int) -> torch.Generator:
    return torch.Generator().manual_seed(((seed * 1_000_003 + step) << 2) + stream)


@dataclass(frozen=True, kw_only=True)
class LayerDrop:
    rate: float  # P: the deepest layer's drop probability once the schedule has ramped up
    ramp_steps: int = 0  # PLD's time constant (1 / gamma); 0: the full rate from the start
    seed: int = 0

    def rate_at(self, step: int) -> float:
        if self.ramp_steps == 0:
            return self.rate
        return self.rate * (1.0 - math.exp(-step / self.ramp_steps))

    def dropped(self, step: int, num_layers: int) -> list[int]:
        """Indices of the layers that global batch `step` skips."""
        draws = torch.rand(num_layers, generator=_generator(self.seed, step, LAYER_DRAWS),
                           dtype=torch.float64)
        rate = self.rate_at(step)
        return [i for i in range(num_layers) if draws[i].item() < (i + 1) / num_layers * rate]


@dataclass(frozen=True, kw_only=True)
class TokenDrop:
    rate: float  # P: the fraction of each sequence's positions the middle layers skip
    seed: int = 0

    def kept_count(self, seq_len: int) -> int:
        return max(1, seq_len - round(self.rate * seq_len))

    @staticmethod
    def middle(num_layers: int) -> range:
        """Positions (in the list of layers that run) of the layers that see the kept tokens."""
        return range(num_layers // 2, num_layers - 1)

    def scores(self, step: int, global_batch: int, seq_len: int) -> torch.Tensor:
        """Random draws for every position of global batch `step` (rows as its blocks)."""
        return torch.rand(global_batch, seq_len, generator=_generator(self.seed, step, TOKEN_DRAWS))

    def kept_positions(self, scores: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        """(B, K) positions kept per sequence, ascending: labelled ones first, then at random."""
        priority = scores.to(labels.device) + (labels != IGNORE_INDEX).float()  # labels win
        kept = priority.topk(self.kept_count(labels.shape[1]), dim=1).indices
        return kept.sort(dim=1).values


def _at_positions(value, kept: torch.Tensor, seq_len: int):
    """`value` (a layer's argument) restricted to the kept positions wherever it has a position
    axis of length seq_len: hidden states and rotary tables (B|1, T, ...), position ids
    (B|1, T), attention masks (B|1, heads|1, T|1, T); anything else is passed on."""
    if isinstance(value, (tuple, list)):
        return type(value)(_at_positions(v, kept, seq_len) for v in value)
    if not torch.is_tensor(value) or value.dim() < 2:
        return value
    batch, k = kept.shape
    if value.dim() == 4 and value.shape[-1] == seq_len:  # an attention mask: keys, then queries
        value = value.expand(batch, *value.shape[1:])
        heads, rows = value.shape[1], value.shape[2]
        value = value.gather(3, kept[:, None, None, :].expand(batch, heads, rows, k))
        if rows == seq_len:
            value = value.gather(2, kept[:, None, :, None].expand(batch, heads, k, k))
        return value
    if value.shape[1] == seq_len and value.shape[0] in (1, batch):
        value = value.expand(batch, *value.shape[1:])
        index = kept.view(batch, k, *[1] * (value.dim() - 2)).expand(batch, k, *value.shape[2:])
        return value.gather(1, index)
    return value


@contextlib.contextmanager
def _only_positions(layers: list[nn.Module], kept: torch.Tensor, seq_len: int):
    """`layers` (consecutive) see only the positions `kept` (B, K); after the last of them the
    skipped positions are put back with the values they entered the first with."""
    entered = {}

    def gather(module, args, kwargs):
        if module is layers[0]:
            entered["hidden"] = args[0] if args else kwargs["hidden_states"]
        return (_at_positions(args, kept, seq_len),
                {name: _at_positions(v, kept, seq_len) for name, v in kwargs.items()})

    def scatter(module, args, kwargs, output):
        out = output[0] if isinstance(output, tuple) else output
        full = entered.pop("hidden")
        index = kept[..., None].expand(-1, -1, full.shape[-1])
        merged = full.to(out.dtype).scatter(1, index, out)
        return (merged, *output[1:]) if isinstance(output, tuple) else merged

    handles = [layer.register_forward_pre_hook(gather, with_kwargs=True) for layer in layers]
    handles.append(layers[-1].register_forward_hook(scatter, with_kwargs=True))
    try:
        yield
    finally:
        for handle in handles:
            handle.remove()


@contextlib.contextmanager
def _without_layers(model: nn.Module, layers_path: str, dropped: list[int]):
    """The model's forward skips the layers `dropped` (its layer list, for the duration)."""
    parent_path, _, name = layers_path.rpartition(".")
    parent = model.get_submodule(parent_path)
    full = getattr(parent, name)
    setattr(parent, name, nn.ModuleList([m for i, m in enumerate(full) if i not in dropped]))
    try:
        yield
    finally:
        setattr(parent, name, full)


@dataclass(frozen=True, kw_only=True)
class StepDrops:
    """What one optimizer step drops (the same for each of its micro-batches)."""

    num_layers: int
    dropped_layers: list[int]
    token_drop: TokenDrop | None
    token_scores: torch.Tensor | None  # (global batch, T)

    @property
    def running_layers(self) -> list[int]:
        return [i for i in range(self.num_layers) if i not in self.dropped_layers]

    @property
    def token_layers(self) -> list[int]:
        """Indices of the layers that see only the kept positions."""
        if self.token_drop is None:
            return []
        running = self.running_layers
        return [running[j] for j in TokenDrop.middle(len(running))]

    @contextlib.contextmanager
    def applied(self, model: nn.Module, layers_path: str, labels: torch.Tensor, rows: slice):
        """The forward of the micro-batch `labels`, rows `rows` of the global batch."""
        with contextlib.ExitStack() as stack:
            layers = model.get_submodule(layers_path)
            chosen = self.token_layers
            if chosen and self.token_drop.kept_count(labels.shape[1]) < labels.shape[1]:
                kept = self.token_drop.kept_positions(self.token_scores[rows], labels)
                stack.enter_context(_only_positions([layers[i] for i in chosen], kept, labels.shape[1]))
            if self.dropped_layers:
                stack.enter_context(_without_layers(model, layers_path, self.dropped_layers))
            yield

    def skipped_parameters(self, model: nn.Module, layers_path: str) -> list[nn.Parameter]:
        layers = model.get_submodule(layers_path)
        return [p for i in self.dropped_layers for p in layers[i].parameters()]

    def saved_flops_per_token(self, config, seq_len: int) -> float:
        """Training FLOPs per token the full model would spend and this step does not."""
        full = layer_training_flops_per_token(config, seq_len)
        saved = len(self.dropped_layers) * full
        if self.token_layers:
            k = self.token_drop.kept_count(seq_len)
            saved += len(self.token_layers) * (full - k / seq_len
                                               * layer_training_flops_per_token(config, k))
        return saved


@dataclass(frozen=True, kw_only=True)
class Drops:
    """The run's layer drop and token drop (either may be None); `for_step` plans a step."""

    layer_drop: LayerDrop | None = None
    token_drop: TokenDrop | None = None

    def for_step(self, step: int, num_layers: int, global_batch: int, seq_len: int) -> StepDrops:
        dropped = self.layer_drop.dropped(step, num_layers) if self.layer_drop else []
        scores = (self.token_drop.scores(step, global_batch, seq_len)
                  if self.token_drop else None)
        return StepDrops(num_layers=num_layers, dropped_layers=dropped,
                         token_drop=self.token_drop, token_scores=scores)

    def describe(self, num_layers: int, seq_len: int) -> str:
        parts = []
        if self.layer_drop:
            ramp = (f", ramped up with time constant {self.layer_drop.ramp_steps} steps"
                    if self.layer_drop.ramp_steps else "")
            parts.append(f"layer drop: layer i of {num_layers} skipped with probability "
                         f"i/{num_layers} x {self.layer_drop.rate:g}{ramp}")
        if self.token_drop:
            middle = TokenDrop.middle(num_layers)
            parts.append(f"token drop: layers {middle.start}..{middle.stop - 1} (of those that run) "
                         f"see {self.token_drop.kept_count(seq_len)} of {seq_len} positions, "
                         "labelled ones first" if len(middle) else
                         f"token drop: a {num_layers}-layer model has no middle layers, nothing dropped")
        return "; ".join(parts)
