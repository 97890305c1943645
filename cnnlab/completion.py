"""Tab completion of config options (``layer=<TAB>``) through Hydra's completion engine.

Typer completes command names and flags; for the overrides argument it calls
:func:`complete_overrides`, which asks Hydra the same question its own ``-sc query`` would.
A saved run (``predict``'s and ``export``'s first argument) and image files are left to the
shell's own path completion.
"""

from __future__ import annotations

import os
from pathlib import Path


def _rejoin(words: list[str]) -> list[str]:
    """Undo bash's split at ``=`` (it is in COMP_WORDBREAKS): ``layer``, ``=``, ``b`` is one
    override, ``layer=b``. Shells that keep words whole (zsh, fish) pass through unchanged."""
    joined: list[str] = []
    glue = False
    for word in words:
        if word == "=" and joined:
            joined[-1] += "="
            glue = True
        elif glue:
            joined[-1] += word
            glue = False
        else:
            joined.append(word)
    return joined


def complete_overrides(
    command: str, previous: list[str], incomplete: str, among_paths: bool = False
) -> list[str]:
    """Completions of ``incomplete`` after the overrides already typed, for one command
    (``among_paths``: the words typed before without ``=``, paths, are left out).

    Returns what replaces ``incomplete`` in the shell: when bash split ``layer=b`` into words,
    only the part after ``=`` is the current word, so only that part is returned.
    """
    from cnnlab.config import config_dir, register_schemas
    from cnnlab.hydra_internal import completions

    words = _rejoin([*previous, incomplete])
    current, before = words[-1], words[:-1]
    if among_paths:
        before = [word for word in before if "=" in word]
    register_schemas()
    try:
        found = completions(config_dir(), command, " ".join([*before, current]))
    except Exception:  # a half-typed line may not parse; offer nothing rather than a traceback
        return []
    cut = len(current) - len(incomplete)
    # The ConfigStore's schemas sit in the config groups too; they are not options to offer.
    return [f[cut:] for f in found if f.startswith(current) and not f.endswith("_schema")]


def complete_overrides_or_paths(command: str, previous: list[str], incomplete: str) -> list[str]:
    """After ``predict``'s run, where image paths and overrides mix: nothing where the word is
    no ``key=value`` and starts a path that is there, so that the shell completes the path
    itself (bash and zsh do when given nothing); otherwise the overrides
    (:func:`complete_overrides`, given the overrides among ``previous``)."""
    current = _rejoin([*previous, incomplete])[-1]
    if "=" not in current:
        folder, _, stem = os.path.expanduser(current).rpartition("/")
        where = Path(folder or ("/" if current.startswith("/") else "."))
        try:
            if any(entry.name.startswith(stem) for entry in where.iterdir()):
                return []
        except OSError:
            pass
    return complete_overrides(command, previous, incomplete, among_paths=True)
