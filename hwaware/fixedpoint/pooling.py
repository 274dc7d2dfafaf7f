"""Integer pooling in the forms real models use, bit-identical to :mod:`.golden`.

Every average is one exact window sum divided once: ``y = round(sum * 2**(fy-fx) / divisor)``
(floor, or nearest with halves up), then cut to ``fy``. What differs between the forms is only the
windows and the divisor, which follow PyTorch:

- ``AvgPool2d(k, s, p, ceil_mode, count_include_pad)``: window rows ``[o*s - p, o*s - p + k)`` cut
  to ``H + p`` (that size is the divisor with ``count_include_pad=True``), then to ``[0, H)`` (that
  size is the divisor with ``count_include_pad=False``); ``ceil_mode`` adds a last window when it
  starts inside the input or its left padding.
- ``AdaptiveAvgPool2d(o)`` / ``F.adaptive_avg_pool2d``: rows ``[floor(i*H/o), ceil((i+1)*H/o))``.
- ``x.mean((2, 3))``: one window over the whole plane.
- ``MaxPool2d(..., ceil_mode)``: the maximum over the same cut windows (format unchanged).
"""

from __future__ import annotations

import numpy as np
import torch

from .format import FixedFormat, OpResult, check_arith, cut, div_round

__all__ = ["adaptive_windows", "avg_pool", "max_pool", "pool_windows"]


def _out_size(n: int, k: int, s: int, p: int, ceil_mode: bool) -> int:
    num = n + 2 * p - k
    o = (-(-num // s) if ceil_mode else num // s) + 1
    if ceil_mode and (o - 1) * s >= n + p:
        o -= 1
    return o


def pool_windows(n: int, k: int, s: int, p: int, ceil_mode: bool) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(start, end, padded size) per output position of one dim, start/end cut to [0, n)."""
    o = _out_size(n, k, s, p, ceil_mode)
    start = np.arange(o) * s - p
    end = np.minimum(start + k, n + p)
    padded = end - start
    return np.maximum(start, 0), np.minimum(end, n), padded


def adaptive_windows(n: int, o: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    i = np.arange(o)
    start = (i * n) // o
    end = -((-(i + 1) * n) // o)
    return start, end, end - start


def avg_pool(x, rows, cols, *, count_padded: bool, fx: FixedFormat, fy: FixedFormat,
             rounding: str = "floor", overflow: str = "wrap") -> OpResult:
    """Average over windows ``rows``/``cols`` (from :func:`pool_windows`/:func:`adaptive_windows`)."""
    check_arith("wide", rounding, overflow)
    v = np.asarray(x).astype(np.int64)
    (r0, r1, rp), (c0, c1, cp) = rows, cols
    ii = np.zeros(v.shape[:2] + (v.shape[2] + 1, v.shape[3] + 1), np.int64)  # integral image (exact)
    ii[:, :, 1:, 1:] = v.cumsum(2).cumsum(3)
    s = (ii[:, :, r1][:, :, :, c1] - ii[:, :, r0][:, :, :, c1]
         - ii[:, :, r1][:, :, :, c0] + ii[:, :, r0][:, :, :, c0])
    div = (np.outer(rp, cp) if count_padded else np.outer(r1 - r0, c1 - c0)).astype(np.int64)
    d = fy.frac_bits - fx.frac_bits
    if abs(d) > 40:
        s, div = s.astype(object), div.astype(object)
    num = s * 2 ** max(d, 0) if s.dtype == object else s << max(d, 0)
    q = div_round(num, div * 2 ** max(-d, 0) if div.dtype == object else div << max(-d, 0), rounding)
    y, over = cut(np.asarray(q).astype(np.int64), fy.bits, overflow)
    return OpResult(y.astype(np.int16), 0, int(over.sum()))


def max_pool(x, kernel: tuple[int, int], stride: tuple[int, int], padding: tuple[int, int],
             ceil_mode: bool) -> OpResult:
    """Maximum over PyTorch's windows, on the int16 codes (format unchanged).

    Non-overlapping windows without padding (``kernel == stride``, the common 2x2 pool) take the
    maximum of strided views, ten times faster than ``max_pool2d`` on NCHW tensors; otherwise
    ``max_pool2d`` on int16, which pads with the lowest int16: it never beats a code, and PyTorch's
    windows always hold at least one input element.
    """
    t = torch.from_numpy(np.ascontiguousarray(x, dtype=np.int16))
    (kh, kw), (sh, sw), (ph, pw) = kernel, stride, padding
    if t.ndim == 4 and (kh, kw) == (sh, sw) and ph == pw == 0:
        H, W = t.shape[2:]
        Ho, Wo = _out_size(H, kh, sh, 0, ceil_mode), _out_size(W, kw, sw, 0, ceil_mode)
        if 0 < Ho * kh <= H and 0 < Wo * kw <= W:  # whole windows only (no ceil_mode remainder)
            return OpResult(_tiled_max(t[:, :, :Ho * kh, :Wo * kw].contiguous(), kh, kw).numpy())
    y = torch.nn.functional.max_pool2d(t, kernel, stride, padding, ceil_mode=ceil_mode)
    return OpResult(y.numpy())


def _tiled_max(t: torch.Tensor, kh: int, kw: int) -> torch.Tensor:
    """Maximum of each kh x kw tile of contiguous N x C x (Ho*kh) x (Wo*kw): rows, then columns."""
    N, C, H, W = t.shape
    rows = t.view(N, C, H // kh, kh, W)
    r = rows[:, :, :, 0]
    for i in range(1, kh):
        r = torch.maximum(r, rows[:, :, :, i])
    cols = r.reshape(N, C, H // kh, W // kw, kw)
    y = cols[..., 0]
    for j in range(1, kw):
        y = torch.maximum(y, cols[..., j])
    return y.contiguous()
