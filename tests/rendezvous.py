"""A Hydra callback for tests: each job of a sweep waits at its start until all have arrived.

All jobs can arrive only if they run at the same time. Run one after another, the first waits
out ``timeout_s`` (a guard, not a measurement), records that it met no one and goes on. Each job
leaves ``<num>.arrived`` in ``folder``, then ``<num>.met`` or ``<num>.alone``. Selected on the
command line (with ``tests`` importable: PYTHONPATH at the repository root)::

    +hydra.callbacks.rendezvous._target_=tests.rendezvous.Rendezvous
    +hydra.callbacks.rendezvous.folder=<dir> +hydra.callbacks.rendezvous.parties=2
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

from hydra.experimental.callback import Callback


class Rendezvous(Callback):
    def __init__(self, folder: str, parties: int, timeout_s: float = 60.0) -> None:
        self.folder = Path(folder)
        self.parties = parties
        self.timeout_s = timeout_s

    def on_job_start(self, config: Any, **kwargs: Any) -> None:
        num = config.hydra.job.num
        (self.folder / f"{num}.arrived").touch()
        deadline = time.monotonic() + self.timeout_s
        while len(list(self.folder.glob("*.arrived"))) < self.parties:
            if time.monotonic() > deadline:
                (self.folder / f"{num}.alone").touch()
                return
            time.sleep(0.02)
        (self.folder / f"{num}.met").touch()
