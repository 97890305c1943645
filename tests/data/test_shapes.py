"""The generated ``shapes`` data: deterministic, balanced, and out of reach of a linear model."""

from __future__ import annotations

import time

import numpy as np
import pytest

from cnnlab.config import compose
from cnnlab.data import load, shapes


@pytest.fixture(scope="module")
def dataset():
    """The default shapes data set of ``cnnlab train``, seed 0, split and normalised."""
    return load(compose("summary", []).data, seed=0)


def test_shapes_and_dtypes(dataset):
    assert dataset.classes == ["circle", "square", "triangle", "cross", "ring", "bar"]
    assert dataset.train.x.shape == (9000, 3, 32, 32)  # 10,000 less the 10% val split
    assert dataset.val.x.shape == (1000, 3, 32, 32)
    assert dataset.test.x.shape == (2000, 3, 32, 32)
    for split in (dataset.train, dataset.val, dataset.test):
        assert split.x.dtype == np.float32 and split.y.dtype == np.int64
        assert split.y.min() >= 0 and split.y.max() <= 5
    assert dataset.mean.shape == dataset.std.shape == (3,)
    # Normalised with the train split's own statistics.
    np.testing.assert_allclose(dataset.train.x.mean(axis=(0, 2, 3)), 0, atol=1e-4)
    np.testing.assert_allclose(dataset.train.x.std(axis=(0, 2, 3)), 1, atol=1e-4)


def test_classes_are_balanced():
    _, y = shapes.generate(1003, seed=0, split="train", noise=0.1)
    counts = np.bincount(y, minlength=6)
    assert counts.sum() == 1003 and counts.max() - counts.min() <= 1


def test_same_seed_same_images_other_seed_other_images():
    x1, y1 = shapes.generate(200, seed=3, split="train", noise=0.1)
    x2, y2 = shapes.generate(200, seed=3, split="train", noise=0.1)
    np.testing.assert_array_equal(x1, x2)
    np.testing.assert_array_equal(y1, y2)
    x3, _ = shapes.generate(200, seed=4, split="train", noise=0.1)
    x4, _ = shapes.generate(200, seed=3, split="test", noise=0.1)
    assert not np.array_equal(x1, x3) and not np.array_equal(x1, x4)
    assert x1.dtype == np.float32 and x1.min() >= 0 and x1.max() <= 1


def test_generation_is_fast():
    start = time.perf_counter()
    shapes.generate(10_000, seed=0, split="train", noise=0.1)
    assert time.perf_counter() - start < 5  # about 0.5 s here; generous for a busy machine


def test_every_class_draws_its_shape():
    # Without noise each image has exactly two colours; the shape covers a plausible area.
    x, y = shapes.generate(60, seed=0, split="train", noise=0.0)
    for image, label in zip(x, y, strict=True):
        colours, counts = np.unique(image.reshape(3, -1).T, axis=0, return_counts=True)
        assert len(colours) == 2, shapes.CLASSES[label]
        assert 10 <= counts.min() <= 0.5 * 32 * 32, shapes.CLASSES[label]


def _softmax_regression(x, y, lr, epochs=5, batch=100, seed=0):
    """Softmax regression on the flattened pixels by minibatch SGD with momentum; returns
    (weights (D, K), bias (K,))."""
    n, k = len(y), int(y.max()) + 1
    flat = x.reshape(n, -1)
    w = np.zeros((flat.shape[1], k), np.float32)
    b = np.zeros(k, np.float32)
    vw, vb = np.zeros_like(w), np.zeros_like(b)
    rng = np.random.default_rng(seed)
    for _ in range(epochs):
        for idx in np.array_split(rng.permutation(n), n // batch):
            xb = flat[idx]
            z = xb @ w + b
            p = np.exp(z - z.max(axis=1, keepdims=True))
            p /= p.sum(axis=1, keepdims=True)
            p[np.arange(len(idx)), y[idx]] -= 1  # dLoss/dz of the mean cross-entropy
            g = p / len(idx)
            vw = 0.9 * vw + xb.T @ g + 1e-4 * w
            vb = 0.9 * vb + g.sum(axis=0)
            w -= lr * vw
            b -= lr * vb
    return w, b


def _accuracy(model, split):
    w, b = model
    return float(((split.x.reshape(len(split.y), -1) @ w + b).argmax(axis=1) == split.y).mean())


def test_a_linear_classifier_does_poorly(dataset):
    """Softmax regression on the normalised pixels, learning rate chosen on val, stays far
    below the convnet's >= 90% (shapes must not be trivial: at least 20 points lower)."""
    models = [
        _softmax_regression(dataset.train.x, dataset.train.y, lr) for lr in (1e-4, 1e-3, 1e-2)
    ]
    best = max(models, key=lambda m: _accuracy(m, dataset.val))
    train_acc, test_acc = _accuracy(best, dataset.train), _accuracy(best, dataset.test)
    assert train_acc > 0.25  # it did learn something (it overfits the training set)
    assert test_acc <= 0.70, test_acc
