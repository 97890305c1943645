"""The run's pictures: its loss and accuracy curves, from the epoch records of
``metrics.jsonl``, and its first conv layer's filters."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import numpy as np

__all__ = ["plot_filters", "plot_history"]


def plot_history(records: list[dict], path: str | Path) -> None:
    """Writes a PNG with two panels, loss and accuracy against epoch, train and val lines.

    Args:
        records: Records of ``metrics.jsonl``; those with ``"kind": "epoch"`` are plotted, using
            ``epoch``, ``train_loss``, ``train_acc``, ``val_loss`` and ``val_acc``. A value that is
            absent or ``None`` leaves that point out (no validation set, or validation every few
            epochs); a line with no points is not drawn.
        path: The PNG to write (its folder is created if missing).

    matplotlib is imported here, not at module level, to keep it off the CLI's start-up. The
    figure is drawn on an Agg canvas without pyplot, so no global backend or figure state is
    touched.
    """
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    epochs = [r for r in records if r.get("kind") == "epoch"]
    fig = Figure(figsize=(10, 4), layout="constrained")
    FigureCanvasAgg(fig)
    for ax, metric, title in zip(
        fig.subplots(1, 2), ("loss", "acc"), ("Loss", "Accuracy"), strict=True
    ):
        for split, style in (("train", "-"), ("val", "--")):
            points = [
                (r["epoch"], r[f"{split}_{metric}"])
                for r in epochs
                if r.get(f"{split}_{metric}") is not None
            ]
            if points:
                x, y = zip(*points, strict=True)
                ax.plot(x, y, style, marker="o", markersize=3, label=split)
        ax.set_title(title)
        ax.set_xlabel("epoch")
        ax.set_ylabel(title.lower())
        ax.grid(True, alpha=0.3)
        if ax.lines:
            ax.legend()
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, format="png", dpi=100)


def plot_filters(w: np.ndarray, path: str | Path) -> None:
    """Writes the filters ``w`` (F, C, HH, WW) as one PNG: the grid TensorBoard shows under
    ``filters/first_conv`` (:func:`cnnlab.train.tensorboard.filter_grid`: each filter scaled to
    its own range, RGB for 3 channels, grey otherwise)."""
    from matplotlib.image import imsave

    from cnnlab.train.tensorboard import filter_grid

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    imsave(path, filter_grid(w), format="png")
