"""The backend registry: what ``backend=`` and ``backends=`` mean, in one place.

A backend is a kernel set (see :mod:`cnnlab.kernels`): the same forward/backward pairs over
numpy arrays. ``naive`` and ``im2col`` are numpy; ``torch`` and ``cuda`` run PyTorch ops and
get their backward from autograd. Kernel sets are imported lazily so that choosing ``naive``
never imports torch.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable
from dataclasses import dataclass
from types import ModuleType
from typing import Any

from cnnlab.errors import BackendUnavailableError, UsageError


@dataclass(frozen=True)
class Backend:
    """One entry of the registry.

    Attributes:
        name: the option name (``backend=<name>``).
        summary: one line for ``--help`` and tables.
        framework: ``numpy`` or ``torch``.
        device: where the arrays live (``cpu`` or ``cuda``).
    """

    name: str
    summary: str
    framework: str
    device: str = "cpu"

    def availability(self) -> tuple[bool, str]:
        """Whether this backend can run here, and why not."""
        if self.device == "cuda":
            from cnnlab.kernels.torch import cuda_available

            return cuda_available()
        return True, ""

    def kernels(self) -> Any:
        """The kernel set: a module (numpy backends) or a ``TorchKernels`` instance."""
        self._require()
        return _LOADERS[self.framework](self)

    def model(self, net: Any, params: dict, buffers: dict) -> Any:
        """A layer tree with its weights on this backend: a ``NumpyNet`` or a ``TorchModel``,
        both with ``loss(x, y, train, rng, grads)``, ``get(name)`` and ``set(name, value)``.

        params and buffers are numpy arrays; numpy backends use copies, torch copies them in.
        """
        self._require()
        params = {k: v.copy() for k, v in params.items()}
        buffers = {k: v.copy() for k, v in buffers.items()}
        return _MODELS[self.framework](self, net, params, buffers)

    def _require(self) -> None:
        ok, reason = self.availability()
        if not ok:
            raise BackendUnavailableError(f"backend={self.name} cannot run here: {reason}")


def _numpy_kernels(backend: Backend) -> ModuleType:
    return importlib.import_module(f"cnnlab.kernels.{backend.name}")


def _torch_kernels(backend: Backend) -> Any:
    from cnnlab.kernels.torch import TorchKernels

    return TorchKernels(backend.device)


def _numpy_model(backend: Backend, net: Any, params: dict, buffers: dict) -> Any:
    from cnnlab.nn.numpy_net import NumpyNet

    return NumpyNet(net, _numpy_kernels(backend), params, buffers)


def _torch_model(backend: Backend, net: Any, params: dict, buffers: dict) -> Any:
    from cnnlab.nn.torch_net import TorchModel

    return TorchModel(net, params, buffers, backend.device)


_LOADERS: dict[str, Callable[[Backend], Any]] = {
    "numpy": _numpy_kernels,
    "torch": _torch_kernels,
}
_MODELS: dict[str, Callable[..., Any]] = {"numpy": _numpy_model, "torch": _torch_model}

BACKENDS: dict[str, Backend] = {
    b.name: b
    for b in (
        Backend("naive", "numpy loops over (n, f, i, j), written for reading", "numpy"),
        Backend("im2col", "vectorised numpy, conv as one matrix product", "numpy"),
        Backend("torch", "PyTorch ops on the CPU, backward by autograd", "torch", "cpu"),
        Backend("cuda", "PyTorch ops on a GPU, backward by autograd", "torch", "cuda"),
    )
}


def get_backend(name: str) -> Backend:
    """Look a backend up by name; an unknown name is a :class:`UsageError`."""
    try:
        return BACKENDS[name]
    except KeyError:
        raise UsageError(f"unknown backend '{name}'; choose from {', '.join(BACKENDS)}") from None


def resolve_backends(spec: Any) -> list[Backend]:
    """Turn a ``backends=`` value (``all``, a name, or a list of names) into backends.

    ``all`` means every registered backend; callers show the unavailable ones as skipped.
    """
    if isinstance(spec, str):
        names = list(BACKENDS) if spec == "all" else [spec]
    else:
        names = [str(n) for n in spec]
        if not names:
            raise UsageError("backends is empty; give a list such as [naive,im2col] or all")
        if "all" in names:
            names = list(BACKENDS)
    unknown = [n for n in names if n not in BACKENDS]
    if unknown:
        raise UsageError(
            f"backends: unknown backend {', '.join(repr(n) for n in unknown)}; "
            f"choose from {', '.join(BACKENDS)} or all"
        )
    return [BACKENDS[n] for n in dict.fromkeys(names)]
