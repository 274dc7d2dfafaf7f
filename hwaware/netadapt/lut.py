"""Measured per-layer latency look-up tables (NetAdapt's empirical resource model).

NetAdapt (Yang et al., ECCV 2018) does not model the platform: it times every layer on the target
device for a grid of channel counts, stores the times in a table, and estimates a network's latency
as the sum of its layers' entries. This module does the same on the machine running the job.

* A layer is timed alone (a fresh ``Conv2d``/``Linear`` with the layer's shape, random input):
  ``warmup`` untimed runs, then ``repeats`` timed runs; the median is kept (milliseconds).
* Channel counts are sampled on a grid ``1, step, 2*step, ...`` for the input channels per group
  ``C`` and the filters per group ``M/groups`` (depthwise layers: the channel count). A query between
  grid points is interpolated linearly (bilinearly in ``C`` and ``M``); a grid point is timed the
  first time it is needed.
* Entries are cached in a JSON file per device, dtype and thread count (``latency_<device>.json``),
  keyed by the layer's full shape, and written atomically. Timings are noisy, so a job that uses the
  measured resource is not bit-reproducible from run to run; a cached table is.
"""

from __future__ import annotations

import os
import platform
import re
import statistics
import time
import warnings
from collections.abc import Callable
from pathlib import Path
from typing import Any

from .._io import read_json, write_json
from ..errors import HwawareError
from ..workload import Layer, Workload

LUT_VERSION = 1


def default_lut_dir() -> Path:
    """``$HWAWARE_CACHE/lut`` or ``~/.cache/hwaware/lut`` (honours ``XDG_CACHE_HOME``)."""
    root = os.environ.get("HWAWARE_CACHE")
    if root:
        return Path(root) / "lut"
    xdg = os.environ.get("XDG_CACHE_HOME")
    return (Path(xdg) if xdg else Path.home() / ".cache") / "hwaware" / "lut"


def device_key(device: str = "cpu") -> str:
    """Names the timing platform: CPU model and thread count, or the GPU's name."""
    import torch

    if device.startswith("cuda"):
        if not torch.cuda.is_available():
            raise HwawareError(f"measured latency: device '{device}' requested but CUDA is not available")
        return f"cuda-{torch.cuda.get_device_name(torch.device(device))}"
    cpu = platform.processor() or platform.machine() or "cpu"
    try:  # the marketing name is more telling than 'x86_64' where the kernel exposes it
        with open("/proc/cpuinfo") as fh:
            for line in fh:
                if line.startswith("model name"):
                    cpu = line.split(":", 1)[1].strip()
                    break
    except OSError:
        pass
    return f"cpu-{cpu}-{torch.get_num_threads()}t"


def _slug(text: str) -> str:
    return re.sub(r"[^A-Za-z0-9._-]+", "_", text).strip("_")[:120]


def grid_neighbours(x: int, step: int) -> tuple[int, int]:
    """The grid points ``1, step, 2*step, ...`` that bracket ``x`` (equal when ``x`` is on the grid)."""
    if x <= 1 or step <= 1:
        return (x, x)
    if x % step == 0:
        return (x, x)
    lo = (x // step) * step
    return (max(lo, 1), lo + step)


def _lerp(x: int, x0: int, x1: int, y0: float, y1: float) -> float:
    if x1 == x0:
        return y0
    return y0 + (y1 - y0) * (x - x0) / (x1 - x0)


class LatencyLUT:
    """Per-layer latency table for one device and dtype, filled lazily and cached on disk.

    ``timer`` replaces the stopwatch (it receives the exact Layer to time and returns ms); tests
    use it to check the interpolation against known values.
    """

    def __init__(
        self,
        cache_dir: str | os.PathLike[str] | None = None,
        *,
        device: str = "cpu",
        dtype: str = "float32",
        step: int = 8,
        warmup: int = 3,
        repeats: int = 10,
        timer: Callable[[Layer], float] | None = None,
    ) -> None:
        if step < 1 or warmup < 0 or repeats < 1:
            raise HwawareError(
                f"measured latency: step must be >= 1, warmup >= 0 and repeats >= 1 "
                f"(got step={step}, warmup={warmup}, repeats={repeats})"
            )
        if dtype not in ("float32", "float16", "bfloat16", "float64"):
            raise HwawareError(f"measured latency: dtype must be float32, float16, bfloat16 or float64, got {dtype!r}")
        self.device = device
        self.dtype = dtype
        self.step = step
        self.warmup = warmup
        self.repeats = repeats
        self._timer = timer
        self.platform = "custom-timer" if timer is not None else device_key(device)
        self.path = Path(cache_dir if cache_dir is not None else default_lut_dir()) / (
            f"latency_{_slug(self.platform)}_{dtype}.json"
        )
        self.entries: dict[str, float] = {}
        self.timed = 0  # grid points timed by this object (the rest came from the cache)
        self._dirty = False
        self._load()

    # --- cache file ----------------------------------------------------------------------------
    def _load(self) -> None:
        self.entries = self._read_entries()

    def _read_entries(self) -> dict[str, float]:
        """The cached entries, or nothing for a missing, stale or foreign table (only a cache)."""
        if not self.path.is_file():
            return {}
        try:
            data = read_json(self.path)
        except HwawareError as exc:  # only a cache: time again, but say why
            warnings.warn(f"latency LUT ignored, entries will be timed again: {exc}", RuntimeWarning, stacklevel=2)
            return {}
        ok = (
            isinstance(data, dict)
            and data.get("version") == LUT_VERSION
            and data.get("platform") == self.platform
            and data.get("dtype") == self.dtype
            and isinstance(data.get("entries"), dict)
        )
        return {str(k): float(v) for k, v in data["entries"].items()} if ok else {}

    def save(self) -> None:
        if not self._dirty:
            return
        # Merge with entries another process may have added since we loaded (never lose timings).
        merged = {**self._read_entries(), **self.entries}
        write_json(
            self.path,
            {"version": LUT_VERSION, "platform": self.platform, "dtype": self.dtype,
             "warmup": self.warmup, "repeats": self.repeats, "entries": merged},
        )
        self.entries = merged
        self._dirty = False

    # --- queries -------------------------------------------------------------------------------
    @staticmethod
    def key(layer: Layer) -> str:
        """Everything that determines a layer's run time (statistics excluded)."""
        return f"{layer.kind}:N{layer.N}_C{layer.C}_M{layer.M}_H{layer.H}_W{layer.W}_R{layer.R}_S{layer.S}_U{layer.U}x{layer.U_h}_P{layer.padding}x{layer.padding_w}_G{layer.groups}"

    def _point(self, layer: Layer) -> float:
        k = self.key(layer)
        v = self.entries.get(k)
        if v is None:
            v = float(self._timer(layer)) if self._timer is not None else self._measure(layer)
            self.entries[k] = v
            self.timed += 1
            self._dirty = True
        return v

    def layer_latency(self, layer: Layer) -> float:
        """Milliseconds for one call of ``layer``, interpolated from the grid."""
        if layer.kind == "depthwise":
            c0, c1 = grid_neighbours(layer.groups, self.step)
            y0 = self._point(layer.replace(M=c0, groups=c0))
            y1 = y0 if c1 == c0 else self._point(layer.replace(M=c1, groups=c1))
            return _lerp(layer.groups, c0, c1, y0, y1)
        g = layer.groups
        m = layer.M // g
        c0, c1 = grid_neighbours(layer.C, self.step)
        m0, m1 = grid_neighbours(m, self.step)

        def at(c: int, mm: int) -> float:
            return self._point(layer.replace(C=c, M=mm * g, kind=""))

        y00 = at(c0, m0)
        y01 = y00 if m1 == m0 else at(c0, m1)
        y10 = y00 if c1 == c0 else at(c1, m0)
        y11 = y10 if m1 == m0 else (y01 if c1 == c0 else at(c1, m1))
        low = _lerp(m, m0, m1, y00, y01)
        high = _lerp(m, m0, m1, y10, y11)
        return _lerp(layer.C, c0, c1, low, high)

    def network_latency(self, workload: Workload) -> float:
        """Sum of the layers' table latencies (ms); new grid points are saved to the cache."""
        total = sum(self.layer_latency(layer) for layer in workload.layers)
        self.save()
        return total

    # --- the stopwatch -------------------------------------------------------------------------
    def _measure(self, layer: Layer) -> float:
        import torch
        from torch import nn

        dtype = getattr(torch, self.dtype)
        dev = torch.device(self.device)
        gen = torch.Generator().manual_seed(0)
        if layer.kind == "fc":
            module: nn.Module = nn.Linear(layer.C, layer.M)
            x = torch.randn(layer.N, layer.C, generator=gen)
        else:
            module = nn.Conv2d(
                layer.in_channels, layer.M, (layer.R, layer.S), stride=(layer.U, layer.U_h),
                padding=(layer.padding, layer.padding_w), groups=layer.groups,
            )
            x = torch.randn(layer.N, layer.in_channels, layer.H, layer.W, generator=gen)
        module = module.to(dev, dtype).eval()
        x = x.to(dev, dtype)
        sync = torch.cuda.synchronize if dev.type == "cuda" else (lambda: None)
        times = []
        with torch.no_grad():
            for _ in range(self.warmup):
                module(x)
            sync()
            for _ in range(self.repeats):
                t0 = time.perf_counter()
                module(x)
                sync()
                times.append(time.perf_counter() - t0)
        return statistics.median(times) * 1e3

    def describe(self) -> dict[str, Any]:
        return {"path": str(self.path), "platform": self.platform, "dtype": self.dtype,
                "step": self.step, "entries": len(self.entries), "timed": self.timed}
