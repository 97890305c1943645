"""The wheel ships conf/ as cnnlab/conf, found from an install run in another directory."""

from __future__ import annotations

import os
import subprocess
import sys
import tomllib
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def test_every_package_folder_is_listed_in_pyproject():
    listed = set(
        tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["setuptools"]["packages"]
    )
    folders = {
        ".".join(p.parent.relative_to(ROOT).parts)
        for p in (ROOT / "cnnlab").rglob("*.py")
        if "__pycache__" not in p.parts
    }
    assert folders <= listed
    assert "cnnlab.conf" in listed


def test_non_editable_install_finds_its_configs_from_elsewhere(tmp_path):
    target = tmp_path / "site"
    subprocess.run(
        [
            sys.executable,
            "-m",
            "pip",
            "install",
            "-q",
            "--no-deps",
            "--target",
            str(target),
            str(ROOT),
        ],
        check=True,
        capture_output=True,
        timeout=600,
    )
    assert (target / "cnnlab" / "conf" / "gradcheck.yaml").is_file()
    assert not (target / "conf").exists()  # never a top-level conf package
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    env = {**os.environ, "PYTHONPATH": str(target)}
    code = (
        "import cnnlab.config as c, sys; print(c.config_dir()); "
        "sys.argv = ['cnnlab', 'gradcheck', 'layer=relu', '--cfg', 'job']; "
        "from cnnlab.cli import main; main()"
    )
    result = subprocess.run(
        [sys.executable, "-c", code],
        cwd=elsewhere,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert result.returncode == 0, result.stderr
    first_line = result.stdout.splitlines()[0]
    assert Path(first_line) == target / "cnnlab" / "conf"
    assert "name: relu" in result.stdout
