"""ctypes wrappers of the C kernels in ``kernel.c``, compiled on first use.

Mode ``eyeriss`` shifts and cuts every product before adding it, which no GEMM library does: an
AVX-512 loop (16-bit multiplies give the low and high halves of each 16x16-bit product, a funnel
shift selects the 16 bits the chip keeps) does it when the CPU has AVX-512 BW/VBMI2/VNNI, a scalar
loop otherwise. Mode ``wide`` needs only the column matrices (NHWC, contiguous runs) and the
combination of its int8 GEMMs. Plain C (no torch headers), compiled with ``$CC`` (else ``cc``)
into ``$HWAWARE_CACHE/kernels`` (default ``~/.cache/hwaware/kernels``), verified before every load
(:mod:`._kernel_cache`), run in plain threads (ctypes drops the GIL); a whole convolution layer is
split by rows into one pipeline per thread (:func:`split_rows`). Without a compiler, or with
``HWAWARE_NO_NATIVE=1``, :mod:`hwaware.fixedpoint.ops` uses exact (slower) torch paths.
``HWAWARE_NO_SIMD=1`` keeps the scalar eyeriss loop (the tests run both).
"""

from __future__ import annotations

import ctypes
import hashlib
import os
import platform
import subprocess
import threading
import warnings
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np

from . import _kernel_cache

_SOURCE_FILE = Path(__file__).with_name("kernel.c")
_FLAGS = ["-O3", "-march=native", "-shared", "-fPIC"]
_FLAGS_PORTABLE = ["-O3", "-shared", "-fPIC"]  # if the compiler does not know -march=native
_lib: ctypes.CDLL | None = None
_tried = False


def _cpu_key() -> str:
    """The CPU's model and flags: -march=native code is only valid on a CPU with the same ones."""
    text = platform.machine()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith(("model name", "flags")):
                text += line
                if line.startswith("flags"):
                    break
    except OSError:
        pass
    return text


def cache_entry(flags: list[str] | None = None) -> tuple[Path, str]:
    """(directory, file stem) of the cached kernel: ``$HWAWARE_CACHE/kernels/fixedpoint_<key>``, the
    key hashing the source, the flags, the compiler and the CPU (``-march=native`` code)."""
    flags = _FLAGS if flags is None else flags
    cc = os.environ.get("CC", "cc")
    directory = Path(os.environ.get("HWAWARE_CACHE", Path.home() / ".cache" / "hwaware")) / "kernels"
    key = hashlib.sha256("\0".join([_SOURCE_FILE.read_text(), " ".join(flags), cc, _cpu_key()]).encode())
    return directory, f"fixedpoint_{key.hexdigest()[:16]}"


def _load_verified() -> ctypes.CDLL:
    source = _SOURCE_FILE.read_text()
    cc = os.environ.get("CC", "cc")
    errors = []
    for flags in (_FLAGS, _FLAGS_PORTABLE):
        directory, stem = cache_entry(flags)
        try:
            return _kernel_cache.load(directory, stem, source, flags, cc)
        except (OSError, subprocess.SubprocessError) as exc:
            errors.append(str(exc))
    raise OSError("; ".join(errors))


def library() -> ctypes.CDLL | None:
    """The compiled kernel (built once, verified before loading), or None (no compiler, or
    ``HWAWARE_NO_NATIVE=1``)."""
    global _lib, _tried
    if os.environ.get("HWAWARE_NO_NATIVE", "") not in ("", "0"):
        return None
    if _tried:
        return _lib
    _tried = True
    try:
        lib = _load_verified()
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
    lib.hw_im2col_nhwc.restype = None
    lib.hw_im2col_nhwc.argtypes = [vp, vp] + [i64] * 13
    lib.hw_wide_finalize3.restype = i64
    lib.hw_wide_finalize3.argtypes = [vp] * 4 + [i64, vp, vp, i64, i64, i64, i64] + [i32] * 4
    lib.hw_to_nhwc.restype = None
    lib.hw_to_nhwc.argtypes = [vp, vp, vp] + [i64] * 7 + [i32]
    lib.hw_add.restype = i64
    lib.hw_add.argtypes = [vp, vp, vp, i64, i64] + [i32] * 7
    lib.hw_simd.restype = i32
    lib.hw_simd.argtypes = []
    lib.hw_eyeriss_simd.restype = None
    lib.hw_eyeriss_simd.argtypes = [vp, i64, vp, i64, i64, vp, vp, i64, i64, i64] + [i32] * 4 + [vp]
    _lib = lib
    return lib


def _ptr(a: np.ndarray | None) -> int | None:
    return None if a is None else a.ctypes.data


_POOL: ThreadPoolExecutor | None = None
_POOL_LOCK = threading.Lock()
_SPLIT_LOCK = threading.Lock()


def _run_slices(fn, bounds: list[int]) -> list:
    """``fn(bounds[i], bounds[i+1])`` for every slice: the first on this thread, the others on a
    kept pool (starting threads per call costs more than a small layer's slice)."""
    global _POOL
    k = len(bounds) - 1
    with _POOL_LOCK:
        if _POOL is None or _POOL._max_workers < k - 1:
            _POOL = ThreadPoolExecutor(max_workers=max(1, k - 1), thread_name_prefix="hwaware-kernel")
        pool = _POOL
    futures = [pool.submit(fn, bounds[i], bounds[i + 1]) for i in range(1, k)]
    first = fn(bounds[0], bounds[1])
    return [first] + [f.result() for f in futures]


def _parallel(fn, P: int, nthreads: int, min_rows: int = 64) -> list:
    """Call ``fn(p0, p1)`` on ``nthreads`` slices of ``range(P)`` in threads (ctypes drops the GIL).

    Plain threads rather than OpenMP: no second OpenMP runtime spinning beside torch's.
    """
    k = max(1, min(nthreads, P // min_rows))
    bounds = [P * i // k for i in range(k + 1)]
    if k == 1:
        return [fn(0, P)]
    return _run_slices(fn, bounds)


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


def simd() -> bool:
    """Whether the AVX-512 eyeriss loop is compiled in (and not disabled by ``HWAWARE_NO_SIMD=1``)."""
    lib = library()
    return (lib is not None and bool(lib.hw_simd())
            and os.environ.get("HWAWARE_NO_SIMD", "") in ("", "0"))


def im2col_nhwc(xp: np.ndarray, out: np.ndarray, col0: int, R: int, S: int, U: int, Uw: int, E: int, F: int,
                p0: int, p1: int, *, nthreads: int | None = None) -> None:
    """Rows ``p0..p1`` of the column matrix (columns ``(r, s, c)``) of padded NHWC ``xp`` into
    ``out[:, col0:col0 + R*S*C]`` (``out`` holds rows ``p0..p1``, same dtype as ``xp``)."""
    lib = library()
    _, Hp, Wp, C = xp.shape
    esz = xp.itemsize
    base = out.ctypes.data + col0 * esz
    ld = out.strides[0]

    def part(a: int, b: int) -> None:
        lib.hw_im2col_nhwc(xp.ctypes.data, base + a * ld, ld, esz, Hp, Wp, C, R, S, U, Uw, E, F,
                           p0 + a, p0 + b)

    _parallel(part, p1 - p0, torch_threads() if nthreads is None else nthreads, min_rows=256)


def to_nhwc(x: np.ndarray, P: int, Pw: int, *, limbs: bool) -> list[np.ndarray]:
    """N x C x H x W int16 -> zero-padded N x (H+2P) x (W+2Pw) x C: int16 codes, or the int8 limbs
    ``x >> 8`` and ``(x & 255) - 128`` (the padding holds the limbs of code 0: 0 and -128)."""
    lib = library()
    x = np.ascontiguousarray(x, dtype=np.int16)
    N, C, H, W = x.shape
    shape = (N, H + 2 * P, W + 2 * Pw, C)
    out = [np.empty(shape, np.int8), np.empty(shape, np.int8)] if limbs else [np.empty(shape, np.int16)]

    def part(a: int, b: int) -> None:
        lib.hw_to_nhwc(x.ctypes.data, out[0].ctypes.data, _ptr(out[1]) if limbs else None, C, H, W, P, Pw,
                       a, b, int(limbs))

    _parallel(part, N, torch_threads(), min_rows=1)
    return out


def add(a: np.ndarray, b: np.ndarray, *, la: int, lb: int, s: int, nearest: bool, saturate: bool,
        bits: int, relu: bool) -> tuple[np.ndarray, int] | None:
    """``cut(shift((a << la) + (b << lb), s))`` then ReLU, for int16 ``a``, ``b`` of one shape and
    shifts ``la, lb <= 40``: ``(y, outputs cut)``, or None when the kernel is missing."""
    lib = library()
    if lib is None:
        return None
    a = np.ascontiguousarray(a, dtype=np.int16)
    b = np.ascontiguousarray(b, dtype=np.int16)
    out = np.empty(a.shape, dtype=np.int16)

    def part(i0: int, i1: int) -> int:
        return lib.hw_add(a.ctypes.data, b.ctypes.data, out.ctypes.data, i0, i1, la, lb, s, int(nearest),
                          int(saturate), bits, int(relu))

    return out, int(sum(_parallel(part, a.size, torch_threads(), min_rows=1 << 16)))


def split_rows(fn, rows: int, min_rows: int = 64) -> int:
    """``sum(fn(r0, r1))`` over the thread count's slices of ``range(rows)``, each slice a whole
    pipeline on one thread (torch ops inside run single-threaded meanwhile).

    One team of our threads for the whole layer instead of handing each step (im2col, GEMM,
    combine) to a different pool: torch's OpenMP workers keep spinning after each GEMM and would
    take the cores the next step's threads need.
    """
    import torch

    with _SPLIT_LOCK:  # one layer at a time changes torch's thread count (and restores it)
        threads = torch_threads()
        k = max(1, min(threads, rows // min_rows))
        if k == 1:
            return fn(0, rows)
        bounds = [rows * i // k for i in range(k + 1)]

        def one(r0: int, r1: int):
            torch.set_num_threads(1)  # per thread: a kept pool thread would otherwise open an OpenMP team
            return fn(r0, r1)

        try:
            return sum(_run_slices(one, bounds))
        finally:
            torch.set_num_threads(threads)


def torch_threads() -> int:
    import torch  # the thread count users set for torch is the one the kernels follow

    return torch.get_num_threads()


def wide_finalize3(hh: np.ndarray, mix: np.ndarray, ll: np.ndarray, colsum: np.ndarray, K: int,
                   bias: np.ndarray | None, out: np.ndarray, p0: int, *, s: int, nearest: bool,
                   saturate: bool, relu: bool, nthreads: int | None = None) -> int:
    """Mode wide, 16-bit output, 1 <= s <= 62: combine the three limb GEMMs of rows
    ``p0..p0+len(hh)`` (see the C comment) into ``out`` (N x M x EF); returns the outputs cut."""
    lib = library()
    T, M = mix.shape
    EF = out.shape[2]
    b = None if bias is None else np.ascontiguousarray(bias, dtype=np.int64)
    cs = np.ascontiguousarray(colsum, dtype=np.int64)

    def part(a: int, c: int) -> int:
        return lib.hw_wide_finalize3(hh[a:].ctypes.data, mix[a:].ctypes.data, ll[a:].ctypes.data,
                                     cs.ctypes.data, K, _ptr(b), out.ctypes.data, p0 + a, p0 + c, M, EF, s,
                                     int(nearest), int(saturate), int(relu))

    return int(sum(_parallel(part, T, torch_threads() if nthreads is None else nthreads, min_rows=1024)))


def pack_eyeriss_weights(w: np.ndarray) -> np.ndarray:
    """M x K int16 -> blocks of 16 channels x K/2 pairs x 16 x 2 (zeros beyond M and K): the layout
    whose 32 lanes pair with one broadcast pair of inputs in the AVX-512 loop."""
    M, K = w.shape
    Mp, Kp = -(-M // 16) * 16, -(-K // 2)
    wp = np.zeros((Mp, 2 * Kp), dtype=np.int16)
    wp[:M, :K] = w
    return np.ascontiguousarray(wp.reshape(Mp // 16, 16, Kp, 2).transpose(0, 2, 1, 3))


def eyeriss_simd(cols: np.ndarray, wp: np.ndarray, M: int, bias: np.ndarray | None, out: np.ndarray,
                 p0: int, *, s: int, nearest: bool, saturate: bool, relu: bool,
                 nthreads: int | None = None) -> tuple[int, int]:
    """Mode eyeriss, groups 1, 1 <= s <= 30: rows ``p0..p0+len(cols)`` (``cols``: rows x 2*Kp int16,
    zero-padded) into ``out`` (N x M x EF). Returns (product overflows, output overflows)."""
    lib = library()
    T, ldx = cols.shape
    Kp = wp.shape[1]
    b = None if bias is None else np.ascontiguousarray(bias, dtype=np.int32)
    EF = out.shape[2]

    def part(a: int, c: int) -> np.ndarray:
        counts = np.zeros(2, dtype=np.int64)
        lib.hw_eyeriss_simd(cols[a:].ctypes.data, ldx, wp.ctypes.data, Kp, M, _ptr(b), out.ctypes.data,
                            p0 + a, p0 + c, EF, s, int(nearest), int(saturate), int(relu), counts.ctypes.data)
        return counts

    counts = sum(_parallel(part, T, torch_threads() if nthreads is None else nthreads, min_rows=16))
    return int(counts[0]), int(counts[1])
