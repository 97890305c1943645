"""Where a training run's random numbers come from (``trainer.rng``).

Every draw is seeded from ``trainer.seed`` and the loop's position, never from a generator
that runs on from the start: the data order from ``(seed, epoch)``, a batch's augmentation
(crops, flips, rotations, ...) from ``(seed, epoch, batch, 1)`` and its dropout masks from
``(seed, epoch, batch, 2)``. A checkpoint that stores the position therefore resumes every
stream exactly, whichever source:

- :class:`NumpyDraws` (``trainer.rng=numpy``, the default) draws with numpy on the host, so
  every backend, numpy or torch, sees the same batches and masks step for step;
- :class:`DeviceDraws` (``trainer.rng=device``) draws with a torch generator on the backend's
  device: nothing is drawn on the host or copied in, but the numbers differ from numpy's. It
  draws crops and flips only: rotate, scale and color are applied on the host, from numpy's
  draws, and need ``trainer.rng=numpy``.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Protocol

import numpy as np

from cnnlab.data.augment import (
    Augmentation,
    Crops,
    Step,
    crop_flip,
    draw_crops,
    draw_transforms,
    joined,
)
from cnnlab.data.batches import Rows, epoch_order
from cnnlab.errors import UsageError

if TYPE_CHECKING:
    import torch


class Draws(Protocol):
    """The random numbers of a training loop, by position."""

    name: str

    def order(self, n: int, epoch: int) -> np.ndarray | torch.Tensor:
        """The permutation of the n training samples for ``epoch``."""

    def crops(self, epoch: int, batch: int, pad: int, flip: bool, rows: Rows) -> Crops:
        """Batch ``batch``'s crops and flips, drawn for ``rows.total`` images, cut to rows."""

    def augment(self, epoch: int, batch: int, aug: Augmentation, rows: Rows) -> tuple[Step, ...]:
        """Batch ``batch``'s transforms (``aug``), drawn for ``rows.total`` images, cut to rows."""

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

    def augment(self, epoch: int, batch: int, aug: Augmentation, rows: Rows) -> tuple[Step, ...]:
        return draw_transforms(np.random.default_rng([self.seed, epoch, batch, 1]), aug, rows)

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
        steps = self.augment(epoch, batch, Augmentation(crop_flip(pad, flip), pad), rows)
        return steps[0] if steps else Crops(pad, None, None, None)  # type: ignore[return-value]

    def augment(self, epoch: int, batch: int, aug: Augmentation, rows: Rows) -> tuple[Step, ...]:
        """Crops and flips, in ``aug``'s order, each drawn as numpy's are (crop: row offsets,
        then column offsets) but by torch; any other transform is a UsageError."""
        import torch

        g, mine, p = self._at(epoch, batch, 1), rows.slice, aug.crop_pad
        steps: tuple[Step, ...] = ()
        for name in aug.transforms:
            if name == "crop":
                dy = torch.randint(0, 2 * p + 1, (rows.total,), generator=g, device=self.device)
                dx = torch.randint(0, 2 * p + 1, (rows.total,), generator=g, device=self.device)
                step = Crops(p, dy[mine], dx[mine], None)
            elif name == "flip":
                mirror = torch.rand(rows.total, generator=g, device=self.device)[mine] < 0.5
                step = Crops(0, None, None, mirror)
            else:
                raise UsageError(
                    f"trainer.rng=device draws crop and flip only, not {name}: "
                    "use trainer.rng=numpy"
                )
            steps = joined(steps, step)
        return steps

    def dropout(self, epoch: int, batch: int) -> torch.Generator:
        return self._at(epoch, batch, 2)
