"""The integer graph's node type: one op reads values by index and writes codes at ``fy``."""

from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass

import numpy as np

from .format import FixedFormat, OpResult

__all__ = ["InputOp", "IntOp"]

UNSET_FORMAT = FixedFormat(0)  # placeholder default of the format fields (always set by the converter)

@dataclass(eq=False)
class IntOp(ABC):
    """One node of the integer graph: reads the values ``inputs`` (indices), writes codes at ``fy``."""

    name: str
    op: str
    inputs: tuple[int, ...]
    fy: FixedFormat

    @abstractmethod
    def run(self, xs: list[np.ndarray], arith: dict[str, str]) -> OpResult:
        """Compute this node's output codes from its inputs' codes under the arithmetic ``arith``."""


@dataclass(eq=False)
class InputOp(IntOp):
    def run(self, xs, arith):
        raise AssertionError("the input has no op to run")
