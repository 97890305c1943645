"""Shared test settings: a bounded hypothesis profile (the naive loops are slow on 2 cores),
and one torch thread per xdist worker."""

import os

from hypothesis import HealthCheck, settings

settings.register_profile(
    "ci",
    max_examples=20,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow],
)
settings.register_profile("thorough", max_examples=300, deadline=None)
settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "ci"))

# pytest -n 2 runs two workers on a 2-core machine: torch's default of one intra-op thread per
# core would then run four threads on two cores, and its thread pools spin while they wait, so
# small torch ops ran many times slower than on one thread. One each.
if os.environ.get("PYTEST_XDIST_WORKER"):
    import torch

    torch.set_num_threads(1)
