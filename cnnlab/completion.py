"""Tab completion of config options (``layer=<TAB>``) through Hydra's completion engine.

Typer completes command names and flags; for the overrides argument it calls
:func:`complete_overrides`, which asks Hydra the same question its own ``-sc query`` would.
"""

from __future__ import annotations


def complete_overrides(command: str, previous: list[str], incomplete: str) -> list[str]:
    """Completions of ``incomplete`` after the overrides already typed, for one command."""
    from hydra._internal.config_loader_impl import ConfigLoaderImpl
    from hydra._internal.core_plugins.bash_completion import BashCompletion
    from hydra._internal.utils import create_config_search_path

    from cnnlab.config import config_dir, register_schemas

    register_schemas()
    loader = ConfigLoaderImpl(config_search_path=create_config_search_path(str(config_dir())))
    line = " ".join([*previous, incomplete])
    try:
        return BashCompletion(loader)._query(config_name=command, line=line)
    except Exception:  # a half-typed line may not parse; offer nothing rather than a traceback
        return []
