"""Integer-graph ops for activations, the elementwise multiply and pooling (see
:mod:`.activations` and :mod:`.pooling` for the arithmetic, docs/fixedpoint.md for the contract)."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from . import activations, pooling
from .format import OpResult
from .intop import UNSET_FORMAT, IntOp

__all__ = ["ClampOp", "HardOp", "LeakyReluOp", "LutOp", "MulOp", "WindowPoolOp"]


@dataclass(eq=False)
class ClampOp(IntOp):
    """ReLU6 / Hardtanh (format unchanged, exact)."""

    lo: float = 0.0
    hi: float = 6.0

    def run(self, xs, arith):
        return activations.clamp(xs[0], self.lo, self.hi, fx=self.fy)


@dataclass(eq=False)
class LeakyReluOp(IntOp):
    fx: object = UNSET_FORMAT
    slope_code: int = 0
    fs: int = 0

    def run(self, xs, arith):
        return activations.leaky_relu(xs[0], self.slope_code, self.fs, fx=self.fx, fy=self.fy,
                                      rounding=arith["rounding"], overflow=arith["overflow"])


@dataclass(eq=False)
class HardOp(IntOp):
    """Hardswish / Hardsigmoid: the exact rational result rounded once."""

    fx: object = UNSET_FORMAT
    fn: str = "hardswish"

    def run(self, xs, arith):
        f = activations.hardswish if self.fn == "hardswish" else activations.hardsigmoid
        return f(xs[0], fx=self.fx, fy=self.fy, rounding=arith["rounding"], overflow=arith["overflow"])


@dataclass(eq=False)
class LutOp(IntOp):
    """Sigmoid / Tanh / SiLU / GELU through the interpolated gate table."""

    fx: object = UNSET_FORMAT
    fn: str = "sigmoid"

    @property
    def gate_error(self) -> float:
        """Max |table gate - exact gate| (docs/fixedpoint.md); SiLU/GELU: times |x|."""
        return activations.GATE_MAX_ERROR[activations.LUT_FUNCTIONS[self.fn][0]]

    def run(self, xs, arith):
        return activations.lut(xs[0], self.fn, fx=self.fx, fy=self.fy, rounding=arith["rounding"],
                               overflow=arith["overflow"])


@dataclass(eq=False)
class MulOp(IntOp):
    """``a * b`` with broadcasting (a squeeze-excitation gate times the features)."""

    fa: object = UNSET_FORMAT
    fb: object = UNSET_FORMAT

    def run(self, xs, arith):
        return activations.mul(xs[0], xs[1], fa=self.fa, fb=self.fb, fy=self.fy,
                               rounding=arith["rounding"], overflow=arith["overflow"])


@dataclass(eq=False)
class WindowPoolOp(IntOp):
    """Average or max pooling over PyTorch's windows: AvgPool/MaxPool (any padding, ceil_mode,
    count_include_pad), adaptive average pooling (any sizes), ``mean`` over H and W.

    ``adaptive``: output size (adaptive/mean); else ``kernel``/``stride``/``padding``.
    ``keepdim=False`` (a ``mean`` without keepdim) drops the two pooled dims. ``dims=1``: 1-D.
    """

    kind: str = "avg"
    fx: object = UNSET_FORMAT
    kernel: tuple[int, int] = (1, 1)
    stride: tuple[int, int] = (1, 1)
    padding: tuple[int, int] = (0, 0)
    ceil_mode: bool = False
    count_include_pad: bool = True
    adaptive: tuple[int, int] | None = None
    keepdim: bool = True
    dims: int = 2

    def run(self, xs, arith):
        x = xs[0]
        if self.dims == 1:
            x = x[:, :, None, :]
        H, W = x.shape[2:]
        if self.kind == "max":
            r = pooling.max_pool(x, self.kernel, self.stride, self.padding, self.ceil_mode)
        else:
            if self.adaptive is not None:
                rows = pooling.adaptive_windows(H, self.adaptive[0])
                cols = pooling.adaptive_windows(W, self.adaptive[1])
            else:
                rows = pooling.pool_windows(H, self.kernel[0], self.stride[0], self.padding[0], self.ceil_mode)
                cols = pooling.pool_windows(W, self.kernel[1], self.stride[1], self.padding[1], self.ceil_mode)
            r = pooling.avg_pool(x, rows, cols, count_padded=self.count_include_pad, fx=self.fx,
                                 fy=self.fy, rounding=arith["rounding"], overflow=arith["overflow"])
        y = r.y[:, :, 0, :] if self.dims == 1 else r.y
        if not self.keepdim:
            y = y.reshape(y.shape[0], y.shape[1])
        return OpResult(np.ascontiguousarray(y), r.product_overflows, r.output_overflows)
