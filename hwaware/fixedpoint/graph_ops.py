"""The integer graph's arithmetic nodes besides activations and pooling (:mod:`.act_ops`):
Conv/Linear (BatchNorm folded, ReLU fused), ReLU, residual add, concatenation, reshapes and
nearest upsampling."""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch

from ..errors import UnsupportedLayerError
from . import ops, shape_expr
from .format import FixedFormat, OpResult
from .intop import UNSET_FORMAT, IntOp

__all__ = ["WIDE_BIAS_LIMIT", "AddOp", "CatOp", "ConvOp", "PermuteOp", "ReluOp", "ReshapeOp", "SliceOp",
           "ExpandOp", "UpsampleOp", "wide_bias_codes"]

#: mode wide: |bias code| below this, so bias + an exact sum of products (|x*w| <= 2**30, fewer
#: than 2**31 of them) stays inside the int64 accumulator of the kernels and the golden reference
WIDE_BIAS_LIMIT = 2**62


@dataclass(eq=False)
class ConvOp(IntOp):
    """Conv1d / Conv2d / Linear. ``w``, ``b`` are codes; ``fx`` is the input's format.

    ``fxq`` (an input narrowed below 16 bits only): the layer first brings its input to this narrower
    format (its width may differ from the weights' ``fw.bits``: ``convert(act_bits=...)``).
    ``clip_input``: that requantize saturates whatever the arithmetic's ``overflow`` (a format chosen
    to clip, :mod:`.clip_formats`; ``convert(narrow_formats=...)``).
    """

    fx: FixedFormat = UNSET_FORMAT
    fw: FixedFormat = UNSET_FORMAT
    w: np.ndarray = field(default_factory=lambda: np.zeros(0, np.int16))
    b: np.ndarray | None = None
    stride: tuple[int, int] = (1, 1)
    padding: tuple[int, int] = (0, 0)
    groups: int = 1
    relu: bool = False
    fxq: FixedFormat | None = None
    #: timm Conv2dSame: zero rows/columns (top, bottom, left, right) added before a padding-0 conv
    pad_same: tuple[int, int, int, int] | None = None
    #: opt-in per-output-channel weight formats (``convert(per_channel_weights=True)``): channel m's
    #: weights have ``fw_channels[m]`` fractional bits; ``fw`` is then the coarsest of them
    fw_channels: tuple[int, ...] | None = None
    clip_input: bool = False

    @property
    def f_in(self) -> FixedFormat:
        return self.fxq or self.fx

    def prepare(self, x: np.ndarray, arith: dict[str, str]) -> np.ndarray:
        if self.pad_same is not None:
            t, b, left, r = self.pad_same
            x = np.pad(x, ((0, 0), (0, 0), (t, b), (left, r)))  # zero padding = code 0
        if self.fxq is None:
            return x
        return ops.requantize(x, fx=self.fx, fy=self.fxq, rounding=arith["rounding"],
                              overflow="saturate" if self.clip_input else arith["overflow"]).y

    def run(self, xs, arith, *, bias: Any = "own", relu: bool | None = None):
        x = self.prepare(xs[0], arith)
        b = self.b if isinstance(bias, str) else bias
        kw = {"fx": self.f_in, "fw": self.fw, "fy": self.fy, "mode": arith["mode"],
              "rounding": arith["rounding"], "overflow": arith["overflow"],
              "relu": self.relu if relu is None else relu, "fw_channels": self.fw_channels}
        if self.op == "Linear":
            if x.ndim != 2:  # channels last (N x ... x C): every position's row through the layer
                r = ops.linear(x.reshape(-1, x.shape[-1]), self.w, b, **kw)
                return OpResult(r.y.reshape(*x.shape[:-1], -1), r.product_overflows, r.output_overflows)
            return ops.linear(x, self.w, b, **kw)
        if self.op == "Conv1d":
            return ops.conv1d(x, self.w, b, stride=self.stride[1], padding=self.padding[1],
                              groups=self.groups, **kw)
        return ops.conv2d(x, self.w, b, stride=self.stride, padding=self.padding, groups=self.groups, **kw)


def wide_bias_codes(codes: np.ndarray, layer: str, op: str) -> np.ndarray:
    """Mode wide: bias values already scaled to ``f_x + f_w`` fractional bits (float64) as exact
    int64 codes, rounded half up. Never clipped: a bias that needs more than the int64
    accumulator holds raises, naming the layer. (torchvision shufflenet_v2's fc on inputs with
    default BatchNorm statistics: f_x + f_w = 49, a bias of 0.031 is a 45-bit code; an int32 bias
    held 1/8000 of it.)"""
    r = np.floor(np.asarray(codes, dtype=np.float64) + 0.5)
    if r.size and not (np.isfinite(r).all() and np.abs(r).max() < WIDE_BIAS_LIMIT):
        worst = float(np.abs(r).max())
        raise UnsupportedLayerError(
            f"convert: layer '{layer}' ({op}): its bias at f_x + f_w fractional bits is a code of {worst:.3g}, "
            f"beyond the {int(math.log2(WIDE_BIAS_LIMIT))}-bit limit of the int64 accumulator of mode 'wide' "
            f"(the input's range is tiny, so f_x is large); re-estimate BatchNorm statistics on real data, "
            f"or use mode 'eyeriss' (bias at f_y)")
    return r.astype(np.int64)


@dataclass(eq=False)
class ReluOp(IntOp):
    def run(self, xs, arith):
        return ops.relu(xs[0])


@dataclass(eq=False)
class AddOp(IntOp):
    fa: FixedFormat = UNSET_FORMAT
    fb: FixedFormat = UNSET_FORMAT
    relu: bool = False

    def run(self, xs, arith):
        return ops.add(xs[0], xs[1], fa=self.fa, fb=self.fb, fy=self.fy, rounding=arith["rounding"],
                       overflow=arith["overflow"], relu=self.relu)


@dataclass(eq=False)
class CatOp(IntOp):
    fxs: tuple[FixedFormat, ...] = ()
    dim: int = 1

    def run(self, xs, arith):
        return ops.concat(xs, fxs=self.fxs, fy=self.fy, dim=self.dim, rounding=arith["rounding"],
                          overflow=arith["overflow"])


@dataclass(eq=False)
class ReshapeOp(IntOp):
    """flatten(start, end) when ``shape`` is None, else view/reshape to ``shape``.

    ``shape`` items are :mod:`.shape_expr` expressions: ints, or sizes read from the values at
    run time (``("size", value_index, dim)`` and arithmetic on them).
    """

    start_dim: int = 1
    end_dim: int = -1
    shape: tuple[Any, ...] | None = None

    def run(self, xs, arith, values: list | None = None):
        x = xs[0]
        if self.shape is None:
            return OpResult(torch.from_numpy(x).flatten(self.start_dim, self.end_dim).numpy())
        dims = [shape_expr.evaluate(v, lambda j: values[j].shape) for v in self.shape]
        return OpResult(x.reshape(dims))


@dataclass(eq=False)
class PermuteOp(IntOp):
    """``x.permute(dims)`` / ``x.transpose(a, b)``: codes moved, format kept (made contiguous)."""

    dims: tuple[int, ...] = ()

    def run(self, xs, arith):
        return OpResult(np.ascontiguousarray(np.transpose(xs[0], self.dims)))


@dataclass(eq=False)
class SliceOp(IntOp):
    """One part of a split/chunk: indices ``start:stop`` along ``dim`` (codes and format kept)."""

    dim: int = 1
    start: int = 0
    stop: int = 0

    def run(self, xs, arith):
        idx = [slice(None)] * xs[0].ndim
        idx[self.dim] = slice(self.start, self.stop)
        return OpResult(np.ascontiguousarray(xs[0][tuple(idx)]))


@dataclass(eq=False)
class UpsampleOp(IntOp):
    """Nearest upsampling by whole factors (``scale``: one per spatial dim, the trailing dims): every
    code repeated ``scale`` times along its dim, format kept (timm HRNet's ``nn.Upsample(scale_factor=2)``)."""

    scale: tuple[int, ...] = ()
    #: the output size the model asked for (``size=``), else None (``scale_factor``): then only an input
    #: of the converted size gives it, and another one raises instead of being repeated by the factors
    size: tuple[int, ...] | None = None

    def run(self, xs, arith):
        x = xs[0]
        first = x.ndim - len(self.scale)
        if self.size is not None and tuple(d * k for d, k in zip(x.shape[first:], self.scale)) != self.size:
            raise UnsupportedLayerError(
                f"fixed-point model: layer '{self.name}' ({self.op}) upsamples to the fixed size {self.size}, "
                f"which its input {tuple(x.shape[first:])} does not reach by the converted factors {self.scale}; "
                f"convert at this input size, or upsample by scale_factor")
        for d, k in enumerate(self.scale):
            x = np.repeat(x, k, axis=first + d)
        return OpResult(np.ascontiguousarray(x))


@dataclass(eq=False)
class ExpandOp(IntOp):
    """``x.expand_as(y)``: the codes of input 0 broadcast to the shape of input 1 (read at run time),
    format kept (timm's EcaModule: ``x * y.expand_as(x)``)."""

    def run(self, xs, arith):
        return OpResult(np.ascontiguousarray(np.broadcast_to(xs[0], xs[1].shape)))
