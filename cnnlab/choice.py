"""The type of every named choice: a string enum that Hydra checks and a library call names.

Members are named as their values, so ``trainer.rng=device`` on the command line is the
member ``device`` (OmegaConf matches names); calling the enum with a value it lacks, as a
library user may, raises a ValueError that lists the choices.
"""

from __future__ import annotations

from enum import StrEnum


class Choice(StrEnum):
    """A string enum whose unknown values are a ValueError naming the choices."""

    @classmethod
    def _missing_(cls, value: object) -> None:
        names = ", ".join(cls)
        raise ValueError(f"{value!r} is not a {cls.__name__}; choose from {names}")
