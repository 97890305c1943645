"""The layer registry: every registered kind is complete on every backend, and the choices,
gradient checks and bench cases all come from it."""

from __future__ import annotations

import inspect

import numpy as np
import pytest

from cnnlab.backends import BACKENDS, BUILT_IN
from cnnlab.kernels.protocol import KernelSet
from cnnlab.ops import checked, kind_of, kinds, layer_cases, layer_choices
from cnnlab.ops.registry import LayerKind, register
from cnnlab.ops.tree import Branches, Chain, Layer

USABLE = [BACKENDS[n] for n in BUILT_IN if BACKENDS[n].availability()[0]]
KINDS = list(kinds().values())


def test_the_registry_holds_every_family():
    assert {"conv", "maxpool", "avgpool", "batchnorm", "residual", "sequential"} <= set(kinds())
    for kind in KINDS:
        if kind.layer is not None:
            assert kind_of(kind.layer.__new__(kind.layer)) is kind


@pytest.mark.parametrize("backend", USABLE, ids=lambda b: b.name)
@pytest.mark.parametrize("kind", KINDS, ids=lambda k: k.name)
def test_every_kind_has_its_kernels_on_every_backend(backend, kind):
    """A kernel missing on a backend fails here, not in a user's run: each function the kind
    names is that backend's own (not the protocol's empty declaration)."""
    kernels = backend.kernels()
    for name in kind.functions:
        own = getattr(type(kernels), name, None)
        assert own is not None, f"{backend.name} lacks {name}"
        assert own is not getattr(KernelSet, name, None), f"{backend.name} lacks {name}"
        assert callable(getattr(kernels, name))


@pytest.mark.parametrize("kind", KINDS, ids=lambda k: k.name)
def test_every_kind_with_a_kernel_has_gradient_checks_and_a_bench_case(kind):
    if kind.kernel is None:
        assert kind.layer is not None and issubclass(kind.layer, Chain)
        return
    assert kind.checks, f"{kind.name} has no gradient-check case"
    assert kind.bench, f"{kind.name} has no default bench case"
    assert kind.name in layer_choices()
    assert {c.layer for c in layer_cases(kind.name)} == {kind.name}


@pytest.mark.parametrize("kind", KINDS, ids=lambda k: k.name)
def test_the_protocol_declares_every_registered_kernel(kind):
    for name in kind.functions:
        assert hasattr(KernelSet, name), f"add {name} to the KernelSet protocol"


@pytest.mark.parametrize("kind", KINDS, ids=lambda k: k.name)
def test_bindings_name_real_arguments_of_the_numpy_kernels(kind):
    """The binding's parameter, buffer and option names are arguments of the forward kernel,
    and its backward options arguments of the backward."""
    if kind.kernel is None or not kind.pair:
        return
    forward = inspect.signature(getattr(BACKENDS["naive"].kernels(), kind.forward))
    bound = {*kind.params, *kind.buffers, *kind.options, *(["train"] if kind.train else [])}
    bound |= {"mask"} if kind.mask else set()
    assert bound <= set(forward.parameters), forward
    assert list(forward.parameters)[: len(kind.inputs)] == list(kind.inputs)
    backward = inspect.signature(getattr(BACKENDS["naive"].kernels(), kind.backward))
    assert {arg for arg, _ in kind.backward_options} <= set(backward.parameters)
    if kind.skips_dx:
        assert "need_dx" in backward.parameters


def test_layer_choices_are_registered_in_hydra_and_complete(tmp_path):
    from cnnlab.config import compose, group_options

    assert group_options("layer") == sorted(["all", *(k.name for k in checked())])
    for name in layer_choices():
        assert compose("gradcheck", [f"layer={name}"]).layer.name == name


def test_a_kind_registers_once():
    with pytest.raises(ValueError, match="twice"):
        register(LayerKind("conv", None, "conv2d"))


def test_nodes_are_layers_chains_or_branches():
    for kind in KINDS:
        if kind.layer is not None:
            assert issubclass(kind.layer, Layer | Chain | Branches)


def test_every_case_draws_the_same_arrays_from_the_same_seed():
    for case in layer_cases():
        a, b = case.make(np.random.default_rng(0)), case.make(np.random.default_rng(0))
        assert a.keys() == b.keys()
        for k in a:
            np.testing.assert_array_equal(a[k], b[k])


def _shown(f) -> str:
    """A signature as names and defaults: ``(x, w, b, stride=1, pad=0)``."""
    params = [p for p in inspect.signature(f).parameters.values() if p.name != "self"]
    return ", ".join(p.name if p.default is p.empty else f"{p.name}={p.default!r}" for p in params)


@pytest.mark.parametrize("backend", USABLE, ids=lambda b: b.name)
@pytest.mark.parametrize(
    "function", sorted({f for k in KINDS for f in k.functions}), ids=lambda f: f
)
def test_every_backend_has_the_protocols_signatures(backend, function):
    kernels = backend.kernels()
    assert _shown(getattr(kernels, function)) == _shown(getattr(KernelSet, function))


@pytest.mark.parametrize("kind", [k for k in KINDS if k.kernel and k.pair], ids=lambda k: k.name)
def test_the_torch_op_differentiates_what_the_registration_returns(kind):
    """The torch kernel set makes its pairs from the ops' own marks; they must say what the
    registration says."""
    from cnnlab.kernels.torch.ops import PAIRED

    op = PAIRED.get(kind.kernel)
    assert op is not None, f"mark ops.{kind.kernel} with @paired"
    assert op.wrt == kind.grads
    assert op.updates == kind.buffers
    assert op.optional_dx == kind.skips_dx
