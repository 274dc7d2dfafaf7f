"""Reading a config dataclass's own description, so the recipe schema and the CLI flags take
each option's default and help from the one place it is defined.

A config class documents its fields in its docstring, one entry per line, four spaces in, the
field name(s) then the text (continuation lines indented further)::

    step             fraction of the remaining weights one step removes
    lr, momentum     the fine-tune's SGD settings
"""

from __future__ import annotations

import dataclasses
import re
from typing import Any

__all__ = ["config_defaults", "config_docs"]


def config_docs(cls: type) -> dict[str, str]:
    """``{field: help text}`` from ``cls``'s docstring table (fields it does not list are absent)."""
    names = {f.name for f in dataclasses.fields(cls)}
    docs: dict[str, str] = {}
    last: list[str] = []
    for line in (cls.__doc__ or "").splitlines():
        m = re.match(r"^\s{4}([a-z_]+(?:,\s*[a-z_]+)*)\s+(\S.*)$", line)
        if m and all(n.strip() in names for n in m.group(1).split(",")):
            last = [n.strip() for n in m.group(1).split(",")]
            for n in last:
                docs[n] = m.group(2).strip()
        elif line.startswith(" " * 6) and line.strip() and last:  # continuation of the last entry
            for n in last:
                docs[n] += " " + line.strip()
        else:
            last = []
    return docs


def config_defaults(cls: type) -> dict[str, Any]:
    """``{field: default}`` of a config dataclass (fields without a default are absent)."""
    out = {}
    for f in dataclasses.fields(cls):
        if f.default is not dataclasses.MISSING:
            out[f.name] = f.default
        elif f.default_factory is not dataclasses.MISSING:
            out[f.name] = f.default_factory()
    return out
