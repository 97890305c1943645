"""``bench model``'s per-layer profile and peak memory: what they hold, not only that they ran."""

from __future__ import annotations

import csv
import json

import numpy as np
import pytest

from cnnlab.backends import BackendOptions, get_backend
from cnnlab.bench.memory import peak_memory
from cnnlab.bench.model import ModelBench
from cnnlab.bench.profile import OTHER, AutogradClock, KernelClock
from cnnlab.commands.bench import check_config
from cnnlab.config import compose
from cnnlab.ops.tree import leaves
from tests.bench.test_bench import FAST, bench

TINY_RESNET = ["model=resnet18", "model.widths=[4,8,8,8]"]
TINY_THREELAYER = ["model=threelayer", "model.filters=8", "model.hidden=16"]
TINY_ALEXNET = ["model=alexnet_lite", "model.filters=[4,4,4,4,4]", "model.hidden=[8,8]"]


def model_bench(*overrides: str) -> ModelBench:
    cfg = compose("bench", ["bench=model", "trainer.threads=1", *overrides])
    return ModelBench(cfg, check_config(cfg).model, BackendOptions.of(cfg.trainer))


def test_each_backend_has_a_row_per_leaf_and_shares_that_add_up(tmp_path):
    args = [*TINY_RESNET, "backends=[im2col,torch]", "bench.batch=2", "bench.profile_steps=2"]
    result = bench("model", *FAST, "trainer.threads=1", "bench.memory=false", *args, cwd=tmp_path)
    assert result.returncode == 0, result.stdout + result.stderr
    mb = model_bench(*TINY_RESNET)
    names = [leaf.name for leaf in leaves(mb.model.net, mb.shape)]
    assert len(names) == 59  # ResNet-18: 3 stem layers, 8 blocks of 6, 3 shortcuts of 2, pool, fc
    (run_dir,) = tmp_path.glob("outputs/*/*")
    records = json.loads((run_dir / "bench.json").read_text())["records"]
    assert [r["backend"] for r in records] == ["im2col", "torch"]
    for r in records:
        rows = r["layers"]
        assert [row["name"] for row in rows] == [*names, OTHER]
        assert sum(row["share"] for row in rows) == pytest.approx(1.0, abs=0.01)
        layers = rows[:-1]
        assert all(row["fwd_s"] > 0 and row["bwd_s"] > 0 for row in layers), r["backend"]
        assert all(row["total_s"] == row["fwd_s"] + row["bwd_s"] for row in layers)
        assert rows[-1]["total_s"] >= 0 and rows[-1]["fwd_s"] is None
        convs = [row for row in layers if row["kind"] == "conv"]
        assert len(convs) == 20 and all(row["gflops"] > 0 for row in convs)
        assert all(row["gflops"] is None for row in layers if row["kind"] == "relu")
        # The layers are the step's time, measured apart: not far off the timed step.
        profiled = sum(row["total_s"] for row in rows)
        assert 0.3 < profiled / r["fwdbwd_s"] < 3
        assert r["peak_mem_bytes"] is None  # bench.memory=false
    assert "resnet18 on im2col, batch 2: where a training step goes" in result.stdout
    assert "layer4.1.block.conv2" in result.stdout


def test_a_layer_fused_into_another_says_so_and_has_no_time_of_its_own():
    from cnnlab.bench.profile import profile_layers

    mb = model_bench("model=lenet", "backends=[im2col]", "bench.batch=4")
    rows = {
        row["name"]: row for row in profile_layers(mb, mb.engine(get_backend("im2col")), "cpu", 2)
    }
    assert rows["relu1"]["layer"] == "ReLU (fused into conv1)"
    assert rows["relu1"]["total_s"] == 0 and rows["relu1"]["fwd_s"] is None
    assert rows["conv1"]["fwd_s"] > 0 and rows["relu3"]["fwd_s"] > 0  # after a linear: its own


def test_peak_memory_is_positive_and_grows_with_the_batch():
    small, large = (
        peak_memory(model_bench(*TINY_THREELAYER, f"bench.batch={n}"), get_backend("im2col"))
        for n in (8, 64)
    )
    assert small is not None and large is not None
    assert 0 < small < large
    # The step keeps at least the conv's output (8 channels of 32x32, float32) for its
    # backward: 56 more images need at least that much more.
    assert large - small >= 56 * 8 * 32 * 32 * 4


def test_peak_memory_is_in_the_table_the_json_and_the_csv_and_the_profile_can_be_off(tmp_path):
    args = [*TINY_THREELAYER, "backends=[im2col]", "bench.batch=4", "bench.profile_steps=0"]
    result = bench("model", *FAST, *args, cwd=tmp_path)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "peak MiB" in result.stdout
    (run_dir,) = tmp_path.glob("outputs/*/*")
    (record,) = json.loads((run_dir / "bench.json").read_text())["records"]
    assert record["peak_mem_bytes"] > 0
    with (run_dir / "bench.csv").open() as f:
        (row,) = csv.DictReader(f)
    assert int(row["peak_mem_bytes"]) == record["peak_mem_bytes"] and "layers" not in row
    # bench.profile_steps=0: no per-layer profile.
    assert record["layers"] is None and "where a training step goes" not in result.stdout


def _step(mb: ModelBench, backend: str, clocked: bool):
    """One training step from the model's initial weights; logits, gradients, weights after,
    and the clock's forward and backward seconds by leaf (None without a clock)."""
    engine = mb.engine(get_backend(backend))
    clock = None
    if clocked and backend == "torch":
        clock = engine.module.timer = AutogradClock(engine.module, lambda: None)
    elif clocked:
        clock = engine.model.timer = KernelClock(lambda: None)
    logits = mb.step(engine, mb.batch)
    if isinstance(clock, AutogradClock):
        clock.detach()
    times = None if clock is None else (dict(clock.fwd), dict(clock.bwd))
    return logits, engine.grads(), engine.params(), times


@pytest.mark.parametrize("backend", ["im2col", "torch"])
def test_the_clock_times_every_leaf_and_changes_no_result(backend):
    # With dropout: its masks come from the step's generator, drawn as without the clock.
    mb = model_bench(*TINY_ALEXNET, "bench.batch=4")
    logits, grads, params, none = _step(mb, backend, clocked=False)
    clocked_logits, clocked_grads, clocked_params, times = _step(mb, backend, clocked=True)
    assert none is None
    np.testing.assert_array_equal(clocked_logits, logits)
    assert grads.keys() == clocked_grads.keys() == params.keys()
    for name in grads:
        np.testing.assert_array_equal(clocked_grads[name], grads[name])
        np.testing.assert_array_equal(clocked_params[name], params[name])
    fwd, bwd = times
    names = {leaf.name for leaf in leaves(mb.model.net, mb.shape)}
    if backend == "im2col":  # its convs run with the ReLUs after them
        names -= {"relu1", "relu2", "relu3", "relu4", "relu5"}
    assert set(fwd) == set(bwd) == names
    assert all(t > 0 for t in [*fwd.values(), *bwd.values()])
