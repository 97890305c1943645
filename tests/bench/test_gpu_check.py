"""benchmarks/gpu_check.sh: its usage, and one clear line for an argument it does not know.
(Its steps run on a GPU machine; `--backend torch --quick` rehearses them on the CPU by hand.)"""

from __future__ import annotations

import subprocess
from pathlib import Path

SCRIPT = Path(__file__).resolve().parents[2] / "benchmarks" / "gpu_check.sh"


def run(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run(["bash", str(SCRIPT), *args], capture_output=True, text=True, timeout=60)


def test_help_shows_the_usage_and_the_wheels_it_needs():
    result = run("--help")
    assert result.returncode == 0, result.stderr
    assert "Usage, from the repository root" in result.stdout
    for wheel in ("hydra-core==1.3.2", "omegaconf==2.3.0", "antlr4-python3-runtime==4.9.3"):
        assert wheel in result.stdout
    assert "set -euo" not in result.stdout  # the header only


def test_an_unknown_argument_is_one_line_and_exit_2():
    result = run("--fast")
    assert result.returncode == 2
    assert result.stderr.strip() == "gpu_check: unknown argument --fast (see --help)"
    assert result.stdout == ""
