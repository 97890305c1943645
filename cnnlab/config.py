"""Hydra glue: where the configs live, their schemas, override checking and launching a task.

Every command is a Hydra app whose primary config is ``conf/<command>.yaml``. The CLI hands its
arguments to :func:`launch`, which first composes the config for each value of each override
with Hydra's compose API (so a typo is one line and exit code 2 before anything runs) and then
calls a ``hydra.main`` task with ``sys.argv`` set to the same arguments, which keeps what Hydra
does for us: ``-m`` sweeps and launchers, run directories, ``.hydra/config.yaml``, ``--cfg job``.
"""

from __future__ import annotations

import difflib
import sys
import typing
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from enum import Enum
from pathlib import Path
from typing import TYPE_CHECKING, Any

from cnnlab.errors import CnnlabError, UsageError

if TYPE_CHECKING:
    from omegaconf import DictConfig

    from cnnlab.rundir import RunLock

# ---------------------------------------------------------------------------------------------
# Where the configs are
# ---------------------------------------------------------------------------------------------


def config_dir() -> Path:
    """The config folder: ``cnnlab/conf`` in an installed wheel, ``conf/`` in the repository."""
    package = Path(__file__).resolve().parent
    for candidate in (package / "conf", package.parent / "conf"):
        if (candidate / "_common_.yaml").is_file():
            return candidate
    raise CnnlabError(f"cnnlab's config folder is missing (looked in {package}/conf and ../conf)")


def group_options(group: str) -> list[str]:
    """The option names of a config group, sorted: its files (``conf/<group>/*.yaml``), or the
    options defined in code for the groups :func:`stored_groups` names."""
    stored = stored_groups()
    if group in stored:
        return sorted(stored[group])
    return sorted(p.stem for p in (config_dir() / group).glob("*.yaml"))


def stored_groups() -> dict[str, dict[str, Callable[[], object]]]:
    """The config groups whose options are defined in code, not one YAML file each: option
    name -> a factory of its config node, for gradcheck's ``layer=`` (the registered layer
    kinds), ``norm=`` (cnnlab.ops.norm.NORMS) and ``backend=`` (cnnlab.backends.BACKENDS).

    Factories, not nodes, and no import of the schemas: ``--help`` reads only the names.
    """
    from functools import partial

    from cnnlab.backends import BACKENDS
    from cnnlab.ops import layer_choices
    from cnnlab.ops.activation import ACTIVATIONS
    from cnnlab.ops.norm import NORMS

    def node(schema: str, *args: object) -> object:
        import cnnlab.schema

        return getattr(cnnlab.schema, schema)(*args)

    return {
        "layer": {name: partial(node, "LayerChoice", name) for name in layer_choices()},
        "norm": {name: partial(node, "norm_node", name, layer) for name, layer in NORMS.items()},
        "act": {
            name: partial(node, "act_node", name, layer) for name, layer in ACTIVATIONS.items()
        },
        "backend": {name: partial(node, "BackendConfig", name) for name in BACKENDS},
    }


def group_defaults(command: str) -> dict[str, str | None]:
    """The config groups in ``conf/<command>.yaml``'s defaults list and the option each
    chooses (None for ``null``): what the command's ``--help`` shows as defaults."""
    import yaml  # PyYAML comes with Hydra and loads fast: --help may use it

    text = (config_dir() / f"{command}.yaml").read_text()
    entries = (yaml.safe_load(text) or {}).get("defaults", [])
    return {
        group: option
        for entry in entries
        if isinstance(entry, dict)
        for group, option in entry.items()
        if not group.startswith(("override ", "hydra/"))
    }


def option_summary(group: str, option: str) -> str:
    """The first comment line of an option's file: its one-line description."""
    path = config_dir() / group / f"{option}.yaml"
    if not path.is_file():
        return ""
    first = path.read_text().splitlines()[:1]
    return first[0].lstrip("# ").strip() if first and first[0].startswith("#") else ""


# ---------------------------------------------------------------------------------------------
# Arguments: Hydra's flags apart from overrides
# ---------------------------------------------------------------------------------------------


def split_args(args: list[str]) -> tuple[list[str], list[str]]:
    """Split CLI arguments into Hydra's own flags (``--cfg job``, ...) and overrides."""
    from cnnlab.hydra_internal import flags_parser

    try:
        parsed, unknown = flags_parser().parse_known_args(args)
    except SystemExit:  # argparse reports and exits on e.g. `--cfg` without a value
        raise UsageError(f"could not parse arguments: {' '.join(args)}") from None
    if unknown:
        raise UsageError(f"unknown option {unknown[0]}; options go before overrides, see --help")
    overrides = list(parsed.overrides)
    flags = [a for a in args if a not in overrides]
    return flags, overrides


def _sweep_values(override: str) -> list[str]:
    """Each single value of one override (``a=1,2`` -> ``a=1``, ``a=2``); others unchanged."""
    from hydra.core.override_parser.overrides_parser import OverridesParser
    from hydra.core.override_parser.types import IntervalSweep

    try:
        parsed = OverridesParser.create().parse_override(override)
    except Exception as exc:  # Hydra's parser raises its generic HydraException
        raise UsageError(
            f"could not parse override '{override}': expected key=value or group=option"
        ) from exc
    if not parsed.is_sweep_override():
        return [override]
    key = parsed.get_key_element()
    value = parsed.value()
    if isinstance(value, IntervalSweep):  # a search space (Optuna): check both of its ends
        return [f"{key}={value.start}", f"{key}={value.end}"]
    return [f"{key}={value}" for value in parsed.sweep_string_iterator()]


def candidate_override_sets(
    overrides: list[str], multirun: bool, limit: int = 64
) -> Iterator[list[str]]:
    """Override lists that together try every value of every sweep at least once.

    Each sweep value is paired with the first value of the others, not the full product:
    enough to find a bad value, cheap for large sweeps. A sweep without ``-m`` is an error.
    """
    values = [_sweep_values(o) for o in overrides]
    if not multirun:
        for override, options in zip(overrides, values, strict=True):
            if len(options) > 1:
                raise UsageError(
                    f"{override}: several values; sweep them with -m, or write a list as [a,b]"
                )
    firsts = [v[0] for v in values]
    yield firsts
    count = 1
    for i, options in enumerate(values):
        for value in options[1:]:
            if count >= limit:
                return
            count += 1
            yield [*firsts[:i], value, *firsts[i + 1 :]]


# ---------------------------------------------------------------------------------------------
# Composition and one-line errors
# ---------------------------------------------------------------------------------------------


def register_schemas() -> None:
    """Put every config schema in Hydra's ConfigStore (see :mod:`cnnlab.schema`)."""
    from cnnlab.schema import register

    register()


def compose(command: str, overrides: list[str], with_hydra: bool = False) -> Any:
    """Compose ``conf/<command>.yaml`` with overrides through Hydra's compose API.

    Builds one config: no sweep, no run directory, no logging. Hydra's errors and values
    outside the ranges the schemas declare (:func:`cnnlab.schema.check_bounds`) become
    one-line :class:`UsageError` s.
    """
    from cnnlab.schema import check_bounds

    try:
        cfg = _compose(command, overrides, with_hydra)
    except Exception as exc:  # Hydra raises several unrelated types for user mistakes
        raise UsageError(explain(exc, command, overrides)) from exc
    check_bounds(cfg)
    return cfg


def _compose(command: str, overrides: list[str], with_hydra: bool) -> Any:
    """Hydra's compose API, raising Hydra's own errors (``explain`` composes through this)."""
    from hydra import compose as hydra_compose
    from hydra import initialize_config_dir
    from hydra.core.global_hydra import GlobalHydra

    register_schemas()
    if GlobalHydra.instance().is_initialized():
        GlobalHydra.instance().clear()
    with initialize_config_dir(str(config_dir()), version_base="1.3", job_name=command):
        return hydra_compose(command, overrides, return_hydra_config=with_hydra)


# Options of Hydra's groups that come with a package cnnlab does not install by default.
PLUGIN_EXTRAS = {"hydra/sweeper/optuna": "optuna"}


def explain(exc: BaseException, command: str, overrides: list[str] | tuple[str, ...] = ()) -> str:
    """Hydra's multi-line report on a bad override, as one line with the valid choices.

    Built from the exceptions' own fields (OmegaConf's ``full_key``, ``value`` and node type,
    Hydra's missing option and its choices), never from their English text. overrides: those
    that were composed, for hints that depend on them (a launcher's keys exist only once
    ``hydra/launcher=`` chooses it) and to find the override Hydra did not name.
    """
    from hydra.errors import MissingConfigException, OverrideParseException
    from omegaconf.errors import ConfigAttributeError, ConfigKeyError, ValidationError

    chain: list[BaseException] = []
    cause: BaseException | None = exc
    while cause is not None and cause not in chain:
        chain.append(cause)
        cause = cause.__cause__ or cause.__context__
    for e in chain:
        if isinstance(e, MissingConfigException) and e.options:
            return _missing_option(e.missing_cfg_file or "", e.options)
        full_key = getattr(e, "full_key", None)
        if isinstance(e, ConfigKeyError | ConfigAttributeError) and full_key:
            return _unknown_key(str(full_key), command, overrides)
        if isinstance(e, ValidationError) and full_key:
            choices = getattr(e.child_node, "enum_type", None) or _item_enum(e.ref_type)
            if choices is not None:
                names = ", ".join(m.name for m in choices)
                return f"{full_key}: '{e.value}' is not an option; choose from {names}"
            kind = type(e.child_node).__name__.removesuffix("Node") if e.child_node else "value"
            return f"{full_key}: '{e.value}' is not a valid {kind}"
        if isinstance(e, OverrideParseException):
            bad = next((o for o in overrides if not _parses(o)), " ".join(overrides))
            return f"could not parse override '{bad}': expected key=value or group=option"
    unused = _unused_group(command, list(overrides))
    if unused is not None:
        hint = " (norm= fills a model's norm slots: give model= too)" if unused == "norm" else ""
        return f"{unused}: the {command} config does not use this group here{hint}"
    # Anything else: the first line of Hydra's own report.
    lines = [ln.strip() for e in chain for ln in str(e).splitlines() if ln.strip()]
    return lines[0] if lines else type(exc).__name__


def _item_enum(ref_type: Any) -> type[Enum] | None:
    """The Enum of a list's items (``data.transforms``): OmegaConf reports a bad item with no
    node, only the list's type, ``Optional[List[TransformName]]``."""
    for arg in typing.get_args(ref_type):
        if isinstance(arg, type) and issubclass(arg, Enum):
            return arg
        found = _item_enum(arg)
        if found is not None:
            return found
    return None


def _missing_option(missing: str, options: list[str]) -> str:
    """``group=option`` that is not among the group's options (or needs an extra)."""
    group, _, option = missing.rpartition("/")
    if missing in PLUGIN_EXTRAS:
        extra = PLUGIN_EXTRAS[missing]
        return (
            f"{group}={option} is not installed: pip install 'cnnlab[{extra}]' "
            f"(pip install -e '.[{extra}]' in a checkout)"
        )
    # The ConfigStore's schemas sit in the same groups; they are not choices.
    choices = [o for o in options if not o.endswith("_schema")]
    return f"{group}={option}: no such option; choose from {', '.join(choices)}"


def _renamed_key(full: str, overrides: list[str] | tuple[str, ...]) -> str | None:
    """What to write instead of a key cnnlab once had (``trainer.dtype``), or None."""
    if full != "trainer.dtype":
        return None
    from cnnlab.precision import dtype_now

    given = [o.partition("=") for o in overrides]
    # None where a config file set it: the message then names both translations.
    value = next((v for key, _, v in given if key.lstrip("+~") == full), None)
    return f"{full} {dtype_now(value)}"


def _unknown_key(full: str, command: str, overrides: list[str] | tuple[str, ...]) -> str:
    """A key the config does not have: one cnnlab renamed, a launcher's key before the
    launcher is chosen, or a typo, with the close names beside it."""
    renamed = _renamed_key(full, overrides)
    if renamed is not None:
        return renamed
    for plugin in ("launcher", "sweeper"):
        chosen = any(o.startswith(f"hydra/{plugin}=") for o in overrides)
        if full.startswith(f"hydra.{plugin}.") and not chosen:
            group = f"hydra/{plugin}"
            example = "hydra/launcher=joblib" if plugin == "launcher" else f"{group}=<option>"
            return f"{full}: {group} keys exist once one is chosen, e.g. {example}"
    # Close names among the keys beside it (a long shared prefix would make any key close).
    parent, _, leaf = full.rpartition(".")
    known = [k.rpartition(".") for k in _known_keys(command, overrides)]
    siblings = [name for above, _, name in known if above == parent]
    close = difflib.get_close_matches(leaf, siblings, n=2, cutoff=0.6)
    prefix = f"{parent}." if parent else ""
    hint = f"; did you mean {' or '.join(prefix + c for c in close)}?" if close else ""
    return f"{full}: no such key in the {command} config{hint} (add new keys with +key=value)"


def _parses(override: str) -> bool:
    from hydra.core.override_parser.overrides_parser import OverridesParser
    from hydra.errors import OverrideParseException

    try:
        OverridesParser.create().parse_override(override)
    except OverrideParseException:
        return False
    return True


def _unused_group(command: str, overrides: list[str]) -> str | None:
    """The group of a ``group=option`` override that the command's defaults list, as the other
    overrides make it, has no slot for (``norm=`` without ``model=`` in gradcheck); None if
    every group override has one. Hydra reports this case in words only, so cnnlab asks its
    own question: is the group among the choices of the config composed without it?"""
    from omegaconf import OmegaConf

    for i, override in enumerate(overrides):
        group, eq, _ = override.partition("=")
        if not eq or "." in group or group[:1] in "+~" or group.startswith("hydra/"):
            continue
        try:
            cfg = _compose(command, overrides[:i] + overrides[i + 1 :], with_hydra=True)
        except Exception:  # the others do not compose either: not this override's fault
            continue
        if group not in OmegaConf.select(cfg, "hydra.runtime.choices", default={}):
            return group
    return None


def _known_keys(command: str, overrides: list[str] | tuple[str, ...] = ()) -> list[str]:
    """Dotted keys of the command's config with the chosen group options (Hydra's own keys
    included: ``hydra.launcher.n_jobs`` once joblib is chosen), for 'did you mean' hints."""
    from omegaconf import OmegaConf

    # Choices of groups (model=lenet, hydra/launcher=joblib): no dot in the key, no +/~.
    groups = [o for o in overrides if "." not in o.partition("=")[0] and o[:1] not in "+~"]
    try:
        cfg = OmegaConf.to_container(_compose(command, groups, with_hydra=True), resolve=False)
    except Exception:  # a choice that does not compose either: hints from the defaults alone
        try:
            cfg = OmegaConf.to_container(_compose(command, [], with_hydra=True), resolve=False)
        except Exception:
            return []

    def walk(node: Any, prefix: str) -> Iterator[str]:
        if isinstance(node, dict):
            for k, v in node.items():
                yield from walk(v, f"{prefix}{k}.")
                yield f"{prefix}{k}"

    return list(walk(cfg, ""))


def validate(
    command: str,
    overrides: list[str],
    multirun: bool = False,
    check: Callable[[Any], object] | None = None,
) -> tuple[DictConfig, object]:
    """Compose every candidate override set and run the command's own ``check`` on each.

    Raises a one-line UsageError on the first mistake, before anything runs; returns the
    config of the first candidate (the run itself, when there is no sweep) and what ``check``
    returned for it (its plan: see :mod:`cnnlab.commands`). A sweep also
    checks the search space that its sweeper's config holds (``hydra.sweeper.params``, as in
    ``hparams_search=optuna``), which would otherwise fail only in the jobs.
    """
    searched: list[str] = []
    if multirun:
        first_set = next(candidate_override_sets(overrides, multirun))
        first_cfg = compose(command, first_set, with_hydra=True)
        _check_sweepable(first_cfg, overrides)
        searched = sweeper_params(first_cfg, overrides)
    first: tuple[DictConfig, object] | None = None
    for candidate in candidate_override_sets([*overrides, *searched], multirun):
        cfg = compose(command, candidate, with_hydra=True)
        plan = check(cfg) if check is not None else None
        first = (cfg, plan) if first is None else first
    assert first is not None  # candidate_override_sets yields at least one set
    return first


def _check_sweepable(cfg: DictConfig, overrides: list[str]) -> None:
    """An interval is a search space: Hydra's basic sweeper has no values to take from it."""
    from hydra.core.override_parser.overrides_parser import OverridesParser
    from hydra.core.override_parser.types import IntervalSweep
    from omegaconf import OmegaConf

    if not str(OmegaConf.select(cfg, "hydra.sweeper._target_")).endswith(".BasicSweeper"):
        return
    parser = OverridesParser.create()
    for override in overrides:
        if isinstance(parser.parse_override(override).value(), IntervalSweep):
            raise UsageError(
                f"{override}: an interval is a search space; search it with hparams_search=optuna"
            )


def sweeper_params(cfg: DictConfig, overrides: list[str]) -> list[str]:
    """The sweeper's configured search space as overrides, less keys the command line sets."""
    from omegaconf import OmegaConf

    params = OmegaConf.select(cfg, "hydra.sweeper.params")
    if not params:
        return []
    given = {o.lstrip("+~").partition("=")[0] for o in overrides}
    return [f"{key}={value}" for key, value in params.items() if key not in given]


# ---------------------------------------------------------------------------------------------
# Launching a Hydra task
# ---------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Claim:
    """What a command takes before Hydra runs its single job: overrides for Hydra (its pinned
    run directory) and the lock that keeps that directory its own until the job ends."""

    overrides: list[str]
    lock: RunLock | None = None

    def release(self) -> None:
        if self.lock is not None:
            self.lock.release()


@dataclass(frozen=True)
class Outcome:
    """What a task may return: its exit code and the value Hydra hands to sweepers
    (``cnnlab train`` returns its validation accuracy)."""

    code: int
    value: Any = None


@contextmanager
def _argv(argv: list[str]) -> Iterator[None]:
    saved = sys.argv
    sys.argv = argv
    try:
        yield
    finally:
        sys.argv = saved


def launch(command: str, module: Any, args: list[str], multirun: bool = False) -> int:
    """Validate the arguments, then run the command's task under ``hydra.main``.

    module: the command's module (see :mod:`cnnlab.commands`): ``check_config(cfg)`` raising
    UsageError for what composition cannot catch and returning its plan, ``task(cfg, plan)``
    returning an exit code or an :class:`Outcome`, and optionally ``claim(cfg, plan,
    multirun)`` returning the :class:`Claim` it takes before jobs run (``cnnlab train`` pins
    and locks its run directory). A single run's task gets the plan made here; a sweep's
    jobs, which may run in other processes, get None and make their own. Errors of type
    :class:`CnnlabError`
    raised by the task end that job with one logged line and their exit code. Returns the
    worst exit code of all jobs.

    A sweep's jobs may run in worker processes (``hydra/launcher=joblib``) or on other
    machines (SLURM), where nothing they return reaches this process. So each job leaves a
    record in its directory, and :func:`cnnlab.sweep.summarize` reads them all back at the
    end: one table, ``sweep.csv`` and the worst exit code.
    """
    import hydra

    flags, overrides = split_args(args)
    cfg, plan = validate(command, overrides, multirun, module.check_config)
    claim = Claim([])
    if _runs_jobs(flags):
        _check_run_dir(cfg, multirun)
        if hasattr(module, "claim"):
            claim = module.claim(cfg, plan, multirun)
    overrides = [*overrides, *claim.overrides]
    job_plan = None if multirun else plan
    if multirun and not _runs_jobs(flags):
        # Hydra prints no config of a sweep (--cfg with --multirun is an error): the first job's.
        overrides, multirun = next(candidate_override_sets(overrides, multirun)), False
    sweep_dir = _sweep_dir(cfg) if multirun else None
    if sweep_dir is not None:
        from cnnlab.sweep import clear_records

        # Its name holds the time it is resolved at: fix it, so this process reads where the
        # jobs write.
        overrides = [*overrides, f"hydra.sweep.dir={quoted(str(sweep_dir))}"]
        clear_records(sweep_dir)
    codes: list[int] = []

    def job(cfg: DictConfig) -> object:
        return _run_task(module, cfg, job_plan, codes)

    main = hydra.main(version_base="1.3", config_path=str(config_dir()), config_name=command)(job)
    register_schemas()
    try:
        with _argv(["cnnlab", *flags, *overrides, *(["--multirun"] if multirun else [])]):
            main()
    finally:
        claim.release()
        if sweep_dir is not None:
            from cnnlab.sweep import summarize

            codes.append(summarize(sweep_dir))
    return max(codes, default=0)


def _run_task(module: Any, cfg: DictConfig, plan: object, codes: list[int]) -> object:
    """One job: the command's task, its exit code appended to ``codes`` and, in a sweep, its
    record written; returns the value Hydra's sweepers optimise."""
    import logging
    import time

    # Hydra's joblib and submitit launchers carry the ConfigStore and OmegaConf resolvers
    # into their workers; this covers a launcher that does not.
    register_schemas()
    started = time.perf_counter()
    code, error = 1, None
    try:
        result = module.task(cfg, plan)
        outcome = result if isinstance(result, Outcome) else Outcome(int(result))
        code = outcome.code
        return outcome.value
    except CnnlabError as exc:
        logging.getLogger("cnnlab").error(str(exc))
        code, error = exc.exit_code, str(exc)
        return None
    except KeyboardInterrupt:
        code, error = 130, "interrupted"
        raise
    except Exception as exc:  # a bug: Hydra reports it; the sweep's table shows it too
        error = f"{type(exc).__name__}: {exc}"
        raise
    finally:
        codes.append(code)
        _record_job(code, error, time.perf_counter() - started)


def run_dir() -> Path:
    """The running job's output directory (Hydra's, with sub-second digits; see _common_.yaml)."""
    from hydra.core.hydra_config import HydraConfig

    return Path(HydraConfig.get().runtime.output_dir)


def _check_run_dir(cfg: DictConfig, multirun: bool) -> None:
    """A run (or sweep) directory that is a file is one line, before Hydra fails to make it."""
    from omegaconf import OmegaConf
    from omegaconf.errors import OmegaConfBaseException

    key = "hydra.sweep.dir" if multirun else "hydra.run.dir"
    try:
        where = Path(str(OmegaConf.select(cfg, key)))
    except OmegaConfBaseException:  # not resolvable yet: Hydra resolves it in the job
        return
    if where.exists() and not where.is_dir():
        raise UsageError(f"{key}: {where} is a file, not a folder")


def _runs_jobs(flags: list[str]) -> bool:
    """Whether Hydra will run jobs with these flags, rather than print a config or help."""
    from cnnlab.hydra_internal import flags_parser

    parsed = flags_parser().parse_args(flags)
    return not (parsed.cfg or parsed.info or parsed.hydra_help or parsed.shell_completion)


def _sweep_dir(cfg: DictConfig) -> Path | None:
    """The sweep directory of a composed config; None where it cannot be resolved yet."""
    from omegaconf.errors import OmegaConfBaseException

    try:
        return Path(str(cfg.hydra.sweep.dir))
    except OmegaConfBaseException:
        return None


def quoted(value: str) -> str:
    """A value as a quoted override value (paths may hold spaces, commas or '=')."""
    return "'" + value.replace("'", "\\'") + "'"


def _record_job(code: int, error: str | None, wall_s: float) -> None:
    """A sweep job's record for :func:`cnnlab.sweep.summarize`; single runs need none."""
    from hydra.core.hydra_config import HydraConfig
    from hydra.types import RunMode

    from cnnlab.sweep import write_record

    hydra_cfg = HydraConfig.get()
    if hydra_cfg.mode != RunMode.MULTIRUN:
        return
    write_record(
        Path(hydra_cfg.runtime.output_dir),
        int(hydra_cfg.job.num),
        list(hydra_cfg.overrides.task),
        code,
        error,
        wall_s,
    )
