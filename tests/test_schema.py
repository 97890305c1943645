"""The schemas' declared ranges and choices: what they refuse, and that their defaults pass."""

import dataclasses
import math
import re

import numpy as np
import pytest
from omegaconf import OmegaConf
from omegaconf.errors import ValidationError

from cnnlab.backends import BACKENDS, BackendOptions
from cnnlab.config import compose, group_options
from cnnlab.errors import UsageError
from cnnlab.models import MODELS
from cnnlab.ops import layer_choices
from cnnlab.ops.norm import NORMS
from cnnlab.precision import Precision
from cnnlab.schema import (
    COMMANDS,
    OPTIM_SCHEMAS,
    BackendConfig,
    Bounds,
    DataConfig,
    ShapesDataConfig,
    TrainerConfig,
    check_bounds,
)


@pytest.mark.parametrize(
    ("bounds", "value", "problem"),
    [
        (Bounds(ge=1), 1, None),
        (Bounds(ge=1), 0, "must be >= 1, got 0"),
        (Bounds(gt=0), 0.0, "must be > 0, got 0.0"),
        (Bounds(gt=0), 1e-300, None),
        (Bounds(ge=0, lt=1), 1.0, "must be in [0, 1), got 1.0"),
        (Bounds(ge=0, lt=1), math.nan, "must be in [0, 1), got nan"),
        (Bounds(gt=0), math.nan, "must be > 0, got nan"),
        (Bounds(ge=1), None, None),
        (Bounds(ge=1, length=2), [3, 4], None),
        (Bounds(ge=1, length=2), [3], "must hold 2 values, got [3]"),
        (Bounds(ge=1), [3, 0, 5], "must hold values >= 1, got [3, 0, 5]"),
        (Bounds(gt=0, lt=1), 0.5, None),
    ],
)
def test_bounds_say_what_is_wrong(bounds, value, problem):
    assert bounds.problem(value) == problem


def _schemas() -> list[type]:
    """Every schema a composed config can hold, nested ones included."""
    found: list[type] = []
    todo = [
        *COMMANDS.values(),
        *OPTIM_SCHEMAS.values(),
        *(m.schema for m in MODELS.values()),
        DataConfig,
        ShapesDataConfig,
    ]
    while todo:
        schema = todo.pop()
        if schema in found:
            continue
        found.append(schema)
        for f in dataclasses.fields(schema):
            if f.default_factory is not dataclasses.MISSING:
                default = f.default_factory()
                if dataclasses.is_dataclass(default):
                    todo.append(type(default))
    return found


@pytest.mark.parametrize("schema", _schemas(), ids=lambda s: s.__name__)
def test_every_default_is_inside_its_declared_range(schema):
    for f in dataclasses.fields(schema):
        bounds = f.metadata.get("bounds")
        if bounds is not None:
            default = f.default if f.default_factory is dataclasses.MISSING else f.default_factory()
            assert bounds.problem(default) is None, f.name


@pytest.mark.parametrize(
    ("command", "overrides", "message"),
    [
        ("train", ["model=resnet18", "model.blocks=[2,2]"], "model.widths and model.blocks"),
        ("train", ["model=deep", "model.pool_after=[9]"], "model.pool_after: block 9 does not"),
        ("train", ["optim.nesterov=true", "optim.momentum=0"], "optim.nesterov needs momentum"),
        ("train", ["data=mnist", "data.root=null"], "data.root: mnist needs the folder"),
        ("train", ["data.classes=[1,1]"], "data.classes=[1, 1]: give distinct class indices"),
        ("gradcheck", ["model=lenet", "layer=conv"], "layer: give layer= or model=, not both"),
        ("eval", [], "checkpoint: give the run to evaluate"),
    ],
)
def test_rules_that_join_keys_are_checked_as_a_config_is_composed(command, overrides, message):
    with pytest.raises(UsageError, match=re.escape(message)):
        compose(command, overrides)


def test_bounds_are_checked_as_a_config_is_composed_and_name_the_full_key():
    with pytest.raises(UsageError, match=r"^trainer\.epochs must be >= 1, got 0$"):
        compose("train", ["trainer.epochs=0"])
    with pytest.raises(UsageError, match=r"^model\.widths must hold values >= 1"):
        compose("train", ["model=resnet18", "model.widths=[64,0,256,512]"])


def test_a_value_taken_from_another_key_is_checked_where_it_is_set():
    # model.num_classes is ${data.num_classes}: the error names data.num_classes, not model's.
    with pytest.raises(UsageError, match=r"^data\.num_classes must be >= 1"):
        compose("train", ["data.num_classes=0"])


def test_every_composed_default_config_is_in_range():
    for command in ("train", "gradcheck", "summary", "bench"):
        check_bounds(compose(command, []))


def test_choices_come_from_the_one_list_of_each():
    """The enums of the code-defined groups are made from the lists they name, not copied."""
    from cnnlab.schema import BackendName, BenchTarget, LayerName, NormName

    assert [m.value for m in BackendName] == list(BACKENDS)
    assert [m.value for m in NormName] == list(NORMS)
    assert [m.value for m in LayerName] == layer_choices()
    assert sorted(m.value for m in BenchTarget) == group_options("bench")


def test_an_enum_field_refuses_a_value_outside_its_list():
    cfg = OmegaConf.structured(BackendConfig)
    with pytest.raises(ValidationError):
        cfg.name = "tpu"
    cfg.name = "torch"
    assert cfg.name == "torch"
    trainer = OmegaConf.structured(TrainerConfig)
    with pytest.raises(ValidationError):
        trainer.precision = "float16"
    with pytest.raises(ValidationError):
        trainer.rng = "cpu"


def test_trainer_precision_and_torch_switches_default_to_numpy_s_float32():
    trainer = OmegaConf.structured(TrainerConfig)
    assert "dtype" not in trainer
    assert trainer.precision == "32-true" and Precision(trainer.precision).dtype == np.float32
    assert (trainer.channels_last, trainer.compile, trainer.rng) == (False, False, "numpy")
    trainer.precision = "bf16-mixed"
    assert trainer.precision is Precision["bf16-mixed"]


@pytest.mark.parametrize(
    ("override", "now"),
    [
        ("trainer.dtype=float64", "write trainer.precision=64-true"),
        ("+trainer.dtype=float32", "write trainer.precision=32-true"),  # added, not misspelt
        (
            "trainer.dtype=float16",
            "write trainer.precision=32-true for float32 or 64-true for float64",
        ),
    ],
)
def test_the_old_dtype_key_names_the_precision_to_write(override, now):
    with pytest.raises(UsageError) as error:
        compose("train", [override])
    assert str(error.value) == f"trainer.dtype is now trainer.precision: {now}"


def test_backend_options_come_from_the_trainer_node():
    overrides = [
        "trainer.threads=3",
        "trainer.precision=bf16-mixed",
        "trainer.channels_last=true",
        "trainer.rng=device",
    ]
    cfg = compose("train", overrides)
    options = BackendOptions.of(cfg.trainer, cfg.user)
    assert options == BackendOptions(3, True, None, "bf16-mixed", True, False, "device")
    assert BackendOptions.of(cfg.trainer, cfg.user, threads=1).threads == 1
    assert options.unsupported(BACKENDS["torch"]) is None
    assert options.unsupported(BACKENDS["im2col"]) == (
        "trainer.precision=bf16-mixed needs a torch backend (numpy has no autocast)"
    )
    plain = BackendOptions.of(compose("train", ["trainer.channels_last=true"]).trainer)
    assert plain.user is None and plain.precision == "32-true"
    assert plain.unsupported(BACKENDS["naive"]) == (
        "trainer.channels_last=true needs a torch backend (backend=torch or cuda)"
    )
