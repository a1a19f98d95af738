"""Turn a batch of token blocks into model inputs and labels: masked LM or causal LM.

Randomness is per sample: each sample's uniforms come from a generator seeded by its key
(see BatchOrder), then all masking decisions are made on the whole batch at once. A sample
therefore gets the same mask whatever batch, rank or restart it lands in.
"""
from __future__ import annotations

import numpy as np
import torch

IGNORE_INDEX = -100


class MLMCollator:
    """BERT masking: choose `probability` of the non-special tokens (or of the words, with
    whole-word masking); of those, 80% become [MASK], 10% a random token, 10% stay."""

    def __init__(self, mask_id: int, vocab_size: int, special_ids: list[int], seed: int,
                 probability: float = 0.15, word_starts: np.ndarray | None = None):
        self.mask_id, self.vocab_size, self.seed = mask_id, vocab_size, seed
        self.probability = probability
        self.special_ids = torch.tensor(special_ids, dtype=torch.int64)
        self.word_starts = None if word_starts is None else torch.from_numpy(word_starts)

    def uniforms(self, sample_keys: np.ndarray, length: int) -> torch.Tensor:
        """(B, 3, T) uniforms, one independent stream per sample key."""
        generator = torch.Generator()
        rows = []
        for key in np.asarray(sample_keys).tolist():
            generator.manual_seed((self.seed * 1_000_003 + key) % (2**63))
            rows.append(torch.rand(3, length, generator=generator))
        return torch.stack(rows)

    def __call__(self, input_ids: torch.Tensor, sample_keys: np.ndarray) -> dict[str, torch.Tensor]:
        batch, length = input_ids.shape
        u = self.uniforms(sample_keys, length)
        choose_u, action_u, token_u = u[:, 0], u[:, 1], u[:, 2]
        special = torch.isin(input_ids, self.special_ids)
        if self.word_starts is not None:
            # every piece of a word takes the draw of the word's first piece
            starts = self.word_starts[input_ids] | special
            positions = torch.arange(length).expand(batch, length)
            word_start = torch.where(starts, positions, 0).cummax(dim=1).values
            choose_u = choose_u.gather(1, word_start)
        chosen = (choose_u < self.probability) & ~special
        labels = torch.where(chosen, input_ids, IGNORE_INDEX)
        to_mask = chosen & (action_u < 0.8)
        to_random = chosen & (action_u >= 0.8) & (action_u < 0.9)
        random_ids = (token_u * self.vocab_size).long().clamp_(max=self.vocab_size - 1)
        inputs = torch.where(to_mask, self.mask_id, input_ids)
        inputs = torch.where(to_random, random_ids, inputs)
        return {"input_ids": inputs, "labels": labels}


class CLMCollator:
    """Causal LM: the labels are the inputs (the objective shifts them by one)."""

    def __call__(self, input_ids: torch.Tensor, sample_keys: np.ndarray) -> dict[str, torch.Tensor]:
        return {"input_ids": input_ids, "labels": input_ids}
