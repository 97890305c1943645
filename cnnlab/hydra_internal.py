"""The only module that uses Hydra's private API (``hydra._internal``), and why.

Hydra offers no public entry point for two things cnnlab needs:

- the parser of its own command-line flags (``--cfg job``, ``--info``, ``-sc`` ...): cnnlab
  splits them from the overrides before it hands both to ``hydra.main``, and must accept
  exactly the flags Hydra will;
- its completion engine, which knows every group, option and key of a config: ``layer=<TAB>``
  asks it the question its own ``--shell-completion`` would, for one cnnlab command.

Keeping both here confines a Hydra upgrade's breakage to one file (hydra-core is pinned below
1.4 in pyproject.toml for this reason).
"""

from __future__ import annotations

import argparse
from pathlib import Path


def flags_parser() -> argparse.ArgumentParser:
    """Hydra's parser of ``hydra.main`` arguments: its flags, and the overrides."""
    from hydra._internal.utils import get_args_parser

    return get_args_parser()


def completions(config_dir: Path, command: str, line: str) -> list[str]:
    """What Hydra's completion engine offers for the last word of ``line`` (overrides typed so
    far), for the command whose primary config is ``conf/<command>.yaml``."""
    from hydra._internal.config_loader_impl import ConfigLoaderImpl
    from hydra._internal.core_plugins.bash_completion import BashCompletion
    from hydra._internal.utils import create_config_search_path

    loader = ConfigLoaderImpl(config_search_path=create_config_search_path(str(config_dir)))
    return list(BashCompletion(loader)._query(config_name=command, line=line))
