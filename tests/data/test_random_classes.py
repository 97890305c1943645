"""``data.random_classes``: k classes drawn from the seed, kept and relabelled as a
``data.classes`` list of the same classes would be."""

from __future__ import annotations

import numpy as np
import pytest

from cnnlab.config import compose
from cnnlab.data import chosen_classes, load
from cnnlab.data.cifar import SETS
from cnnlab.errors import UsageError
from tests.data.conftest import cifar_pickle, data_node, write_cifar_folder


@pytest.fixture
def cifar100(tmp_path, unknown_cifar_checksums):
    """A small CIFAR-100 whose labels cycle through the 100 classes: 3 training and 1 test
    image of each."""
    spec = SETS["cifar100"]
    rng = np.random.default_rng(0)
    files = {}
    for member, n in ((spec.train[0], 300), (spec.test, 100)):
        labels = [i % 100 for i in range(n)]
        data = rng.integers(0, 256, (n, 3072), dtype=np.uint8)
        files[member] = cifar_pickle({spec.label_key: labels, b"data": data})
    names = [f"class_{k}".encode() for k in range(100)]
    files[spec.meta] = cifar_pickle({spec.names_key: names})
    write_cifar_folder(tmp_path, "cifar100", files)
    return tmp_path


def test_the_same_seed_draws_the_same_classes_and_other_seeds_others():
    data = data_node("cifar100", None, random_classes=3)
    drawn = chosen_classes(data, seed=0)
    assert drawn == chosen_classes(data, seed=0)
    assert drawn == sorted(set(drawn)) and len(drawn) == 3 and all(0 <= c < 100 for c in drawn)
    assert len({tuple(chosen_classes(data, seed)) for seed in range(5)}) > 1


def test_a_given_list_is_kept_as_given_and_no_subset_is_none():
    assert chosen_classes(data_node("cifar100", None, classes=[7, 2]), seed=0) == [7, 2]
    assert chosen_classes(data_node("cifar100", None), seed=0) is None


def test_the_drawn_classes_are_kept_and_relabelled_as_that_list_would_be(cifar100):
    drawn = chosen_classes(data_node("cifar100", cifar100, random_classes=3), seed=1)
    random = load(data_node("cifar100", cifar100, random_classes=3), seed=1)
    listed = load(data_node("cifar100", cifar100, classes=drawn), seed=1)
    assert random.classes == listed.classes == [f"class_{k}" for k in drawn]
    for split in ("train", "val", "test"):
        a, b = getattr(random, split), getattr(listed, split)
        assert np.array_equal(a.x, b.x) and np.array_equal(a.y, b.y)
    assert len(random.train) + len(random.val) == 9 and len(random.test) == 3
    assert sorted(set(random.test.y)) == [0, 1, 2]


def test_the_class_count_follows_the_subset():
    cfg = compose("train", ["data=cifar100", "data.random_classes=3"])
    assert cfg.data.num_classes == cfg.model.num_classes == 3


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        (["data.random_classes=3", "data.classes=[1,2]"], "not both"),
        (["data.random_classes=101"], "cifar100 has 100 classes"),
        (["data.random_classes=0"], "must be >= 1"),
    ],
)
def test_impossible_subsets_are_usage_errors(overrides, message):
    with pytest.raises(UsageError, match=message):
        compose("train", ["data=cifar100", *overrides])
