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
           relu: bool = False, fw_channels=None) -> OpResult:
    """x: N x C x H x W codes (unpadded), w: M x C/groups x R x S, b: M codes or None.

    ``fw_channels`` (opt-in extension): M fractional bit counts, output channel m's weights are at
    ``fw_channels[m]`` and its shift is ``f_x + fw_channels[m] - f_y`` (``fw`` then only gives the
    weights' width)."""
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
    fws = [fw.frac_bits] * M if fw_channels is None else [int(f) for f in fw_channels]
    if len(fws) != M:
        raise ValueError(f"fw_channels: need {M} values (one per output channel), got {len(fws)}")
    shifts = [fx.frac_bits + f - fy.frac_bits for f in fws]  # per output channel
    bias = np.zeros(M, dtype=np.int64) if b is None else np.asarray(b, dtype=np.int64)
    wg = w.reshape(1, groups, Mg, Cg, R, S)
    y = np.zeros((N, M, E, F), dtype=np.int64)
    prod_over = out_over = 0
    for e in range(E):
        for f in range(F):
            patch = xp[:, :, e * U:e * U + R, f * Uw:f * Uw + S].reshape(N, groups, 1, Cg, R, S)
            products = (patch * wg).reshape(N, M, Cg * R * S)  # exact: |p| <= 2**30
            if mode == "eyeriss":
                q = np.stack([_shift(products[:, m], shifts[m], rounding) for m in range(M)], 1)  # every product shifted ...
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
                shifted = np.stack([_shift(total[:, m], shifts[m], rounding) for m in range(M)], 1)
                out, n = _cut(shifted, fy.bits, overflow)
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


# --- activations, multiply, pooling forms (docs/fixedpoint.md, "Activations" and "Pooling") ------

def _floor_div(num: int, den: int, rounding: str) -> int:
    """num / den (den > 0) as Python integers: floor, or nearest with halves up."""
    return (2 * num + den) // (2 * den) if rounding == "nearest" else num // den


def _scaled(num: int, scale: int, den: int, rounding: str) -> int:
    """round(num * 2**scale / den)."""
    if scale >= 0:
        return _floor_div(num * 2**scale, den, rounding)
    return _floor_div(num, den * 2 ** (-scale), rounding)


def _finish(vals: list[int], shape, bits: int, overflow: str) -> OpResult:
    y, n = _cut(np.array(vals, dtype=object).reshape(shape), bits, overflow)
    return OpResult(y.astype(np.int16), 0, n)


def clamp(x, lo: float, hi: float, *, fx: FixedFormat) -> OpResult:
    """ReLU6/Hardtanh: codes clamped to [ceil(lo * 2**fx), floor(hi * 2**fx)] within the format."""
    import math

    f = fx.frac_bits
    qlo = fx.qmin if lo == -math.inf else max(fx.qmin, math.ceil(lo * 2.0**f))
    qhi = fx.qmax if hi == math.inf else min(fx.qmax, math.floor(hi * 2.0**f))
    return OpResult(np.array([min(max(int(v), qlo), qhi) for v in np.asarray(x).ravel()],
                             dtype=np.int16).reshape(np.shape(x)))


def leaky_relu(x, slope_code: int, fs: int, *, fx: FixedFormat, fy: FixedFormat, rounding: str = "floor",
               overflow: str = "wrap") -> OpResult:
    """x >= 0: x moved from fx to fy; x < 0: x * slope_code (at fs bits) moved from fx + fs to fy."""
    out = []
    for v in np.asarray(x).ravel().tolist():
        if v >= 0:
            out.append(_scaled(v, fy.frac_bits - fx.frac_bits, 1, rounding))
        else:
            out.append(_scaled(v * slope_code, fy.frac_bits - fx.frac_bits - fs, 1, rounding))
    return _finish(out, np.shape(x), fy.bits, overflow)


def hardsigmoid(x, *, fx: FixedFormat, fy: FixedFormat, rounding: str = "floor",
                overflow: str = "wrap") -> OpResult:
    """round(min(max(x + 3, 0), 6) / 6 * 2**fy) with x the exact input value."""
    from fractions import Fraction

    out = []
    for v in np.asarray(x).ravel().tolist():
        val = Fraction(v) / Fraction(2) ** fx.frac_bits
        c = min(max(val + 3, Fraction(0)), Fraction(6))
        r = c / 6 * Fraction(2) ** fy.frac_bits
        out.append(_floor_div(r.numerator, r.denominator, rounding))
    return _finish(out, np.shape(x), fy.bits, overflow)


def hardswish(x, *, fx: FixedFormat, fy: FixedFormat, rounding: str = "floor",
              overflow: str = "wrap") -> OpResult:
    """round(x * min(max(x + 3, 0), 6) / 6 * 2**fy) with x the exact input value."""
    from fractions import Fraction

    out = []
    for v in np.asarray(x).ravel().tolist():
        val = Fraction(v) / Fraction(2) ** fx.frac_bits
        c = min(max(val + 3, Fraction(0)), Fraction(6))
        r = val * c / 6 * Fraction(2) ** fy.frac_bits
        out.append(_floor_div(r.numerator, r.denominator, rounding))
    return _finish(out, np.shape(x), fy.bits, overflow)


_GATE_FUNCS = {
    "sigmoid": ("sigmoid", False), "tanh": ("tanh", False), "silu": ("sigmoid", True), "gelu": ("phi", True),
}


def _gate(name: str, v: float) -> float:
    import math

    if name == "sigmoid":
        return 1.0 / (1.0 + math.exp(-v))
    if name == "tanh":
        return math.tanh(v)
    return 0.5 * (1.0 + math.erf(v / math.sqrt(2.0)))


def lut(x, fn: str, *, fx: FixedFormat, fy: FixedFormat, rounding: str = "floor",
        overflow: str = "wrap") -> OpResult:
    """Table gate: entries T[k] = round(g(-16 + k/16) * 2**15), k = 0..512; the input at 16
    fractional bits (floor) u in [-16, 16) picks segment k = floor(u * 16) and is interpolated
    T[k] + floor((T[k+1] - T[k]) * frac / 4096); below -16 / from 16 on the gate is g(-inf) / g(+inf).
    sigmoid/tanh: the gate moved from 15 bits to fy; silu/gelu: x * gate moved from fx + 15 to fy."""
    import math

    gate, times_x = _GATE_FUNCS[fn]
    table = [math.floor(_gate(gate, -16 + k / 16) * 2**15 + 0.5) for k in range(513)]
    ends = {"sigmoid": (0, 2**15), "tanh": (-(2**15), 2**15), "phi": (0, 2**15)}[gate]
    out = []
    for v in np.asarray(x).ravel().tolist():
        u = v * 2 ** (16 - fx.frac_bits) if fx.frac_bits <= 16 else v // 2 ** (fx.frac_bits - 16)
        if u < -16 * 2**16:
            g = ends[0]
        elif u >= 16 * 2**16:
            g = ends[1]
        else:
            pos = u + 16 * 2**16
            k, frac = pos // 4096, pos % 4096
            g = table[k] + ((table[k + 1] - table[k]) * frac) // 4096
        if times_x:
            out.append(_scaled(v * g, fy.frac_bits - fx.frac_bits - 15, 1, rounding))
        else:
            out.append(_scaled(g, fy.frac_bits - 15, 1, rounding))
    return _finish(out, np.shape(x), fy.bits, overflow)


def mul(a, b, *, fa: FixedFormat, fb: FixedFormat, fy: FixedFormat, rounding: str = "floor",
        overflow: str = "wrap") -> OpResult:
    """a * b (NumPy broadcasting), the exact product moved from fa + fb to fy, one cut."""
    a, b = np.broadcast_arrays(np.asarray(a).astype(object), np.asarray(b).astype(object))
    s = fy.frac_bits - fa.frac_bits - fb.frac_bits
    out = [_scaled(int(p) * int(q), s, 1, rounding) for p, q in zip(a.ravel(), b.ravel())]
    return _finish(out, a.shape, fy.bits, overflow)


def _torch_windows(n: int, k: int, s: int, p: int, ceil_mode: bool) -> list[tuple[int, int, int]]:
    """PyTorch's pooling windows along one dim: (start, end, padded size), start/end inside [0, n)."""
    span = n + 2 * p - k
    o = (span + s - 1) // s + 1 if ceil_mode else span // s + 1
    if ceil_mode and (o - 1) * s >= n + p:
        o -= 1
    wins = []
    for i in range(o):
        a = i * s - p
        b = min(a + k, n + p)
        wins.append((max(a, 0), min(b, n), b - a))
    return wins


def _adaptive(n: int, o: int) -> list[tuple[int, int, int]]:
    wins = []
    for i in range(o):
        a, b = (i * n) // o, -((-(i + 1) * n) // o)
        wins.append((a, b, b - a))
    return wins


def _average(x, rows, cols, count_padded: bool, fx, fy, rounding, overflow) -> OpResult:
    x = np.asarray(x, dtype=np.int64)
    N, C = x.shape[:2]
    out = []
    for n in range(N):
        for c in range(C):
            for r0, r1, rp in rows:
                for c0, c1, cp in cols:
                    total = int(x[n, c, r0:r1, c0:c1].sum())
                    den = rp * cp if count_padded else (r1 - r0) * (c1 - c0)
                    out.append(_scaled(total, fy.frac_bits - fx.frac_bits, den, rounding))
    return _finish(out, (N, C, len(rows), len(cols)), fy.bits, overflow)


def avg_pool2d_ext(x, kernel, stride=None, padding=0, *, ceil_mode: bool = False,
                   count_include_pad: bool = True, fx: FixedFormat, fy: FixedFormat,
                   rounding: str = "floor", overflow: str = "wrap") -> OpResult:
    """AvgPool2d with PyTorch's ceil_mode and count_include_pad: window sum / divisor, rounded once."""
    (R, S), (U, Uw), (P, Pw) = pair(kernel, "kernel"), pair(stride or kernel, "stride"), pair(padding, "padding")
    H, W = np.shape(x)[2:]
    return _average(x, _torch_windows(H, R, U, P, ceil_mode), _torch_windows(W, S, Uw, Pw, ceil_mode),
                    count_include_pad, fx, fy, rounding, overflow)


def adaptive_avg_pool2d(x, output_size, *, fx: FixedFormat, fy: FixedFormat, rounding: str = "floor",
                        overflow: str = "wrap") -> OpResult:
    """AdaptiveAvgPool2d: rows [floor(i*H/o), ceil((i+1)*H/o)); ``mean`` over H, W is output 1x1."""
    oh, ow = pair(output_size, "output_size")
    H, W = np.shape(x)[2:]
    return _average(x, _adaptive(H, oh), _adaptive(W, ow), True, fx, fy, rounding, overflow)


def max_pool2d_ext(x, kernel, stride=None, padding=0, *, ceil_mode: bool = False) -> OpResult:
    """MaxPool2d with ceil_mode: maximum over PyTorch's windows cut to the input."""
    (R, S), (U, Uw), (P, Pw) = pair(kernel, "kernel"), pair(stride or kernel, "stride"), pair(padding, "padding")
    x = np.asarray(x, dtype=np.int64)
    N, C, H, W = x.shape
    rows, cols = _torch_windows(H, R, U, P, ceil_mode), _torch_windows(W, S, Uw, Pw, ceil_mode)
    y = np.zeros((N, C, len(rows), len(cols)), dtype=np.int64)
    for i, (r0, r1, _) in enumerate(rows):
        for j, (c0, c1, _) in enumerate(cols):
            y[:, :, i, j] = x[:, :, r0:r1, c0:c1].max(axis=(2, 3))
    return OpResult(y.astype(np.int16))


# --- per-channel affine and LayerNorm (docs/fixedpoint.md, "Per-channel affine and LayerNorm") ---

def _per_position(x, dim: int):
    """(array moved so channels are last, list of channel vectors as Python ints)."""
    v = np.moveaxis(np.asarray(x, dtype=np.int64), dim, -1)
    return v, [[int(c) for c in row] for row in v.reshape(-1, v.shape[-1])]


def _back(rows: list[list[int]], moved_shape, dim: int, bits: int, overflow: str) -> OpResult:
    y, n = _cut(np.array(rows, dtype=object).reshape(moved_shape), bits, overflow)
    return OpResult(np.moveaxis(y, -1, dim).astype(np.int16), 0, n)


def affine(x, a, b, *, dim: int, fx: FixedFormat, fa: FixedFormat, fy: FixedFormat, rounding: str = "floor",
           overflow: str = "wrap") -> OpResult:
    """Channel c: the exact x * a[c] + b[c] (b at fx + fa) moved from fx + fa to fy, one cut."""
    v, rows = _per_position(x, dim)
    s = fy.frac_bits - fx.frac_bits - fa.frac_bits
    out = [[_scaled(xc * int(a[c]) + int(b[c]), s, 1, rounding) for c, xc in enumerate(row)] for row in rows]
    return _back(out, v.shape, dim, fy.bits, overflow)


def rsqrt(V: int) -> tuple[int, int]:
    """(r, t): t the smallest even integer with V < 2**(t + 30), m = floor(V / 2**t),
    r = isqrt(floor(2**60 / m)), so that 1 / sqrt(V) ~ r * 2**-(30 + t/2)."""
    import math

    t = -30
    while not V < 2 ** (t + 30):
        t += 2
    m = V // 2**t if t >= 0 else V * 2 ** (-t)
    return math.isqrt(2**60 // m), t


def layer_norm(x, g, beta, *, dim: int, e: int, fx: FixedFormat, fg: FixedFormat, fy: FixedFormat,
               rounding: str = "floor", overflow: str = "wrap") -> OpResult:
    """Per position over the C channels: d = C*x - sum(x), V = max(C*sum(x*x) - sum(x)**2 + e, 1),
    z = d * r moved from 30 + t/2 to fz = 15 - k (4**k >= C, k least) and cut to 16 bits, then
    y = z * g[c] + beta[c] moved from fz + fg to fy and cut."""
    v, rows = _per_position(x, dim)
    C = v.shape[-1]
    k = 0
    while 4**k < C:
        k += 1
    fz = 15 - k
    out, z_over = [], 0
    for row in rows:
        s1, s2 = sum(row), sum(c * c for c in row)
        r, t = rsqrt(max(C * s2 - s1 * s1 + int(e), 1))
        z = [_scaled((C * xc - s1) * r, fz - 30 - t // 2, 1, rounding) for xc in row]
        zc, n = _cut(np.array(z, dtype=object), 16, overflow)
        z, z_over = [int(u) for u in zc], z_over + n
        out.append([_scaled(zc * int(g[c]) + int(beta[c]), fy.frac_bits - fz - fg.frac_bits, 1, rounding)
                    for c, zc in enumerate(z)])
    r = _back(out, v.shape, dim, fy.bits, overflow)
    return OpResult(r.y, 0, r.output_overflows + z_over)
