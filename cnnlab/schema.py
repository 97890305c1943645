"""Config schemas: a misspelt key, a value of the wrong type, a choice that does not exist or a
number out of its range is an error, not a default.

Each command's primary config (``conf/<command>.yaml``) extends ``<command>_schema``, and each
option of a config group extends its own (``conf/norm/batch.yaml`` extends ``batch_schema``),
the pattern Hydra documents for schemas of config groups. Choices are ``Enum`` s, which
OmegaConf checks itself; ranges are declared beside their fields with :func:`bounded` and
checked by :func:`check_bounds` once a config is composed.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, TypeVar, get_type_hints

from omegaconf import MISSING

from cnnlab.backends import BACKENDS
from cnnlab.choice import Choice
from cnnlab.config import group_options
from cnnlab.data import SOURCES
from cnnlab.data.augment import TRANSFORMS
from cnnlab.errors import UsageError
from cnnlab.init import Distribution, Scheme
from cnnlab.kernels.choices import Ties
from cnnlab.ops import layer_choices
from cnnlab.ops.activation import ACTIVATIONS
from cnnlab.ops.norm import NORMS
from cnnlab.precision import Precision, dtype_now
from cnnlab.train.monitor import MONITORS

if TYPE_CHECKING:
    from omegaconf import DictConfig

T = TypeVar("T")

# -- ranges: declared beside each field, checked after composition ------------------------------


@dataclass(frozen=True)
class Bounds:
    """The range a number, or each number of a list, must lie in (``ge <= value``,
    ``gt < value``, ``value < lt``), and the length a list must have. None (where the field
    allows it) is always in range."""

    ge: float | None = None
    gt: float | None = None
    lt: float | None = None
    length: int | None = None

    def text(self) -> str:
        """The range in words: ``>= 1``, ``> 0``, ``in [0, 1)``."""
        if self.ge is not None and self.lt is not None:
            return f"in [{self.ge:g}, {self.lt:g})"
        parts = [(">=", self.ge), (">", self.gt), ("<", self.lt)]
        return " and ".join(f"{op} {v:g}" for op, v in parts if v is not None)

    def holds(self, value: float) -> bool:
        # Negated comparisons would let NaN through: each test must be true.
        return (
            (self.ge is None or value >= self.ge)
            and (self.gt is None or value > self.gt)
            and (self.lt is None or value < self.lt)
        )

    def problem(self, value: object) -> str | None:
        """What is wrong with ``value``, or None if it is in range."""
        if value is None:
            return None
        if isinstance(value, int | float):
            return None if self.holds(value) else f"must be {self.text()}, got {value}"
        items = list(value)  # type: ignore[call-overload]
        if self.length is not None and len(items) != self.length:
            return f"must hold {self.length} values, got {items}"
        if not all(self.holds(v) for v in items):
            return f"must hold values {self.text()}, got {items}"
        return None


def bounded(
    default: T,
    *,
    ge: float | None = None,
    gt: float | None = None,
    lt: float | None = None,
) -> T:
    """A schema field with ``default`` whose value must lie in the given range."""
    return field(default=default, metadata={"bounds": Bounds(ge, gt, lt)})


def bounded_list(
    factory: Callable[[], list[T]],
    *,
    ge: float | None = None,
    gt: float | None = None,
    lt: float | None = None,
    length: int | None = None,
) -> list[T]:
    """A list field whose items must lie in the given range (and which holds ``length``)."""
    return field(default_factory=factory, metadata={"bounds": Bounds(ge, gt, lt, length)})


def check_bounds(cfg: DictConfig, prefix: str = "") -> None:
    """Raise a one-line UsageError for the first value outside the range its schema declares,
    or the first node whose schema's ``rule`` (a rule that joins keys) fails, anywhere in
    ``cfg`` (Hydra's own ``hydra`` node aside). A value taken from another key
    (``${data.num_classes}``) is checked there, where the user set it."""
    from omegaconf import DictConfig, OmegaConf

    schema = OmegaConf.get_type(cfg)
    if schema is not None and dataclasses.is_dataclass(schema):
        problem = _first_problem(cfg, schema)
        if problem is not None:
            raise UsageError(prefix + problem)
    for key, child in cfg.items_ex(resolve=False):
        # cfg[key] is None for a group the command leaves empty (gradcheck's model).
        if isinstance(child, DictConfig) and cfg[key] is not None and f"{prefix}{key}" != "hydra":
            check_bounds(child, f"{prefix}{key}.")


def _first_problem(cfg: DictConfig, schema: type) -> str | None:
    """What is wrong with one node, relative to it (``epochs must be >= 1, got 0``), or None:
    its fields' ranges first, then its schema's rule."""
    from omegaconf import OmegaConf

    for f in dataclasses.fields(schema):
        bounds = f.metadata.get("bounds")
        if bounds is None or OmegaConf.is_interpolation(cfg, f.name):
            continue
        problem = bounds.problem(cfg[f.name])
        if problem is not None:
            return f"{f.name} {problem}"
    rule = getattr(schema, "rule", None)
    return None if rule is None else rule(cfg)


# -- choices: one list each; Hydra rejects any other value with the list ----------------------


def choices(name: str, values: Iterable[str]) -> type[Choice]:
    """An enum of the names in ``values``, for a schema field whose choices are listed in code
    elsewhere (the backends, the norms): the list stays where it is, Hydra checks against it."""
    return Choice(name, [(v, v) for v in values])  # type: ignore[return-value]


class Rng(Choice):
    """Where a run's random draws are made (``trainer.rng``): numpy's generators, the same on
    every backend, or torch's on the backend's device."""

    numpy = "numpy"
    device = "device"


class Schedule(Choice):
    """Learning-rate schedules (``optim.schedule``): constant, step decay, cosine decay."""

    none = "none"
    step = "step"
    cosine = "cosine"


class Mode(Choice):
    """Whether a larger or a smaller ``trainer.monitor`` value is better."""

    max = "max"
    min = "min"


class DataAction(Choice):
    """What ``cnnlab data`` does: fetch missing files, or say what is on disk."""

    download = "download"
    info = "info"


class OptimName(Choice):
    """The optimizers (``optim=``), each with its schema below and its update in
    :mod:`cnnlab.train.optim`."""

    sgd = "sgd"
    momentum = "momentum"
    adam = "adam"
    adamw = "adamw"
    adagrad = "adagrad"
    rmsprop = "rmsprop"


class Split(Choice):
    """The split ``cnnlab eval`` evaluates."""

    test = "test"
    val = "val"
    train = "train"


BackendName = choices("BackendName", BACKENDS)
LayerName = choices("LayerName", layer_choices())
NormName = choices("NormName", NORMS)
ActName = choices("ActName", ACTIVATIONS)
DataName = choices("DataName", SOURCES)
TransformName = choices("TransformName", TRANSFORMS)  # data.transforms
MonitorName = choices("MonitorName", MONITORS)
BenchTarget = choices("BenchTarget", group_options("bench"))  # conf/bench/<target>.yaml

# -- groups ------------------------------------------------------------------------------------


@dataclass
class TrainerConfig:
    seed: int = 0
    threads: int | None = bounded(None, ge=1)  # None: every core
    epochs: int = bounded(5, ge=1)
    batch_size: int = bounded(64, ge=1)
    eval_batch_size: int = bounded(500, ge=1)
    label_smoothing: float = bounded(0.0, ge=0, lt=1)  # ε of the training loss (not of eval's)
    precision: Precision = Precision["32-true"]  # type: ignore[valid-type]
    max_steps: int | None = bounded(None, ge=1)  # None: every epoch to the end
    log_every: int | None = bounded(None, ge=1)  # None: ~100 points a run, <= 50 apart
    checkpoint_every_steps: int = bounded(0, ge=0)  # 0: at the end of each epoch only
    resume: str | None = None
    init_from: str | None = None  # a run directory or checkpoint: a new run from its weights
    freeze: list[str] = field(default_factory=list)  # parameters no update changes (patterns)
    reinit: list[str] = field(default_factory=list)  # init_from: draw these afresh (patterns)
    overwrite: bool = False  # a new run may replace the run its hydra.run.dir already holds
    devices: int = bounded(1, ge=1)  # data-parallel processes (DDP); batch_size is per process
    winograd: bool = True  # im2col: Winograd's algorithm for the 3x3 convs it fits
    channels_last: bool = False  # torch: images and conv weights in NHWC memory order
    compile: bool = False  # torch: the training step compiled with torch.compile
    rng: Rng = Rng.numpy  # data order, augmentation and dropout drawn by numpy or on the device
    checkpoints: bool = True  # false: no checkpoint files (a smoke test; nothing to resume)
    # What best.npz and early stopping watch (cnnlab.train.monitor), and in which direction
    # (None: max for an accuracy, min for a loss).
    monitor: MonitorName = MonitorName["val_acc"]  # type: ignore[valid-type]
    mode: Mode | None = None
    patience: int | None = bounded(None, ge=1)  # early stop after this many epochs; None: never
    min_delta: float = bounded(0.0, ge=0)  # smaller changes do not count as an improvement
    save_top_k: int = bounded(1, ge=0)  # best checkpoints kept (0: none)
    checkpoint_every_epochs: int = bounded(0, ge=0)  # also keep epoch=NNN.npz (0: none)

    @staticmethod
    def rule(trainer: TrainerConfig) -> str | None:
        # +trainer.dtype=... adds the key Hydra would otherwise refuse; it would be ignored.
        if "dtype" in trainer:  # type: ignore[operator]
            return f"dtype {dtype_now(trainer.dtype)}"  # type: ignore[attr-defined]
        return None


@dataclass
class BackendConfig:
    name: BackendName = BackendName["im2col"]  # type: ignore[valid-type]


@dataclass
class UserConfig:
    """Your own layers as the ``user`` backend: a file of functions in the CS231n convention or
    of classes in the EECS 498 one, run in a worker process."""

    file: str | None = None  # path/to/layers.py
    module: str | None = None  # or an importable module, pkg.layers
    timeout_s: float = bounded(60.0, gt=0)  # per call; a call past it is stopped and fails

    @staticmethod
    def rule(user: UserConfig) -> str | None:
        if user.file and user.module:
            return "give user.file or user.module, not both"
        return None


@dataclass
class LayerChoice:
    name: LayerName = LayerName["all"]  # type: ignore[valid-type]


@dataclass
class DataConfig:
    """The keys every data set has; ``shapes`` adds those of its generator."""

    name: DataName = DataName["mnist"]  # type: ignore[valid-type]
    shape: list[int] = bounded_list(lambda: [1, 28, 28], ge=1, length=3)  # (C, H, W) of a sample
    num_classes: int = bounded(10, ge=1)
    root: str | None = None  # folder of the files (None: generated data)
    download: bool = True  # fetch missing files, checksum-verified
    classes: list[int] | None = None  # a subset of class indices, relabelled 0..k-1
    random_classes: int | None = bounded(None, ge=1)  # or k classes drawn from trainer.seed
    val_fraction: float = bounded(0.1, ge=0, lt=1)  # share of train held out for validation
    limit: int | None = bounded(None, ge=1)  # cap on every split
    augment: bool = False  # augmentation of training batches: transforms, or crop and flip
    crop_pad: int = bounded(4, ge=0)
    flip: bool = True
    # The transforms in the order they are applied; None: crop (if crop_pad > 0) and flip.
    transforms: list[TransformName] | None = None  # type: ignore[valid-type]
    rotate_deg: float = bounded(15.0, ge=0)  # rotate: an angle uniform in [-rotate_deg, rotate_deg]
    scale: list[float] = bounded_list(lambda: [0.9, 1.1], gt=0, length=2)  # scale: [low, high]
    brightness: float = bounded(0.2, ge=0)  # color: factors uniform in [1 - s, 1 + s]
    contrast: float = bounded(0.2, ge=0)
    saturation: float = bounded(0.2, ge=0)  # 3-channel images only

    @staticmethod
    def rule(data: DataConfig) -> str | None:
        """A data set on disk needs its folder; a class subset, distinct valid indices; a list
        of transforms, augmentation on and no key that contradicts it."""
        if data.name != "shapes" and not data.root:
            return f"root: {data.name} needs the folder of its files"
        return _classes_problem(data) or _transforms_problem(data)


@dataclass
class ShapesDataConfig(DataConfig):
    """Generated images of geometric shapes (:mod:`cnnlab.data.shapes`)."""

    name: DataName = DataName["shapes"]  # type: ignore[valid-type]
    shape: list[int] = bounded_list(lambda: [3, 32, 32], ge=1, length=3)
    train_size: int = bounded(10000, ge=1)
    test_size: int = bounded(2000, ge=1)
    noise: float = bounded(0.1, ge=0)  # std of the Gaussian pixel noise


def _transforms_problem(data: DataConfig) -> str | None:
    if data.scale[0] > data.scale[1]:
        return f"scale must be [low, high] with low <= high, got {list(data.scale)}"
    if data.transforms is None:
        return None
    names = [str(t) for t in data.transforms]
    listed = f"transforms=[{','.join(names)}]"
    if len(set(names)) != len(names):
        return f"{listed}: name each transform once"
    if names and not data.augment:
        return f"{listed} needs data.augment=true (false turns augmentation off)"
    if "crop" in names and data.crop_pad == 0:
        return f"{listed}: crop needs data.crop_pad >= 1 (0 crops nothing)"
    if "flip" in names and not data.flip:
        return f"{listed}: flip is listed but data.flip=false; drop one of them"
    return None


def _classes_problem(data: DataConfig) -> str | None:
    total = SOURCES[data.name][1]
    if data.random_classes is not None:
        if data.classes is not None:
            return "random_classes: give data.classes or data.random_classes, not both"
        if data.random_classes > total:
            return f"random_classes={data.random_classes}: {data.name} has {total} classes"
    if data.classes is None:
        return None
    classes = list(data.classes)
    bad = [c for c in classes if not 0 <= c < total]
    if not classes or bad or len(set(classes)) != len(classes):
        return (
            f"classes={classes}: give distinct class indices in 0..{total - 1} "
            f"({data.name} has {total} classes), or null for all"
        )
    return None


@dataclass
class InitConfig:
    name: Scheme = Scheme.kaiming
    distribution: Distribution = Distribution.normal
    # init=normal's standard deviation; the other schemes take theirs from the fans. One
    # schema for all, so that a sweep can set a whole init node: 'init={name:normal,std:0.1}'.
    std: float | None = bounded(None, gt=0)

    @staticmethod
    def rule(init: InitConfig) -> str | None:
        if init.name == Scheme.normal and init.std is None:
            return "std: init=normal needs the weights' standard deviation, e.g. init.std=1e-3"
        if init.name != Scheme.normal and init.std is not None:
            return f"std: init={init.name} scales by the fans; only init=normal takes a std"
        return None


@dataclass
class ModelConfig:
    """Keys every architecture has; each extends it with its own (``cnnlab.models``)."""

    name: str = MISSING
    num_classes: int = bounded(10, ge=1)
    # The smallest input height and width the architecture (with its default stem) accepts:
    # model gradient checks run on inputs at least this large.
    min_size: int = bounded(1, ge=1)
    # Where every max pool of the model sends a window's gradient when its maximum is tied.
    pool_ties: Ties = Ties.first


@dataclass
class NormConfig:
    """The ``norm=`` option's name; each option adds the fields of the layer it puts in the
    norm slots."""

    name: NormName = NormName["none"]  # type: ignore[valid-type]


@dataclass
class ActConfig:
    """The ``act=`` option's name; each option adds the fields of its activation layer."""

    name: ActName = ActName["relu"]  # type: ignore[valid-type]


def _slot_schema(name: str, layer: object | None, base: type, names: type) -> type:
    """The schema of one option of a slot group (``norm=``, ``act=``): ``name`` and the fields
    of the layer it puts in the slots, with that layer's values as defaults."""
    fields: list[tuple[str, type, object]] = [("name", names, names[name])]  # type: ignore[index]
    if layer is not None:
        hints = get_type_hints(type(layer))
        fields += [
            (f.name, hints[f.name], getattr(layer, f.name)) for f in dataclasses.fields(layer)
        ]  # type: ignore[arg-type]
    title = name.title().replace("_", "")
    return dataclasses.make_dataclass(f"{title}{base.__name__}", fields, bases=(base,))


def norm_node(name: str, layer: object | None) -> object:
    """The config node of one ``norm=`` option, with its layer's values."""
    return _slot_schema(name, layer, NormConfig, NormName)()


def act_node(name: str, layer: object) -> object:
    """The config node of one ``act=`` option, with its layer's values."""
    return _slot_schema(name, layer, ActConfig, ActName)()


@dataclass
class OptimConfig:
    """Keys every optimizer has: the base learning rate, L2 weight decay and the schedule."""

    name: OptimName = OptimName.sgd
    lr: float = bounded(0.01, ge=0)
    weight_decay: float = bounded(0.0, ge=0)  # L2: added to the gradient as wd * p, as torch
    schedule: Schedule = Schedule.none
    step_size: int = bounded(10, ge=1)  # step: epochs between drops
    gamma: float = bounded(0.1, gt=0)  # step: factor of each drop
    min_lr: float = bounded(0.0, ge=0)  # cosine: the learning rate at the last step
    warmup_steps: int = bounded(0, ge=0)  # linear warmup from lr/warmup_steps over the first steps
    # Gradients scaled down to this total 2-norm (over every parameter) before each update, as
    # torch.nn.utils.clip_grad_norm_; None: not clipped.
    clip_norm: float | None = bounded(None, gt=0)


@dataclass
class SGDConfig(OptimConfig):
    name: OptimName = OptimName.sgd


@dataclass
class MomentumConfig(OptimConfig):
    name: OptimName = OptimName.momentum
    lr: float = bounded(0.02, ge=0)
    weight_decay: float = bounded(5e-4, ge=0)
    schedule: Schedule = Schedule.cosine
    warmup_steps: int = bounded(100, ge=0)
    momentum: float = bounded(0.9, ge=0, lt=1)
    nesterov: bool = False  # needs momentum > 0

    @staticmethod
    def rule(optim: MomentumConfig) -> str | None:
        return "nesterov needs momentum > 0" if optim.nesterov and optim.momentum == 0 else None


@dataclass
class AdamConfig(OptimConfig):
    name: OptimName = OptimName.adam
    lr: float = bounded(1e-3, ge=0)
    betas: list[float] = bounded_list(lambda: [0.9, 0.999], ge=0, lt=1, length=2)
    eps: float = bounded(1e-8, ge=0)


@dataclass
class AdamWConfig(AdamConfig):
    name: OptimName = OptimName.adamw
    weight_decay: float = bounded(1e-2, ge=0)  # decoupled: p <- p * (1 - lr * wd) each step


@dataclass
class AdagradConfig(OptimConfig):
    name: OptimName = OptimName.adagrad
    eps: float = bounded(1e-10, ge=0)


@dataclass
class RMSpropConfig(OptimConfig):
    name: OptimName = OptimName.rmsprop
    alpha: float = bounded(0.99, ge=0, lt=1)  # decay of the running mean of g^2
    eps: float = bounded(1e-8, ge=0)
    momentum: float = bounded(0.0, ge=0, lt=1)


OPTIM_SCHEMAS = {
    OptimName.sgd: SGDConfig,
    OptimName.momentum: MomentumConfig,
    OptimName.adam: AdamConfig,
    OptimName.adamw: AdamWConfig,
    OptimName.adagrad: AdagradConfig,
    OptimName.rmsprop: RMSpropConfig,
}

# -- commands ----------------------------------------------------------------------------------


@dataclass
class GradcheckSettings:
    step: float = bounded(1e-6, gt=0)
    rtol_floor: float = bounded(1e-9, gt=0)  # numeric: relative error always accepted
    error_factor: float = bounded(10.0, ge=1)  # numeric: times the estimated difference error
    rtol_numeric: float = bounded(1e-6, gt=0)  # numeric: largest relative error ever accepted
    elementwise_max: int = bounded(2048, ge=0)  # larger cases: differences along directions
    directions: int = bounded(8, ge=1)  # random directions per tensor of a larger case
    rtol_torch: float = bounded(1e-10, gt=0)
    atol_zero: float = bounded(1e-10, gt=0)
    width_scale: float = bounded(0.125, gt=0)  # model checks: layer widths times this
    image_size: int | None = bounded(16, ge=1)  # model checks: inputs resized (None: the data's)
    batch_size: int = bounded(2, ge=1)  # model checks: samples in the input batch
    samples: int = bounded(4, ge=1)  # model checks: coordinates per tensor checked numerically


@dataclass
class GradcheckConfig:
    layer: LayerChoice = field(default_factory=LayerChoice)
    # A list of names or the string "all": OmegaConf has no union of list and str.
    backends: Any = "all"
    gradcheck: GradcheckSettings = field(default_factory=GradcheckSettings)
    trainer: TrainerConfig = field(default_factory=TrainerConfig)
    user: UserConfig = field(default_factory=UserConfig)
    # Group nodes: each option's schema extends the type given here.
    model: ModelConfig | None = None
    norm: NormConfig | None = None
    act: ActConfig | None = None
    data: DataConfig | None = None
    init: InitConfig | None = None

    @staticmethod
    def rule(cfg: GradcheckConfig) -> str | None:
        if cfg.model is not None and cfg.layer.name != "all":
            return "layer: give layer= or model=, not both: model= checks the whole model"
        return None


@dataclass
class SummaryConfig:
    trainer: TrainerConfig = field(default_factory=TrainerConfig)
    model: ModelConfig | None = None
    norm: NormConfig | None = None
    act: ActConfig | None = None
    data: DataConfig | None = None


@dataclass
class TrainConfig:
    trainer: TrainerConfig = field(default_factory=TrainerConfig)
    user: UserConfig = field(default_factory=UserConfig)
    backend: BackendConfig | None = None
    model: ModelConfig | None = None
    norm: NormConfig | None = None
    act: ActConfig | None = None
    data: DataConfig | None = None
    init: InitConfig | None = None
    optim: OptimConfig | None = None

    @staticmethod
    def rule(cfg: TrainConfig) -> str | None:
        """trainer.rng=device draws crops and flips only (cnnlab.train.draws)."""
        data = cfg.data
        if data is None or not data.augment or cfg.trainer.rng != Rng.device:
            return None
        host = [str(t) for t in data.transforms or [] if str(t) not in ("crop", "flip")]
        if host:
            return (
                f"trainer.rng=device draws crop and flip only; data.transforms with "
                f"{', '.join(host)} needs trainer.rng=numpy"
            )
        return None


@dataclass
class LRFindSettings:
    """``lrfind.*``: the learning-rate range test (:mod:`cnnlab.train.lrfind`)."""

    min_lr: float = bounded(1e-7, gt=0)  # the first step's rate
    max_lr: float = bounded(10.0, gt=0)  # the last step's rate
    steps: int = bounded(100, ge=10)  # optimizer steps (batches), rates geometric between
    smoothing: float = bounded(0.98, ge=0, lt=1)  # β of the loss's moving average (0: none)
    diverge: float = bounded(4.0, gt=1)  # stop once the smoothed loss exceeds this x its lowest

    @staticmethod
    def rule(settings: LRFindSettings) -> str | None:
        if settings.min_lr >= settings.max_lr:
            return f"min_lr={settings.min_lr:g} must be below lrfind.max_lr={settings.max_lr:g}"
        return None


@dataclass
class LRFindConfig(TrainConfig):
    """``cnnlab lrfind``: train's groups and keys, and ``lrfind.*``."""

    lrfind: LRFindSettings = field(default_factory=LRFindSettings)


@dataclass
class EvalData:
    root: str | None = None  # the data's folder, if it is not where the run read it


@dataclass
class EvalConfig:
    checkpoint: str = MISSING  # a run directory or a .npz checkpoint
    split: Split = Split.test
    # Pictures of the split (misclassified, confusion, saliency, feature maps) as PNGs and
    # TensorBoard images in eval's run directory: cnnlab.train.diagnostics.
    diagnostics: bool = False
    trainer: TrainerConfig = field(default_factory=TrainerConfig)
    user: UserConfig = field(default_factory=UserConfig)
    backend: BackendConfig | None = None  # evaluate on another backend than the run's
    data: EvalData = field(default_factory=EvalData)

    @staticmethod
    def rule(cfg: EvalConfig) -> str | None:
        from omegaconf import OmegaConf

        if OmegaConf.is_missing(cfg, "checkpoint"):
            return "checkpoint: give the run to evaluate, checkpoint=<run dir or .npz>"
        return None


@dataclass
class SavedModelConfig:
    """``cnnlab predict`` and ``cnnlab export``: a saved model run on a backend, as eval runs
    it (``checkpoint`` comes from the command's first argument)."""

    checkpoint: str = MISSING  # a run directory or a .npz checkpoint
    trainer: TrainerConfig = field(default_factory=TrainerConfig)
    user: UserConfig = field(default_factory=UserConfig)
    backend: BackendConfig | None = None  # run it on another backend than the run's
    data: EvalData = field(default_factory=EvalData)


@dataclass
class DataCommandConfig:
    action: DataAction = DataAction.info
    trainer: TrainerConfig = field(default_factory=TrainerConfig)
    data: DataConfig | None = None


@dataclass
class BenchSettings:
    """``bench.*``: the target's cases (from ``conf/bench/<target>.yaml``) and the harness."""

    target: BenchTarget = BenchTarget["conv"]  # type: ignore[valid-type]
    cases: Any = field(default_factory=list)  # dicts: name, layer and the layer's shapes
    runs: int = bounded(5, ge=1)
    warmup: int = bounded(1, ge=0)
    repeats: int = bounded(1, ge=1)
    naive_budget_s: float = bounded(20.0, ge=0)
    naive_probe_batch: int = bounded(2, ge=1)
    rtol: float = bounded(1e-4, gt=0)
    roofline_size: int = bounded(1024, ge=1)
    batch: int | None = bounded(None, ge=1)  # replaces every case's batch size
    profile_steps: int = bounded(3, ge=0)  # bench model: steps of the per-layer profile (0: none)
    memory: bool = False  # bench model: each backend's peak memory in a training step


@dataclass
class BenchConfig:
    backends: Any = "all"  # a list of names or "all", as gradcheck's
    bench: BenchSettings = field(default_factory=BenchSettings)
    trainer: TrainerConfig = field(default_factory=TrainerConfig)
    user: UserConfig = field(default_factory=UserConfig)
    model: ModelConfig | None = None
    norm: NormConfig | None = None
    act: ActConfig | None = None
    data: DataConfig | None = None
    init: InitConfig | None = None
    optim: OptimConfig | None = None


COMMANDS: dict[str, type] = {
    "gradcheck": GradcheckConfig,
    "summary": SummaryConfig,
    "train": TrainConfig,
    "lrfind": LRFindConfig,
    "eval": EvalConfig,
    "predict": SavedModelConfig,
    "export": SavedModelConfig,
    # `cnnlab data`: named apart from the data group's own data_schema.
    "data_command": DataCommandConfig,
    "bench": BenchConfig,
}


def register() -> None:
    """Store every schema in Hydra's ConfigStore (idempotent)."""
    from hydra.core.config_store import ConfigStore

    from cnnlab.config import stored_groups
    from cnnlab.data import register_resolvers
    from cnnlab.models import MODELS

    store = ConfigStore.instance()
    if "train_schema.yaml" in store.repo:
        return  # stored already by this process: converting every schema again takes ~0.4 s
    register_resolvers()
    for command, schema in COMMANDS.items():
        store.store(name=f"{command}_schema", node=schema)
    for name, model in MODELS.items():
        store.store(group="model", name=f"{name}_schema", node=model.schema)
    for name, schema in OPTIM_SCHEMAS.items():
        store.store(group="optim", name=f"{name}_schema", node=schema)
    store.store(group="data", name="data_schema", node=DataConfig)
    store.store(group="data", name="shapes_schema", node=ShapesDataConfig)
    store.store(group="init", name="init_schema", node=InitConfig)
    for group, options in stored_groups().items():
        for name, node in options.items():
            store.store(group=group, name=name, node=node())
