"""The ``user`` backend: a course-style layer file checked, timed and trained on through the CLI.

The files under ``files/`` are small layer files written for these tests: a correct
vectorised CS231n one, an EECS 498 one on torch tensors, one whose conv never returns and one
whose conv ends its own process. ``examples/cs231n_layers.py`` is the README's example, with
its deliberate bug.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from cnnlab.backends import UserSource
from cnnlab.errors import KernelMissingError, UsageError, UserCodeError
from cnnlab.kernels.protocol import PAIRS
from cnnlab.kernels.user import UserKernels
from tests.cli import run_cnnlab

FILES = Path(__file__).parent / "files"
EXAMPLE = Path(__file__).parents[2] / "examples" / "cs231n_layers.py"
BUG = "    dx = (dxhat - xhat * (dxhat * xhat).mean(axis=1, keepdims=True)) / std\n"
FIX = (
    "    dx = (dxhat - dxhat.mean(axis=1, keepdims=True)"
    " - xhat * (dxhat * xhat).mean(axis=1, keepdims=True)) / std\n"
)


def records(cwd: Path) -> list[dict]:
    (path,) = cwd.glob("outputs/*/*/gradcheck.json")
    return json.loads(path.read_text())


def user_rows(cwd: Path) -> dict[str, list[dict]]:
    rows: dict[str, list[dict]] = {}
    for r in records(cwd):
        if r["backend"] == "user":
            rows.setdefault(r["layer"], []).append(r)
    return rows


def gradcheck(tmp_path: Path, file: Path, *more: str):
    return run_cnnlab(
        "gradcheck", "backends=[user]", f"user.file={file}", *more, cwd=tmp_path, timeout=600
    )


@pytest.fixture
def fixed_example(tmp_path: Path) -> Path:
    text = EXAMPLE.read_text()
    assert text.count(BUG) == 1
    path = tmp_path / "layers.py"
    path.write_text(text.replace(BUG, FIX))
    return path


def test_a_correct_cs231n_file_passes_every_check_it_defines(tmp_path, fixed_example):
    result = gradcheck(tmp_path, fixed_example)
    assert result.returncode == 0, result.stdout + result.stderr
    rows = user_rows(tmp_path)
    checked = {layer for layer, rs in rows.items() if any(not r["skipped"] for r in rs)}
    assert checked == {
        "conv", "maxpool", "relu", "linear", "softmax", "batchnorm", "layernorm", "groupnorm",
        "dropout",
    }  # fmt: skip
    assert all(r["passed"] for rs in rows.values() for r in rs if not r["skipped"])
    # Against torch too, where the convention's numbers are torch's (dropout's mask is its own).
    torch_checked = {r["layer"] for rs in rows.values() for r in rs if r["reference"] == "torch"}
    assert torch_checked == checked - {"dropout"}
    skipped = {r["layer"]: r["reason"] for rs in rows.values() for r in rs if r["skipped"]}
    assert skipped["avgpool"] == "no such layer in the CS231n convention"
    assert "conv_param has no groups or dilation" in json.dumps(rows["conv"])
    assert skipped["flatten"].startswith("cnnlab's own kernel")


def test_the_examples_bug_fails_with_the_tensor_named(tmp_path):
    result = gradcheck(tmp_path, EXAMPLE, "layer=layernorm")
    assert result.returncode == 1
    failed = {(r["tensor"], r["reference"]) for r in user_rows(tmp_path)["layernorm"]
              if r["passed"] is False}  # fmt: skip
    assert failed == {("x", "numeric"), ("x", "torch")}
    assert "layernorm" in result.stdout and "✗" in result.stdout


def test_an_eecs498_file_passes(tmp_path):
    result = gradcheck(tmp_path, FILES / "eecs498_layers.py")
    assert result.returncode == 0, result.stdout + result.stderr
    rows = user_rows(tmp_path)
    checked = {layer for layer, rs in rows.items() if any(not r["skipped"] for r in rs)}
    assert checked == {"conv", "maxpool", "relu", "linear", "batchnorm", "dropout"}
    assert "softmax_loss" in rows["softmax"][0]["reason"]


@pytest.mark.parametrize(
    ("file", "what"),
    [("hangs.py", "no result within 2 s"), ("crashes.py", "worker process died (exit code 3)")],
)
def test_code_that_hangs_or_dies_fails_its_rows_and_the_rest_is_still_checked(tmp_path, file, what):
    result = gradcheck(tmp_path, FILES / file, "user.timeout_s=2")
    assert result.returncode == 1
    rows = user_rows(tmp_path)
    conv_failed = [r for r in rows["conv"] if r["passed"] is False]
    # One failed row per conv case the convention can express (the others are skipped).
    assert len(conv_failed) == 2 and all(what in r["reason"] for r in conv_failed)
    # ReLU's three comparisons (x numeric, out and x against torch) all ran and passed.
    assert [r["passed"] for r in rows["relu"]] == [True] * 3


def test_train_on_a_users_file(tmp_path):
    result = run_cnnlab(
        "train",
        "backend=user",
        f"user.file={FILES / 'cs231n_fast.py'}",
        "model=threelayer",
        "trainer.epochs=1",
        "trainer.max_steps=6",
        cwd=tmp_path,
        timeout=600,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    (path,) = tmp_path.glob("outputs/*/*/results.json")
    results = json.loads(path.read_text())
    assert results["backend"] == "user" and results["steps"] == 6


def test_train_names_the_functions_a_model_needs(tmp_path):
    file = tmp_path / "relu_only.py"
    file.write_text(
        "import numpy as np\n"
        "def relu_forward(x): return np.maximum(x, 0), x\n"
        "def relu_backward(dout, x): return dout * (x > 0)\n"
    )
    result = run_cnnlab("train", "backend=user", f"user.file={file}", cwd=tmp_path)
    assert result.returncode == 2
    (line,) = result.stderr.strip().splitlines()
    assert "the model needs conv_forward_naive, conv_backward_naive, affine_forward" in line
    assert "softmax_loss" in line


def test_backend_user_without_a_file_is_one_line(tmp_path):
    result = run_cnnlab("train", "backend=user", cwd=tmp_path)
    assert result.returncode == 2
    assert "give your layers, user.file=" in result.stderr


def test_bench_times_a_users_layer_in_its_worker_and_skips_what_it_lacks(tmp_path):
    cases = "[{layer: relu, x: [8, 4, 8, 8]}, {layer: avgpool, x: [8, 4, 8, 8], kernel: 2}]"
    result = run_cnnlab(
        "bench",
        "layers",
        "backends=[im2col,user]",
        f"user.file={FILES / 'cs231n_fast.py'}",
        f"bench.cases={cases}",
        "bench.runs=3",
        cwd=tmp_path,
        timeout=600,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    (path,) = tmp_path.glob("outputs/*/*/bench.json")
    rows = {(r["case"], r["backend"]): r for r in json.loads(path.read_text())["records"]}
    relu = rows[("relu", "user")]
    assert relu["status"] == "ok" and relu["fwd_s"] > 0 and relu["max_rel_error"] < 1e-6
    avgpool = rows[("avgpool", "user")]
    assert avgpool["skipped"] and avgpool["reason"] == "no such layer in the CS231n convention"


def test_the_worker_survives_an_exception_and_reports_where(tmp_path):
    file = tmp_path / "raises.py"
    file.write_text(
        "def relu_forward(x):\n"
        "    raise ValueError('not yet written')\n"
        "def relu_backward(dout, cache):\n"
        "    return dout\n"
    )
    kernels = UserKernels(UserSource(str(file), timeout_s=10))
    try:
        with pytest.raises(
            UserCodeError,
            match=r"relu_forward raised ValueError: not yet written \(raises.py, line 2\)",
        ):
            kernels.relu_forward(np.ones((2, 3)))
        starts = kernels.worker.starts
        with pytest.raises(KernelMissingError, match="no such layer in the CS231n convention"):
            kernels.avgpool2d_forward(np.ones((1, 1, 2, 2)), 2)
        assert kernels.worker.starts == starts  # the same worker answered both
    finally:
        kernels.close()


def test_a_file_that_defines_no_layer_is_a_usage_error(tmp_path):
    file = tmp_path / "empty.py"
    file.write_text("x = 1\n")
    with pytest.raises(UsageError, match="defines none of the layers cnnlab knows"):
        UserKernels(UserSource(str(file)))
    broken = tmp_path / "broken.py"
    broken.write_text("import no_such_module_here\n")
    with pytest.raises(UsageError, match="could not be imported: ModuleNotFoundError"):
        UserKernels(UserSource(str(broken)))


def test_the_user_kernel_set_answers_every_pair_of_the_protocol():
    # Unknown layers raise KernelMissingError when called; none is an AttributeError.
    assert all(hasattr(UserKernels, f"{k}_forward") and hasattr(UserKernels, f"{k}_backward")
               for k in PAIRS)  # fmt: skip


def test_running_statistics_follow_the_courses_rule(tmp_path, fixed_example):
    # The example's batch norm keeps the course's rule; one with torch's unbiased running
    # variance fails, naming the function and the rule.
    kernels = UserKernels(UserSource(str(fixed_example)))
    rng = np.random.default_rng(0)
    x, gamma, beta = rng.standard_normal((6, 3)), np.ones(3), np.zeros(3)
    mean, var = np.zeros(3), np.ones(3)
    try:
        kernels.batchnorm_forward(x, gamma, beta, mean, var, momentum=0.1)
        np.testing.assert_allclose(mean, 0.1 * x.mean(axis=0))
        np.testing.assert_allclose(var, 0.9 + 0.1 * x.var(axis=0))
    finally:
        kernels.close()
    unbiased = tmp_path / "unbiased.py"
    text = fixed_example.read_text()
    old = "(1 - momentum) * var\n"
    assert text.count(old) == 1
    unbiased.write_text(text.replace(old, "(1 - momentum) * x.var(axis=0, ddof=1)\n"))
    kernels = UserKernels(UserSource(str(unbiased)))
    try:
        with pytest.raises(UserCodeError, match=r"batchnorm_forward: bn_param\['running_var'\]"):
            kernels.batchnorm_forward(x, gamma, beta, np.zeros(3), np.ones(3))
    finally:
        kernels.close()
