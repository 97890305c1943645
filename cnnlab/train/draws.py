"""Where a training run's random numbers come from (``trainer.rng``).

Every draw is seeded from ``trainer.seed`` and the loop's position, never from a generator
that runs on from the start: the data order from ``(seed, epoch)``, a batch's crops and flips
from ``(seed, epoch, batch, 1)`` and its dropout masks from ``(seed, epoch, batch, 2)``. A
checkpoint that stores the position therefore resumes every stream exactly, whichever source:

- :class:`NumpyDraws` (``trainer.rng=numpy``, the default) draws with numpy on the host, so
  every backend, numpy or torch, sees the same batches and masks step for step;
- :class:`DeviceDraws` (``trainer.rng=device``) draws with a torch generator on the backend's
  device: nothing is drawn on the host or copied in, but the numbers differ from numpy's.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Protocol

import numpy as np

from cnnlab.data.augment import Crops, draw_crops
from cnnlab.data.batches import Rows, epoch_order

if TYPE_CHECKING:
    import torch


class Draws(Protocol):
    """The random numbers of a training loop, by position."""

    name: str

    def order(self, n: int, epoch: int) -> np.ndarray | torch.Tensor:
        """The permutation of the n training samples for ``epoch``."""

    def crops(self, epoch: int, batch: int, pad: int, flip: bool, rows: Rows) -> Crops:
        """Batch ``batch``'s crops and flips, drawn for ``rows.total`` images, cut to rows."""

    def dropout(self, epoch: int, batch: int) -> np.random.Generator | torch.Generator:
        """The generator batch ``batch``'s dropout masks are drawn from."""


class NumpyDraws:
    """numpy generators seeded from the position: the same on every backend."""

    name = "numpy"

    def __init__(self, seed: int) -> None:
        self.seed = seed

    def order(self, n: int, epoch: int) -> np.ndarray:
        return epoch_order(n, self.seed, epoch)

    def crops(self, epoch: int, batch: int, pad: int, flip: bool, rows: Rows) -> Crops:
        return draw_crops(np.random.default_rng([self.seed, epoch, batch, 1]), pad, flip, rows)

    def dropout(self, epoch: int, batch: int) -> np.random.Generator:
        return np.random.default_rng([self.seed, epoch, batch, 2])


class DeviceDraws:
    """One torch generator on the device, re-seeded from the position before each draw.

    Re-seeding is a host-side operation (a device generator's seed is read when a kernel is
    launched), so a batch's draws cost no synchronisation and no copy.
    """

    name = "device"

    def __init__(self, seed: int, device: torch.device) -> None:
        import torch

        self.seed, self.device = seed, device
        self.generator = torch.Generator(device=device)

    def _at(self, *position: int) -> torch.Generator:
        # SeedSequence spreads nearby positions over the whole 64-bit seed space.
        state = np.random.SeedSequence([self.seed, *position]).generate_state(1, np.uint64)
        return self.generator.manual_seed(int(state[0]))

    def order(self, n: int, epoch: int) -> torch.Tensor:
        import torch

        return torch.randperm(n, generator=self._at(epoch), device=self.device)

    def crops(self, epoch: int, batch: int, pad: int, flip: bool, rows: Rows) -> Crops:
        import torch

        g, mine, dy, dx, mirror = self._at(epoch, batch, 1), rows.slice, None, None, None
        if pad > 0:
            dy = torch.randint(0, 2 * pad + 1, (rows.total,), generator=g, device=self.device)
            dx = torch.randint(0, 2 * pad + 1, (rows.total,), generator=g, device=self.device)
            dy, dx = dy[mine], dx[mine]
        if flip:
            mirror = torch.rand(rows.total, generator=g, device=self.device)[mine] < 0.5
        return Crops(pad, dy, dx, mirror)

    def dropout(self, epoch: int, batch: int) -> torch.Generator:
        return self._at(epoch, batch, 2)
