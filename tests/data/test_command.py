"""``cnnlab data download|info``: through the CLI, and the task in-process."""

from __future__ import annotations

import gzip

import pytest

from cnnlab.commands import data as command
from cnnlab.config import compose
from cnnlab.data import load, mnist
from cnnlab.errors import RunError
from tests.cli import run_cnnlab

from .conftest import SHARED_MNIST, fake_mnist, write_mnist
from .test_download import serve_mnist


def cnnlab(*args: str, cwd):
    return run_cnnlab("data", *args, cwd=cwd, timeout=120)


@pytest.mark.skipif(not SHARED_MNIST.is_dir(), reason=f"real MNIST not in {SHARED_MNIST}")
def test_info_on_the_real_mnist(tmp_path):
    result = cnnlab("info", "data=mnist", f"data.root={SHARED_MNIST}", cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    out = result.stdout
    assert out.count("verified") >= 4 and "train-images-idx3-ubyte.gz" in out
    assert "60000 train and 10000 test images" in out and "checksums: all official" in out


def test_info_on_an_empty_root_writes_nothing_and_exits_1(tmp_path):
    result = cnnlab("info", "data=cifar10", "data.root=nothing/here", cwd=tmp_path)
    assert result.returncode == 1, result.stderr
    assert "missing" in result.stdout and "data_batch_1" in result.stdout
    assert not (tmp_path / "nothing").exists()


@pytest.mark.parametrize(
    ("args", "expected"),
    [
        (["fetch"], "cnnlab data: unknown action 'fetch'; choose from download, info"),
        ([], "cnnlab data: give an action; choose from download, info"),
        (["info", "data.classes=[11]"], "data.classes=[11]: give distinct class indices"),
        (["info", "data=imagenet"], "data=imagenet: no such option; choose from cifar10"),
    ],
)
def test_mistakes_are_one_line_and_exit_2(tmp_path, args, expected):
    result = cnnlab(*args, cwd=tmp_path)
    assert result.returncode == 2, result.stderr
    lines = [ln for ln in result.stderr.splitlines() if ln.strip()]
    assert len(lines) == 1 and expected in lines[0], result.stderr


def test_download_task_fetches_then_finds_it_complete(http_root, tmp_path, monkeypatch, caplog):
    served, base = http_root
    serve_mnist(served, fake_mnist(), monkeypatch, base)
    root = tmp_path / "mnist"
    cfg = compose("data", ["action=download", f"data.root={root}"])
    command.check_config(cfg)
    assert command.task(cfg) == 0
    assert sorted(p.name for p in root.iterdir()) == sorted(f"{f.stem}.gz" for f in mnist.FILES)
    caplog.clear()
    with caplog.at_level("INFO", logger="cnnlab.data"):
        assert command.task(cfg) == 0
    assert "nothing downloaded" in caplog.text


def test_info_task_reports_a_bad_file(tmp_path, monkeypatch):
    contents = fake_mnist()
    for stem, content in contents.items():
        (tmp_path / f"{stem}.gz").write_bytes(gzip.compress(content))
    (tmp_path / "t10k-labels-idx1-ubyte.gz").write_bytes(b"garbage")
    monkeypatch.setattr(mnist, "MIRRORS", [])  # info never downloads anyway
    cfg = compose("data", ["action=info", f"data.root={tmp_path}"])
    assert command.task(cfg) == 1
    # Reported, left as it was.
    assert (tmp_path / "t10k-labels-idx1-ubyte.gz").read_bytes() == b"garbage"


def test_download_task_names_every_bad_file_as_training_does(tmp_path, unknown_mnist_checksums):
    contents = fake_mnist()
    for stem in ("train-images-idx3-ubyte", "t10k-labels-idx1-ubyte"):
        contents[stem] = contents[stem][:-3]
    write_mnist(tmp_path, contents)
    cfg = compose("data", ["action=download", f"data.root={tmp_path}"])
    with pytest.raises(RunError) as info:
        command.task(cfg)
    with pytest.raises(RunError) as training:
        load(cfg.data, seed=0)
    assert str(info.value) == str(training.value)
    assert "train-images-idx3-ubyte.gz bad" in str(info.value)
    assert "t10k-labels-idx1-ubyte.gz bad" in str(info.value)


def test_shapes_has_nothing_to_fetch(tmp_path):
    for action in ("info", "download"):
        assert command.task(compose("data", [f"action={action}", "data=shapes"])) == 0
