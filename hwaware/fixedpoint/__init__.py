"""Bit-accurate 16-bit fixed-point backend (Eyeriss arithmetic) and test vectors (the RLC codec is
:mod:`hwaware.workload.rlc`).

See docs/fixedpoint.md for the arithmetic contract. Submodules: ``format`` (FixedFormat and the
shift/round/cut primitives), ``golden`` (plain NumPy reference), ``ops`` (fast kernels), ``convert``
(float model -> integer model), ``vectors`` (hardware test vectors), ``verify`` (bit-exactness and top-1 agreement checks),
``quantize`` (energy-aware bit-width search).
"""

from __future__ import annotations

import importlib
import sys
import types
from typing import Any

_EXPORTS = {
    "FixedFormat": "hwaware.fixedpoint.format",
    "convert": "hwaware.fixedpoint.convert",
    "FixedPointModel": "hwaware.fixedpoint.convert",
    "export_vectors": "hwaware.fixedpoint.vectors",
    "quantize": "hwaware.fixedpoint.quantize",
}

__all__ = list(_EXPORTS)


def __getattr__(name: str) -> Any:
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module 'hwaware.fixedpoint' has no attribute {name!r}")
    value = getattr(importlib.import_module(module), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(__all__)


class _Package(types.ModuleType):
    """``convert`` and ``quantize`` are functions named like the submodules that define them. The
    import system binds a submodule to its package attribute when it is first imported, which would
    make ``from hwaware.fixedpoint import convert`` return the module whenever some other code had
    imported ``hwaware.fixedpoint.convert`` first; the exported function always wins here (the
    submodules stay reachable as ``sys.modules["hwaware.fixedpoint.convert"]`` and by ``from
    hwaware.fixedpoint.convert import ...``)."""

    def __setattr__(self, name: str, value: Any) -> None:
        if name in _EXPORTS and isinstance(value, types.ModuleType) and value.__name__ == f"{__name__}.{name}":
            return
        super().__setattr__(name, value)


sys.modules[__name__].__class__ = _Package
