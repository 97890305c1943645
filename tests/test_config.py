"""Hydra glue: composition, schemas, sweep validation, completion, thread counts."""

from __future__ import annotations

import pytest

from cnnlab.completion import complete_overrides
from cnnlab.config import candidate_override_sets, compose, config_dir, group_options
from cnnlab.errors import UsageError


def test_config_dir_is_the_repository_conf_folder():
    assert (config_dir() / "gradcheck.yaml").is_file()
    assert "batchnorm" in group_options("layer")


def test_compose_applies_overrides_and_types():
    cfg = compose("gradcheck", ["layer=conv", "gradcheck.step=1e-5", "trainer.threads=1"])
    assert cfg.layer.name == "conv"
    assert cfg.gradcheck.step == pytest.approx(1e-5)
    assert cfg.trainer.threads == 1


def test_schema_rejects_a_wrong_type():
    with pytest.raises(UsageError, match="not a valid Integer"):
        compose("gradcheck", ["trainer.seed=x"])


def test_sweeps_are_checked_value_by_value():
    sets = list(candidate_override_sets(["a=1,2,3", "b=x,y"], multirun=True))
    assert sets[0] == ["a=1", "b=x"]
    assert {"a=2", "b=x"} <= {*sets[1]} and ["a=1", "b=y"] in sets
    assert len(sets) == 4  # every value once, not the 6 of the full product


def test_sweep_without_multirun_is_an_error():
    with pytest.raises(UsageError, match="-m"):
        list(candidate_override_sets(["layer=conv,relu"], multirun=False))


def test_completion_of_groups_and_keys():
    assert "layer=batchnorm" in complete_overrides("gradcheck", [], "layer=b")
    assert "gradcheck.step=" in complete_overrides("gradcheck", [], "gradcheck.st")
    assert "layer=" in complete_overrides("gradcheck", ["backends=all"], "la")


def test_completion_when_bash_splits_words_at_equals():
    # bash puts "=" in its word breaks: "layer=b" arrives as "layer", "=", "b".
    assert complete_overrides("gradcheck", ["layer", "="], "b") == ["batchnorm"]
    assert "=conv" in complete_overrides("gradcheck", ["layer"], "=")
    assert "layer=" in complete_overrides("gradcheck", ["layer", "=", "conv"], "la")


def test_completion_through_the_cli(tmp_path):
    import os
    import subprocess
    import sys

    env = {
        **os.environ,
        "_CNNLAB_COMPLETE": "complete_bash",
        "COMP_WORDS": "cnnlab gradcheck layer = ma",
        "COMP_CWORD": "4",
    }
    out = subprocess.run(
        [sys.executable, "-m", "cnnlab"], env=env, cwd=tmp_path, capture_output=True, text=True
    ).stdout
    assert out.split() == ["maxpool"]


@pytest.mark.parametrize(
    ("words", "expected"),
    [
        ("cnnlab predict run seven.png backend = t", ["torch"]),
        ("cnnlab predict run seven.png trainer.eval", ["trainer.eval_batch_size="]),
        # tray.png and trainer.: the path is left to the shell's own completion
        ("cnnlab predict run tr", []),
        ("cnnlab predict run seven.png tra", ["trainer.", "trainer="]),
        ("cnnlab predict run digits/s", []),
        ("cnnlab export run trainer.eval", ["trainer.eval_batch_size="]),
        ("cnnlab export run backend = t", ["torch"]),
    ],
)
def test_completion_of_predict_and_export_arguments(tmp_path, words, expected):
    import os
    import subprocess
    import sys

    (tmp_path / "seven.png").touch()
    if words.endswith(" tr"):
        (tmp_path / "tray.png").touch()
    (tmp_path / "digits").mkdir()
    (tmp_path / "digits" / "six.png").touch()
    env = {
        **os.environ,
        "_CNNLAB_COMPLETE": "complete_bash",
        "COMP_WORDS": words,
        "COMP_CWORD": str(len(words.split()) - 1),
    }
    out = subprocess.run(
        [sys.executable, "-m", "cnnlab"], env=env, cwd=tmp_path, capture_output=True, text=True
    ).stdout
    assert out.split() == expected


def test_threads_reach_numpy_and_torch():
    import torch
    from threadpoolctl import threadpool_info

    from cnnlab.backends import BACKENDS, BackendOptions

    before = torch.get_num_threads()
    try:
        BACKENDS["im2col"].kernels(BackendOptions(threads=1))
        assert torch.get_num_threads() == 1
        assert all(pool["num_threads"] == 1 for pool in threadpool_info())
    finally:
        torch.set_num_threads(before)
