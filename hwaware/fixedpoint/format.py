"""Fixed-point formats and the shift / round / cut primitives of the arithmetic contract.

A tensor is integer codes ``v`` with ``f`` fractional bits: value = ``v * 2**-f`` (dynamic fixed
point: ``f`` is chosen per tensor). Codes of a ``bits``-wide format lie in
``[-2**(bits-1), 2**(bits-1) - 1]``; 16 bits gives [-32768, 32767].

Primitives (work on NumPy int64 arrays and torch int64 tensors alike, exact for |v| < 2**61):

- ``shift(v, s, rounding)``: divide by ``2**s``. ``floor`` is an arithmetic right shift;
  ``nearest`` adds ``2**(s-1)`` first (round half up). A negative ``s`` is an exact left shift.
- ``cut(v, bits, overflow)``: to ``bits`` bits by two's-complement ``wrap`` or by ``saturate``
  (clamp). ``shift_cut`` does both and stays exact for any left shift (no int64 overflow).

Worked example: 1.5 at f=14 is code 24576; 24576 * 24576 = 603979776 at f=28; shifting by
s = 28 - 14 = 14 gives 36864, which does not fit 16 bits: ``wrap`` -> -28672, ``saturate`` -> 32767.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import numpy as np

from ..errors import HwawareError

MODES = ("eyeriss", "wide")
ROUNDINGS = ("floor", "nearest")
OVERFLOWS = ("wrap", "saturate")
DEFAULT_MODE, DEFAULT_ROUNDING, DEFAULT_OVERFLOW = "eyeriss", "floor", "wrap"

FRAC_MIN, FRAC_MAX = -32, 48  # allowed fractional bits
BITS_MIN, BITS_MAX = 2, 16  # codes are stored in int16 containers

_RIGHT_CAP = 62  # shifting |v| < 2**61 right by >= 62 gives the same as shifting by 62


@dataclass(frozen=True)
class FixedFormat:
    """``bits``-wide two's-complement codes with ``frac_bits`` fractional bits."""

    frac_bits: int
    bits: int = 16

    def __post_init__(self) -> None:
        for k in ("frac_bits", "bits"):
            v = getattr(self, k)
            if isinstance(v, bool) or not isinstance(v, (int, np.integer)):
                raise HwawareError(f"FixedFormat: '{k}' must be an integer, got {v!r}")
            object.__setattr__(self, k, int(v))
        if not BITS_MIN <= self.bits <= BITS_MAX:
            raise HwawareError(f"FixedFormat: bits must be within {BITS_MIN}..{BITS_MAX}, got {self.bits}")
        if not FRAC_MIN <= self.frac_bits <= FRAC_MAX:
            raise HwawareError(
                f"FixedFormat: frac_bits must be within {FRAC_MIN}..{FRAC_MAX}, got {self.frac_bits}"
            )

    @property
    def qmin(self) -> int:
        return -(1 << (self.bits - 1))

    @property
    def qmax(self) -> int:
        return (1 << (self.bits - 1)) - 1

    @property
    def lsb(self) -> float:
        """Value of one code step, ``2**-frac_bits``."""
        return math.ldexp(1.0, -self.frac_bits)

    def quantize(self, x: Any) -> np.ndarray:
        """Float -> codes: round to nearest (half up) and saturate (the offline/input conversion)."""
        a = np.asarray(x, dtype=np.float64)
        if a.size and not np.isfinite(a).all():
            raise HwawareError("cannot quantize: the tensor holds NaN or Inf")
        codes = np.floor(np.ldexp(a, self.frac_bits) + 0.5)
        return np.clip(codes, self.qmin, self.qmax).astype(np.int16 if self.bits <= 16 else np.int32)

    def dequantize(self, codes: Any) -> np.ndarray:
        return np.ldexp(np.asarray(codes, dtype=np.float64), -self.frac_bits)

    def __str__(self) -> str:
        return f"Q{self.bits}.f{self.frac_bits}"


def frac_bits_for(max_abs: float, bits: int = 16, *, headroom: float = 0) -> int:
    """Largest ``f`` with ``max_abs * 2**headroom * 2**f <= 2**(bits-1) - 1``.

    The max rule (not a percentile): with the default ``wrap`` overflow a value beyond the range
    turns into a wrong-signed one, so the range must cover every value seen, times a margin of
    ``2**headroom`` for values the calibration data did not show (``headroom`` may be fractional:
    0.5 covers 1.41x the maximum). Clamped to the allowed range; an all-zero tensor gets the finest
    format. Examples at 16 bits: max 1.0 -> f = 14; max 1.0, headroom 0.5 -> f = 14; max 1.5,
    headroom 0.5 -> f = 13; max 1.0, headroom 1 -> f = 13.
    """
    m = float(max_abs)
    if not math.isfinite(m):
        raise HwawareError(f"cannot choose a format: max |value| is {m}")
    if not (math.isfinite(float(headroom)) and float(headroom) >= 0):
        raise HwawareError(f"cannot choose a format: headroom must be >= 0 bits, got {headroom}")
    if headroom != int(headroom):
        m = m * 2.0 ** float(headroom)
        headroom = 0
    qmax = (1 << (bits - 1)) - 1
    if m <= 0.0:
        return FRAC_MAX
    f = math.floor(math.log2(qmax / m))
    while math.ldexp(m, f) > qmax:  # guard the log's rounding
        f -= 1
    while math.ldexp(m, f + 1) <= qmax:
        f += 1
    return max(FRAC_MIN, min(FRAC_MAX, f - int(headroom)))


def check_arith(mode: str, rounding: str, overflow: str) -> None:
    """Validate the three arithmetic options (one-line error naming the bad one)."""
    for name, value, allowed in (("mode", mode, MODES), ("rounding", rounding, ROUNDINGS),
                                 ("overflow", overflow, OVERFLOWS)):
        if value not in allowed:
            raise HwawareError(f"{name} must be one of {', '.join(allowed)}, got {value!r}")


@dataclass(frozen=True)
class Arithmetic:
    """How the integer backend computes: ``mode`` (``eyeriss``: 16-bit products and adder, as the
    chip; ``wide``: exact accumulation), ``rounding`` of shifted products (``floor``, ``nearest``)
    and what an out-of-range value does (``wrap``, ``saturate``). :data:`DEFAULT_ARITHMETIC` is the
    chip's (eyeriss/floor/wrap): conversion, test vectors, the bit-width search, the CLI verbs and
    the recipe stages all default to it, so one job never mixes two arithmetics by accident."""

    mode: str = DEFAULT_MODE
    rounding: str = DEFAULT_ROUNDING
    overflow: str = DEFAULT_OVERFLOW

    def __post_init__(self) -> None:
        check_arith(self.mode, self.rounding, self.overflow)

    def as_dict(self) -> dict[str, str]:
        """``{"mode": ..., "rounding": ..., "overflow": ...}`` (the keyword arguments of convert etc.)."""
        return {"mode": self.mode, "rounding": self.rounding, "overflow": self.overflow}

    def __str__(self) -> str:
        return f"{self.mode}/{self.rounding}/{self.overflow}"


DEFAULT_ARITHMETIC = Arithmetic()


# --- primitives (NumPy int64 arrays or torch int64 tensors) --------------------------------------

def shift(v: Any, s: int, rounding: str) -> Any:
    """``v / 2**s`` rounded per ``rounding`` (exact left shift for ``s <= 0``; may exceed int64)."""
    if s <= 0:
        return v << (-s)
    s = min(s, _RIGHT_CAP)
    if rounding == "nearest":
        v = v + (1 << (s - 1))
    return v >> s


def wrap(v: Any, bits: int = 16) -> Any:
    """Two's-complement wrap of int64 values to ``bits`` bits."""
    half = 1 << (bits - 1)
    return ((v + half) & ((1 << bits) - 1)) - half


def cut(v: Any, bits: int, overflow: str) -> tuple[Any, Any]:
    """``(codes, overflowed)``: ``v`` cut to ``bits`` bits, and where it did not fit."""
    lo, hi = -(1 << (bits - 1)), (1 << (bits - 1)) - 1
    over = (v < lo) | (v > hi)
    return (wrap(v, bits) if overflow == "wrap" else v.clip(lo, hi)), over


def shift_cut(v: Any, s: int, rounding: str, overflow: str, bits: int = 16) -> tuple[Any, Any]:
    """``cut(shift(v, s))`` without int64 overflow for large left shifts; ``(codes, overflowed)``."""
    if s > 0:
        return cut(shift(v, s, rounding), bits, overflow)
    k = -s
    lo, hi = -(1 << (bits - 1)), (1 << (bits - 1)) - 1
    # the overflow flag only needs whether v * 2**k leaves the range: clip v first (same answer)
    vc = v.clip(lo - 1, hi + 1) << min(k, bits + 1)
    over = (vc < lo) | (vc > hi)
    if overflow == "saturate":
        return vc.clip(lo, hi), over
    if k >= bits:
        return v * 0, over
    return wrap((v & ((1 << bits) - 1)) << k, bits), over


def div_round(num: Any, den: int, rounding: str) -> Any:
    """``num / den`` for a positive integer ``den``: floor, or nearest with halves rounded up."""
    if rounding == "nearest":
        return (2 * num + den) // (2 * den)
    return num // den


@dataclass(frozen=True, eq=False)
class OpResult:
    """Output codes of one integer op and what overflowed on the way.

    ``product_overflows``: products whose shifted value left 16 bits (mode ``eyeriss`` only; wrapped
    or saturated per ``overflow``). ``output_overflows``: outputs whose exact value left the range
    before the final cut (mode ``eyeriss``: the exact sum of bias and cut products left 16 bits and
    the adder wrapped; other ops: the value was wrapped or saturated to the output format).
    """

    y: np.ndarray
    product_overflows: int = 0
    output_overflows: int = 0


def pair(v: Any, name: str) -> tuple[int, int]:
    """An int or a (vertical, horizontal) pair, as PyTorch layers take it."""
    if isinstance(v, (tuple, list)):
        if len(v) == 1:
            return int(v[0]), int(v[0])
        if len(v) != 2:
            raise HwawareError(f"'{name}' must be an int or a pair, got {v!r}")
        return int(v[0]), int(v[1])
    return int(v), int(v)
