"""The confusion matrix as plain text, the form the run's log file takes it in."""

from __future__ import annotations

import numpy as np

from cnnlab.train.metrics import Evaluation, confusion_text

CLASSES = ["circle", "square", "a-long-class-name"]


def toy() -> Evaluation:
    # Rows: true class; columns: prediction. The last class has no samples (accuracy unknown).
    confusion = np.array([[5, 1, 0], [2, 3, 0], [0, 0, 0]], dtype=np.int64)
    return Evaluation(loss=0.5, acc=8 / 11, confusion=confusion)


def test_confusion_text_labels_rows_and_columns_with_the_classes():
    text = confusion_text(toy(), CLASSES, "Test confusion matrix (toy)")
    assert text.splitlines() == [
        "Test confusion matrix (toy)",
        "true \\ predicted   circle  square  a-long-class-name  accuracy",
        "circle                  5       1                  0     83.3%",
        "square                  2       3                  0     60.0%",
        "a-long-class-name       0       0                  0         –",
    ]


def test_confusion_text_is_plain():
    text = confusion_text(toy(), CLASSES, "title")
    assert "\x1b" not in text and "[b]" not in text  # no escape codes, no rich markup
    assert all(line == line.rstrip() for line in text.splitlines())
    assert not text.endswith("\n")  # one log record: the logger adds the line end


def test_confusion_text_reads_back_the_counts():
    ev = Evaluation(loss=1.0, acc=0.0, confusion=np.arange(16).reshape(4, 4))
    classes = [f"class{i}" for i in range(4)]
    rows = confusion_text(ev, classes, "title").splitlines()[2:]
    counts = [[int(cell) for cell in row.split()[1:-1]] for row in rows]
    assert counts == ev.confusion.tolist()
    assert [row.split()[0] for row in rows] == classes
