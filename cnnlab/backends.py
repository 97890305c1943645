"""The backend registry: what ``backend=`` and ``backends=`` mean, in one place.

A backend is a kernel set (see :mod:`cnnlab.kernels`): the same forward/backward pairs over
numpy arrays. ``naive`` and ``im2col`` are numpy; ``torch`` and ``cuda`` run PyTorch ops and
get their backward from autograd. Kernel sets are imported lazily so that choosing ``naive``
never imports torch.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, cast

from cnnlab.errors import BackendUnavailableError, UsageError

if TYPE_CHECKING:
    import numpy as np

    from cnnlab.kernels.protocol import KernelSet
    from cnnlab.nn.numpy_net import NumpyNet
    from cnnlab.nn.torch_net import TorchModel
    from cnnlab.ops.tree import Node
    from cnnlab.schema import TrainerConfig, UserConfig


@dataclass(frozen=True)
class UserSource:
    """Where the ``user`` backend's layers come from (the ``user`` config node).

    Attributes:
        file: a Python file of layer functions or classes; or
        module: an importable module name.
        timeout_s: the longest one call into the user's code may take.
    """

    file: str | None = None
    module: str | None = None
    timeout_s: float = 60.0

    @classmethod
    def of(cls, node: UserConfig) -> UserSource | None:
        """The source a ``user`` config node names; None when it names none."""
        if not node.file and not node.module:
            return None
        return cls(node.file or None, node.module or None, float(node.timeout_s))

    def describe(self) -> str:
        return f"user.file={self.file}" if self.file else f"user.module={self.module}"


@dataclass(frozen=True)
class BackendOptions:
    """How a backend runs, passed to its kernel set and engine (``trainer.threads``,
    ``trainer.winograd``, ``trainer.precision``, ``trainer.channels_last``, ``trainer.compile``,
    ``trainer.rng``, ``user.*``).

    Attributes:
        threads: numpy's BLAS and torch's thread count, and im2col's conv workers; None
            leaves the libraries' defaults (im2col: one worker per CPU).
        winograd: im2col may compute 3x3 stride-1 convs with Winograd's algorithm.
        user: the ``user`` backend's layer file or module; None when none is given.
        precision: a :class:`~cnnlab.precision.Precision` name (``32-true``, ...).
        channels_last: torch keeps images and conv weights in NHWC memory order.
        compile: torch compiles the training step (``torch.compile``).
        rng: ``numpy`` (dropout masks, data order and augmentation drawn by numpy, the same on
            every backend) or ``device`` (drawn by torch on the backend's device).
    """

    threads: int | None = None
    winograd: bool = True
    user: UserSource | None = None
    precision: str = "32-true"
    channels_last: bool = False
    compile: bool = False
    rng: str = "numpy"

    @classmethod
    def of(
        cls, trainer: TrainerConfig, user: UserConfig | None = None, threads: int | None = None
    ) -> BackendOptions:
        """The options a config's ``trainer`` and ``user`` nodes give. threads: replaces
        ``trainer.threads`` (a data-parallel process's share of the cores); None keeps it."""
        from cnnlab.precision import Precision

        return cls(
            threads=threads if threads is not None else trainer.threads,
            winograd=bool(trainer.winograd),
            user=UserSource.of(user) if user is not None else None,
            precision=Precision(str(trainer.precision)).value,
            channels_last=bool(trainer.channels_last),
            compile=bool(trainer.compile),
            rng=str(trainer.rng),
        )

    def unsupported(self, backend: Backend) -> str | None:
        """Why ``backend`` cannot run with these options (one line), or None."""
        from cnnlab.precision import Precision

        why = Precision(self.precision).unsupported(backend.framework, backend.device)
        if why is None and backend.framework != "torch":
            torch_only = {
                "trainer.channels_last=true": self.channels_last,
                "trainer.compile=true": self.compile,
                "trainer.rng=device": self.rng == "device",
            }
            named = [name for name, on in torch_only.items() if on]
            if named:
                verb = "needs" if len(named) == 1 else "need"
                why = f"{', '.join(named)} {verb} a torch backend (backend=torch or cuda)"
        return why

    def unusable(self, backend: Backend) -> str | None:
        """Why ``backend`` cannot run on this machine (``cuda`` without a GPU) or with these
        options (:meth:`unsupported`), or None: the reason of a skipped bench or gradcheck
        row."""
        ok, reason = backend.availability()
        return reason if not ok else self.unsupported(backend)


DEFAULT_OPTIONS = BackendOptions()


@dataclass(frozen=True)
class Backend:
    """One entry of the registry.

    Attributes:
        name: the option name (``backend=<name>``).
        summary: one line for ``--help`` and tables.
        framework: ``numpy`` or ``torch``.
        make: builds the kernel set from the options (imports it on first use, so that
            choosing ``naive`` never imports torch).
        device: where the arrays live (``cpu`` or ``cuda``).
    """

    name: str
    summary: str
    framework: str
    make: Callable[[Backend, BackendOptions], KernelSet]
    device: str = "cpu"

    def availability(self) -> tuple[bool, str]:
        """Whether this backend can run here, and why not."""
        if self.device == "cuda":
            from cnnlab.kernels.torch import cuda_available

            return cuda_available()
        return True, ""

    def require(self) -> Backend:
        """This backend, if it can run here; a one-line BackendUnavailableError if not."""
        ok, reason = self.availability()
        if not ok:
            raise BackendUnavailableError(f"backend={self.name} cannot run here: {reason}")
        return self

    def prepare(self, options: BackendOptions = DEFAULT_OPTIONS) -> None:
        """Check that this backend can run here (:meth:`require`) and give numpy's BLAS and
        torch the thread count of ``options``: the one place a kernel set, a model or an
        engine of this backend has its threads set."""
        from cnnlab.runtime import use_threads

        self.require()
        use_threads(options.threads)

    def kernels(self, options: BackendOptions = DEFAULT_OPTIONS) -> KernelSet:
        """The kernel set, made with ``options``."""
        self.prepare(options)
        return self.make(self, options)

    def model(
        self,
        net: Node,
        params: dict[str, np.ndarray],
        buffers: dict[str, np.ndarray],
        options: BackendOptions = DEFAULT_OPTIONS,
    ) -> NumpyNet | TorchModel:
        """A layer tree with its weights on this backend: a ``NumpyNet`` or a ``TorchModel``,
        both with ``loss(x, y, train, rng, grads)``, ``get(name)`` and ``set(name, value)``.

        params and buffers are numpy arrays; numpy backends use copies, torch copies them in.
        """
        params = {k: v.copy() for k, v in params.items()}
        buffers = {k: v.copy() for k, v in buffers.items()}
        if self.framework == "numpy":
            from cnnlab.nn.numpy_net import NumpyNet

            kernels = self.kernels(options)
            self._check_provides(kernels, net)
            return NumpyNet(net, kernels, params, buffers)
        from cnnlab.nn.torch_net import TorchModel

        self.prepare(options)
        return TorchModel(net, params, buffers, self.device, options)

    def _check_provides(self, kernels: KernelSet, net: Node) -> None:
        """A kernel set that may lack layers (a user's file) must have the net's, and the
        loss: else one line naming what is missing."""
        lacks = getattr(kernels, "missing", None)
        if lacks is None:
            return
        from cnnlab.errors import KernelMissingError
        from cnnlab.ops.registry import kernels_in

        missing: list[str] = []
        for kernel in sorted(kernels_in(net) | {"softmax_cross_entropy"}):
            try:
                missing += lacks(kernel)
            except KernelMissingError as exc:
                raise UsageError(f"backend={self.name}: the model's {kernel}: {exc}") from None
        if missing:
            raise UsageError(
                f"backend={self.name}: the model needs {', '.join(missing)}, which {kernels} "
                "does not define"
            )


def _naive(backend: Backend, options: BackendOptions) -> KernelSet:
    from cnnlab.kernels.naive import Naive

    return Naive()


def _im2col(backend: Backend, options: BackendOptions) -> KernelSet:
    from cnnlab.kernels.im2col import Im2col

    return Im2col(options.winograd, options.threads)


def _torch(backend: Backend, options: BackendOptions) -> KernelSet:
    from cnnlab.kernels.torch import TorchKernels

    # Its pairs are made from the torch ops at import, out of a type checker's sight;
    # tests/ops/test_registry.py checks each against the protocol.
    return cast("KernelSet", TorchKernels(backend.device, options.precision))


def _user(backend: Backend, options: BackendOptions) -> KernelSet:
    if options.user is None:
        raise UsageError(
            "backend user: give your layers, user.file=path/to/layers.py or user.module=pkg.layers"
        )
    from cnnlab.kernels.user import UserKernels

    return cast("KernelSet", UserKernels(options.user))


BACKENDS: dict[str, Backend] = {
    b.name: b
    for b in (
        Backend("naive", "numpy loops over (n, f, i, j), written for reading", "numpy", _naive),
        Backend(
            "im2col",
            "vectorised numpy, conv as matrix products over batch chunks",
            "numpy",
            _im2col,
        ),
        Backend("torch", "PyTorch ops on the CPU, backward by autograd", "torch", _torch, "cpu"),
        Backend("cuda", "PyTorch ops on a GPU, backward by autograd", "torch", _torch, "cuda"),
        Backend(
            "user",
            "your own layers (user.file=), CS231n or EECS 498 style, in a worker process",
            "numpy",
            _user,
        ),
    )
}
# What backends=all means: the built-in backends, and user's layers when they are given.
BUILT_IN = tuple(name for name in BACKENDS if name != "user")


def get_backend(name: str) -> Backend:
    """Look a backend up by name; an unknown name is a ValueError naming the backends."""
    try:
        return BACKENDS[name]
    except KeyError:
        raise ValueError(f"unknown backend '{name}'; choose from {', '.join(BACKENDS)}") from None


def resolve_backends(spec: str | Sequence[str], user: bool = False) -> list[Backend]:
    """Turn a ``backends=`` value (``all``, a name, or a list of names) into backends.

    ``all`` means every built-in backend, and ``user`` too when ``user`` is True (a layer file
    was given); callers show the unavailable ones as skipped.
    """
    every = [*BUILT_IN, "user"] if user else list(BUILT_IN)
    if isinstance(spec, str):
        names = every if spec == "all" else [spec]
    else:
        names = [str(n) for n in spec]
        if not names:
            raise UsageError("backends is empty; give a list such as [naive,im2col] or all")
        if "all" in names:
            names = every
    unknown = [n for n in names if n not in BACKENDS]
    if unknown:
        raise UsageError(
            f"backends: unknown backend {', '.join(repr(n) for n in unknown)}; "
            f"choose from {', '.join(BACKENDS)} or all"
        )
    return [BACKENDS[n] for n in dict.fromkeys(names)]
