"""What TensorBoard shows of training runs, read back through its own hparams backend (the
code behind the HPARAMS tab), not only the event files."""

from __future__ import annotations

import json

import pytest
from tensorboard import context
from tensorboard.backend.event_processing import data_provider, plugin_event_multiplexer
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator
from tensorboard.plugins import base_plugin
from tensorboard.plugins.hparams import (
    api_pb2,
    backend_context,
    get_experiment,
    list_session_groups,
)

from cnnlab.train.tensorboard import hparam_values
from tests.cli import TINY, run_cnnlab


def hparams_tab(logdir) -> tuple[api_pb2.Experiment, list[api_pb2.SessionGroup]]:
    """The experiment (columns) and session groups (rows) the HPARAMS tab gets for logdir."""
    mux = plugin_event_multiplexer.EventMultiplexer()
    mux.AddRunsFromDirectory(str(logdir))
    mux.Reload()
    provider = data_provider.MultiplexerDataProvider(mux, str(logdir))
    tb = base_plugin.TBContext(logdir=str(logdir), multiplexer=mux, data_provider=provider)
    backend, request = backend_context.Context(tb), context.RequestContext()
    experiment = get_experiment.Handler(
        request, backend, "", api_pb2.GetExperimentRequest(include_metrics=True)
    ).run()
    statuses = [api_pb2.STATUS_SUCCESS, api_pb2.STATUS_FAILURE, api_pb2.STATUS_UNKNOWN]
    query = api_pb2.ListSessionGroupsRequest(
        start_index=0, slice_size=100, allowed_statuses=statuses
    )
    groups = list_session_groups.Handler(request, backend, "", query).run().session_groups
    return experiment, list(groups)


@pytest.fixture(scope="module")
def sweep(tmp_path_factory):
    root = tmp_path_factory.mktemp("sweep")
    args = ["train", "-m", *TINY, "backend=im2col,torch", "optim.lr=0.01,0.05"]
    result = run_cnnlab(*args, cwd=root)
    assert result.returncode == 0, result.stdout + result.stderr
    return root


def test_the_hparams_tab_names_runs_and_shows_what_differs(sweep):
    experiment, groups = hparams_tab(sweep / "multirun")
    runs = sorted(p for p in (sweep / "multirun").glob("*/*/*") if p.is_dir())
    assert len(runs) == 4
    results = [json.loads((run / "results.json").read_text()) for run in runs]

    # Each row is named by its run's name; its metrics are the final ones, no curve's last point.
    assert sorted(g.name for g in groups) == sorted(r["name"] for r in results)
    assert len({g.name for g in groups}) == 4
    final = {"test_acc", "test_loss", "val_acc", "val_loss", "best_val_acc"}
    assert {m.name.tag for m in experiment.metric_infos} == final
    by_name = {g.name: g for g in groups}
    for r in results:
        values = {m.name.tag: m.value for m in by_name[r["name"]].metric_values}
        assert values["test_acc"] == pytest.approx(r["test_acc"], abs=1e-6)

    # Every config key is a column; exactly the swept ones are marked as differing (and come
    # first), whole numbers read as such.
    columns = {h.name: h for h in experiment.hparam_infos}
    assert {h.name for h in experiment.hparam_infos if h.differs} == {"backend.name", "optim.lr"}
    assert {h.name for h in experiment.hparam_infos[:2]} == {"backend.name", "optim.lr"}
    wanted = {"optim.weight_decay", "optim.momentum", "optim.schedule", "optim.warmup_steps"}
    assert wanted | {"data.name", "data.limit", "trainer.batch_size"} <= set(columns)
    assert "trainer.resume" not in columns and "data.root" not in columns
    (group,) = [g for g in groups if g.name == results[0]["name"]]
    assert group.hparams["trainer.batch_size"].string_value == "20"


def test_a_short_run_logs_every_step(sweep):
    run = sorted(p for p in (sweep / "multirun").glob("*/*/*") if p.is_dir())[0]
    events = EventAccumulator(str(run), size_guidance={"scalars": 0}).Reload()
    # 270 training images in batches of 20: 14 steps, each a point of loss and accuracy.
    steps = [e.step for e in events.Scalars("train/loss_step")]
    assert steps == list(range(1, 15))
    assert [e.step for e in events.Scalars("train/acc_step")] == steps
    assert all(0 <= e.value <= 1 for e in events.Scalars("train/acc_step"))


def test_hparam_values_flatten_the_config():
    config = {
        "backend": {"name": "im2col"},
        "optim": {"lr": 0.01, "betas": [0.9, 0.999], "nesterov": False},
        "trainer": {"batch_size": 64, "resume": "/x", "patience": None},
        "data": {"root": "/data", "name": "mnist"},
        "user": {"file": None},
        "hydra": {"run": {"dir": "x"}},
    }
    assert hparam_values(config) == {
        "backend.name": "im2col",
        "optim.lr": 0.01,
        "optim.betas": "[0.9, 0.999]",
        "optim.nesterov": False,
        "trainer.batch_size": "64",
        "trainer.patience": "null",
        "data.name": "mnist",
    }
    config["backend"]["name"] = "user"
    assert hparam_values(config)["user.file"] == "null"
