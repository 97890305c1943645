"""``cnnlab summary``: the table, summary.json, and one-line errors."""

from __future__ import annotations

import json

from tests.cli import run_cnnlab


def summary(*args: str, cwd):
    return run_cnnlab("summary", *args, cwd=cwd, timeout=120)


def test_summary_writes_totals_and_layers(tmp_path):
    result = summary("model=lenet", "data=mnist", cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    assert "61,706" in result.stdout
    (path,) = tmp_path.glob("outputs/*/*/summary.json")
    data = json.loads(path.read_text())
    assert data["total_params"] == 61_706
    assert data["total_flops"] == sum(layer["flops"] for layer in data["layers"])
    conv1 = data["layers"][0]
    assert conv1["name"] == "conv1" and conv1["out_shape"] == [6, 28, 28] and conv1["params"] == 156
    assert conv1["flops"] == 2 * 25 * 6 * 28 * 28


def test_shapes_that_do_not_fit_are_one_line(tmp_path):
    result = summary("model=deep", "model.pool_after=[0,1,2,3,4,5]", cwd=tmp_path)
    assert result.returncode == 2
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and "pool6" in lines[0] and "(128, 1, 1)" in lines[0]
    assert not (tmp_path / "outputs").exists()
