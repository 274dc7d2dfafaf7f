"""Integer activations and the elementwise multiply, bit-identical to :mod:`.golden`.

The contract is docs/fixedpoint.md, "Activations". Input codes ``x`` at ``fx``, output at ``fy``,
``rounding`` for every shift/division, ``overflow`` for the final cut to ``fy.bits``:

- ``clamp`` (ReLU6, Hardtanh): codes clamped to ``ceil(lo*2**fx)..floor(hi*2**fx)``; ``fy = fx``.
  Exact whenever the bounds are multiples of ``2**-fx`` (ReLU6 always is).
- ``leaky_relu``: ``x`` for ``x >= 0``, else ``x * a >> (fx + fs - fy)`` with the slope's code
  ``a`` at ``fs`` bits; exact when the slope is a multiple of ``2**-fs``.
- ``hardsigmoid`` / ``hardswish``: the exact rational ``clamp(x + 3, 0, 6) / 6`` (times ``x``)
  rounded once (floor, or nearest with halves up): exact.
- ``sigmoid``, ``tanh``, ``silu`` (``x * sigmoid(x)``), ``gelu`` (``x * Phi(x)``): a gate ``g``
  from a 513-entry table over [-16, 16] (step 1/16, entries ``round(g * 2**15)``), linearly
  interpolated on the input at 16 fractional bits, saturated outside; :data:`GATE_MAX_ERROR` is the
  largest |table gate - g| over every input (measured in tests/test_fixedpoint_activations.py).
- ``mul``: ``a * b >> (fa + fb - fy)`` with broadcasting (squeeze-excitation gates); exact product.
"""

from __future__ import annotations

import math

import numpy as np

from .format import FixedFormat, OpResult, check_arith, cut, div_round, shift, shift_cut

__all__ = [
    "GATE_MAX_ERROR", "LUT_FUNCTIONS", "clamp", "gate_table", "hardsigmoid", "hardswish",
    "leaky_relu", "lut", "mul",
]

#: table coordinates: input at 16 fractional bits, range [-16, 16), 512 segments of 1/16
_TF, _RANGE_BITS, _SEG_BITS = 16, 20, 12
_GATE_BITS = 15
#: gate -> (function, value at -inf, value at +inf)
_GATES = {
    "sigmoid": (lambda v: 1.0 / (1.0 + math.exp(-v)), 0.0, 1.0),
    "tanh": (math.tanh, -1.0, 1.0),
    "phi": (lambda v: 0.5 * (1.0 + math.erf(v / math.sqrt(2.0))), 0.0, 1.0),
}
#: activation -> (gate, multiplies the gate by x)
LUT_FUNCTIONS = {"sigmoid": ("sigmoid", False), "tanh": ("tanh", False), "silu": ("sigmoid", True),
                 "gelu": ("phi", True)}
#: max |interpolated table gate - exact gate| over every table input (docs/fixedpoint.md)
GATE_MAX_ERROR = {"sigmoid": 9e-5, "tanh": 4.2e-4, "phi": 1.6e-4}


def gate_table(gate: str) -> np.ndarray:
    """The 513 int64 entries ``round_half_up(g(-16 + k/16) * 2**15)``, k = 0..512."""
    g = _GATES[gate][0]
    return np.array([math.floor(g(-16 + k / 16) * 2**_GATE_BITS + 0.5) for k in range(513)], np.int64)


_TABLES: dict[str, np.ndarray] = {}


def _table(gate: str) -> np.ndarray:
    if gate not in _TABLES:
        _TABLES[gate] = gate_table(gate)
    return _TABLES[gate]


def _i64(x) -> np.ndarray:
    return np.asarray(x).astype(np.int64)


def _lift(x: np.ndarray, fx: FixedFormat) -> tuple[np.ndarray, int]:
    """``x`` at ``fx`` as int64 codes at ``max(fx, 0)`` fractional bits (exact)."""
    f = fx.frac_bits
    return (x << -f, 0) if f < 0 else (x, f)


def _done(v, fy: FixedFormat, overflow: str) -> OpResult:
    y, over = cut(v, fy.bits, overflow)
    return OpResult(np.asarray(y).astype(np.int16), 0, int(np.asarray(over).sum()))


def clamp(x, lo: float, hi: float, *, fx: FixedFormat) -> OpResult:
    """ReLU6 / Hardtanh: clamp to ``[ceil(lo*2**fx), floor(hi*2**fx)]`` in codes (format kept)."""
    qlo = max(math.ceil(math.ldexp(lo, fx.frac_bits)), fx.qmin) if lo != -math.inf else fx.qmin
    qhi = min(math.floor(math.ldexp(hi, fx.frac_bits)), fx.qmax) if hi != math.inf else fx.qmax
    return OpResult(np.clip(_i64(x), qlo, qhi).astype(np.int16))


def leaky_relu(x, slope_code: int, fs: int, *, fx: FixedFormat, fy: FixedFormat, rounding: str = "floor",
               overflow: str = "wrap") -> OpResult:
    check_arith("wide", rounding, overflow)
    v = _i64(x)
    pos, np_over = shift_cut(v, fx.frac_bits - fy.frac_bits, rounding, overflow, fy.bits)
    neg, nn_over = shift_cut(v * int(slope_code), fx.frac_bits + fs - fy.frac_bits, rounding, overflow,
                             fy.bits)
    y = np.where(v >= 0, pos, neg)
    over = np.where(v >= 0, np_over, nn_over)
    return OpResult(y.astype(np.int16), 0, int(over.sum()))


def _hard_gate(x, fx: FixedFormat) -> tuple[np.ndarray, np.ndarray, int]:
    """(x, c, f): x lifted to f >= 0 fractional bits and c = clamp(x + 3, 0, 6) at f bits."""
    v, f = _lift(_i64(x), fx)
    return v, np.clip(v + (3 << f), 0, 6 << f), f


def _ratio(num: np.ndarray, scale: int, den: int, rounding: str) -> np.ndarray:
    """``num * 2**scale / den`` rounded, exactly (Python integers when int64 could overflow)."""
    big = scale > 0 and (np.abs(num).max(initial=0) >= 2 ** (62 - scale))
    if big or den >= 2**62 or scale < -62:
        num = num.astype(object)
    if scale >= 0:
        return div_round(num * (1 << scale) if num.dtype == object else num << scale, den, rounding)
    return div_round(num, den << -scale if den < 2**62 else den * 2 ** (-scale), rounding)


def hardsigmoid(x, *, fx: FixedFormat, fy: FixedFormat, rounding: str = "floor",
                overflow: str = "wrap") -> OpResult:
    """``clamp(x + 3, 0, 6) / 6`` at ``fy``, rounded once."""
    check_arith("wide", rounding, overflow)
    _, c, f = _hard_gate(x, fx)
    q = _ratio(c, fy.frac_bits - f, 6, rounding)
    return _done(np.asarray(q).astype(np.int64), fy, overflow)  # |q| <= 2**(16 + fy): fits


def hardswish(x, *, fx: FixedFormat, fy: FixedFormat, rounding: str = "floor",
              overflow: str = "wrap") -> OpResult:
    """``x * clamp(x + 3, 0, 6) / 6`` at ``fy``, rounded once."""
    check_arith("wide", rounding, overflow)
    v, c, f = _hard_gate(x, fx)
    q = _ratio(v * c, fy.frac_bits - 2 * f, 6, rounding)
    return _done(np.asarray(q).astype(np.int64), fy, overflow)  # |q| <= 2**(16 + fy): fits


def gate_codes(x, gate: str, *, fx: FixedFormat) -> np.ndarray:
    """The interpolated gate at 15 fractional bits for codes ``x`` at ``fx`` (int64)."""
    t = _table(gate)
    g_lo = math.floor(_GATES[gate][1] * 2**_GATE_BITS + 0.5)
    g_hi = math.floor(_GATES[gate][2] * 2**_GATE_BITS + 0.5)
    u = shift(_i64(x), fx.frac_bits - _TF, "floor")
    lim = 1 << _RANGE_BITS
    inside = (u >= -lim) & (u < lim)
    ui = np.clip(u, -lim, lim - 1) + lim
    i, r = ui >> _SEG_BITS, ui & ((1 << _SEG_BITS) - 1)
    g = t[i] + (((t[i + 1] - t[i]) * r) >> _SEG_BITS)
    return np.where(inside, g, np.where(u < 0, g_lo, g_hi))


def lut(x, fn: str, *, fx: FixedFormat, fy: FixedFormat, rounding: str = "floor",
        overflow: str = "wrap") -> OpResult:
    """Sigmoid, Tanh, SiLU or GELU through the gate table (see the module docstring)."""
    check_arith("wide", rounding, overflow)
    gate, times_x = LUT_FUNCTIONS[fn]
    g = gate_codes(x, gate, fx=fx)
    if times_x:
        y, over = shift_cut(_i64(x) * g, fx.frac_bits + _GATE_BITS - fy.frac_bits, rounding, overflow,
                            fy.bits)
    else:
        y, over = shift_cut(g, _GATE_BITS - fy.frac_bits, rounding, overflow, fy.bits)
    return OpResult(np.asarray(y).astype(np.int16), 0, int(np.asarray(over).sum()))


def mul(a, b, *, fa: FixedFormat, fb: FixedFormat, fy: FixedFormat, rounding: str = "floor",
        overflow: str = "wrap") -> OpResult:
    """Elementwise ``a * b`` (broadcast), one shift to ``fy``, one cut."""
    check_arith("wide", rounding, overflow)
    y, over = shift_cut(_i64(a) * _i64(b), fa.frac_bits + fb.frac_bits - fy.frac_bits, rounding,
                        overflow, fy.bits)
    return OpResult(np.asarray(y).astype(np.int16), 0, int(np.asarray(over).sum()))
