"""Fast integer kernels, bit-identical to :mod:`hwaware.fixedpoint.golden`.

Same signatures as the golden functions (NumPy int16 codes in and out, :class:`OpResult` back).
How each stays exact:

- mode ``wide``: the exact sum of 16x16-bit products. Each code is split into two 8-bit limbs,
  ``x = 256*(x >> 8) + ((x & 255) - 128) + 128``, so ``sum(x*w)`` is four int8 GEMMs with int32
  accumulation (``torch._int_mm``; exact while K < 131072) plus row/column-sum corrections, combined in
  int64. Grouped convolutions use a float64 convolution instead: products are below 2**30 and the sums
  below 2**53, so every float64 partial sum is an exact integer.
- mode ``eyeriss``: every product is shifted and cut before the sum, which no GEMM does; a C kernel
  (:mod:`._native`) runs that loop (int32 arithmetic for shifts 1..30, int64 otherwise), with an
  exact chunked torch path as fallback.
- pooling, add, concat: float32/float64 torch ops on codes where that is exact (max of int16 codes,
  window sums below 2**53), integer division and shifts in int64.
"""

from __future__ import annotations

import threading
from collections import OrderedDict

import numpy as np
import torch

from ..errors import HwawareError
from . import _native, golden, pooling
from .format import FixedFormat, OpResult, check_arith, cut, div_round, pair, shift_cut

_CHUNK = 1 << 22  # elements per chunk of the fallback product loop (bounds its memory)
_COLS = 1 << 25  # column-matrix elements per call (64 MB of int16)
_TILE_BYTES = 8 << 20  # column-matrix bytes per tile of the NHWC paths (bounds their memory)


def _codes(a, name: str) -> np.ndarray:
    a = np.asarray(a)
    if a.dtype == np.int16:
        return a
    if not np.issubdtype(a.dtype, np.integer):
        raise HwawareError(f"'{name}' must hold integer codes, got dtype {a.dtype}")
    if a.size and (a.min() < -32768 or a.max() > 32767):
        raise HwawareError(f"'{name}' codes must fit int16 (-32768..32767), got [{a.min()}, {a.max()}]")
    return a.astype(np.int16)


def _im2col(xp: torch.Tensor, R: int, S: int, U: int, Uw: int) -> tuple[torch.Tensor, int, int]:
    """Padded N x C x Hp x Wp -> (N*E*F) x (C*R*S) rows, columns ordered (c, r, s)."""
    N, C, Hp, Wp = xp.shape
    E, F = (Hp - R) // U + 1, (Wp - S) // Uw + 1
    xp = xp.contiguous()
    view = xp.as_strided((N, E, F, C, R, S), (C * Hp * Wp, U * Wp, Uw, Hp * Wp, Wp, 1))
    return view.reshape(N * E * F, C * R * S).contiguous(), E, F


def _limb_gemms(x: np.ndarray, w: torch.Tensor, R: int, S: int, U: int, Uw: int, P: int, Pw: int):
    """Four int8 GEMMs whose combination is the exact ``sum(x*w)`` (see the module docstring).

    ``x``: unpadded int16 N x C x H x W; ``w``: M x K int16. Each result is P x (M+1) int32;
    column M multiplies by ones (row sums of the limbs). Returns (hh, hl, lh, ll), colsum, E, F.
    """
    cols = _native.im2col(x, R, S, U, Uw, P, Pw, limbs=True, nthreads=torch.get_num_threads())
    if cols is not None:
        ah, al = torch.from_numpy(cols[0]), torch.from_numpy(cols[1])
        E, F = (x.shape[2] + 2 * P - R) // U + 1, (x.shape[3] + 2 * Pw - S) // Uw + 1
    else:
        xp = torch.nn.functional.pad(torch.from_numpy(x), (Pw, Pw, P, P))
        xh, xl = (xp >> 8).to(torch.int8), ((xp & 255) - 128).to(torch.int8)  # before im2col: 1/RS the work
        ah, E, F = _im2col(xh, R, S, U, Uw)
        al, _, _ = _im2col(xl, R, S, U, Uw)
    ones = torch.ones((w.shape[1], 1), dtype=torch.int8)
    wh, wl = (w >> 8).to(torch.int8), ((w & 255) - 128).to(torch.int8)
    whT = torch.cat([wh.T, ones], 1).contiguous()
    wlT = torch.cat([wl.T, ones], 1).contiguous()
    limbs = (torch._int_mm(ah, whT), torch._int_mm(ah, wlT), torch._int_mm(al, whT), torch._int_mm(al, wlT))
    colsum = 256 * wh.sum(1, dtype=torch.int64) + wl.sum(1, dtype=torch.int64)
    return limbs, colsum, E, F


def _combine_limbs(limbs, colsum: torch.Tensor, K: int) -> torch.Tensor:
    """The exact int64 sums (P x M) from :func:`_limb_gemms` (torch; the C kernel fuses this)."""
    hh, hl, lh, ll = (t.long() for t in limbs)
    rows = 256 * hh[:, -1:] + lh[:, -1:]
    total = (hh[:, :-1] << 16) + ((hl[:, :-1] + lh[:, :-1]) << 8) + ll[:, :-1]
    return total + 128 * (rows + colsum[None, :]) + 16384 * K


def _eyeriss_sums_torch(cols: torch.Tensor, w: torch.Tensor, groups: int, s: int, rounding: str,
                        overflow: str) -> tuple[torch.Tensor, int]:
    """Sum of cut products, exact in int64, chunked over rows (the no-compiler path)."""
    P = cols.shape[0]
    M, Kg = w.shape
    Mg = M // groups
    acc = torch.empty((P, M), dtype=torch.int64)
    n_over = 0
    wl = w.long()
    step = max(1, _CHUNK // max(1, Mg * Kg))
    for g in range(groups):
        wg = wl[g * Mg:(g + 1) * Mg][None]
        xg = cols[:, g * Kg:(g + 1) * Kg].long()
        for p0 in range(0, P, step):
            prods = xg[p0:p0 + step, None, :] * wg
            qc, over = shift_cut(prods, s, rounding, overflow, 16)
            acc[p0:p0 + step, g * Mg:(g + 1) * Mg] = qc.sum(-1)
            n_over += int(over.sum())
    return acc, n_over


def _weights_rsc(w: np.ndarray) -> np.ndarray:
    """M x C x R x S -> M x (R*S*C): the column order of the NHWC column matrices."""
    return np.ascontiguousarray(w.transpose(0, 2, 3, 1).reshape(w.shape[0], -1))


class _PreparedWeights:
    """Weight layouts of the NHWC paths, reused across calls while the weights are unchanged.

    A converted model calls the same layers again and again; preparing the layouts costs up to a
    third of a layer's time. An entry is keyed by the array's identity and used only when a kept
    copy still equals the array (one compare, ~1 ms per 4 MB), so weights changed in place are
    prepared again. Least recently used entries go beyond ``max_bytes``.
    """

    def __init__(self, max_bytes: int) -> None:
        self.max_bytes = max_bytes
        self._entries: OrderedDict = OrderedDict()
        self._bytes = 0
        self._lock = threading.Lock()

    def get(self, w: np.ndarray, kind: str, build):
        key = (id(w), kind)
        with self._lock:
            hit = self._entries.get(key)
            if hit is not None and hit[0].shape == w.shape and np.array_equal(hit[0], w):
                self._entries.move_to_end(key)
                return hit[1]
        value = build(w)
        size = w.nbytes + sum(v.nbytes for v in value)
        with self._lock:
            old = self._entries.pop(key, None)
            if old is not None:
                self._bytes -= old[2]
            if size <= self.max_bytes:
                self._entries[key] = (w.copy(), value, size)
                self._bytes += size
            while self._bytes > self.max_bytes:
                self._bytes -= self._entries.popitem(last=False)[1][2]
        return value


_PREPARED = _PreparedWeights(256 << 20)


def _wide_layouts(w: np.ndarray) -> tuple:
    """``[wh | 1]``, ``[wl ; wh]``, ``[wl | 1]`` as K x (M+1), 2K x M, K x (M+1) int8, and the
    column sums ``sum_k (256*wh + wl) = sum_k w - 128*K`` (int64)."""
    wk = torch.from_numpy(_weights_rsc(w))
    K = wk.shape[1]
    wh, wl = (wk >> 8).to(torch.int8), ((wk & 255) - 128).to(torch.int8)
    ones = torch.ones((K, 1), dtype=torch.int8)
    colsum = wk.sum(1, dtype=torch.int64) - 128 * K
    return (torch.cat([wh.T, ones], 1).contiguous(), torch.cat([wl.T, wh.T], 0).contiguous(),
            torch.cat([wl.T, ones], 1).contiguous(), colsum)


def _conv_wide_nhwc(x, w, b, geo, *, s: int, nearest: bool, saturate: bool, relu: bool) -> OpResult:
    """Mode wide, groups 1, 16-bit output, 1 <= s <= 62: three int8 GEMMs per tile of rows.

    With ``x = 256*xh + xl + 128`` (w alike) and the tile's columns ``[xh | xl]``:
    ``hh = xh.[wh | 1]``, ``mix = [xh | xl].[wl ; wh]`` (both cross terms in one GEMM),
    ``ll = xl.[wl | 1]``; the C finalize adds ``65536*hh + 256*mix + ll`` and the offset terms.
    """
    R, S, U, Uw, P, Pw, E, F = geo
    N, C = x.shape[:2]
    M, K = w.shape[0], R * S * x.shape[1]
    hi, lo = _native.to_nhwc(x, P, Pw, limbs=True)
    b_hh, b_mix, b_ll, colsum = _PREPARED.get(w, "wide", _wide_layouts)
    colsum = colsum.numpy()
    bias = None if b is None else np.asarray(b, dtype=np.int64)
    rows = N * E * F
    out = np.empty((N, M, E * F), dtype=np.int16)
    tile = max(64, _TILE_BYTES // (2 * K))

    def run(r0: int, r1: int) -> int:
        """Rows r0..r1, tile by tile: im2col, three GEMMs, combine (one thread, its own buffer)."""
        buf = np.empty((min(tile, r1 - r0), 2 * K), dtype=np.int8)
        n = 0
        for p0 in range(r0, r1, tile):
            p1 = min(r1, p0 + tile)
            a = buf[:p1 - p0]
            _native.im2col_nhwc(hi, a, 0, R, S, U, Uw, E, F, p0, p1, nthreads=1)
            _native.im2col_nhwc(lo, a, K, R, S, U, Uw, E, F, p0, p1, nthreads=1)
            at = torch.from_numpy(a)
            hh, mix, ll = torch._int_mm(at[:, :K], b_hh), torch._int_mm(at, b_mix), torch._int_mm(at[:, K:], b_ll)
            n += _native.wide_finalize3(hh.numpy(), mix.numpy(), ll.numpy(), colsum, K, bias, out, p0, s=s,
                                        nearest=nearest, saturate=saturate, relu=relu, nthreads=1)
        return n

    n_out = _native.split_rows(run, rows)
    return OpResult(out.reshape(N, M, E, F), 0, n_out)


def _conv_eyeriss_nhwc(x, w, b, geo, *, s: int, nearest: bool, saturate: bool, relu: bool) -> OpResult:
    """Mode eyeriss, groups 1, 16-bit output, 1 <= s <= 30: the AVX-512 loop per tile of rows."""
    R, S, U, Uw, P, Pw, E, F = geo
    N, C = x.shape[:2]
    M, K = w.shape[0], R * S * C
    (xp,) = _native.to_nhwc(x, P, Pw, limbs=False)
    (wp,) = _PREPARED.get(w, "eyeriss", lambda w: (_native.pack_eyeriss_weights(_weights_rsc(w)),))
    rows = N * E * F
    out = np.empty((N, M, E * F), dtype=np.int16)
    tile = max(64, _TILE_BYTES // (4 * wp.shape[1]))

    def run(r0: int, r1: int) -> np.ndarray:
        """Rows r0..r1, tile by tile: im2col, the loop (one thread, its own buffer)."""
        buf = np.zeros((min(tile, r1 - r0), 2 * wp.shape[1]), dtype=np.int16)  # an odd K's last column stays 0
        counts = np.zeros(2, dtype=np.int64)
        for p0 in range(r0, r1, tile):
            p1 = min(r1, p0 + tile)
            _native.im2col_nhwc(xp, buf[:p1 - p0], 0, R, S, U, Uw, E, F, p0, p1, nthreads=1)
            counts += _native.eyeriss_simd(buf[:p1 - p0], wp, M, b, out, p0, s=s, nearest=nearest,
                                           saturate=saturate, relu=relu, nthreads=1)
        return counts

    n_prod, n_out = (int(c) for c in _native.split_rows(run, rows))
    return OpResult(out.reshape(N, M, E, F), n_prod, n_out)


def conv2d(x, w, b=None, *, fx: FixedFormat, fw: FixedFormat, fy: FixedFormat, stride=1, padding=0,
           groups: int = 1, mode: str = "eyeriss", rounding: str = "floor", overflow: str = "wrap",
           relu: bool = False, fw_channels=None) -> OpResult:
    """x: N x C x H x W codes (unpadded), w: M x C/groups x R x S, b: M codes (see docs) or None.

    ``fw_channels``: per-output-channel weight formats (the opt-in extension of the contract,
    docs/fixedpoint.md): channels are run in sets of equal format (:func:`_per_channel`)."""
    check_arith(mode, rounding, overflow)
    x, w = _codes(x, "x"), _codes(w, "w")
    if x.ndim != 4 or w.ndim != 4:
        raise HwawareError(f"conv2d takes x N x C x H x W and w M x C/groups x R x S, got {x.shape}, {w.shape}")
    N, C, H, W = x.shape
    M, Cg, R, S = w.shape
    U, Uw = pair(stride, "stride")
    P, Pw = pair(padding, "padding")
    if groups < 1 or C != Cg * groups or M % groups:
        raise HwawareError(f"conv2d: x has {C} channels, w is {tuple(w.shape)}, groups={groups}: "
                           f"need C = (w's dim 1) * groups and M divisible by groups")
    if H + 2 * P < R or W + 2 * Pw < S or min(U, Uw) < 1 or min(P, Pw) < 0:
        raise HwawareError(f"conv2d: filter {R}x{S} with stride {(U, Uw)} does not fit input {H}x{W} "
                           f"padded by {(P, Pw)}")
    if fw_channels is not None:
        return _per_channel(x, w, b, fw_channels, fx=fx, fw=fw, fy=fy, stride=stride, padding=padding,
                            groups=groups, mode=mode, rounding=rounding, overflow=overflow, relu=relu)
    s = fx.frac_bits + fw.frac_bits - fy.frac_bits
    E, F = (H + 2 * P - R) // U + 1, (W + 2 * Pw - S) // Uw + 1
    nearest, saturate = rounding == "nearest", overflow == "saturate"
    if groups == 1 and fy.bits == 16 and R * S * C < 65536 and _native.library() is not None:
        geo = (R, S, U, Uw, P, Pw, E, F)
        if mode == "wide" and 1 <= s <= 62 and hasattr(torch, "_int_mm"):
            return _conv_wide_nhwc(x, w, b, geo, s=s, nearest=nearest, saturate=saturate, relu=relu)
        if mode == "eyeriss" and 1 <= s <= 30 and _native.simd():
            return _conv_eyeriss_nhwc(x, w, b, geo, s=s, nearest=nearest, saturate=saturate, relu=relu)
    # bound the memory of the column matrices: process a few images at a time
    step = max(1, _COLS // max(1, E * F * C * R * S))
    if N > step:
        parts = [conv2d(x[i:i + step], w, b, fx=fx, fw=fw, fy=fy, stride=stride, padding=padding,
                        groups=groups, mode=mode, rounding=rounding, overflow=overflow, relu=relu)
                 for i in range(0, N, step)]
        return OpResult(np.concatenate([r.y for r in parts]), sum(r.product_overflows for r in parts),
                        sum(r.output_overflows for r in parts))
    def padded() -> torch.Tensor:  # zero padding = code 0 (the torch paths; the C im2col pads itself)
        return torch.nn.functional.pad(torch.from_numpy(x), (Pw, Pw, P, P))

    Kg = Cg * R * S
    w2 = w.reshape(M, Kg)
    threads = torch.get_num_threads()
    n_prod = 0
    if mode == "wide":
        bias = None if b is None else np.asarray(b, dtype=np.int64)
        kw = {"N": N, "EF": E * F, "s": s, "nearest": nearest, "saturate": saturate, "bits": fy.bits,
              "relu": relu, "nthreads": threads}
        limbs = None
        if groups == 1 and Kg < 65536 and hasattr(torch, "_int_mm"):
            try:
                limbs, colsum, E, F = _limb_gemms(x, torch.from_numpy(w2), R, S, U, Uw, P, Pw)
            except RuntimeError:  # torch._int_mm is private API; fall back to float64 below
                limbs = None
        if limbs is not None:
            res = _native.wide_finalize(tuple(t.numpy() for t in limbs), None, colsum.numpy(), Kg, bias, **kw)
            total = None if res is not None else _combine_limbs(limbs, colsum, Kg)
        else:  # grouped (or no int8 GEMM): a float64 convolution is exact (products < 2**30, sums < 2**53)
            if Kg >= 1 << 23:
                raise HwawareError(f"conv2d: {Kg} products per output is too many for exact sums")
            out = torch.nn.functional.conv2d(padded().double(), torch.from_numpy(w).double(), stride=(U, Uw),
                                             groups=groups)
            total = out.permute(0, 2, 3, 1).reshape(-1, M).round().long()
            res = _native.wide_finalize(None, total.numpy(), None, Kg, bias, **kw)
        if res is not None:
            return OpResult(res[0].reshape(N, M, E, F), 0, res[1])
        if bias is not None:
            total += torch.from_numpy(bias)[None, :]
        y, over = shift_cut(total, s, rounding, overflow, fy.bits)
        n_out = int(over.sum())
    else:
        native_cols = _native.im2col(x, R, S, U, Uw, P, Pw, limbs=False, nthreads=threads)
        if native_cols is not None:
            cols = torch.from_numpy(native_cols[0])
        else:
            cols, E, F = _im2col(padded(), R, S, U, Uw)
        direct = fy.bits == 16
        res = None
        if Kg < 65536:
            res = _native.eyeriss_conv(cols.numpy(), w2, b, N=N, EF=E * F, groups=groups, s=s,
                                       nearest=nearest, saturate=saturate, relu=relu and direct,
                                       nthreads=threads)
        if res is not None:
            y3, n_prod, n_out = res
            if direct:
                return OpResult(y3.reshape(N, M, E, F), n_prod, n_out)
            y = torch.from_numpy(y3).permute(0, 2, 1).reshape(-1, M).long()  # back to P x M
        else:
            acc, n_prod = _eyeriss_sums_torch(cols, torch.from_numpy(w2), groups, s, rounding, overflow)
            if b is not None:
                acc += torch.from_numpy(np.asarray(b, dtype=np.int64))[None, :]
            y, over = cut(acc, 16, "wrap")  # the 16-bit adder
            n_out = int(over.sum())
        if not direct:
            y, over = cut(y, fy.bits, overflow)
            n_out += int(over.sum())
    if relu:
        y = y.clamp_min(0)
    y = y.to(torch.int16).reshape(N, E, F, M).permute(0, 3, 1, 2).contiguous()
    return OpResult(y.numpy(), n_prod, n_out)


def _per_channel(x, w, b, fw_channels, *, fw: FixedFormat, groups: int, **kw) -> OpResult:
    """conv2d with output channel m's weights at ``fw_channels[m]`` fractional bits.

    Each output channel's arithmetic involves only its own weights, bias and shift, so the
    channels sharing a format are one ordinary conv2d: their weight rows (and, for depthwise
    layers, their input channels) sliced out, or, for other grouped layers, the whole layer run
    with the other channels' weights and bias at zero (zero products and a zero sum neither
    overflow nor change the channels kept)."""
    M = w.shape[0]
    fws = np.asarray([int(f) for f in fw_channels], dtype=np.int64)
    if fws.shape != (M,):
        raise HwawareError(f"conv2d: fw_channels needs {M} values (one per output channel), got {len(fws)}")
    bias = np.zeros(M, dtype=np.int64) if b is None else np.asarray(b, dtype=np.int64)
    Mg = M // groups
    y = None
    n_prod = n_out = 0
    for f in np.unique(fws):
        idx = np.flatnonzero(fws == f)
        fmt = FixedFormat(int(f), fw.bits)
        if groups == 1:
            r = conv2d(x, w[idx], bias[idx], fw=fmt, groups=1, **kw)
            part = r.y
        elif Mg == 1:  # depthwise-like: channel m reads input group m
            Cg = w.shape[1]
            cin = (idx[:, None] * Cg + np.arange(Cg)[None, :]).ravel()
            r = conv2d(np.ascontiguousarray(x[:, cin]), w[idx], bias[idx], fw=fmt, groups=len(idx), **kw)
            part = r.y
        else:
            keep = fws == f
            wm = np.where(keep[:, None, None, None], w, 0).astype(np.int16)
            r = conv2d(x, wm, np.where(keep, bias, 0), fw=fmt, groups=groups, **kw)
            part = r.y[:, idx]
        if y is None:
            y = np.empty((part.shape[0], M, *part.shape[2:]), dtype=np.int16)
        y[:, idx] = part
        n_prod += r.product_overflows
        n_out += r.output_overflows
    return OpResult(y, n_prod, n_out)


def conv1d(x, w, b=None, *, stride=1, padding=0, **kw) -> OpResult:
    """x: N x C x L, w: M x C/groups x S; a Conv2d with H = R = 1."""
    x, w = np.asarray(x), np.asarray(w)
    if x.ndim != 3 or w.ndim != 3:
        raise HwawareError(f"conv1d takes x N x C x L and w M x C/groups x S, got {x.shape}, {w.shape}")
    r = conv2d(x[:, :, None, :], w[:, :, None, :], b, stride=(1, pair(stride, "stride")[1]),
               padding=(0, pair(padding, "padding")[1]), **kw)
    return OpResult(r.y[:, :, 0, :], r.product_overflows, r.output_overflows)


def linear(x, w, b=None, **kw) -> OpResult:
    """x: N x C, w: M x C."""
    x, w = np.asarray(x), np.asarray(w)
    if x.ndim != 2 or w.ndim != 2 or x.shape[1] != w.shape[1]:
        raise HwawareError(f"linear takes x N x C and w M x C, got {x.shape}, {w.shape}")
    r = conv2d(x[:, :, None, None], w[:, :, None, None], b, **kw)
    return OpResult(r.y[:, :, 0, 0], r.product_overflows, r.output_overflows)


def relu(x) -> OpResult:
    return OpResult(np.maximum(_codes(x, "x"), 0))


def max_pool2d(x, kernel, stride=None, padding=0) -> OpResult:
    """Maximum of each window; format unchanged."""
    x = _codes(x, "x")
    k = pair(kernel, "kernel")
    st = pair(stride if stride is not None else kernel, "stride")
    return pooling.max_pool(x, k, st, pair(padding, "padding"), ceil_mode=False)


def avg_pool2d(x, kernel, stride=None, padding=0, *, fx: FixedFormat, fy: FixedFormat,
               rounding: str = "floor", overflow: str = "wrap") -> OpResult:
    """``round(window sum * 2**(fy-fx) / (R*S))`` (zero padding counted), then cut to ``fy``."""
    check_arith("wide", rounding, overflow)
    x = _codes(x, "x")
    d = fy.frac_bits - fx.frac_bits
    if abs(d) > 30:
        return golden.avg_pool2d(x, kernel, stride, padding, fx=fx, fy=fy, rounding=rounding,
                                 overflow=overflow)
    k = pair(kernel, "kernel")
    st = pair(stride if stride is not None else kernel, "stride")
    sums = torch.nn.functional.avg_pool2d(torch.from_numpy(x).double(), k, st, pair(padding, "padding"),
                                          count_include_pad=True, divisor_override=1)
    num = sums.round().long() << max(d, 0)
    q = div_round(num, k[0] * k[1] << max(-d, 0), rounding)
    y, over = cut(q, fy.bits, overflow)
    return OpResult(y.to(torch.int16).numpy(), 0, int(over.sum()))


def add(a, b, *, fa: FixedFormat, fb: FixedFormat, fy: FixedFormat, rounding: str = "floor",
        overflow: str = "wrap", relu: bool = False) -> OpResult:
    """Both inputs aligned exactly to max(fa, fb), summed, one shift to ``fy``, one cut."""
    check_arith("wide", rounding, overflow)
    a, b = _codes(a, "a"), _codes(b, "b")
    if a.shape != b.shape:
        raise HwawareError(f"add: shapes differ, {a.shape} vs {b.shape}")
    F = max(fa.frac_bits, fb.frac_bits)
    if max(F - fa.frac_bits, F - fb.frac_bits) > 40:
        return golden.add(a, b, fa=fa, fb=fb, fy=fy, rounding=rounding, overflow=overflow, relu=relu)
    res = _native.add(a, b, la=F - fa.frac_bits, lb=F - fb.frac_bits, s=F - fy.frac_bits,
                      nearest=rounding == "nearest", saturate=overflow == "saturate", bits=fy.bits, relu=relu)
    if res is not None:
        return OpResult(res[0], 0, res[1])
    t = (torch.from_numpy(a).long() << (F - fa.frac_bits)) + (torch.from_numpy(b).long() << (F - fb.frac_bits))
    y, over = shift_cut(t, F - fy.frac_bits, rounding, overflow, fy.bits)
    if relu:
        y = y.clamp_min(0)
    return OpResult(y.to(torch.int16).numpy(), 0, int(over.sum()))


def requantize(x, *, fx: FixedFormat, fy: FixedFormat, rounding: str = "floor",
               overflow: str = "wrap") -> OpResult:
    """Change format: shift by ``fx - fy`` and cut to ``fy``."""
    check_arith("wide", rounding, overflow)
    t = torch.from_numpy(_codes(x, "x")).long()
    y, over = shift_cut(t, fx.frac_bits - fy.frac_bits, rounding, overflow, fy.bits)
    return OpResult(y.to(torch.int16).numpy(), 0, int(over.sum()))


def concat(xs, *, fxs, fy: FixedFormat, dim: int = 1, rounding: str = "floor",
           overflow: str = "wrap") -> OpResult:
    """Each input brought to ``fy`` (shift and cut), then concatenated along ``dim``."""
    parts = [requantize(x, fx=f, fy=fy, rounding=rounding, overflow=overflow) for x, f in zip(xs, fxs)]
    return OpResult(np.concatenate([p.y for p in parts], axis=dim), 0,
                    sum(p.output_overflows for p in parts))


def flatten(x, start_dim: int = 1) -> OpResult:
    x = np.asarray(x)
    return OpResult(x.reshape(*x.shape[:start_dim], -1))
