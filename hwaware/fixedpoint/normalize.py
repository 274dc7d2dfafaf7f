"""Integer per-channel affine and LayerNorm over channels, bit-identical to :mod:`.golden`.

The contract is docs/fixedpoint.md, "Per-channel affine and LayerNorm". Codes ``x`` at ``fx``;
the channel axis is ``dim`` (1: N x C x ..., as a BatchNorm or timm's LayerNorm2d; -1: channels
last, as ``nn.LayerNorm`` after a permute):

- ``affine``: ``y = (x * a[c] + b[c]) >> (fx + fa - fy)``, one rounding, one cut. ``a``: int16
  codes at ``fa``; ``b``: int64 codes at ``fx + fa``. A BatchNorm that cannot be folded into a
  convolution (after a concat) and timm's layer-scale multiply become this op.
- ``layer_norm``: per position, over the C channels, ``S1 = sum x``, ``S2 = sum x**2`` and
  ``d = C*x - S1`` (exact); ``V = max(C*S2 - S1**2 + e, 1)`` with ``e = round(C**2 * eps *
  2**(2*fx))``, so ``d / sqrt(V) = (x - mean) / sqrt(var + eps)``. ``t`` is the smallest even
  integer with ``V < 2**(t + 30)``, ``m = floor(V / 2**t)`` (in [2**28, 2**30)) and
  ``r = isqrt(floor(2**60 / m))`` (in [2**15, 2**16]): ``1/sqrt(V) ~ r * 2**-(30 + t/2)`` with a
  relative error below :data:`RSQRT_MAX_REL` (the two floors; no table, no iteration count to
  tune). ``z = d * r >> (30 + t/2 - fz)`` at ``fz = 15 - k`` (``k`` the least with ``4**k >= C``,
  so ``|z| < sqrt(C) <= 2**k`` fits 16 bits), then the affine ``y = (z * g[c] + beta[c]) >>
  (fz + fg - fy)``.
"""

from __future__ import annotations

import numpy as np

from ..errors import HwawareError
from .format import FixedFormat, OpResult, check_arith, shift_cut

__all__ = ["RSQRT_MAX_REL", "affine", "layer_norm", "norm_frac_bits", "rsqrt_codes"]

#: max |r * 2**-(30 + t/2) * sqrt(V) - 1| over every V >= 1: the isqrt floor (r >= 2**15: 2**-15)
#: plus the floors of m and 2**60 / m (2**-29, 2**-31); measured in tests/test_fixedpoint_norm.py
RSQRT_MAX_REL = 3.06e-5

_M_BITS = 30  # m = V / 2**t holds 29 or 30 bits


def norm_frac_bits(channels: int) -> int:
    """``fz = 15 - k`` with ``k`` the least integer such that ``4**k >= channels``."""
    k = 0
    while 4**k < channels:
        k += 1
    return 15 - k


def _bit_length(v: np.ndarray) -> np.ndarray:
    """Bit length of positive int64 values (exact: the float estimate is checked and corrected)."""
    _, e = np.frexp(v.astype(np.float64))
    e = e.astype(np.int64)
    return np.where((v >> np.maximum(e - 1, 0)) == 0, e - 1, e)  # v rounded up to 2**e as a float


def rsqrt_codes(v: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """``(r, t)`` for int64 ``v >= 1``: ``1/sqrt(v) ~ r * 2**-(30 + t/2)`` (module docstring)."""
    v = np.asarray(v, dtype=np.int64)
    t = _bit_length(v) - _M_BITS
    t = t + (t & 1)  # smallest even t with v < 2**(t + 30)
    m = np.where(t >= 0, v >> np.maximum(t, 0), v << np.maximum(-t, 0))
    q = (np.int64(1) << 60) // m
    r = np.floor(np.sqrt(q.astype(np.float64))).astype(np.int64)  # q < 2**33: exact up to +-1
    r = np.where(r * r > q, r - 1, r)
    r = np.where((r + 1) * (r + 1) <= q, r + 1, r)
    return r, t


def _channels_last(x: np.ndarray, dim: int) -> np.ndarray:
    return np.moveaxis(np.asarray(x).astype(np.int64), dim, -1)


def affine(x, a, b, *, dim: int, fx: FixedFormat, fa: FixedFormat, fy: FixedFormat, rounding: str = "floor",
           overflow: str = "wrap") -> OpResult:
    """``(x * a[c] + b[c]) >> (fx + fa - fy)`` along channel axis ``dim``; one rounding, one cut."""
    check_arith("wide", rounding, overflow)
    v = _channels_last(x, dim) * np.asarray(a, dtype=np.int64) + np.asarray(b, dtype=np.int64)
    y, over = shift_cut(v, fx.frac_bits + fa.frac_bits - fy.frac_bits, rounding, overflow, fy.bits)
    return OpResult(np.ascontiguousarray(np.moveaxis(np.asarray(y), -1, dim)).astype(np.int16), 0,
                    int(np.asarray(over).sum()))


def layer_norm(x, g, beta, *, dim: int, e: int, fx: FixedFormat, fg: FixedFormat, fy: FixedFormat,
               rounding: str = "floor", overflow: str = "wrap") -> OpResult:
    """LayerNorm over the channel axis ``dim`` (module docstring); ``g`` int16 codes at ``fg``,
    ``beta`` int64 codes at ``fz + fg``, ``e`` the eps term in code units."""
    check_arith("wide", rounding, overflow)
    v = _channels_last(x, dim)
    C = v.shape[-1]
    if C >= 2**15:
        raise HwawareError(f"layer_norm: {C} channels; at most {2**15 - 1} keep the sums within int64")
    s1 = v.sum(-1, keepdims=True)
    s2 = (v * v).sum(-1, keepdims=True)
    d = C * v - s1
    var = np.maximum(C * s2 - s1 * s1 + int(e), 1)
    r, t = rsqrt_codes(var)
    fz = norm_frac_bits(C)
    s = 30 + (t >> 1) - fz  # per position; >= 1 for every V >= 1 (t >= -28, fz <= 15)
    z = d * r
    if rounding == "nearest":
        z = z + (np.int64(1) << (s - 1))
    z = z >> s
    z, over_z = shift_cut(z, 0, rounding, overflow, 16)
    y, over = shift_cut(z * np.asarray(g, dtype=np.int64) + np.asarray(beta, dtype=np.int64),
                        fz + fg.frac_bits - fy.frac_bits, rounding, overflow, fy.bits)
    y = np.moveaxis(np.asarray(y), -1, dim)
    return OpResult(np.ascontiguousarray(y).astype(np.int16), 0, int(np.asarray(over).sum() + over_z.sum()))
