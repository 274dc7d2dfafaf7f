"""Integer-graph ops for the per-channel affine (an unfoldable BatchNorm, a layer-scale multiply)
and LayerNorm over channels; the arithmetic is :mod:`.normalize` (docs/fixedpoint.md)."""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from . import normalize
from .format import FixedFormat
from .intop import UNSET_FORMAT, IntOp

__all__ = ["AffineOp", "LayerNormOp"]


@dataclass(eq=False)
class AffineOp(IntOp):
    """``x * a[c] + b[c]`` along channel axis ``dim`` (``a`` at ``fa``, ``b`` at ``fx + fa``)."""

    fx: FixedFormat = UNSET_FORMAT
    fa: FixedFormat = UNSET_FORMAT
    a: np.ndarray = field(default_factory=lambda: np.zeros(0, np.int16))
    b: np.ndarray = field(default_factory=lambda: np.zeros(0, np.int64))
    dim: int = 1

    def run(self, xs, arith):
        return normalize.affine(xs[0], self.a, self.b, dim=self.dim, fx=self.fx, fa=self.fa, fy=self.fy,
                                rounding=arith["rounding"], overflow=arith["overflow"])


@dataclass(eq=False)
class LayerNormOp(IntOp):
    """LayerNorm over channel axis ``dim``: normalized to ``fz`` (:func:`normalize.norm_frac_bits`),
    then ``z * g[c] + beta[c]`` (``g`` at ``fg``, ``beta`` at ``fz + fg``); ``e``: eps in code units."""

    fx: FixedFormat = UNSET_FORMAT
    fg: FixedFormat = UNSET_FORMAT
    g: np.ndarray = field(default_factory=lambda: np.zeros(0, np.int16))
    beta: np.ndarray = field(default_factory=lambda: np.zeros(0, np.int64))
    dim: int = 1
    e: int = 0

    @property
    def fz(self) -> int:
        return normalize.norm_frac_bits(len(self.g))

    def run(self, xs, arith):
        return normalize.layer_norm(xs[0], self.g, self.beta, dim=self.dim, e=self.e, fx=self.fx, fg=self.fg,
                                    fy=self.fy, rounding=arith["rounding"], overflow=arith["overflow"])
