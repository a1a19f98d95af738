"""The unigram line equals a direct count, for masked and causal LM."""
import math
from collections import Counter

import numpy as np
import pytest
import torch

from ligo.data.blocks import TokenBlocks
from ligo.data.collators import IGNORE_INDEX, CLMCollator, MLMCollator
from ligo.data.unigram import unigram_cross_entropy, unigram_log_probabilities

VOCAB = 12
SPECIALS = [0, 1, 2, 3]  # pad, cls, sep, mask (BERT's order is irrelevant here)


def direct_loss(train: list[int], labels: list[int], never: set[int]) -> float:
    """-mean log of add-one-smoothed training frequencies, counted by hand."""
    counts = Counter(t for t in train if t not in never)
    allowed = [t for t in range(VOCAB) if t not in never]
    total = sum(counts.values()) + len(allowed)
    return -sum(math.log((counts[t] + 1) / total) for t in labels) / len(labels)


@pytest.fixture
def streams():
    rng = np.random.default_rng(0)
    # skewed frequencies, a document separator (2) now and then, token 11 never in training
    train = rng.choice(np.arange(4, 11), size=600, p=[.4, .2, .1, .1, .1, .05, .05])
    train[::37] = 2
    valid = rng.choice(np.arange(4, 12), size=200)
    valid[::41] = 2
    return train.astype(np.uint16), valid.astype(np.uint16)


def test_masked_lm_unigram_line_is_the_direct_count_over_the_masked_positions(streams):
    train, valid = streams
    blocks = TokenBlocks(valid, block_size=16, bos_id=1, eos_id=2)
    collator = MLMCollator(mask_id=3, vocab_size=VOCAB, special_ids=SPECIALS, seed=5,
                           probability=0.3)
    indices = np.arange(len(blocks))
    labels = collator(blocks.batch(indices), indices)["labels"]
    chosen = labels[labels != IGNORE_INDEX].tolist()
    assert chosen and not set(chosen) & set(SPECIALS)  # only ordinary tokens are labels
    expected = direct_loss(train.tolist(), chosen, set(SPECIALS))
    log_p = unigram_log_probabilities(train, VOCAB, SPECIALS)
    got = unigram_cross_entropy(log_p, blocks, collator, indices, "mlm", batch_size=3)
    assert got == pytest.approx(expected, rel=1e-12)
    assert torch.exp(log_p).sum().item() == pytest.approx(1.0, rel=1e-12)
    assert torch.isneginf(log_p[SPECIALS]).all()


def test_causal_lm_unigram_line_is_the_direct_count_over_the_next_tokens(streams):
    train, valid = streams
    blocks = TokenBlocks(valid, block_size=16)
    indices = np.arange(len(blocks))
    # position t predicts t + 1: every token of a block but its first is a label
    labels = [int(t) for i in indices for t in valid[i * 16 + 1:(i + 1) * 16]]
    expected = direct_loss(train.tolist(), labels, set())
    log_p = unigram_log_probabilities(train, VOCAB)
    got = unigram_cross_entropy(log_p, blocks, CLMCollator(), indices, "clm", batch_size=4)
    assert got == pytest.approx(expected, rel=1e-12)
    # the document separator is a label like any other token in causal LM
    assert torch.isfinite(log_p).all()


def test_a_model_whose_logits_are_the_frequencies_scores_exactly_the_line(streams):
    """The line is the cross-entropy of the unigram distribution: a model that outputs those
    log-probabilities as logits scores exactly it."""
    from torch.nn.functional import cross_entropy

    train, valid = streams
    blocks = TokenBlocks(valid, block_size=16)
    indices = np.arange(len(blocks))
    log_p = unigram_log_probabilities(train, VOCAB)
    targets = blocks.batch(indices)[:, 1:].reshape(-1)
    as_logits = cross_entropy(log_p.expand(len(targets), VOCAB), targets).item()
    line = unigram_cross_entropy(log_p, blocks, CLMCollator(), indices, "clm")
    assert as_logits == pytest.approx(line, rel=1e-12)
