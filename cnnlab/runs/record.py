"""The files a training run's directory holds, and readers that never raise on them.

A run may be read while it is being written, after it was killed half-way through a write, or
years later by a newer cnnlab: every reader here returns an empty value for a file that is
missing, cut short or of another shape, and the caller decides what that means.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

# Written by cnnlab train: run.json from the first moment (cnnlab.runs.status), results.json
# at the end, metrics.jsonl one line per epoch and test evaluation as it goes.
RUN = "run.json"
RESULTS = "results.json"
METRICS = "metrics.jsonl"
# Written by Hydra into every run directory: the composed config, the user's overrides (task
# overrides only, Hydra's own are in hydra.yaml) and Hydra's settings for the job.
CONFIG = Path(".hydra") / "config.yaml"
OVERRIDES = Path(".hydra") / "overrides.yaml"
HYDRA = Path(".hydra") / "hydra.yaml"


def read_json(path: Path) -> dict[str, Any]:
    """A JSON object from a file; empty when the file is missing, cut short or not an object."""
    try:
        data = json.loads(path.read_text())
    except (OSError, ValueError):
        return {}
    return data if isinstance(data, dict) else {}


def read_yaml(path: Path) -> Any:
    """A YAML document from a file (libyaml's parser where PyYAML has it); None when the file is
    missing or does not parse."""
    import yaml  # PyYAML comes with Hydra and loads fast

    loader = getattr(yaml, "CSafeLoader", yaml.SafeLoader)
    try:
        return yaml.load(path.read_text(), Loader=loader)
    except (OSError, yaml.YAMLError):
        return None


def read_config(run_dir: Path) -> dict[str, Any]:
    """The run's composed config as Hydra saved it (interpolations left as written); empty when
    it cannot be read."""
    config = read_yaml(run_dir / CONFIG)
    return config if isinstance(config, dict) else {}


def read_overrides(run_dir: Path) -> list[str]:
    """The overrides the user gave the run (``.hydra/overrides.yaml``), in their order."""
    overrides = read_yaml(run_dir / OVERRIDES)
    return [str(o) for o in overrides] if isinstance(overrides, list) else []


def job_name(run_dir: Path) -> str | None:
    """The command that made the run directory (``train``, ``eval``, ``summary``...), from
    Hydra's record of the job; None when that record is missing or unreadable."""
    hydra = read_yaml(run_dir / HYDRA)
    try:
        return str(hydra["hydra"]["job"]["name"])
    except (KeyError, TypeError):
        return None


def epoch_records(run_dir: Path) -> list[dict[str, Any]]:
    """metrics.jsonl's ``"kind": "epoch"`` lines, in order; a line cut short by a kill is
    skipped."""
    try:
        lines = (run_dir / METRICS).read_text().splitlines()
    except OSError:
        return []
    records = []
    for line in lines:
        try:
            record = json.loads(line)
        except ValueError:
            continue
        if isinstance(record, dict) and record.get("kind") == "epoch":
            records.append(record)
    return records
