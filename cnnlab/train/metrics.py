"""Evaluation metrics: loss, accuracy, per-class accuracy and the confusion matrix."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from cnnlab.kernels.common.loss import softmax_cross_entropy


@dataclass(frozen=True)
class Evaluation:
    """The result of running a model over one split.

    Attributes:
        loss: mean softmax cross-entropy.
        acc: fraction correct.
        confusion: (K, K) counts, rows the true class, columns the prediction.
    """

    loss: float
    acc: float
    confusion: np.ndarray

    @property
    def per_class(self) -> np.ndarray:
        """(K,) accuracy of each true class (nan for a class with no samples)."""
        totals = self.confusion.sum(axis=1)
        with np.errstate(invalid="ignore", divide="ignore"):
            return np.diag(self.confusion) / totals


def confusion_matrix(y: np.ndarray, pred: np.ndarray, num_classes: int) -> np.ndarray:
    """(K, K) int64 counts of (true, predicted) pairs."""
    flat = np.bincount(y * num_classes + pred, minlength=num_classes * num_classes)
    return flat.reshape(num_classes, num_classes)


def evaluate(
    engine: Any, x: np.ndarray, y: np.ndarray, batch_size: int, num_classes: int
) -> Evaluation:
    """Eval-mode predictions over x: (N, C, H, W) in batches; empty splits give nan."""
    if len(y) == 0:
        return Evaluation(
            float("nan"), float("nan"), np.zeros((num_classes, num_classes), np.int64)
        )
    loss_sum, preds = 0.0, []
    for start in range(0, len(y), batch_size):
        logits = engine.predict(x[start : start + batch_size])
        yb = y[start : start + batch_size]
        # float64: a float32 log-sum-exp over many batches drifts in the last digits.
        loss, _ = softmax_cross_entropy(logits.astype(np.float64), yb)
        loss_sum += loss * len(yb)
        preds.append(logits.argmax(axis=1))
    pred = np.concatenate(preds)
    return Evaluation(
        loss=loss_sum / len(y),
        acc=float(np.mean(pred == y)),
        confusion=confusion_matrix(y, pred, num_classes),
    )


def confusion_table(ev: Evaluation, classes: list[str], title: str) -> Any:
    """A rich table: the confusion matrix with each class's accuracy as the last column."""
    from rich.table import Table

    table = Table(title=title, title_justify="left")
    table.add_column("true \\ predicted", justify="left")
    short = [c[:8] for c in classes]
    for name in short:
        table.add_column(name, justify="right")
    table.add_column("accuracy", justify="right")
    for i, row in enumerate(ev.confusion):
        cells = [f"[b]{n}[/b]" if j == i else str(n) for j, n in enumerate(row)]
        acc = ev.per_class[i]
        table.add_row(classes[i], *cells, "–" if np.isnan(acc) else f"{acc:.1%}")
    return table
