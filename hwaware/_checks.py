"""Input validation shared by every entry point: sizes hwaware can score and allocate, finite values.

Limits (checked before any work, each a one-line :class:`HwawareError`):

- a layer's batch ``N`` <= ``MAX_BATCH`` (65,536) and every other dimension (M, C, H, W, R, S) <=
  ``MAX_DIM`` (1,048,576): scoring cost grows with them (the mapper enumerates tilings of each
  dimension), and at these limits one layer still scores in seconds (measured: M = C = 2^20 in
  3.6 s, N = 10^5 in 5.5 s on a loaded 2-core machine; N = 10^6 took 17 s);
- an input tensor hwaware creates (``--input-size``, ``score(input_size=...)``, a recipe's
  ``input_size``; :func:`check_input_size`) must fit in a quarter of the available memory
  (activations of the layers after it need the rest);
- weights, buffers, activations and hardware fields are finite (no NaN/inf).
"""

from __future__ import annotations

import math
import os
from functools import lru_cache
from typing import Any

import numpy as np

from .errors import HwawareError

MAX_BATCH = 1 << 16
MAX_DIM = 1 << 20


def check_dim(value: int, key: str, where: str) -> None:
    """``key`` (a layer dimension) within hwaware's limits."""
    limit = MAX_BATCH if key == "N" else MAX_DIM
    if value > limit:
        what = "batch" if key == "N" else "dimension"
        raise HwawareError(f"{where}: '{key}' = {value} exceeds {limit}, the largest {what} hwaware scores")


def available_bytes() -> int:
    """Memory available to new allocations (``MemAvailable`` on Linux; physical memory otherwise)."""
    try:
        with open("/proc/meminfo") as fh:
            for line in fh:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except (OSError, ValueError, IndexError):
        pass
    try:
        return os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    except (ValueError, OSError, AttributeError):  # pragma: no cover - exotic platforms
        return 1 << 34


def check_alloc(shape: tuple[int, ...], where: str, *, itemsize: int = 4) -> None:
    """A float tensor of ``shape`` fits: under 2^31 elements per sample batch and a quarter of the
    available memory."""
    n = math.prod(int(v) for v in shape)
    need, have = n * itemsize, available_bytes()
    if n >= 1 << 31 or need > have // 4:
        raise HwawareError(f"{where}: a {'x'.join(map(str, shape))} input is {_gb(need)} GB; with "
                           f"{_gb(have)} GB of memory available hwaware allows up to {_gb(have // 4)} GB "
                           "(activations need the rest); use a smaller size")


def check_input_size(size: Any, where: str, *, batch: bool = True) -> tuple[int, ...]:
    """One input shape hwaware will allocate (``--input-size``, ``score(input_size=...)``, a recipe's
    ``input_size``): positive integers, at most 5 of them, the batch (first size, when ``batch``)
    within ``MAX_BATCH`` and the tensor within :func:`check_alloc`'s memory limit. Returns it as ints;
    every caller (CLI and Python API) goes through here, so the errors read the same."""
    try:
        dims = tuple(size)
        shape = tuple(int(v) for v in dims)
        ok = all(isinstance(v, int) or float(v) == int(v) for v in dims) and 0 < len(shape) <= 5
    except (TypeError, ValueError, OverflowError):
        shape, ok = (), False
    if not ok or any(v <= 0 for v in shape):
        raise HwawareError(f"{where}: expected positive integer sizes like (1, 3, 224, 224), got {size!r}")
    if batch:
        check_dim(shape[0], "N", where)
    check_alloc(shape if batch else (1, *shape), where)
    return shape


def check_finite_model(model: Any, where: str) -> None:
    """Every parameter and floating buffer of ``model`` is finite; else name the first bad tensor."""
    import torch

    for kind, items in (("weight", model.named_parameters()), ("buffer", model.named_buffers())):
        for name, t in items:
            if t is None or not torch.is_floating_point(t):
                continue
            bad = non_finite(t)
            if bad:
                raise HwawareError(f"{where}: {kind} '{name}' holds NaN/inf ({bad} of {t.numel()} values); "
                                   "the model is broken (diverged training or a corrupt file)")


def non_finite(t: Any) -> int:
    """How many values of ``t`` are NaN or inf. One cheap pass in the common case: on CPU, NumPy's
    min and max (SIMD, on the calling thread: no thread-pool hand-off per tensor, which on a busy
    machine costs more than the work; a BLAS sum of squares measured no cheaper and would bring
    OpenBLAS's own threads) are finite only when every value is; elsewhere a finite torch sum
    (NaN/inf, or finite values whose float sum overflowed, pay for the exact count)."""
    import torch

    t = t.detach()
    if t.numel() == 0:
        return 0
    a = numpy_view(t)
    if a is not None:
        if np.isfinite(a.min()) and np.isfinite(a.max()):
            return 0
        return int(a.size - np.count_nonzero(np.isfinite(a)))
    if bool(torch.isfinite(t.sum())):
        return 0
    return int((~torch.isfinite(t)).sum())


def numpy_view(t: Any) -> np.ndarray | None:
    """A zero-copy NumPy view of a CPU tensor NumPy can read (float16/32/64, integers, bool), or
    None (other devices, layouts and dtypes such as bfloat16)."""
    import torch

    if t.device.type != "cpu" or t.layout != torch.strided or t.is_quantized or t.is_conj() or t.is_neg():
        return None
    if t.dtype not in _numpy_dtypes():
        return None
    return t.detach().numpy()


@lru_cache(maxsize=1)
def _numpy_dtypes() -> frozenset:
    import torch

    return frozenset((torch.float16, torch.float32, torch.float64, torch.bool, torch.uint8, torch.int8,
                      torch.int16, torch.int32, torch.int64))


def check_finite_tensor(t: Any, what: str) -> None:
    """``t`` (an activation or input batch) is finite; else say where and how many."""
    import torch

    if isinstance(t, torch.Tensor) and torch.is_floating_point(t):
        bad = non_finite(t)
        if bad:
            raise HwawareError(f"{what} holds NaN/inf ({bad} of {t.numel()} values)")


def _gb(n: int) -> str:
    return f"{n / 1e9:.3g}"
