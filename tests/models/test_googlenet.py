"""GoogLeNet: torchvision's counts for its variant, the paper's 5x5 branch, and the summary's
nested rows for each Inception module."""

from __future__ import annotations

import pytest

from cnnlab.commands.summary import table_rows
from cnnlab.config import compose
from cnnlab.errors import UsageError
from cnnlab.ops.conv import Conv2d
from cnnlab.ops.tree import leaves, summarize
from tests.cli import run_cnnlab
from tests.models.test_models import IMAGENET, net_for


def test_torchvision_variant_has_its_parameters_and_multiply_adds():
    _, net, in_shape = net_for(["model=googlenet", "model.variant=torchvision", *IMAGENET])
    summary = summarize(net, in_shape)
    assert summary["total_params"] == 6_624_904
    # torchvision's 1.50 GFLOPS are multiply-adds of convs and linear layers; cnnlab counts
    # each as 2 FLOPs and, like it, leaves out norms, pools and activations.
    assert summary["total_flops"] / 2 == pytest.approx(1.50e9, rel=0.05)


def test_the_papers_third_branch_is_5x5():
    _, net, in_shape = net_for(["model=googlenet", *IMAGENET])
    convs = {leaf.name: leaf.layer for leaf in leaves(net, in_shape)}
    assert isinstance(conv := convs["inception3a.branch3.conv2"], Conv2d)
    assert (conv.kernel, conv.pad) == (5, 2)
    # 9 modules: (25 - 9) x #5x5 reduce x #5x5 weights more than torchvision's 3x3.
    assert summarize(net, in_shape)["total_params"] == 7_005_832


def test_summary_nests_each_modules_branches_under_its_concatenation():
    _, net, in_shape = net_for(["model=googlenet", *IMAGENET])
    summary = summarize(net, in_shape)
    rows = [(r["name"], r["layer"], r["out_shape"], r["depth"]) for r in table_rows(summary)]
    start = rows.index(("inception3a", "Concat 64+128+32+32", [256, 28, 28], 0))
    module = [r for r in rows[start:] if r[0].startswith("inception3a")]
    branches = [r for r in module if r[1] == "branch"]
    assert branches == [
        ("inception3a.branch1", "branch", [64, 28, 28], 1),
        ("inception3a.branch2", "branch", [128, 28, 28], 1),
        ("inception3a.branch3", "branch", [32, 28, 28], 1),
        ("inception3a.branch4", "branch", [32, 28, 28], 1),
    ]
    # Each branch's layers follow its row, one level deeper; the module's rows are contiguous.
    assert module == rows[start : start + len(module)]
    assert rows[start + 2][:2] == ("inception3a.branch1.conv1", "Conv2d 64@1x1 s1 p0 no bias")
    assert all(r[3] == 2 for r in module if r[1] not in ("branch",) and r[0].count(".") == 2)
    five_b = next(r for r in rows if r[0] == "inception5b")
    assert five_b[1:3] == ("Concat 384+384+128+128", [1024, 7, 7])
    # Containers own no parameters and no FLOPs: the totals are the layers' sums.
    assert summary["total_params"] == sum(r["params"] for r in summary["layers"])


def test_cli_summary_shows_the_branches_and_their_concatenation(tmp_path):
    result = run_cnnlab("summary", "model=googlenet", cwd=tmp_path, timeout=120)
    assert result.returncode == 0, result.stderr
    lines = result.stdout.splitlines()
    module = next(i for i, line in enumerate(lines) if "Concat 64+128+32+32" in line)
    assert "inception3a " in lines[module] and "256×32×32" in lines[module]
    assert "  inception3a.branch1 " in lines[module + 1] and "64×32×32" in lines[module + 1]
    assert "    inception3a.branch1.conv1 " in lines[module + 2]


def test_a_shallower_googlenet_is_a_config_away():
    rows = "[[64,96,128,16,32,32],[192,96,208,16,48,64]]"
    _, net, _ = net_for(["model=googlenet", f"model.modules={rows}", "model.pool_before=[1]"])
    names = [name for name, _ in net.children]
    assert [n for n in names if n.startswith(("inception", "pool"))] == [
        "inception3a",
        "pool3",
        "inception4a",
        "pool",
    ]


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        (["model.modules=[[64,96,128]]"], "modules must be rows of six widths"),
        (["model.pool_before=[7,2]"], "pool_before must be increasing indices of modules"),
        (
            ["model.pool_before=[9]"],
            r"pool_before must be increasing indices of modules \(0 to 8\)",
        ),
    ],
)
def test_bad_module_plans_are_usage_errors(overrides, message):
    with pytest.raises(UsageError, match=message):
        compose("summary", ["model=googlenet", *overrides])
