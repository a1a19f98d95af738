"""Fixed-size training blocks cut from a token stream, and the order they are visited in.

A block is a view into the (memory-mapped) stream: block i of an MLM family is
`[bos] + stream[i*C:(i+1)*C] + [eos]`, of a causal family `stream[i*C:(i+1)*C]`, with C the
content length. The order is a pure function of (seed, epoch), so any step of any run can
be rebuilt from its step number alone: resuming needs no data-loader state, and 1 process
or N processes see the same global batches.
"""
from __future__ import annotations

from functools import lru_cache

import numpy as np
import torch


class TokenBlocks:
    def __init__(self, stream: np.ndarray, block_size: int, bos_id: int | None = None,
                 eos_id: int | None = None):
        self.stream = stream
        self.block_size = block_size
        self.prefix = [] if bos_id is None else [bos_id]
        self.suffix = [] if eos_id is None else [eos_id]
        self.content = block_size - len(self.prefix) - len(self.suffix)
        self.num_blocks = len(stream) // self.content

    def __len__(self) -> int:
        return self.num_blocks

    def batch(self, indices: np.ndarray) -> torch.Tensor:
        """(B,) block indices -> (B, block_size) int64 token ids, one vectorised gather."""
        indices = np.asarray(indices, dtype=np.int64)
        positions = indices[:, None] * self.content + np.arange(self.content)
        body = torch.from_numpy(self.stream[positions].astype(np.int64))  # (B, C)
        parts = [body]
        if self.prefix:
            parts.insert(0, torch.full((len(indices), 1), self.prefix[0], dtype=torch.int64))
        if self.suffix:
            parts.append(torch.full((len(indices), 1), self.suffix[0], dtype=torch.int64))
        return torch.cat(parts, dim=1) if len(parts) > 1 else body


@lru_cache(maxsize=4)
def _epoch_order(num_blocks: int, seed: int, epoch: int) -> np.ndarray:
    return np.random.default_rng([seed, epoch]).permutation(num_blocks)


class BatchOrder:
    """Which blocks make up global batch `step`; every block once per epoch, reshuffled."""

    def __init__(self, num_blocks: int, global_batch: int, seed: int):
        if num_blocks < global_batch:
            raise ValueError(f"the training data has {num_blocks} blocks but one global batch "
                             f"needs {global_batch}; use more data, a smaller batch or a "
                             "smaller block size")
        self.num_blocks, self.global_batch, self.seed = num_blocks, global_batch, seed
        self.steps_per_epoch = num_blocks // global_batch

    def global_indices(self, step: int) -> tuple[np.ndarray, np.ndarray]:
        """(block indices, sample keys) of global batch `step`.

        The sample key (epoch * num_blocks + block) seeds that sample's masking, so masks
        change from epoch to epoch (dynamic masking) but never depend on who computes them.
        """
        epoch, within = divmod(step, self.steps_per_epoch)
        order = _epoch_order(self.num_blocks, self.seed, epoch)
        blocks = order[within * self.global_batch:(within + 1) * self.global_batch]
        return blocks, epoch * self.num_blocks + blocks

    def epoch(self, step: int) -> float:
        return step / self.steps_per_epoch
