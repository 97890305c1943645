"""Evaluation metrics: loss, accuracy, per-class accuracy and the confusion matrix."""

from __future__ import annotations

from dataclasses import dataclass, field
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
        pred: (N,) the predicted class of each row, in the split's order; None where the
            rows were evaluated elsewhere (the shards of a data-parallel run).
    """

    loss: float
    acc: float
    confusion: np.ndarray
    pred: np.ndarray | None = field(default=None, compare=False)

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
            float("nan"),
            float("nan"),
            np.zeros((num_classes, num_classes), np.int64),
            np.zeros(0, np.int64),
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
        pred=pred,
    )


# The header of the first column, which names each row's true class.
CORNER = "true \\ predicted"


def _accuracy(acc: float) -> str:
    return "–" if np.isnan(acc) else f"{acc:.1%}"


def confusion_table(ev: Evaluation, classes: list[str], title: str) -> Any:
    """A rich table: the confusion matrix with each class's accuracy as the last column."""
    from rich.table import Table

    # "default" justification: the title is not padded with spaces to the table's width.
    table = Table(title=title, title_justify="default")
    table.add_column(CORNER, justify="left")
    short = [c[:8] for c in classes]
    for name in short:
        table.add_column(name, justify="right")
    table.add_column("accuracy", justify="right")
    for i, row in enumerate(ev.confusion):
        cells = [f"[b]{n}[/b]" if j == i else str(n) for j, n in enumerate(row)]
        table.add_row(classes[i], *cells, _accuracy(ev.per_class[i]))
    return table


def confusion_text(ev: Evaluation, classes: list[str], title: str) -> str:
    """The confusion matrix as plain text, for a log file: the title, then a header of the
    predicted classes and a row per true class with its counts and its accuracy.

    No markup and no escape codes; full class names; counts right-aligned under their class,
    two spaces between columns, no trailing spaces.
    """
    header = [CORNER, *classes, "accuracy"]
    rows = [
        [name, *(str(n) for n in counts), _accuracy(acc)]
        for name, counts, acc in zip(classes, ev.confusion, ev.per_class, strict=True)
    ]
    table = [header, *rows]
    widths = [max(len(cell) for cell in column) for column in zip(*table, strict=True)]
    return "\n".join([title, *(_text_row(row, widths) for row in table)])


def _text_row(cells: list[str], widths: list[int]) -> str:
    """One row: the first cell (the class name) left-aligned, the others right-aligned."""
    first, *rest = cells
    aligned = [c.rjust(w) for c, w in zip(rest, widths[1:], strict=True)]
    return "  ".join([first.ljust(widths[0]), *aligned])
