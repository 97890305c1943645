"""Mistakes with the data files, made through the CLI as a user makes them: each ends in one
line that names the problem, a non-zero exit code and no traceback."""

from __future__ import annotations

import subprocess

import pytest

from cnnlab.data import mnist
from tests.cli import run_cnnlab

from .conftest import SHARED_MNIST, needs_real_mnist

# A training run that would be over in moments, were the data usable; nothing is fetched.
SMALL_RUN = [
    "model=lenet",
    "data=mnist",
    "data.download=false",
    "data.limit=100",
    "trainer.epochs=1",
    "trainer.max_steps=1",
]


def cnnlab(*args: str, cwd) -> subprocess.CompletedProcess:
    return run_cnnlab(*args, cwd=cwd, timeout=120)


def error_line(result: subprocess.CompletedProcess) -> str:
    """The one line on stderr that a failed command ended with, checked to be the only one
    there, with no traceback anywhere."""
    output = result.stdout + result.stderr
    assert "Traceback" not in output, output
    lines = [line.strip() for line in result.stderr.splitlines() if line.strip()]
    assert len(lines) == 1, output
    return lines[0]


@pytest.mark.parametrize(
    ("action", "name", "root"),
    [("info", "mnist", "f"), ("download", "cifar10", "f"), ("info", "cifar100", "f/cifar100")],
)
def test_data_root_that_is_a_file_is_one_line_before_anything_runs(tmp_path, action, name, root):
    (tmp_path / "f").write_text("x\n")
    result = cnnlab("data", action, f"data={name}", f"data.root={root}", cwd=tmp_path)
    assert result.returncode == 2, result.stdout + result.stderr
    assert error_line(result) == (
        f"cnnlab data: data.root={root}: {tmp_path.resolve() / 'f'} is a file, not a folder; "
        f"give the folder of the {name} files"
    )
    assert [p.name for p in tmp_path.iterdir()] == ["f"]  # nothing written, nothing fetched


def test_training_on_a_data_root_that_is_a_file_is_one_line(tmp_path):
    (tmp_path / "f").write_text("x\n")
    result = cnnlab("train", *SMALL_RUN, "data.root=f", cwd=tmp_path)
    assert result.returncode == 2, result.stdout + result.stderr
    line = error_line(result)
    assert f"{tmp_path.resolve() / 'f'} is a file, not a folder" in line, line
    assert "give the folder of the mnist files" in line
    assert not (tmp_path / "outputs").exists()  # refused before a run directory is made


@needs_real_mnist
def test_training_names_every_bad_mnist_file(tmp_path):
    # The real files (read-only where they are) copied, three of the four cut in half.
    root = tmp_path / "mnist"
    root.mkdir()
    names = [f"{f.stem}.gz" for f in mnist.FILES]
    truncated, intact = names[:3], names[3]
    for name in names:
        content = (SHARED_MNIST / name).read_bytes()
        (root / name).write_bytes(content[: len(content) // 2] if name in truncated else content)
    result = cnnlab("train", *SMALL_RUN, f"data.root={root}", cwd=tmp_path)
    assert result.returncode == 1, result.stdout + result.stderr
    line = error_line(result)
    assert f"MNIST files missing or bad in {root.resolve()}: " in line, line
    for name in truncated:
        assert f"{name} bad (unreadable: Compressed file ended" in line, line
    assert intact not in line
    # `cnnlab data download` (which finds nothing missing to fetch) ends with the same line.
    download = cnnlab("data", "download", "data=mnist", f"data.root={root}", cwd=tmp_path)
    assert download.returncode == 1
    assert error_line(download) == line
