"""The ONNX file of an exported module (``torch.onnx.export``), and onnxruntime running it.

Needs the ``onnx`` extra (``pip install 'cnnlab[onnx]'``): onnx, onnxscript (torch's exporter
writes the graph with it) and onnxruntime (to check the file's logits).
"""

from __future__ import annotations

import importlib.util
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from cnnlab.errors import RunError

if TYPE_CHECKING:
    import torch
    from torch import nn

ONNX_FILE = "model.onnx"
EXTRA = ("onnx", "onnxscript", "onnxruntime")


def missing() -> list[str]:
    """The packages of the ``onnx`` extra that are not installed here."""
    return [name for name in EXTRA if importlib.util.find_spec(name) is None]


def export(module: nn.Module, x: torch.Tensor, path: Path) -> None:
    """Write ``module`` as ONNX: input ``x`` (N, C, H, W), output ``logits`` (N, K), N free.

    The graph is float32 whatever the module's dtype: onnxruntime's CPU convs take float32
    only. torch's exporter is kept quiet (its progress lines and warnings on plugins that are
    not installed); a failure is one RunError line.
    """
    import copy
    import logging
    import warnings

    import torch

    float_module = copy.deepcopy(module).float().eval()
    sample = x.float()
    if len(sample) < 2:  # torch.export fixes a batch axis of size 0 or 1 as a constant
        sample = torch.cat([sample, sample])
    loggers = [logging.getLogger(name) for name in ("torch.onnx", "onnxscript", "torch.export")]
    levels = [logger.level for logger in loggers]
    try:
        for logger in loggers:
            logger.setLevel(logging.ERROR)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            torch.onnx.export(
                float_module,
                (sample,),
                str(path),
                input_names=["x"],
                output_names=["logits"],
                dynamic_shapes=({0: torch.export.Dim("batch")},),
                dynamo=True,
                external_data=False,
                verbose=False,
            )
    except Exception as exc:  # the exporter raises many types; say which and why in one line
        text = str(exc).strip().splitlines()
        why = f"{type(exc).__name__}: {text[0]}" if text else type(exc).__name__
        raise RunError(f"{path.name}: torch.onnx.export failed ({why})") from exc
    finally:
        for logger, level in zip(loggers, levels, strict=True):
            logger.setLevel(level)


def run(path: Path, x: np.ndarray) -> np.ndarray:
    """The logits (N, K) float32 of the ONNX file at ``path`` on ``x`` (N, C, H, W), by
    onnxruntime on the CPU."""
    import onnxruntime

    options = onnxruntime.SessionOptions()
    options.log_severity_level = 3  # errors only
    session = onnxruntime.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
    return session.run(["logits"], {"x": np.ascontiguousarray(x, dtype=np.float32)})[0]
