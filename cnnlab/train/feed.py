"""Training batches where the engine computes: numpy arrays on the host, or tensors on the
torch backend's device.

The loop asks a feed for the samples of each batch by index and hands it the batch's
augmentation draws (:func:`~cnnlab.data.augment.draw_transforms`); a feed never draws random
numbers itself. :class:`TorchFeed` keeps the split on the device (on a GPU: copied once, where
it fits in a quarter of the free memory) and gathers, crops and flips each batch there, so a
step copies at most its indices and draws in, without waiting (pinned memory, non-blocking
copies). A batch that is also rotated, scaled or colour-jittered is made on the host instead,
by the numpy backends' own functions, and copied in: the same images, at the price of its
indices coming back from the device first (on a GPU, a wait for the steps queued before it).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import numpy as np

from cnnlab.data.augment import Crops, Step, apply_transforms

if TYPE_CHECKING:
    import torch

    from cnnlab.data.augment import Augmentation
    from cnnlab.data.batches import Rows
    from cnnlab.train.draws import Draws


class NumpyFeed:
    """A split as numpy arrays (the numpy backends)."""

    def __init__(self, x: np.ndarray, y: np.ndarray) -> None:
        self.x, self.y = x, y

    def place(self, index: np.ndarray) -> np.ndarray:
        """An epoch's order where :meth:`take` reads it: here, as it is."""
        return index

    def take(self, index: np.ndarray, draws: Steps) -> tuple[np.ndarray, np.ndarray]:
        """The images (augmented by ``draws``) and labels at ``index``."""
        x, steps = self.x[index], as_steps(draws)
        return (apply_transforms(x, steps) if steps else x), self.y[index]


class TorchFeed:
    """A split as tensors on a torch device (the torch backends).

    x lives on the device when it fits (always on the CPU, where it is the numpy array's own
    memory); otherwise each batch is gathered on the host and copied in from pinned memory.
    """

    def __init__(self, x: np.ndarray, y: np.ndarray, device: torch.device) -> None:
        self.device = device
        self.host = (x, y)
        resident = device.type == "cpu" or _fits(x.nbytes + y.nbytes, device)
        self.on_device = tuple(to_device(a, device) for a in self.host) if resident else None

    def place(self, index: Any) -> Any:
        """An epoch's order where :meth:`take` reads it: on the device with the images (a
        tensor already there stays), else on the host (a device-drawn order comes over once
        an epoch)."""
        if self.on_device is None:
            return index if isinstance(index, np.ndarray) else index.cpu().numpy()
        return to_device(index, self.device) if isinstance(index, np.ndarray) else index

    def take(self, index: Any, draws: Steps) -> tuple[torch.Tensor, torch.Tensor]:
        """The images (augmented by ``draws``) and labels at ``index``."""
        steps = as_steps(draws)
        if not all(isinstance(step, Crops) for step in steps):
            return self._take_on_host(index, steps)
        if self.on_device is not None:
            x, y = (a[index] for a in self.on_device)
        else:
            x, y = (to_device(a[index], self.device) for a in self.host)
        for crops in steps:
            values = (crops.dy, crops.dx, crops.mirror)  # type: ignore[union-attr]
            placed = [to_device(a, self.device) if isinstance(a, np.ndarray) else a for a in values]
            x = crop_tensor(x, Crops(crops.pad, *placed))  # type: ignore[union-attr]
        return x, y

    def _take_on_host(self, index: Any, steps: tuple[Step, ...]) -> tuple[torch.Tensor, ...]:
        """A batch with transforms that only numpy applies (numpy draws: trainer.rng=numpy),
        made on the host and copied in. An index on a GPU comes back first, which waits for
        the steps queued before it."""
        host = index if isinstance(index, np.ndarray) else index.cpu().numpy()
        x = to_device(apply_transforms(self.host[0][host], steps), self.device)
        if self.on_device is not None:
            return x, self.on_device[1][index]
        return x, to_device(self.host[1][host], self.device)


Feed = NumpyFeed | TorchFeed
# A batch's augmentation draws: the steps of draw_transforms, one Crops, or None for none.
Steps = tuple[Step, ...] | Crops | None


def take_batch(
    feed: Feed,
    draws: Draws,
    aug: Augmentation | None,
    index: Any,
    epoch: int,
    batch: int,
    rows: Rows,
) -> tuple[Any, Any]:
    """Rows ``rows`` of the batch whose samples are at ``index`` (the whole batch's), as batch
    ``batch`` of epoch ``epoch`` is augmented (``aug``, None: not at all): the one way the
    training loop, its first TensorBoard grid and the learning-rate finder make a batch."""
    steps = None if aug is None else draws.augment(epoch, batch, aug, rows)
    return feed.take(index[rows.slice], steps)


def as_steps(draws: Steps) -> tuple[Step, ...]:
    """``draws`` as a tuple of steps (a lone Crops is one step; None is none)."""
    if draws is None:
        return ()
    return (draws,) if isinstance(draws, Crops) else tuple(draws)


def _fits(nbytes: int, device: torch.device) -> bool:
    import torch

    free, _ = torch.cuda.mem_get_info(device)
    return nbytes <= free // 4


def to_device(a: np.ndarray, device: torch.device) -> torch.Tensor:
    """A numpy array as a tensor on ``device`` without making the host wait: the array's own
    memory on the CPU; elsewhere a pinned copy sent by a non-blocking transfer (torch's pinned
    allocator keeps that copy alive until the transfer is done)."""
    import torch

    t = torch.from_numpy(np.ascontiguousarray(a))
    if device.type == "cpu":
        return t
    return t.pin_memory().to(device, non_blocking=True)


def crop_tensor(x: torch.Tensor, crops: Crops) -> torch.Tensor:
    """:func:`~cnnlab.data.augment.apply_crops` on a device: x (N, C, H, W) zero-padded,
    cut at each image's offset and mirrored where drawn, in one gather. Exactly the numpy
    result (it only moves values)."""
    import torch
    import torch.nn.functional as F

    n, c, h, w = x.shape
    dev = x.device
    rows = torch.arange(h, device=dev).expand(n, h)
    cols = torch.arange(w, device=dev).expand(n, w)
    if crops.dy is not None:
        p = crops.pad
        x = F.pad(x, (p, p, p, p))
        rows = rows + crops.dy.view(n, 1)
        cols = cols + crops.dx.view(n, 1)
    if crops.mirror is not None:
        # A mirrored image's column j is its window's column w-1-j.
        cols = torch.where(crops.mirror.view(n, 1), cols.flip(1), cols)
    images = torch.arange(n, device=dev).view(n, 1, 1, 1)
    channels = torch.arange(c, device=dev).view(1, c, 1, 1)
    return x[images, channels, rows.view(n, 1, h, 1), cols.view(n, 1, 1, w)]
