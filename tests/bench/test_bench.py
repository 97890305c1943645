"""``cnnlab bench``: every target runs on tiny shapes and writes its files; no timing asserts
(``bench model``'s profile and memory: tests/bench/test_profile.py)."""

from __future__ import annotations

import csv
import json

import pytest

from tests.cli import run_cnnlab

# Tiny and quick: one timed run, no warm-up, a small roofline product.
FAST = ["bench.runs=1", "bench.warmup=0", "bench.roofline_size=64"]
FIELDS = {
    "target", "case", "variant", "backend", "dtype", "precision", "channels_last", "compile",
    "threads", "fwd_s", "bwd_s", "fwdbwd_s", "gflops", "images_per_s", "skipped", "status",
}  # fmt: skip
TINY_CONV = "bench.cases=[{name:tiny,layer:conv,x:[4,3,9,9],w:[5,3,3,3],stride:2,pad:1}]"


def bench(*args: str, cwd):
    return run_cnnlab("bench", *args, cwd=cwd, timeout=120)


def outputs(tmp_path):
    (run_dir,) = tmp_path.glob("outputs/*/*")
    data = json.loads((run_dir / "bench.json").read_text())
    with (run_dir / "bench.csv").open() as f:
        rows = list(csv.DictReader(f))
    assert list(run_dir.glob("events.out.tfevents.*"))
    assert len(rows) == len(data["records"])
    assert data["provenance"]["cnnlab_version"]
    for record in data["records"]:
        assert set(record) >= FIELDS
    return data


@pytest.mark.parametrize(
    ("target", "args", "cases"),
    [
        ("pool", ["bench.batch=2"], {"maxpool", "avgpool"}),
        ("batchnorm", ["bench.batch=2"], {"spatial"}),
        ("layers", ["bench.batch=2", "backends=[im2col,torch]"], {"conv", "lrn", "softmax"}),
        ("suite", ["bench.batch=1", "backends=[im2col,torch]"], {"course", "resnet-512"}),
    ],
)
def test_targets_run_on_tiny_shapes_and_write_their_files(tmp_path, target, args, cases):
    result = bench(target, *FAST, "trainer.threads=1", *args, cwd=tmp_path)
    assert result.returncode == 0, result.stdout + result.stderr
    data = outputs(tmp_path)
    records = data["records"]
    assert cases <= {r["case"] for r in records}
    timed = [r for r in records if r["status"] == "ok"]
    assert timed and all(r["fwdbwd_s"] > 0 and r["threads"] == 1 for r in timed)
    assert all(r["target"] == target and r["dtype"] == "float32" for r in records)
    assert all(r["precision"] == "32-true" and r["channels_last"] is False for r in records)
    assert (data["precision"], data["dtype"], data["tolerance"]) == ("32-true", "float32", 1e-4)
    if target == "batchnorm":
        assert {r["variant"] for r in records} == {"staged", "fused"}


def test_winograd_can_be_switched_off_and_the_choice_is_recorded(tmp_path):
    case = "bench.cases=[{name:resnetish,layer:conv,x:[2,16,8,8],w:[16,16,3,3],stride:1,pad:1}]"
    args = ["conv", *FAST, "backends=[im2col]", "trainer.threads=1", "trainer.winograd=false"]
    result = bench(*args, case, cwd=tmp_path)
    assert result.returncode == 0, result.stdout + result.stderr
    data = outputs(tmp_path)
    assert data["winograd"] is False
    assert [r["status"] for r in data["records"]] == ["ok"]


def test_conv_skips_naive_over_its_budget_and_cuda_where_absent(tmp_path):
    case = "bench.cases=[{name:tiny,layer:conv,x:[4,3,9,9],w:[5,3,3,3],stride:2,pad:1}]"
    result = bench("conv", *FAST, case, "bench.naive_budget_s=0", cwd=tmp_path)
    assert result.returncode == 0, result.stdout + result.stderr
    by = {r["backend"]: r for r in outputs(tmp_path)["records"]}
    naive = by["naive"]
    assert naive["skipped"] and naive["naive_estimate_s"] > 0 and "budget" in naive["reason"]
    assert by["im2col"]["gflops"] > 0 and by["im2col"]["speedup_vs_naive"] > 0
    assert by["im2col"]["ratio_to_torch"] > 0
    if not by["cuda"]["skipped"]:
        assert by["cuda"]["fwdbwd_s"] > 0


def test_tensorboard_gets_the_table_and_each_backend_in_ms(tmp_path):
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    case = "bench.cases=[{name:tiny,layer:conv,x:[4,3,9,9],w:[5,3,3,3],stride:2,pad:1}]"
    result = bench("conv", *FAST, case, "backends=[im2col,torch]", cwd=tmp_path)
    assert result.returncode == 0, result.stdout + result.stderr
    (run_dir,) = tmp_path.glob("outputs/*/*")
    records = {r["backend"]: r for r in outputs(tmp_path)["records"]}
    for backend, record in records.items():
        events = EventAccumulator(str(run_dir / backend), size_guidance={"scalars": 0}).Reload()
        (point,) = events.Scalars("bench/tiny/fwdbwd_ms")
        assert point.value == pytest.approx(record["fwdbwd_s"] * 1e3, rel=1e-6)
        (point,) = events.Scalars("bench/tiny/gflops")
        assert point.value == pytest.approx(record["gflops"], rel=1e-6)
    events = EventAccumulator(str(run_dir), size_guidance={"tensors": 0}).Reload()
    (text,) = events.Tensors("bench/table")
    table = text.tensor_proto.string_val[0].decode()
    assert "| case | backend | fwd ms |" in table
    assert sum(line.startswith("| tiny |") for line in table.splitlines()) == 2


def test_model_times_a_training_step(tmp_path):
    args = ["trainer.batch_size=2", "backends=[im2col,torch]", "model=lenet", "data=mnist"]
    result = bench("model", *FAST, *args, cwd=tmp_path)
    assert result.returncode == 0, result.stdout + result.stderr
    records = outputs(tmp_path)["records"]
    assert [r["backend"] for r in records] == ["im2col", "torch"]
    assert all(r["case"] == "lenet" and r["images_per_s"] > 0 for r in records)
    # bench model's own settings: a per-layer profile and each backend's peak memory.
    assert all(r["layers"] and r["peak_mem_bytes"] > 0 for r in records)


@pytest.mark.parametrize(
    ("args", "expected"),
    [
        (["nosuch"], "unknown target 'nosuch'"),
        ([], "give a target"),
        (["conv", "backends=[foo]"], "unknown backend 'foo'"),
        (["conv", "bench.cases=[{layer:bogus,x:[1]}]"], "unknown layer 'bogus'"),
        (["pool", "bench.runs=0"], "bench.runs must be >= 1"),
    ],
)
def test_mistakes_are_one_line_and_exit_2(tmp_path, args, expected):
    result = bench(*args, cwd=tmp_path)
    assert result.returncode == 2, result.stdout + result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and expected in lines[0]
    assert not (tmp_path / "outputs").exists()


def test_a_mixed_precision_skips_numpy_rows_and_judges_torch_by_its_tolerance(tmp_path):
    args = ["conv", *FAST, TINY_CONV, "backends=[im2col,torch]", "trainer.threads=1"]
    result = bench(*args, "trainer.precision=bf16-mixed", cwd=tmp_path)
    assert result.returncode == 0, result.stdout + result.stderr
    data = outputs(tmp_path)
    assert (data["precision"], data["dtype"], data["tolerance"]) == ("bf16-mixed", "float32", 5e-2)
    assert (data["channels_last"], data["compile"], data["rng"]) == (False, False, "numpy")
    by = {r["backend"]: r for r in data["records"]}
    assert by["im2col"]["skipped"] and by["im2col"]["fwdbwd_s"] is None
    assert by["im2col"]["reason"] == (
        "trainer.precision=bf16-mixed needs a torch backend (numpy has no autocast)"
    )
    row = by["torch"]
    assert row["status"] == "ok" and row["precision"] == "bf16-mixed" and row["fwdbwd_s"] > 0
    # Checked against torch in float32: off by bfloat16's rounding, which bench.rtol (1e-4)
    # would fail and the precision's tolerance (5e-2) accepts.
    assert 1e-4 < row["max_rel_error"] < 5e-2


def test_float16_autocast_on_the_cpu_is_a_skipped_torch_row(tmp_path):
    args = ["conv", *FAST, TINY_CONV, "backends=[torch]", "trainer.precision=16-mixed"]
    result = bench(*args, cwd=tmp_path)
    assert result.returncode == 0, result.stdout + result.stderr
    (row,) = outputs(tmp_path)["records"]
    assert row["skipped"] and row["precision"] == "16-mixed"
    assert row["reason"].startswith("trainer.precision=16-mixed runs on CUDA only")
