"""A small C kernel for the per-product work of mode ``eyeriss``, compiled on first use.

Mode ``eyeriss`` shifts and cuts every product before adding it, which no GEMM library does; the
kernel below runs that loop at ~10-15 G products/s on two AVX-512 cores (one thread per slice
of output rows). It is plain C (no torch
headers), compiled with the system C compiler (``$CC``, else ``cc``) into
``$HWAWARE_CACHE`` (default ``~/.cache/hwaware``) and loaded with ctypes. Without a compiler, or
with ``HWAWARE_NO_NATIVE=1``, :mod:`hwaware.fixedpoint.ops` uses an exact (slower) torch path.
"""

from __future__ import annotations

import ctypes
import hashlib
import os
import platform
import subprocess
import tempfile
import warnings
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np

_SOURCE = r"""
#include <stdint.h>
#include <stddef.h>

static inline __attribute__((always_inline)) int32_t cut16(int32_t q, const int saturate) {
  if (saturate) return q < -32768 ? -32768 : (q > 32767 ? 32767 : q);
  return (int32_t)(int16_t)(uint16_t)(uint32_t)q;
}

/* One product shifted and cut: *r = cut16(q), returns 1 when q left 16 bits.
   general = 0: int32 arithmetic, 1 <= s <= 30. general = 1: int64, any s (a left shift for s <= 0,
   capped at 32 bits, which leaves every flag and result unchanged since |x*w| <= 2**30). */
static inline __attribute__((always_inline)) int32_t product(int32_t xv, int32_t wv, int s, int64_t rnd,
                                                             int32_t *r, const int saturate,
                                                             const int general) {
  if (!general) {
    const int32_t q = (xv * wv + (int32_t)rnd) >> s;
    *r = cut16(q, saturate);
    return *r != q;
  }
  int64_t q = (int64_t)xv * wv;
  if (s > 0) q = (q + rnd) >> (s > 62 ? 62 : s);
  else q = (int64_t)((uint64_t)q << (-s > 32 ? 32 : -s));
  const int64_t c = saturate ? (q < -32768 ? -32768 : (q > 32767 ? 32767 : q))
                             : (int64_t)(int16_t)(uint16_t)(uint64_t)q;
  *r = (int32_t)c;
  return c != q;
}

/* Mode eyeriss. For p0 <= p < p1 (p = n*EF + ef) and output channel o = g*Mg + m:
     acc = sum_k cut16((X[p, g, k] * W[o, k] + rnd) >> s)
     t   = acc + bias[o];  y = wrap16(t);  relu: y = max(y, 0)
   y goes to out[n, o, ef] (N x M x EF int16). counts[0] += products that left 16 bits,
   counts[1] += outputs whose exact t left 16 bits. X: P x G x Kg, W: M x Kg (int16). */
static inline __attribute__((always_inline)) void eyeriss_body(
    const int16_t *X, const int16_t *W, const int32_t *bias, int16_t *out, int64_t p0, int64_t p1,
    int64_t G, int64_t Mg, int64_t Kg, int64_t EF, int s, int64_t rnd, int relu, int64_t *counts,
    const int saturate, const int general) {
  int64_t n_prod = 0, n_out = 0;
  const int64_t ldx = G * Kg, M = G * Mg;
  for (int64_t p = p0; p < p1; ++p) {
    const int64_t n = p / EF, ef = p % EF;
    int16_t *o = out + n * M * EF + ef;
    for (int64_t g = 0; g < G; ++g) {
      const int16_t *x = X + p * ldx + g * Kg;
      int64_t m = g * Mg;
      const int64_t mend = m + Mg;
      int32_t acc[4];
      for (; m < mend; m += 4) {
        const int64_t left = mend - m;
        if (left >= 4) {
          const int16_t *w0 = W + m * Kg, *w1 = w0 + Kg, *w2 = w1 + Kg, *w3 = w2 + Kg;
          int32_t a0 = 0, a1 = 0, a2 = 0, a3 = 0, c0 = 0, c1 = 0, c2 = 0, c3 = 0;
          for (int64_t k = 0; k < Kg; ++k) {
            const int32_t xv = x[k];
            int32_t r0, r1, r2, r3;
            c0 += product(xv, w0[k], s, rnd, &r0, saturate, general);
            c1 += product(xv, w1[k], s, rnd, &r1, saturate, general);
            c2 += product(xv, w2[k], s, rnd, &r2, saturate, general);
            c3 += product(xv, w3[k], s, rnd, &r3, saturate, general);
            a0 += r0; a1 += r1; a2 += r2; a3 += r3;
          }
          acc[0] = a0; acc[1] = a1; acc[2] = a2; acc[3] = a3;
          n_prod += (int64_t)c0 + c1 + c2 + c3;
        } else {
          for (int64_t j = 0; j < left; ++j) {
            const int16_t *w0 = W + (m + j) * Kg;
            int32_t a0 = 0, c0 = 0;
            for (int64_t k = 0; k < Kg; ++k) {
              int32_t r0;
              c0 += product(x[k], w0[k], s, rnd, &r0, saturate, general);
              a0 += r0;
            }
            acc[j] = a0;
            n_prod += c0;
          }
        }
        const int64_t cnt = left < 4 ? left : 4;
        for (int64_t j = 0; j < cnt; ++j) {
          const int64_t t = (int64_t)acc[j] + (bias ? bias[m + j] : 0);
          n_out += (t < -32768) | (t > 32767);
          int32_t y = (int32_t)(int16_t)(uint16_t)(uint64_t)t;
          if (relu && y < 0) y = 0;
          o[(m + j) * EF] = (int16_t)y;
        }
      }
    }
  }
  counts[0] += n_prod;
  counts[1] += n_out;
}

#define EYERISS_ENTRY(NAME, SAT, GEN)                                                            \
  void NAME(const int16_t *X, const int16_t *W, const int32_t *bias, int16_t *out, int64_t p0,       \
            int64_t p1, int64_t G, int64_t Mg, int64_t Kg, int64_t EF, int s, int64_t rnd, int relu, \
            int64_t *counts) {                                                                      \
    eyeriss_body(X, W, bias, out, p0, p1, G, Mg, Kg, EF, s, rnd, relu, counts, SAT, GEN);          \
  }
EYERISS_ENTRY(hw_eyeriss_wrap, 0, 0)
EYERISS_ENTRY(hw_eyeriss_sat, 1, 0)
EYERISS_ENTRY(hw_eyeriss_wrap_any_shift, 0, 1)
EYERISS_ENTRY(hw_eyeriss_sat_any_shift, 1, 1)

/* Column matrix of an unpadded N x C x H x W int16 input for rows p0 <= p < p1 (p = (n*E + e)*F + f),
   columns (c, r, s); positions in the zero padding read code 0. limbs = 0: int16 columns in `hi`;
   limbs = 1: int8 hi = v >> 8 and lo = (v & 255) - 128 (the wide mode's limbs). */
void hw_im2col(const int16_t *x, void *hi, int8_t *lo, int64_t N, int64_t C, int64_t H, int64_t W,
               int64_t R, int64_t S, int64_t U, int64_t Uw, int64_t P, int64_t Pw, int64_t E, int64_t F,
               int64_t p0, int64_t p1, int limbs) {
  const int64_t K = C * R * S;
  for (int64_t p = p0; p < p1; ++p) {
    const int64_t n = p / (E * F), e = (p / F) % E, f = p % F;
    int16_t *o16 = (int16_t *)hi + p * K;
    int8_t *oh = (int8_t *)hi + p * K, *ol = lo + p * K;
    int64_t k = 0;
    for (int64_t c = 0; c < C; ++c) {
      const int16_t *plane = x + (n * C + c) * H * W;
      for (int64_t r = 0; r < R; ++r) {
        const int64_t h = e * U + r - P, w0 = f * Uw - Pw;
        if (h >= 0 && h < H && w0 >= 0 && w0 + S <= W) {  /* interior: no padding to check */
          const int16_t *src = plane + h * W + w0;
          if (limbs) {
            for (int64_t q = 0; q < S; ++q) {
              oh[k + q] = (int8_t)(src[q] >> 8);
              ol[k + q] = (int8_t)((src[q] & 255) - 128);
            }
          } else {
            for (int64_t q = 0; q < S; ++q) o16[k + q] = src[q];
          }
          k += S;
          continue;
        }
        for (int64_t q = 0; q < S; ++q, ++k) {
          const int64_t w = f * Uw + q - Pw;
          const int16_t v = (h >= 0 && h < H && w >= 0 && w < W) ? plane[h * W + w] : 0;
          if (limbs) {
            oh[k] = (int8_t)(v >> 8);
            ol[k] = (int8_t)((v & 255) - 128);
          } else {
            o16[k] = v;
          }
        }
      }
    }
  }
}

/* Shift by s (floor or nearest; s <= 0 is an exact left shift), cut to `bits` (wrap or saturate).
   Exact for |t| < 2**61; *over = 1 when the shifted value did not fit. */
static inline int64_t shift_cut(int64_t t, int s, int nearest, int saturate, int bits, int *over) {
  const int64_t lo = -((int64_t)1 << (bits - 1)), hi = ((int64_t)1 << (bits - 1)) - 1;
  int64_t q;
  if (s > 0) {
    const int sc = s > 62 ? 62 : s;
    if (nearest) t += (int64_t)1 << (sc - 1);
    q = t >> sc;
  } else {
    const int k = -s;
    int64_t c = t < lo - 1 ? lo - 1 : (t > hi + 1 ? hi + 1 : t);
    c = (int64_t)((uint64_t)c << (k < bits + 1 ? k : bits + 1));
    *over = (c < lo) | (c > hi);
    if (saturate) return c < lo ? lo : (c > hi ? hi : c);
    if (k >= bits) return 0;
    q = (int64_t)(((uint64_t)t & (((uint64_t)1 << bits) - 1)) << k);
    const uint64_t mask = ((uint64_t)1 << bits) - 1, u = ((uint64_t)q) & mask;
    return (int64_t)(u ^ ((uint64_t)1 << (bits - 1))) - ((int64_t)1 << (bits - 1));
  }
  *over = (q < lo) | (q > hi);
  if (saturate) return q < lo ? lo : (q > hi ? hi : q);
  const uint64_t mask = ((uint64_t)1 << bits) - 1, u = ((uint64_t)q) & mask;
  return (int64_t)(u ^ ((uint64_t)1 << (bits - 1))) - ((int64_t)1 << (bits - 1));
}

/* Mode wide, from int8-limb GEMMs (x = 256*xh + xl + 128, w likewise), P x (M+1) int32 each,
   whose column M multiplies by ones (so hh[p, M] = sum of xh, lh[p, M] = sum of xl):
     t = 65536*hh + 256*(hl + lh) + ll + 128*(256*hh[p, M] + lh[p, M]) + 128*colsum[o] + 16384*K
   or, when hh is NULL, t = ll64[p, o] (an exact int64 sum, P x M). Then + bias[o], shift/cut,
   ReLU, out[n, o, ef]. Returns how many outputs left the range. */
static inline __attribute__((always_inline)) int64_t finalize_body(
    const int32_t *hh, const int32_t *hl, const int32_t *lh, const int32_t *ll, const int64_t *ll64,
    const int64_t *colsum, int64_t K, const int64_t *bias, int16_t *out, int64_t p0, int64_t p1,
    int64_t M, int64_t EF, int s, int nearest, int saturate, int bits, int relu, const int fast) {
  int64_t n_over = 0;
  const int64_t lo = -((int64_t)1 << (bits - 1)), hi = ((int64_t)1 << (bits - 1)) - 1;
  const int64_t rnd = (fast && nearest) ? ((int64_t)1 << (s - 1)) : 0;
  /* tiles of 64 rows x 64 channels: reads along m, writes along ef stay in cache */
  for (int64_t pt = p0; pt < p1; pt += 64) {
    const int64_t pe = pt + 64 < p1 ? pt + 64 : p1;
    for (int64_t mt = 0; mt < M; mt += 64) {
      const int64_t me = mt + 64 < M ? mt + 64 : M;
      for (int64_t p = pt; p < pe; ++p) {
        const int64_t n = p / EF, ef = p % EF;
        int16_t *o = out + n * M * EF + ef;
        const int64_t r = p * (M + 1) + M;
        const int64_t rows = hh ? 128 * (256 * (int64_t)hh[r] + lh[r]) + 16384 * K : 0;
        for (int64_t m = mt; m < me; ++m) {
          int64_t t;
          if (hh) {
            const int64_t i = p * (M + 1) + m;
            t = ((int64_t)hh[i] << 16) + (((int64_t)hl[i] + lh[i]) << 8) + ll[i] + 128 * colsum[m] + rows;
          } else {
            t = ll64[p * M + m];
          }
          if (bias) t += bias[m];
          int64_t y;
          if (fast) {  /* 1 <= s <= 62, 16-bit output */
            const int64_t q = (t + rnd) >> s;
            const int ov = (q < lo) | (q > hi);
            n_over += ov;
            y = saturate ? (q < lo ? lo : (q > hi ? hi : q)) : (int64_t)(int16_t)(uint16_t)(uint64_t)q;
          } else {
            int over = 0;
            y = shift_cut(t, s, nearest, saturate, bits, &over);
            n_over += over;
          }
          if (relu && y < 0) y = 0;
          o[m * EF] = (int16_t)y;
        }
      }
    }
  }
  return n_over;
}

int64_t hw_wide_finalize(const int32_t *hh, const int32_t *hl, const int32_t *lh, const int32_t *ll,
                         const int64_t *ll64, const int64_t *colsum, int64_t K,
                         const int64_t *bias, int16_t *out, int64_t p0, int64_t p1, int64_t M,
                         int64_t EF, int s, int nearest, int saturate, int bits, int relu) {
  if (s >= 1 && s <= 62 && bits == 16)
    return finalize_body(hh, hl, lh, ll, ll64, colsum, K, bias, out, p0, p1, M, EF, s, nearest,
                         saturate, bits, relu, 1);
  return finalize_body(hh, hl, lh, ll, ll64, colsum, K, bias, out, p0, p1, M, EF, s, nearest, saturate,
                       bits, relu, 0);
}
"""

_FLAGS = ["-O3", "-march=native", "-shared", "-fPIC"]
_FLAGS_PORTABLE = ["-O3", "-shared", "-fPIC"]  # if the compiler does not know -march=native
_lib: ctypes.CDLL | None = None
_tried = False


def _cpu_key() -> str:
    text = platform.machine()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith(("model name", "flags")):
                text += line
    except OSError:
        pass
    return text


def _build(path: Path) -> None:
    cc = os.environ.get("CC", "cc")
    path.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=path.parent) as tmp:
        src = Path(tmp) / "fixedpoint_kernel.c"
        src.write_text(_SOURCE)
        so = Path(tmp) / path.name
        errors = []
        for flags in (_FLAGS, _FLAGS_PORTABLE):
            res = subprocess.run([cc, *flags, str(src), "-o", str(so)], capture_output=True, text=True,
                                 timeout=300, check=False)
            if res.returncode == 0:
                os.replace(so, path)  # atomic: a concurrent build never leaves a half-written file
                return
            errors.append(res.stderr.strip().splitlines()[-1:] or ["?"])
        raise OSError(f"compiling the fixed-point kernel failed: {errors}")


def library() -> ctypes.CDLL | None:
    """The compiled kernel, or None (no compiler, or ``HWAWARE_NO_NATIVE=1``)."""
    global _lib, _tried
    if os.environ.get("HWAWARE_NO_NATIVE", "") not in ("", "0"):
        return None
    if _tried:
        return _lib
    _tried = True
    key = hashlib.sha256((_SOURCE + " ".join(_FLAGS) + _cpu_key()).encode()).hexdigest()[:16]
    cache = Path(os.environ.get("HWAWARE_CACHE", Path.home() / ".cache" / "hwaware"))
    path = cache / "kernels" / f"fixedpoint_{key}.so"
    try:
        if not path.exists():
            _build(path)
        lib = ctypes.CDLL(str(path))
    except (OSError, subprocess.SubprocessError) as exc:
        warnings.warn(f"hwaware.fixedpoint: native kernel unavailable ({exc}); using the slower "
                      f"exact torch path", RuntimeWarning, stacklevel=3)
        return None
    vp, i64, i32 = ctypes.c_void_p, ctypes.c_int64, ctypes.c_int
    for name in ("hw_eyeriss_wrap", "hw_eyeriss_sat", "hw_eyeriss_wrap_any_shift", "hw_eyeriss_sat_any_shift"):
        fn = getattr(lib, name)
        fn.restype = None
        fn.argtypes = [vp] * 4 + [i64] * 6 + [i32, i64, i32, vp]
    lib.hw_im2col.restype = None
    lib.hw_im2col.argtypes = [vp, vp, vp] + [i64] * 14 + [i32]
    lib.hw_wide_finalize.restype = i64
    lib.hw_wide_finalize.argtypes = [vp] * 6 + [i64, vp, vp, i64, i64, i64, i64] + [i32] * 5
    _lib = lib
    return lib


def _ptr(a: np.ndarray | None) -> int | None:
    return None if a is None else a.ctypes.data


def _parallel(fn, P: int, nthreads: int, min_rows: int = 64) -> list:
    """Call ``fn(p0, p1)`` on ``nthreads`` slices of ``range(P)`` in threads (ctypes drops the GIL).

    Plain threads rather than OpenMP: no second OpenMP runtime spinning beside torch's.
    """
    k = max(1, min(nthreads, P // min_rows))
    bounds = [P * i // k for i in range(k + 1)]
    if k == 1:
        return [fn(0, P)]
    with ThreadPoolExecutor(max_workers=k) as pool:
        return list(pool.map(lambda i: fn(bounds[i], bounds[i + 1]), range(k)))


def eyeriss_conv(cols: np.ndarray, w: np.ndarray, bias: np.ndarray | None, *, N: int, EF: int,
                 groups: int, s: int, nearest: bool, saturate: bool, relu: bool,
                 nthreads: int) -> tuple[np.ndarray, int, int] | None:
    """Mode eyeriss: ``(y N x M x EF int16, product overflows, output overflows)``.

    ``cols``: (N*EF) x (groups*Kg) int16, ``w``: M x Kg int16, ``bias``: M codes or None.
    ``y = wrap16(bias + sum of cut products)``, then ReLU. None when the kernel is missing.
    """
    lib = library()
    if lib is None:
        return None
    cols = np.ascontiguousarray(cols, dtype=np.int16)
    w = np.ascontiguousarray(w, dtype=np.int16)
    M, Kg = w.shape
    b = None if bias is None else np.ascontiguousarray(bias, dtype=np.int32)
    out = np.empty((N, M, EF), dtype=np.int16)
    name = "hw_eyeriss_" + ("sat" if saturate else "wrap") + ("" if 1 <= s <= 30 else "_any_shift")
    fn = getattr(lib, name)
    rnd = (1 << (min(s, 62) - 1)) if nearest and s > 0 else 0

    def part(p0: int, p1: int) -> np.ndarray:
        counts = np.zeros(2, dtype=np.int64)
        fn(cols.ctypes.data, w.ctypes.data, _ptr(b), out.ctypes.data, p0, p1, groups, M // groups, Kg,
           EF, s, rnd, int(relu), counts.ctypes.data)
        return counts

    counts = sum(_parallel(part, cols.shape[0], nthreads))
    return out, int(counts[0]), int(counts[1])


def wide_finalize(limbs: tuple[np.ndarray, ...] | None, total: np.ndarray | None,
                  colsum: np.ndarray | None, K: int, bias: np.ndarray | None, *, N: int, EF: int, s: int,
                  nearest: bool, saturate: bool, bits: int, relu: bool,
                  nthreads: int) -> tuple[np.ndarray, int] | None:
    """Mode wide: combine limb GEMMs (P x (M+1), see the C comment) or take an exact int64 ``total``
    (P x M); add bias, shift, cut, ReLU. ``(y N x M x EF int16, output overflows)`` or None.
    """
    lib = library()
    if lib is None:
        return None
    arrs = [None] * 4 if limbs is None else [np.ascontiguousarray(a, dtype=np.int32) for a in limbs]
    t64 = None if total is None else np.ascontiguousarray(total, dtype=np.int64)
    if limbs is not None:
        P, M = arrs[0].shape[0], arrs[0].shape[1] - 1
    else:
        P, M = t64.shape
    cs = None if colsum is None else np.ascontiguousarray(colsum, dtype=np.int64)
    b = None if bias is None else np.ascontiguousarray(bias, dtype=np.int64)
    out = np.empty((N, M, EF), dtype=np.int16)
    ptrs = [_ptr(a) for a in arrs]

    def part(p0: int, p1: int) -> int:
        return lib.hw_wide_finalize(*ptrs, _ptr(t64), _ptr(cs), K, _ptr(b), out.ctypes.data, p0, p1, M,
                                    EF, s, int(nearest), int(saturate), bits, int(relu))

    return out, int(sum(_parallel(part, P, nthreads, min_rows=1024)))


def im2col(x: np.ndarray, R: int, S: int, U: int, Uw: int, P: int, Pw: int, *, limbs: bool,
           nthreads: int) -> tuple[np.ndarray, ...] | None:
    """Column matrix (N*E*F) x (C*R*S) of unpadded int16 ``x``: int16, or the two int8 limbs."""
    lib = library()
    if lib is None:
        return None
    x = np.ascontiguousarray(x, dtype=np.int16)
    N, C, H, W = x.shape
    E, F = (H + 2 * P - R) // U + 1, (W + 2 * Pw - S) // Uw + 1
    rows, K = N * E * F, C * R * S
    if limbs:
        hi, lo = np.empty((rows, K), dtype=np.int8), np.empty((rows, K), dtype=np.int8)
    else:
        hi, lo = np.empty((rows, K), dtype=np.int16), None

    def part(p0: int, p1: int) -> None:
        lib.hw_im2col(x.ctypes.data, hi.ctypes.data, _ptr(lo), N, C, H, W, R, S, U, Uw, P, Pw, E, F, p0, p1,
                      int(limbs))

    _parallel(part, rows, nthreads, min_rows=256)
    return (hi, lo) if limbs else (hi,)
