"""Augmentation (random crops after zero padding, flips) and the batch order."""

from __future__ import annotations

import numpy as np
import pytest

from cnnlab.data.augment import augment
from cnnlab.data.batches import Rows, batch_indices, epoch_order, shard


def reference(x, pad, dy, dx, mirror):
    """One image at a time, the obvious way."""
    out = np.empty_like(x)
    _, _, h, w = x.shape
    for i, image in enumerate(x):
        padded = np.pad(image, ((0, 0), (pad, pad), (pad, pad)))
        crop = padded[:, dy[i] : dy[i] + h, dx[i] : dx[i] + w]
        out[i] = crop[:, :, ::-1] if mirror[i] else crop
    return out


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_crop_and_flip_match_a_per_image_loop(dtype):
    x = np.random.default_rng(0).standard_normal((16, 3, 7, 9)).astype(dtype)
    out = augment(x, np.random.default_rng([1, 2, 3, 1]), crop_pad=2, flip=True)
    rng = np.random.default_rng([1, 2, 3, 1])  # the same draws, in the documented order
    dy, dx, mirror = rng.integers(0, 5, 16), rng.integers(0, 5, 16), rng.random(16) < 0.5
    np.testing.assert_array_equal(out, reference(x, 2, dy, dx, mirror))
    assert out.shape == x.shape and out.dtype == x.dtype
    assert 0 < mirror.sum() < 16 and (dy != 2).any()  # both transforms were exercised


def test_same_generator_same_batch_and_input_untouched():
    x = np.random.default_rng(0).standard_normal((8, 1, 5, 5)).astype(np.float32)
    saved = x.copy()
    a = augment(x, np.random.default_rng([0, 1, 2, 1]), 4, True)
    b = augment(x, np.random.default_rng([0, 1, 2, 1]), 4, True)
    c = augment(x, np.random.default_rng([0, 1, 3, 1]), 4, True)
    np.testing.assert_array_equal(a, b)
    assert not np.array_equal(a, c)
    np.testing.assert_array_equal(x, saved)


def test_transforms_off_return_a_copy():
    x = np.arange(24, dtype=np.float32).reshape(2, 1, 3, 4)
    out = augment(x, np.random.default_rng(0), crop_pad=0, flip=False)
    np.testing.assert_array_equal(out, x)
    assert out is not x
    flipped = augment(x, np.random.default_rng(0), crop_pad=0, flip=True)
    for image, result in zip(x, flipped, strict=True):
        assert np.array_equal(result, image) or np.array_equal(result, image[..., ::-1])


def test_padding_is_zeros():
    x = np.ones((200, 1, 4, 4), np.float32)
    out = augment(x, np.random.default_rng(0), crop_pad=4, flip=False)
    assert set(np.unique(out)) == {0.0, 1.0}
    assert (out == 0).all(axis=(1, 2, 3)).any()  # an offset of 4 or more cuts out only padding


def test_epoch_order_is_a_seeded_permutation():
    order = epoch_order(10, seed=3, epoch=2)
    np.testing.assert_array_equal(order, np.random.default_rng([3, 2]).permutation(10))
    assert sorted(order) == list(range(10))
    assert not np.array_equal(order, epoch_order(10, seed=3, epoch=1))


def test_batch_indices_keep_the_last_partial_batch():
    batches = batch_indices(np.arange(10), 4)
    assert [b.tolist() for b in batches] == [[0, 1, 2, 3], [4, 5, 6, 7], [8, 9]]
    assert batch_indices(np.arange(0), 4) == []
    with pytest.raises(ValueError, match="batch_size"):
        batch_indices(np.arange(3), 0)


@pytest.mark.parametrize(("total", "world"), [(50, 2), (41, 2), (10, 3), (1, 2), (0, 2)])
def test_shards_are_contiguous_and_cover_the_batch(total, world):
    shards = [shard(total, rank, world) for rank in range(world)]
    expected = np.array_split(np.arange(total), world)
    assert [list(range(r.start, r.stop)) for r in shards] == [e.tolist() for e in expected]
    assert all(r.total == total for r in shards)
    with pytest.raises(ValueError, match="rank"):
        shard(total, world, world)


@pytest.mark.parametrize("rows", [Rows(0, 5, 9), Rows(5, 9, 9), Rows(9, 9, 9)])
def test_a_shard_gets_its_rows_of_the_whole_batch_augmentation(rows):
    x = np.random.default_rng(1).standard_normal((9, 2, 6, 5))
    whole = augment(x, np.random.default_rng([4, 0, 3, 1]), 2, True)
    part = augment(x[rows.slice], np.random.default_rng([4, 0, 3, 1]), 2, True, rows)
    np.testing.assert_array_equal(part, whole[rows.slice])
