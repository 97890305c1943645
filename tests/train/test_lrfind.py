"""The learning-rate range test's parts: the rates, the smoothing, the suggestion rule on
synthetic curves, and a sweep on a real engine that diverges."""

from __future__ import annotations

import math

import numpy as np
import pytest

from cnnlab.train.lrfind import (
    SKIP_END,
    Smoother,
    large_start,
    run_sweep,
    smooth,
    steepest,
    sweep_lrs,
)


def test_the_rates_are_geometric_from_min_to_max():
    lrs = sweep_lrs(1e-7, 10.0, 101)
    assert lrs[0] == 1e-7 and lrs[-1] == 10.0
    i = np.arange(101)
    np.testing.assert_allclose(lrs, 1e-7 * (10.0 / 1e-7) ** (i / 100), rtol=1e-13)
    np.testing.assert_allclose(lrs[1:] / lrs[:-1], 10 ** (8 / 100), rtol=1e-12)


@pytest.mark.parametrize("args", [(1.0, 1.0, 10), (1.0, 0.1, 10), (0.0, 1.0, 10), (1e-3, 1, 1)])
def test_rates_that_do_not_grow_are_refused(args):
    with pytest.raises(ValueError):
        sweep_lrs(*args)


def test_smoothing_is_a_bias_corrected_moving_average():
    losses = np.array([3.0, 1.0, 2.0, 5.0])
    beta = 0.9
    a, expected = 0.0, []
    for i, loss in enumerate(losses):
        a = beta * a + (1 - beta) * loss
        expected.append(a / (1 - beta ** (i + 1)))
    np.testing.assert_allclose(smooth(losses, beta), expected, rtol=1e-15)
    # The correction makes a constant loss its own average from the first step.
    np.testing.assert_allclose(smooth(np.full(5, 2.5), 0.98), 2.5, rtol=1e-12)
    np.testing.assert_array_equal(smooth(losses, 0.0), losses)
    smoother = Smoother(0.5)
    assert [smoother.add(v) for v in (4.0, 2.0)] == [4.0, (0.25 * 4 + 0.5 * 2) / 0.75]


def _curve(x: np.ndarray) -> np.ndarray:
    """A loss against log10 lr: flat, a shallow fall at 1e-5, the steepest at 1e-2, a rise."""
    shallow = 0.3 * (1 - np.tanh((x + 5) / 0.5))
    steep = 1.0 * (1 - np.tanh((x + 2) / 0.3))
    rise = np.exp(4 * (x - 0.5))
    return 1.0 + shallow + steep + rise


def test_a_first_loss_past_twice_chances_is_flagged():
    chance = math.log(10)
    assert large_start(2 * chance, 10) is None
    assert large_start(math.nan, 10) is None
    said = large_start(10.4, 10)
    assert said is not None and said.startswith("the first loss, 10.4, is 4.5x chance's")


def test_the_suggestion_is_the_steepest_point_of_the_curve():
    x = np.linspace(-7, 1, 161)  # log10 lr in steps of 0.05: x = -2 is index 100
    lrs = 10.0**x
    loss = _curve(x)
    i = steepest(lrs, loss, skip_start=16, end=len(x))
    assert i == 100 and math.isclose(lrs[i], 1e-2, rel_tol=1e-12)
    slope = np.gradient(loss, np.log(lrs))
    assert slope[i] == slope[16 : len(x) - SKIP_END].min()


def test_the_suggestion_leaves_out_the_start_and_the_end():
    x = np.linspace(-7, 1, 161)
    lrs, loss = 10.0**x, _curve(x)
    # The steep fall inside the skipped start: the shallow one (at 1e-5, index 40) is left.
    assert steepest(lrs, loss, skip_start=110, end=len(x)) != 100
    assert steepest(lrs, loss, skip_start=0, end=95) == 40
    # A curve that never falls, or too short a window: no suggestion.
    assert steepest(lrs, np.linspace(1, 2, 161), skip_start=0, end=161) is None
    assert steepest(lrs, loss, skip_start=10, end=10 + SKIP_END + 2) is None


def _engine(overrides: list[str]):
    """A fresh engine and the data of a tiny ``cnnlab lrfind`` config, made as the command
    makes them."""
    import time

    from cnnlab.backends import BackendOptions
    from cnnlab.commands import lrfind, train
    from cnnlab.config import compose
    from cnnlab.train.distributed import SINGLE

    cfg = compose("lrfind", [*TINY, *overrides])
    plan = lrfind.check_config(cfg)
    options = BackendOptions.of(cfg.trainer, cfg.user, 1)
    data = train._load_data(cfg, SINGLE)
    job = train.Job({}, ".", None, time.perf_counter())
    engine, _, _ = train._start(cfg, data, plan.backend, job, SINGLE, options, None)
    return engine, data


TINY = [
    "data.train_size=200",
    "data.test_size=20",
    "model.filters=4",
    "model.hidden=16",
    "trainer.batch_size=20",
    "trainer.threads=1",
]


def test_a_sweep_to_huge_rates_stops_where_the_loss_diverges():
    engine, data = _engine([])
    lrs = sweep_lrs(1e-3, 1e8, 40)
    seen = []
    sweep = run_sweep(
        engine, data.train, lrs, 20, 0, 0.9, 4.0, on_step=lambda i, *_: seen.append(i)
    )
    assert sweep.stopped_at is not None and sweep.stopped_at < 39
    assert sweep.reason in ("diverged", "not finite")
    k = sweep.stopped_at + 1
    assert len(sweep.lrs) == len(sweep.losses) == len(sweep.smoothed) == k == len(seen)
    np.testing.assert_array_equal(sweep.lrs, lrs[:k])
    # Every step before the one that stopped it had a finite loss under the threshold.
    assert np.isfinite(sweep.losses[:-1]).all()
    best = np.minimum.accumulate(sweep.smoothed[:-1])
    assert (sweep.smoothed[1:-1] <= 4.0 * best[:-1]).all()
    last = sweep.smoothed[-1]
    assert not math.isfinite(sweep.losses[-1]) or last > 4.0 * best[-1]
