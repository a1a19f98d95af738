import numpy as np
import pytest

from ligo.data.blocks import BatchOrder, TokenBlocks


def test_mlm_blocks_wrap_content_in_bos_and_eos():
    stream = np.arange(100, 150, dtype=np.uint16)
    blocks = TokenBlocks(stream, block_size=8, bos_id=1, eos_id=2)
    assert len(blocks) == 50 // 6
    batch = blocks.batch(np.array([0, 3]))
    assert batch.tolist() == [[1, 100, 101, 102, 103, 104, 105, 2],
                              [1, 118, 119, 120, 121, 122, 123, 2]]


def test_causal_blocks_are_plain_slices():
    stream = np.arange(20, dtype=np.uint32)
    blocks = TokenBlocks(stream, block_size=4)
    assert len(blocks) == 5
    assert blocks.batch(np.array([4, 1])).tolist() == [[16, 17, 18, 19], [4, 5, 6, 7]]


def test_every_block_once_per_epoch_and_reshuffled():
    order = BatchOrder(num_blocks=40, global_batch=8, seed=3)
    epoch0 = np.concatenate([order.global_indices(s)[0] for s in range(5)])
    epoch1 = np.concatenate([order.global_indices(s)[0] for s in range(5, 10)])
    assert sorted(epoch0) == list(range(40)) == sorted(epoch1)
    assert not np.array_equal(epoch0, epoch1)
    # keys differ between epochs for the same block: masks are redrawn each epoch
    keys0 = dict(zip(epoch0, np.concatenate([order.global_indices(s)[1] for s in range(5)]), strict=False))
    keys1 = dict(zip(epoch1, np.concatenate([order.global_indices(s)[1] for s in range(5, 10)]), strict=False))
    assert all(keys0[b] != keys1[b] for b in range(40))


def test_order_is_a_function_of_seed_and_step_only():
    a, b = BatchOrder(100, 10, seed=1), BatchOrder(100, 10, seed=1)
    assert np.array_equal(a.global_indices(17)[0], b.global_indices(17)[0])
    assert not np.array_equal(a.global_indices(17)[0], BatchOrder(100, 10, seed=2).global_indices(17)[0])


def test_too_little_data_for_one_batch_is_reported():
    with pytest.raises(ValueError, match="has 5 blocks but one global batch needs 8"):
        BatchOrder(5, 8, seed=0)
