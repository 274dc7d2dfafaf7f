"""Golden reference: the arithmetic contract written plainly in NumPy, for small tensors.

Every function follows docs/fixedpoint.md word for word, with Python integers wherever int64 could
overflow (left shifts, very large shifts). It is slow on purpose: the fast kernels in
:mod:`hwaware.fixedpoint.ops` must return bit-identical results on every input.
"""

from __future__ import annotations

import numpy as np

from .format import FixedFormat, OpResult, check_arith, pair

I16_MIN, I16_MAX = -32768, 32767


def _shift(v: np.ndarray, s: int, rounding: str) -> np.ndarray:
    """Floor division by 2**s (``floor``), after adding 2**(s-1) (``nearest``); 2**-s multiplies."""
    v = v.astype(object)
    if s <= 0:
        return v * (2 ** (-s))
    if rounding == "nearest":
        v = v + 2 ** (s - 1)
    return v // (2**s)


def _cut(v: np.ndarray, bits: int, overflow: str) -> tuple[np.ndarray, int]:
    lo, hi = -(2 ** (bits - 1)), 2 ** (bits - 1) - 1
    v = v.astype(object)
    outside = int(((v < lo) | (v > hi)).sum())
    if overflow == "wrap":
        out = (v - lo) % (2**bits) + lo
    else:
        out = np.minimum(np.maximum(v, lo), hi)
    return out.astype(np.int64), outside


def conv2d(x, w, b=None, *, fx: FixedFormat, fw: FixedFormat, fy: FixedFormat, stride=1, padding=0,
           groups: int = 1, mode: str = "eyeriss", rounding: str = "floor", overflow: str = "wrap",
           relu: bool = False) -> OpResult:
    """x: N x C x H x W codes (unpadded), w: M x C/groups x R x S, b: M codes or None."""
    check_arith(mode, rounding, overflow)
    x = np.asarray(x, dtype=np.int64)
    w = np.asarray(w, dtype=np.int64)
    N, C, H, W = x.shape
    M, Cg, R, S = w.shape
    U, Uw = pair(stride, "stride")
    P, Pw = pair(padding, "padding")
    xp = np.zeros((N, C, H + 2 * P, W + 2 * Pw), dtype=np.int64)  # zero padding = code 0
    xp[:, :, P:P + H, Pw:Pw + W] = x
    E, F = (H + 2 * P - R) // U + 1, (W + 2 * Pw - S) // Uw + 1
    Mg = M // groups
    s = fx.frac_bits + fw.frac_bits - fy.frac_bits
    bias = np.zeros(M, dtype=np.int64) if b is None else np.asarray(b, dtype=np.int64)
    wg = w.reshape(1, groups, Mg, Cg, R, S)
    y = np.zeros((N, M, E, F), dtype=np.int64)
    prod_over = out_over = 0
    for e in range(E):
        for f in range(F):
            patch = xp[:, :, e * U:e * U + R, f * Uw:f * Uw + S].reshape(N, groups, 1, Cg, R, S)
            products = (patch * wg).reshape(N, M, Cg * R * S)  # exact: |p| <= 2**30
            if mode == "eyeriss":
                q = _shift(products, s, rounding)  # every product shifted ...
                qc, n = _cut(q, 16, overflow)  # ... and cut to 16 bits
                prod_over += n
                total = bias[None, :] + qc.sum(axis=-1)  # exact sum; the 16-bit adder wraps it
                out, n = _cut(total, 16, "wrap")
                out_over += n
                if fy.bits < 16:
                    out, n = _cut(out, fy.bits, overflow)
                    out_over += n
            else:
                total = products.astype(object).sum(axis=-1) + bias[None, :]  # bias at fx + fw
                out, n = _cut(_shift(total, s, rounding), fy.bits, overflow)
                out_over += n
            if relu:
                out = np.maximum(out, 0)
            y[:, :, e, f] = out
    return OpResult(y.astype(np.int16), prod_over, out_over)


def conv1d(x, w, b=None, *, stride=1, padding=0, **kw) -> OpResult:
    """x: N x C x L, w: M x C/groups x S; a Conv2d with H = R = 1."""
    r = conv2d(np.asarray(x)[:, :, None, :], np.asarray(w)[:, :, None, :], b,
               stride=(1, pair(stride, "stride")[1]), padding=(0, pair(padding, "padding")[1]), **kw)
    return OpResult(r.y[:, :, 0, :], r.product_overflows, r.output_overflows)


def linear(x, w, b=None, **kw) -> OpResult:
    """x: N x C, w: M x C; a 1x1 Conv2d."""
    r = conv2d(np.asarray(x)[:, :, None, None], np.asarray(w)[:, :, None, None], b, **kw)
    return OpResult(r.y[:, :, 0, 0], r.product_overflows, r.output_overflows)


def relu(x) -> OpResult:
    return OpResult(np.maximum(np.asarray(x), 0).astype(np.int16))


def _windows(xp: np.ndarray, kernel, stride):
    (R, S), (U, Uw) = kernel, stride
    N, C, Hp, Wp = xp.shape
    E, F = (Hp - R) // U + 1, (Wp - S) // Uw + 1
    for e in range(E):
        for f in range(F):
            yield e, f, xp[:, :, e * U:e * U + R, f * Uw:f * Uw + S].reshape(N, C, -1)


def max_pool2d(x, kernel, stride=None, padding=0) -> OpResult:
    """Maximum of each window; padding never wins (as PyTorch pads with -inf). Format unchanged."""
    x = np.asarray(x, dtype=np.int64)
    k, st, (P, Pw) = pair(kernel, "kernel"), pair(stride if stride is not None else kernel, "stride"), pair(padding, "padding")
    N, C, H, W = x.shape
    xp = np.full((N, C, H + 2 * P, W + 2 * Pw), I16_MIN - 1, dtype=np.int64)
    xp[:, :, P:P + H, Pw:Pw + W] = x
    E, F = (H + 2 * P - k[0]) // st[0] + 1, (W + 2 * Pw - k[1]) // st[1] + 1
    y = np.zeros((N, C, E, F), dtype=np.int64)
    for e, f, win in _windows(xp, k, st):
        y[:, :, e, f] = win.max(axis=-1)
    return OpResult(y.astype(np.int16))


def avg_pool2d(x, kernel, stride=None, padding=0, *, fx: FixedFormat, fy: FixedFormat,
               rounding: str = "floor", overflow: str = "wrap") -> OpResult:
    """Window sum (zero padding counted, as PyTorch's count_include_pad) divided by the window size.

    y = round(sum * 2**(fy - fx) / (R * S)), rounded per ``rounding`` (``nearest``: halves up), then
    cut to ``fy``.
    """
    x = np.asarray(x, dtype=np.int64)
    k, st, (P, Pw) = pair(kernel, "kernel"), pair(stride if stride is not None else kernel, "stride"), pair(padding, "padding")
    N, C, H, W = x.shape
    xp = np.zeros((N, C, H + 2 * P, W + 2 * Pw), dtype=np.int64)
    xp[:, :, P:P + H, Pw:Pw + W] = x
    d = fy.frac_bits - fx.frac_bits
    num_scale, den = 2 ** max(d, 0), k[0] * k[1] * 2 ** max(-d, 0)
    E, F = (H + 2 * P - k[0]) // st[0] + 1, (W + 2 * Pw - k[1]) // st[1] + 1
    q = np.zeros((N, C, E, F), dtype=object)
    for e, f, win in _windows(xp, k, st):
        num = win.astype(object).sum(axis=-1) * num_scale
        q[:, :, e, f] = (2 * num + den) // (2 * den) if rounding == "nearest" else num // den
    y, n = _cut(q, fy.bits, overflow)
    return OpResult(y.astype(np.int16), 0, n)


def add(a, b, *, fa: FixedFormat, fb: FixedFormat, fy: FixedFormat, rounding: str = "floor",
        overflow: str = "wrap", relu: bool = False) -> OpResult:
    """Residual add: both aligned exactly to max(fa, fb), summed, one shift to fy, one cut."""
    F = max(fa.frac_bits, fb.frac_bits)
    t = (np.asarray(a).astype(object) * 2 ** (F - fa.frac_bits)
         + np.asarray(b).astype(object) * 2 ** (F - fb.frac_bits))
    y, n = _cut(_shift(t, F - fy.frac_bits, rounding), fy.bits, overflow)
    if relu:
        y = np.maximum(y, 0)
    return OpResult(y.astype(np.int16), 0, n)


def requantize(x, *, fx: FixedFormat, fy: FixedFormat, rounding: str = "floor",
               overflow: str = "wrap") -> OpResult:
    y, n = _cut(_shift(np.asarray(x), fx.frac_bits - fy.frac_bits, rounding), fy.bits, overflow)
    return OpResult(y.astype(np.int16), 0, n)


def concat(xs, *, fxs, fy: FixedFormat, dim: int = 1, rounding: str = "floor",
           overflow: str = "wrap") -> OpResult:
    """Each input shifted to fy and cut, then concatenated along ``dim``."""
    parts = [requantize(x, fx=f, fy=fy, rounding=rounding, overflow=overflow) for x, f in zip(xs, fxs)]
    return OpResult(np.concatenate([p.y for p in parts], axis=dim), 0,
                    sum(p.output_overflows for p in parts))


def flatten(x, start_dim: int = 1) -> OpResult:
    x = np.asarray(x)
    return OpResult(x.reshape(*x.shape[:start_dim], -1))
