"""One recipe key: :class:`Option` (type, default, doc, allowed values) and its value check;
options mirrored from a config dataclass so defaults live in one place."""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from .._suggest import did_you_mean

__all__ = ["REQUIRED", "SKIP", "Option", "check_value", "dataclass_options"]


class _Required:
    def __repr__(self) -> str:
        return "required"


REQUIRED: Any = _Required()


@dataclass(frozen=True)
class Option:
    """One key: ``type`` is ``int``, ``float``, ``str``, ``bool``, ``list[str]``, ``list[int]``,
    ``dict`` or ``any``; ``nullable`` allows ``null``; ``choices``/``low``/``high`` restrict the
    value (``low_open``: the bound itself is not allowed); ``check`` returns an error text or None;
    ``file``: the value names a file that must exist (``model``, ``data``, ``hardware``, ``path``)."""

    name: str
    type: str
    default: Any = REQUIRED
    doc: str = ""
    nullable: bool = False
    choices: tuple[Any, ...] | None = None
    low: float | None = None
    high: float | None = None
    low_open: bool = False
    high_open: bool = False
    check: Callable[[Any], str | None] | None = None
    file: str = ""

    @property
    def required(self) -> bool:
        return self.default is REQUIRED

    def type_text(self) -> str:
        t = self.type
        if self.choices:
            t = " | ".join(str(c) for c in self.choices)
        if self.low is not None or self.high is not None:
            lo = "" if self.low is None else (f"({self.low:g}" if self.low_open else f"[{self.low:g}")
            hi = "" if self.high is None else (f"{self.high:g})" if self.high_open else f"{self.high:g}]")
            t += f" in {lo or '(-inf'}, {hi or 'inf)'}"
        return t + (" or null" if self.nullable else "")


def check_value(opt: Option, value: Any) -> tuple[Any, str | None]:
    """(converted value, error text)."""
    if value is None:
        return (None, None) if opt.nullable or opt.default is None else (None, f"must be {opt.type_text()}, got null")
    t = opt.type
    if t == "bool":
        if not isinstance(value, bool):
            return value, f"must be true or false, got {value!r}"
    elif t == "int":
        if isinstance(value, bool) or not isinstance(value, int):
            if isinstance(value, float) and value.is_integer():
                value = int(value)
            else:
                return value, f"must be an integer, got {value!r}"
    elif t == "float":
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            return value, f"must be a number, got {value!r}"
        value = float(value)
        if not math.isfinite(value):
            return value, f"must be a finite number, got {value!r}"
    elif t == "str":
        if isinstance(value, (int, float)) and not isinstance(value, bool) and opt.choices is None:
            value = str(value)
        if not isinstance(value, str):
            return value, f"must be a string, got {value!r}"
    elif t.startswith("list["):
        inner = t[5:-1]
        if isinstance(value, (str, int, float)) and not isinstance(value, bool) and inner == "str":
            value = [str(value)]
        if not isinstance(value, list):
            return value, f"must be a list of {inner}, got {value!r}"
        for i, v in enumerate(value):
            ok = isinstance(v, str) if inner == "str" else (isinstance(v, int) and not isinstance(v, bool))
            if not ok:
                return value, f"item {i} must be {'a string' if inner == 'str' else 'an integer'}, got {v!r}"
    elif t == "dict":
        if not isinstance(value, dict):
            return value, f"must be a mapping, got {value!r}"
    if opt.choices is not None and value not in opt.choices:
        return value, (f"'{value}' is not allowed{did_you_mean(str(value), [str(c) for c in opt.choices])}; "
                       f"allowed: {', '.join(str(c) for c in opt.choices)}")
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        if opt.low is not None and (value < opt.low or (opt.low_open and value == opt.low)):
            return value, f"must be {opt.type_text()}, got {value!r}"
        if opt.high is not None and (value > opt.high or (opt.high_open and value == opt.high)):
            return value, f"must be {opt.type_text()}, got {value!r}"
    if opt.check is not None:
        msg = opt.check(value)
        if msg:
            return value, msg
    return value, None


def dataclass_options(cls: type, docs: Mapping[str, str], skip: Sequence[str] = (),
                       defaults: Mapping[str, Any] | None = None) -> tuple[Option, ...]:
    """Options mirroring a config dataclass (its own __post_init__ checks the ranges)."""
    kinds = {"float": "float", "int": "int", "str": "str", "bool": "bool", "int | None": "int",
             "float | None": "float", "str | None": "str", "tuple[str, ...]": "list[str]"}
    out = []
    for f in dataclasses.fields(cls):
        if f.name in skip:
            continue
        ann = f.type if isinstance(f.type, str) else getattr(f.type, "__name__", "any")
        default = (defaults or {}).get(f.name, f.default)
        if isinstance(default, tuple):
            default = list(default)
        out.append(Option(f.name, kinds.get(ann, "any"), default, docs.get(f.name, ""),
                          nullable="None" in ann))
    return tuple(out)


SKIP = Option("skip", "bool", False, "skip this stage (e.g. --set train.skip=true)")
