"""The shared pipeline of :func:`cnnlab.data.load`: class subsets, the val split, limits,
normalisation, and the config that states the class count."""

from __future__ import annotations

import re

import numpy as np
import pytest

from cnnlab.config import compose
from cnnlab.data import Raw, check_config, load, shapes
from cnnlab.errors import UsageError

from .conftest import data_node


def shapes_node(**keys):
    return data_node("shapes", None, **({"train_size": 600, "test_size": 120, "noise": 0.1} | keys))


def test_val_split_is_deterministic_and_disjoint(monkeypatch):
    ds1 = load(shapes_node(), seed=5)
    ds2 = load(shapes_node(), seed=5)
    np.testing.assert_array_equal(ds1.val.x, ds2.val.x)
    assert (len(ds1.train), len(ds1.val), len(ds1.test)) == (540, 60, 120)
    # Marking each training image with its index shows which went where.
    raw = Raw(
        ["a", "b"],
        np.arange(600, dtype=np.float32).reshape(600, 1, 1, 1),
        np.arange(600) % 2,
        np.zeros((10, 1, 1, 1), np.float32),
        np.zeros(10, np.int64),
    )
    monkeypatch.setattr(shapes, "read", lambda data, seed: raw)
    picked = {}
    for seed in (0, 1):
        ds = load(shapes_node(), seed=seed)
        train = np.rint(ds.train.x.ravel() * ds.std[0] + ds.mean[0]).astype(int)
        val = np.rint(ds.val.x.ravel() * ds.std[0] + ds.mean[0]).astype(int)
        assert not set(train) & set(val) and len(set(train) | set(val)) == 600
        np.testing.assert_array_equal(ds.train.y, train % 2)  # labels follow their images
        picked[seed] = set(val)
    assert picked[0] != picked[1]  # the seed decides the split


def test_statistics_come_from_the_train_split():
    ds = load(shapes_node(val_fraction=0.5), seed=0)
    x_train, _ = shapes.generate(600, 0, "train", 0.1)
    assert not np.allclose(ds.mean, x_train.mean(axis=(0, 2, 3)), atol=1e-6)  # not all of it
    np.testing.assert_allclose(ds.train.x.mean(axis=(0, 2, 3)), 0, atol=1e-5)
    np.testing.assert_allclose(ds.train.x.std(axis=(0, 2, 3)), 1, atol=1e-5)
    assert abs(ds.val.x.mean()) < 0.1 and ds.mean.dtype == ds.std.dtype == np.float32


def test_classes_subset_relabels_in_the_given_order():
    ds = load(shapes_node(classes=[4, 1]), seed=0)
    assert ds.classes == ["ring", "square"]
    _, y_test = shapes.generate(120, 0, "test", 0.1)
    expected = np.where(y_test[np.isin(y_test, [4, 1])] == 4, 0, 1)
    np.testing.assert_array_equal(ds.test.y, expected)
    assert set(ds.train.y) == {0, 1}


def test_limit_caps_every_split():
    ds = load(shapes_node(limit=25), seed=0)
    assert (len(ds.train), len(ds.val), len(ds.test)) == (25, 25, 25)


def test_num_classes_follows_the_subset():
    cfg = compose("summary", ["model=lenet", "data=cifar100", "data.classes=[3,7,9]"])
    assert cfg.model.num_classes == 3 and cfg.data.num_classes == 3
    assert compose("summary", ["data=cifar100"]).model.num_classes == 100
    assert compose("summary", []).data.num_classes == 6
    assert compose("summary", ["data=mnist", "data.num_classes=4"]).model.num_classes == 4


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        (["data.classes=[3,3]"], "distinct class indices in 0..5"),
        (["data.classes=[6]"], "distinct class indices in 0..5"),
        (["data.classes=[]"], "distinct class indices"),
        (["data.val_fraction=1.0"], r"data\.val_fraction must be in \[0, 1\), got 1\.0"),
        (["data.limit=0"], r"data\.limit must be >= 1, got 0"),
        (["data.crop_pad=-1"], r"data\.crop_pad must be >= 0, got -1"),
        (["data.noise=-0.5"], r"data\.noise must be >= 0"),
        (["data.shape=[3,32]"], r"data\.shape must hold 3 values"),
        (["data=mnist", "data.root=null"], "needs the folder"),
    ],
)
def test_impossible_options_are_usage_errors(overrides, message):
    # Ranges are refused as the config is composed, the rest by check_config.
    with pytest.raises(UsageError, match=message):
        check_config(compose("summary", overrides).data)


def test_every_data_option_composes_with_its_keys():
    for name, shape in [("shapes", [3, 32, 32]), ("mnist", [1, 28, 28]), ("cifar10", [3, 32, 32])]:
        data = compose("summary", [f"data={name}"]).data
        assert list(data.shape) == shape and data.val_fraction == 0.1
        assert data.augment == name.startswith("cifar")
        assert (data.root is None) == (name == "shapes")
        check_config(data)


@pytest.mark.parametrize("name", ["mnist", "cifar10", "cifar100"])
@pytest.mark.parametrize("root", ["f", "f/inside"])
def test_data_root_in_place_of_a_file_is_a_usage_error(tmp_path, monkeypatch, name, root):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "f").write_text("x\n")
    data = compose("summary", [f"data={name}", f"data.root={root}"]).data
    expected = f"data.root={root}: {tmp_path.resolve() / 'f'} is a file, not a folder"
    with pytest.raises(UsageError, match=re.escape(expected)):
        check_config(data)
    with pytest.raises(UsageError, match=re.escape(expected)):  # before any file is read
        load(data, seed=0)


def test_data_root_may_be_a_folder_still_to_make(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "dangling").symlink_to(tmp_path / "nowhere")
    check_config(compose("summary", ["data=mnist", "data.root=new/mnist"]).data)
    with pytest.raises(UsageError, match=r"data\.root=dangling/mnist: .*dangling is not a folder"):
        check_config(compose("summary", ["data=mnist", "data.root=dangling/mnist"]).data)
