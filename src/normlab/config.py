"""Building config dataclasses from saved dicts (config.json, study.json)."""

from __future__ import annotations

import dataclasses
from types import SimpleNamespace
from typing import Any, TypeVar

T = TypeVar("T")


def dataclass_from_dict(cls: type[T], d: dict[str, Any], where: str | None = None) -> T:
    """``cls(**d)``, refusing keys that are not fields of the dataclass ``cls`` by name.

    ``where`` names the file the dict came from, for the error message.
    """
    names = {f.name for f in dataclasses.fields(cls)}
    unknown = sorted(set(d) - names)
    if unknown:
        prefix = f"{where}: " if where else ""
        raise ValueError(f"{prefix}expected {cls.__name__} keys ({', '.join(sorted(names))}), "
                         f"got unknown {', '.join(unknown)}")
    return cls(**d)


def defaults(cls: type) -> SimpleNamespace:
    """The default of every field of the dataclass ``cls`` that has one, without building a ``cls``
    (whose validation may need a field without a usable default, such as ``NERConfig.data``)."""
    out = SimpleNamespace()
    for f in dataclasses.fields(cls):
        if f.default is not dataclasses.MISSING:
            setattr(out, f.name, f.default)
        elif f.default_factory is not dataclasses.MISSING:
            setattr(out, f.name, f.default_factory())
    return out


# Config fields whose command-line flag is not ``--`` + the name with dashes.
_FLAG_SPELLING = {"crf_constraints": "--no-crf-constraints", "progress": "--no-progress"}


def flag(name: str) -> str:
    """The command-line flag of a config field, for messages: ``batch_size`` -> ``--batch-size``.

    Errors name what the user typed, not the dataclass field behind it.
    """
    return _FLAG_SPELLING.get(name, "--" + name.replace("_", "-"))
