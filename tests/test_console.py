"""Where cnnlab's output goes and how it looks off a terminal: progress on stdout, warnings and
errors on stderr, whole lines (neither folded nor padded) in a pipe or a file."""

from __future__ import annotations

import logging
import logging.config

import pytest
import yaml

from cnnlab.config import config_dir
from cnnlab.console import BelowLevel, ConsoleHandler
from tests.cli import run_cnnlab
from tests.train.test_train_cli import SMALL


def test_an_error_at_run_time_goes_to_stderr_alone(tmp_path):
    # The check passes (the folder exists); the job fails as it reads the data.
    empty = tmp_path / "empty"
    empty.mkdir()
    result = run_cnnlab(
        "train", "data=mnist", f"data.root={empty}", "data.download=false", cwd=tmp_path
    )
    assert result.returncode == 1, result.stdout + result.stderr
    errors = [line for line in result.stderr.splitlines() if line.strip()]
    assert len(errors) == 1 and errors[0].startswith("ERROR"), result.stderr
    assert str(empty) in errors[0]
    assert "ERROR" not in result.stdout and str(empty) not in result.stdout
    # The run's log file keeps it as before: one line with its time, logger and level.
    (log,) = tmp_path.glob("outputs/*/*/train.log")
    (logged,) = [line for line in log.read_text().splitlines() if "[ERROR]" in line]
    assert "[cnnlab][ERROR] " in logged and str(empty) in logged


def test_piped_output_keeps_lines_whole(tmp_path):
    # The run may inherit a narrow COLUMNS (under pytest, readline's 80): it is widened still.
    deep = tmp_path / "runs" / ("a-directory-with-a-long-name-" * 4) / "run"
    assert len(str(deep)) > 100
    result = run_cnnlab("train", *SMALL, f"hydra.run.dir={deep}", cwd=tmp_path)
    assert result.returncode == 0, result.stdout + result.stderr
    for stream in (result.stdout, result.stderr):
        padded = [line for line in stream.splitlines() if line != line.rstrip()]
        assert not padded, stream
    # The last line names the run directory, unbroken; the table is as wide as it needs.
    assert any(line.endswith(f"outputs in {deep}") for line in result.stdout.splitlines())
    assert "true \\ predicted" in result.stdout
    assert "test accuracy" in result.stdout and not result.stderr.strip()


def test_stdout_handler_leaves_warnings_and_errors_to_stderr():
    below = BelowLevel("WARNING")

    def passes(level: int) -> bool:
        return below.filter(logging.LogRecord("cnnlab", level, __file__, 1, "m", None, None))

    assert passes(logging.INFO) and passes(logging.DEBUG)
    assert not passes(logging.WARNING) and not passes(logging.ERROR)
    assert BelowLevel(logging.ERROR).levelno == logging.ERROR


def test_handler_off_a_terminal_writes_one_line_per_message(capsys):
    # capsys's streams are not terminals, like a pipe.
    handler = ConsoleHandler(stderr=True)
    logger = logging.getLogger("tests.console")
    logger.addHandler(handler)
    logger.propagate = False
    message = "a path that rich would fold at 80 columns: " + "/deep" * 40
    try:
        logger.error(message)
    finally:
        logger.removeHandler(handler)
    captured = capsys.readouterr()
    assert captured.err == f"ERROR    {message}\n"
    assert captured.out == ""


@pytest.fixture
def job_logging(tmp_path):
    """cnnlab's job logging config in force, its log file in tmp_path; the previous set-up
    restored afterwards."""
    root, file_logger = logging.getLogger(), logging.getLogger("cnnlab.file")
    saved = (root.handlers[:], root.level, file_logger.handlers[:], file_logger.propagate)
    config = yaml.safe_load((config_dir() / "hydra" / "job_logging" / "rich.yaml").read_text())
    config["handlers"]["file"]["filename"] = str(tmp_path / "job.log")  # Hydra's interpolation
    logging.config.dictConfig(config)
    try:
        yield tmp_path / "job.log"
    finally:
        for handler in {*root.handlers, *file_logger.handlers}:
            handler.close()
        root.handlers[:], file_logger.handlers[:] = saved[0], saved[2]
        root.setLevel(saved[1])
        file_logger.propagate = saved[3]


def test_job_logging_routes_each_kind_of_line(job_logging, capsys):
    logging.getLogger("cnnlab.train").info("epoch 1 done")
    logging.getLogger("cnnlab").error("it broke")
    logging.getLogger("cnnlab.file").info("a table for the log file")
    captured = capsys.readouterr()
    assert captured.out == "INFO     epoch 1 done\n"
    assert captured.err == "ERROR    it broke\n"
    logged = job_logging.read_text()
    for line in ("[cnnlab.train][INFO] epoch 1 done", "[cnnlab][ERROR] it broke"):
        assert line in logged
    assert "[cnnlab.file][INFO] a table for the log file" in logged
