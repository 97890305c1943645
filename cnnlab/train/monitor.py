"""What a run watches at the end of each epoch: to keep its best checkpoints and to stop early.

``trainer.monitor`` names the quantity (``val_acc`` or ``val_loss``; a run without a validation
split, ``data.val_fraction=0``, watches ``train_acc`` or ``train_loss`` instead) and
``trainer.mode`` whether larger or smaller is better (null: from the name, ``max`` for an
accuracy, ``min`` for a loss).

- **Checkpoints.** ``checkpoints/best.npz`` holds the epoch with the best value so far (a tie
  keeps the earlier epoch). With ``trainer.save_top_k=k > 1`` the k best epochs are also kept as
  ``checkpoints/best-epoch=NNN.npz`` (an epoch pushed out of the k best loses its file); 0 keeps
  no best checkpoint at all. ``trainer.checkpoint_every_epochs=n`` keeps ``epoch=NNN.npz`` every
  n epochs as well, never removed.
- **Early stopping.** With ``trainer.patience=p``, the run stops (status completed, the epoch
  it stopped at in results.json) once p epochs in a row have not improved on the best value by
  more than ``trainer.min_delta``. The test split is then evaluated with the weights of the
  last epoch, as a run that reached its last epoch would be; ``cnnlab eval`` evaluates any
  kept checkpoint (``best.npz`` among them).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from cnnlab.schema import TrainerConfig

# Each watched quantity, and what stands in for it in a run without a validation split.
MONITORS = {"val_acc": "train_acc", "val_loss": "train_loss"}


@dataclass(frozen=True)
class Monitor:
    """The quantity watched (``key``), its direction (``mode``: max or min), and early stopping
    (``patience`` epochs without an improvement larger than ``min_delta``; None: never stop)."""

    key: str
    mode: str
    min_delta: float = 0.0
    patience: int | None = None

    @classmethod
    def of(cls, trainer: TrainerConfig) -> Monitor:
        """The monitor a run's ``trainer`` settings describe (defaults for configs saved before
        these keys existed: val_acc, no early stopping)."""
        key = str(trainer.get("monitor", "val_acc"))
        mode = trainer.get("mode") or ("min" if key.endswith("_loss") else "max")
        patience = trainer.get("patience")
        return cls(key, str(mode), float(trainer.get("min_delta", 0.0)), patience)

    def value(self, epoch: dict[str, float | None]) -> float:
        """The watched value in an epoch's record (the training counterpart without a val
        split)."""
        value = epoch.get(self.key)
        return float(epoch[MONITORS[self.key]] if value is None else value)

    def better(self, value: float, than: float | None, margin: float = 0.0) -> bool:
        """Whether ``value`` beats ``than`` (None: nothing yet) by more than ``margin``."""
        if than is None:
            return True
        return value > than + margin if self.mode == "max" else value < than - margin

    def ranked(self, top: list[list[float]], value: float, epoch: int, k: int) -> list[list[float]]:
        """The k best ``[value, epoch]`` pairs once ``epoch`` is added, best first (an earlier
        epoch before a later one of the same value)."""
        sign = -1.0 if self.mode == "max" else 1.0
        return sorted([*top, [value, epoch]], key=lambda p: (sign * p[0], p[1]))[:k]
