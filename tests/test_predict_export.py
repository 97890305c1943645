"""``cnnlab predict`` and ``cnnlab export`` as a user runs them: a LeNet trained one short epoch
on the real MNIST calls the first test image (a 7) a 7 from a PNG of it, and its export as a
torch module and as ONNX gives cnnlab's logits; mistakes are one line and an exit code."""

from __future__ import annotations

import importlib.util
import json
import subprocess
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image as PILImage
from typer.testing import CliRunner

from cnnlab.cli import app
from tests.cli import run_cnnlab

MNIST = Path(__file__).resolve().parents[2] / "shared" / "datasets" / "mnist"

needs_mnist = pytest.mark.skipif(not MNIST.is_dir(), reason=f"real MNIST not in {MNIST}")

# One short epoch that already calls most test digits right (about 90% on 4000 test images).
LENET = (
    "model=lenet",
    "data=mnist",
    f"data.root={MNIST}",
    "data.limit=4000",
    "trainer.epochs=1",
    "trainer.batch_size=32",
    "optim.warmup_steps=10",
)


def one_line(result: subprocess.CompletedProcess, code: int, *words: str) -> None:
    """The run exited with ``code`` and one line on stderr, holding ``words``."""
    assert result.returncode == code, result.stdout + result.stderr
    lines = [ln for ln in result.stderr.splitlines() if ln.strip()]
    assert len(lines) == 1, result.stderr
    for word in words:
        assert word in lines[0], lines[0]


@pytest.fixture(scope="session")
def lenet_run(tmp_path_factory: pytest.TempPathFactory, worker_id: str) -> Path:
    """The LeNet run, trained once for all of pytest-xdist's workers (a lock in the folder
    they share) or once in a session without them."""
    from filelock import FileLock  # torch's own dependency

    base = tmp_path_factory.getbasetemp()
    shared = base if worker_id == "master" else base.parent
    run = shared / "lenet-mnist" / "run"
    with FileLock(str(shared / "lenet-mnist.lock")):
        if not (run / "results.json").is_file():
            run.parent.mkdir(exist_ok=True)
            result = run_cnnlab("train", *LENET, "hydra.run.dir=run", cwd=run.parent)
            assert result.returncode == 0, result.stdout + result.stderr
    return run


@pytest.fixture(scope="module")
def digits(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """seven.png: the first MNIST test image's own uint8 pixels; two.jpg: the second (a 2),
    as a 3x larger RGB JPEG."""
    from cnnlab.data import mnist

    from .data.conftest import data_node

    folder = tmp_path_factory.mktemp("digits")
    raw = mnist.read(data_node("mnist", MNIST), 0)
    assert raw.y_test[:2].tolist() == [7, 2]
    PILImage.fromarray(raw.x_test[0, 0]).save(folder / "seven.png")
    PILImage.fromarray(raw.x_test[1, 0]).convert("RGB").resize((84, 84)).save(folder / "two.jpg")
    return folder


def cnnlab(*args: str):
    return CliRunner().invoke(app, list(args))


@needs_mnist
def test_predict_calls_a_png_of_the_first_test_image_a_7(lenet_run, digits):
    result = cnnlab("predict", str(lenet_run), str(digits / "seven.png"), "-k", "3")
    assert result.exit_code == 0, result.output
    rows = [ln for ln in result.stdout.splitlines() if ln.startswith("│")]
    assert len(rows) == 3
    assert [cell.strip() for cell in rows[0].split("│")][1:3] == ["1", "7"]


@needs_mnist
def test_predict_json_for_a_folder_on_another_backend(lenet_run, digits):
    result = cnnlab("predict", str(lenet_run), str(digits), "--json", "-k", "2", "backend=torch")
    assert result.exit_code == 0, result.output
    report = json.loads(result.stdout)
    assert report["backend"] == "torch" and report["model"] == "lenet"
    assert report["classes"] == [str(d) for d in range(10)]
    seven, two = report["images"]  # a folder's images in name order
    assert Path(seven["file"]).name == "seven.png" and seven["top"][0]["class"] == "7"
    assert two["size"] == [84, 84] and two["mode"] == "RGB" and two["top"][0]["class"] == "2"
    assert len(seven["top"]) == 2
    assert sum(seven["probabilities"]) == pytest.approx(1.0)


@needs_mnist
def test_predict_needs_no_data_files_and_older_checkpoints_read_them(lenet_run, digits, tmp_path):
    from cnnlab.data import Inputs
    from cnnlab.train import checkpoint

    state, meta = checkpoint.load(lenet_run / "checkpoints" / "last.npz")
    inputs = Inputs.from_record(meta["inputs"])
    assert inputs.name == "mnist" and inputs.shape == (1, 28, 28)
    assert inputs.classes == [str(d) for d in range(10)]
    assert Inputs.from_record(inputs.record()).record() == meta["inputs"]
    image = str(digits / "seven.png")
    shown = cnnlab("predict", str(lenet_run), image, "--json")
    assert shown.exit_code == 0, shown.output
    # The checkpoint's own statistics: a data.root with nothing in it is never read.
    gone = cnnlab("predict", str(lenet_run), image, "--json", f"data.root={tmp_path}")
    assert gone.exit_code == 0, gone.output
    probabilities = json.loads(shown.stdout)["images"][0]["probabilities"]
    assert json.loads(gone.stdout)["images"][0]["probabilities"] == probabilities
    # A checkpoint without the record reads its data set, to the same probabilities.
    older = tmp_path / "older.npz"
    checkpoint.save(older, state, {k: v for k, v in meta.items() if k not in ("inputs", "format")})
    again = cnnlab("predict", str(older), image, "--json")
    assert again.exit_code == 0, again.output
    assert json.loads(again.stdout)["images"][0]["probabilities"] == probabilities
    moved = cnnlab("predict", str(older), image, f"data.root={tmp_path}")
    assert moved.exit_code == 1 and "data.root=<folder> if they moved" in moved.output
    broken = tmp_path / "broken.npz"
    record = {**meta["inputs"], "mean": [0.1, 0.2]}  # two channel means for one channel
    checkpoint.save(
        broken, state, {k: v for k, v in meta.items() if k != "format"} | {"inputs": record}
    )
    refused = cnnlab("predict", str(broken), image)
    assert refused.exit_code == 1 and "its inputs record is malformed" in refused.output


@needs_mnist
def test_export_gives_a_torch_module_and_onnx_with_cnnlabs_logits(lenet_run, digits, tmp_path):
    onnx = all(
        importlib.util.find_spec(m) is not None for m in ("onnx", "onnxscript", "onnxruntime")
    )
    out = tmp_path / "export"
    result = cnnlab("export", str(lenet_run), "--out", str(out))
    assert result.exit_code == 0, result.output
    report = json.loads((out / "export.json").read_text())
    assert report["checked_images"] == 500  # trainer.eval_batch_size
    assert report["max_abs_diff"]["torch"] <= 1e-5
    assert "model.py + model.pt: max |logit difference|" in result.stdout
    if onnx:
        assert report["max_abs_diff"]["onnx"] <= 1e-5
        assert "model.onnx (onnxruntime): max |logit difference|" in result.stdout
    else:
        assert report["max_abs_diff"]["onnx"] is None and "not written" in result.stdout
    # The module, with model.py's own normalisation, calls the PNG a 7 too.
    from cnnlab.export.module import load_exported

    net = load_exported(out)
    constants = {}
    exec((out / "model.py").read_text().split("# -- the model")[1].split("\n", 1)[1], constants)
    pixels = np.asarray(PILImage.open(digits / "seven.png"), dtype=np.float32) / 255
    mean, std = constants["MEAN"][0], constants["STD"][0]
    x = torch.from_numpy((pixels - mean) / std)[None, None]
    with torch.no_grad():
        assert net(x).argmax().item() == 7


def test_a_missing_image_is_one_line(tmp_path):
    one_line(
        run_cnnlab("predict", str(tmp_path), "nope.png", cwd=tmp_path),
        2,
        "cnnlab predict: nope.png: no such file or folder",
    )


def test_a_folder_that_is_no_run_is_one_line(tmp_path):
    PILImage.new("L", (28, 28)).save(tmp_path / "a.png")
    one_line(
        run_cnnlab("predict", str(tmp_path), "a.png", cwd=tmp_path),
        2,
        "cnnlab predict: checkpoint: no checkpoint at",
        "checkpoints/last.npz",
    )
    result = cnnlab("export", str(tmp_path / "a.png"))
    assert result.exit_code == 1 and "not a cnnlab checkpoint" in result.output


@needs_mnist
def test_an_unreadable_image_and_a_bad_override_are_one_line(lenet_run, tmp_path):
    (tmp_path / "notes.png").write_text("not an image")
    one_line(
        run_cnnlab("predict", str(lenet_run), "notes.png", cwd=tmp_path),
        1,
        "notes.png: not an image file Pillow can read",
    )
    one_line(
        run_cnnlab("predict", str(lenet_run), "notes.png", "backend=foo", cwd=tmp_path),
        2,
        "backend=foo",
    )


@needs_mnist
def test_export_without_the_onnx_extra_and_a_difference_past_atol(lenet_run, monkeypatch):
    from cnnlab.export import to_onnx

    monkeypatch.setattr(to_onnx, "missing", lambda: ["onnxruntime"])
    insisted = cnnlab("export", str(lenet_run), "--onnx")
    assert insisted.exit_code == 2 and "--onnx needs onnxruntime" in insisted.output
    # best.npz exports beside last.npz's export; no ONNX where the extra is missing; a
    # tolerance of 0 against im2col's float32 rounding fails, the files kept.
    strict = cnnlab("export", str(lenet_run / "checkpoints" / "best.npz"), "--atol", "0")
    assert strict.exit_code == 1
    assert "exported logits differ from cnnlab's on im2col: torch by" in strict.output
    folder = lenet_run / "export-best"
    assert sorted(p.name for p in folder.iterdir()) == ["export.json", "model.pt", "model.py"]
    assert json.loads((folder / "export.json").read_text())["onnx_missing"] == ["onnxruntime"]
