"""plot_history: one PNG from the epoch records of metrics.jsonl."""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image

from cnnlab.train.plot import plot_history

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


def epoch_records(n, val=True):
    records = []
    for epoch in range(1, n + 1):
        record = {
            "kind": "epoch",
            "epoch": epoch,
            "train_loss": 2.3 / epoch,
            "train_acc": 0.1 * epoch,
        }
        if val:
            record |= {"val_loss": 2.4 / epoch, "val_acc": 0.09 * epoch}
        records.append(record)
    return records


@pytest.mark.parametrize(
    "records",
    [
        epoch_records(5),
        epoch_records(5, val=False),
        # val every other epoch, written as None, with an evaluation record in between
        [
            r | ({"val_loss": None, "val_acc": None} if r["epoch"] % 2 else {})
            for r in epoch_records(4)
        ]
        + [{"kind": "eval", "split": "test", "loss": 0.5, "acc": 0.8}],
        epoch_records(1),
        [],
    ],
    ids=["with-val", "without-val", "val-sometimes", "one-epoch", "empty"],
)
def test_writes_a_png(tmp_path, records):
    path = tmp_path / "plots" / "history.png"
    plot_history(records, path)
    assert path.read_bytes()[:8] == PNG_MAGIC
    with Image.open(path) as image:
        width, height = image.size
        assert width > height > 100
        assert np.asarray(image.convert("L")).std() > 0  # something was drawn


def test_does_not_touch_pyplot(tmp_path):
    import sys

    plot_history(epoch_records(3), tmp_path / "h.png")
    if "matplotlib.pyplot" in sys.modules:
        import matplotlib.pyplot as plt

        assert plt.get_fignums() == []
