"""Resource budgets for NetAdapt: ``latency<=50%`` of the original network, or an absolute value.

Text forms (CLI ``--budget``, recipes)::

    latency=0.5        50% of the original network's latency (a fraction in (0, 1])
    energy=60%         the same as energy=0.6
    macs=abs:2.5e6     absolute: at most 2.5 M MACs per image
    latency=abs:0.8ms  absolute, with the resource's unit (ms for latency and measured)

Several budgets hold at once (NetAdapt stops when every one is met).
"""

from __future__ import annotations

import math
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from ..errors import HwawareError
from .resources import resource_names, resource_unit

_NUMBER = r"[-+]?(?:\d+\.?\d*|\.\d+)(?:[eE][-+]?\d+)?"


@dataclass(frozen=True)
class Budget:
    """``resource <= value`` (``relative``: a fraction of the original network's value)."""

    resource: str
    value: float
    relative: bool = True

    def __post_init__(self) -> None:
        names = resource_names()
        if self.resource not in names:
            from .._suggest import did_you_mean

            raise HwawareError(
                f"unknown resource '{self.resource}'{did_you_mean(self.resource, names)}; "
                f"known resources: {', '.join(names)}"
            )
        v = self.value
        if isinstance(v, bool) or not isinstance(v, (int, float)) or not math.isfinite(v):
            raise HwawareError(f"budget for '{self.resource}': value must be a finite number, got {v!r}")
        object.__setattr__(self, "value", float(v))
        if self.relative and not 0.0 < v <= 1.0:
            raise HwawareError(
                f"budget for '{self.resource}': a relative budget is a fraction in (0, 1] of the "
                f"original network (e.g. {self.resource}=0.5 or {self.resource}=50%), got {v:g}; "
                f"for an absolute value write {self.resource}=abs:{v:g}"
            )
        if not self.relative and v <= 0:
            raise HwawareError(f"budget for '{self.resource}': an absolute budget must be positive, got {v:g}")

    def limit(self, initial: float) -> float:
        """The absolute bound, given the original network's value of this resource."""
        return self.value * initial if self.relative else self.value

    def __str__(self) -> str:
        if self.relative:
            return f"{self.resource}<={self.value * 100:g}%"
        unit = resource_unit(self.resource)
        return f"{self.resource}<={self.value:g}{(' ' + unit) if unit else ''}"

    def to_text(self) -> str:
        """The ``--budget`` form that parses back to this budget."""
        return f"{self.resource}={self.value!r}" if self.relative else f"{self.resource}=abs:{self.value!r}"

    @classmethod
    def parse(cls, text: str) -> Budget:
        """Parse ``NAME=FRACTION``, ``NAME=P%`` or ``NAME=abs:VALUE[unit]``."""
        if not isinstance(text, str) or "=" not in text:
            raise HwawareError(
                f"budget {text!r}: expected NAME=VALUE, e.g. latency=0.5, energy=60% or macs=abs:2e6"
            )
        name, _, raw = (s.strip() for s in text.partition("="))
        names = resource_names()
        if name not in names:  # check the name first so the message is about the name
            cls(name, 1.0)
        value = raw.lower()
        if value.startswith("abs:"):
            value = value[4:].strip()
            unit = resource_unit(name).lower()
            if unit and value.endswith(unit):
                value = value[: -len(unit)].strip()
            if not re.fullmatch(_NUMBER, value):
                raise HwawareError(
                    f"budget {text!r}: '{raw}' is not a number; absolute budgets look like "
                    f"{name}=abs:1.5{unit}"
                )
            return cls(name, float(value), relative=False)
        if value.endswith("%"):
            number = value[:-1].strip()
            if not re.fullmatch(_NUMBER, number):
                raise HwawareError(f"budget {text!r}: '{raw}' is not a percentage like 50%")
            return cls(name, float(number) / 100.0, relative=True)
        if not re.fullmatch(_NUMBER, value):
            raise HwawareError(
                f"budget {text!r}: '{raw}' is not a number; write a fraction (0.5), a percentage "
                f"(50%) or an absolute value (abs:2e6)"
            )
        return cls(name, float(value), relative=True)

    def to_dict(self) -> dict[str, Any]:
        return {"resource": self.resource, "value": self.value, "relative": self.relative}

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> Budget:
        unknown = sorted(set(d) - {"resource", "value", "relative"})
        if unknown:
            raise HwawareError(f"budget ({_keys(d)}): unknown key '{unknown[0]}'; allowed: resource, value, relative")
        if "resource" not in d or "value" not in d:
            raise HwawareError(f"budget ({_keys(d)}): needs 'resource' and 'value'")
        return cls(str(d["resource"]), d["value"], bool(d.get("relative", True)))


BudgetSpec = Budget | str | Mapping[str, Any]


def parse_budgets(spec: Iterable[BudgetSpec] | Mapping[str, float | str] | str) -> tuple[Budget, ...]:
    """Normalize budgets given as Budget objects, ``"latency=0.5"`` strings, budget dicts, or a
    mapping ``{"latency": 0.5, "energy": "60%"}``. At least one; one budget per resource."""
    items: list[Budget] = []
    if isinstance(spec, str):
        spec = [spec]
    if isinstance(spec, Mapping) and "resource" not in spec:
        for name, value in spec.items():
            items.append(Budget.parse(f"{name}={value}") if isinstance(value, str) else Budget(str(name), value))
    else:
        if isinstance(spec, Mapping):
            spec = [spec]
        for s in spec:
            if isinstance(s, Budget):
                items.append(s)
            elif isinstance(s, str):
                items.append(Budget.parse(s))
            elif isinstance(s, Mapping):
                items.append(Budget.from_dict(s))
            else:
                raise HwawareError(f"budget {s!r}: expected a string like 'latency=0.5' or a Budget")
    if not items:
        raise HwawareError("no budget given; add at least one, e.g. --budget latency=0.5")
    seen: set[str] = set()
    for b in items:
        if b.resource in seen:
            raise HwawareError(f"two budgets for '{b.resource}'; give one budget per resource")
        seen.add(b.resource)
    return tuple(items)


def _keys(d: Mapping[str, Any]) -> str:
    """``{'resource': 'latency', 'valu': 0.5}`` -> ``resource=latency, valu=0.5`` (errors show no raw dicts)."""
    return ", ".join(f"{k}={v}" for k, v in d.items()) or "empty"
