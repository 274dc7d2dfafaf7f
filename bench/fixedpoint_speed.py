"""Exact 16-bit inference against float32 PyTorch, same process: ResNet-18 and the small CNN.

    python bench/fixedpoint_speed.py [--threads 2] [--batch 8] [--size 224] [--small-batch 256]
                                     [--repeats 5] [--models resnet18,small_cnn] [--fallback]

For each model: the float32 time, then per mode the fixed-point time (median of ``--repeats``
rounds after a warm-up; each round runs float32 and both modes back to back), its ratio to float32
(the median of the rounds' ratios) and the kernels that ran; the peak resident memory of one
float32 and one fixed-point run (the process's high-water mark, reset before each run through
/proc/self/clear_refs, so it includes what the process already holds: a fixed-point run's peak
includes both converted models). ``--fallback`` also times
the exact paths used without the AVX-512 loop (``HWAWARE_NO_SIMD=1``: the scalar C loop) and
without any compiled kernel (``HWAWARE_NO_NATIVE=1``: torch only), once each, on ResNet-18 at
``--fallback-batch`` images.

Targets (issue 18): wide <= 1.5x float32, eyeriss <= 4x, peak memory of the fixed-point run
<= 2x float32's. Random weights with BatchNorm statistics from a calibration pass: the speed does
not depend on the weights' values. Exit status 1 when a target is missed.
"""

from __future__ import annotations

import argparse
import gc
import os
import statistics
import sys
import time
from pathlib import Path

import torch
import torchvision

from hwaware.fixedpoint import _native
from hwaware.fixedpoint.convert import convert
from hwaware.fixedpoint.convert import calibrate_batchnorm, top1_agreement

TARGETS = {"wide": 1.5, "eyeriss": 4.0}
MEMORY_TARGET = 2.0


def median_time(fn, repeats: int) -> float:
    fn()  # warm-up (first-call allocations, kernel build, prepared weight layouts)
    times = []
    for _ in range(repeats):
        t = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t)
    return statistics.median(times)


def interleaved_times(runs: dict, repeats: int) -> dict[str, list[float]]:
    """Each run's time in ``repeats`` rounds, the runs back to back within a round (after one
    warm-up round), so a change of load on a shared machine hits every run of a round alike. Each
    timed call follows an untimed call of the same run: the first float32 call after a fixed-point
    one is ~15% slower (torch's thread team and caches), which would flatter the ratios."""
    for fn in runs.values():
        fn()
    times: dict[str, list[float]] = {name: [] for name in runs}
    for _ in range(repeats):
        for name, fn in runs.items():
            fn()  # untimed: each run is timed in its own steady state, not right after another
            t = time.perf_counter()
            fn()
            times[name].append(time.perf_counter() - t)
    return times


def peak_rss_mb(fn) -> tuple[float, float] | None:
    """(peak resident memory of the process while ``fn`` runs, its growth over the resident memory
    just before) in MB, or None where Linux's clear_refs cannot reset the high-water mark."""
    gc.collect()

    def status(key: str) -> float:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith(key):
                return int(line.split()[1]) / 1024
        raise OSError(key)

    try:
        Path("/proc/self/clear_refs").write_text("5")
        before = status("VmRSS:")
        fn()
        peak = status("VmHWM:")
    except OSError:
        return None
    return peak, peak - before


def simd() -> bool:
    return getattr(_native, "simd", lambda: False)()


def kernels(mode: str) -> str:
    if not hasattr(_native, "simd"):
        return "the kernels before issue 18 (C im2col + 4 int8 GEMMs / scalar C eyeriss loop)"
    if _native.library() is None:
        return "torch only (no compiled kernel)"
    if mode == "wide":
        return "C NHWC im2col + 3 int8 GEMMs (torch._int_mm) + C combine"
    if simd():
        return "C NHWC im2col + AVX-512 vpmullw/vpmulhw/vpshrdvw/vpdpwssd"
    return "C im2col + scalar C loop"


def models(args) -> list[tuple[str, torch.nn.Module, torch.Tensor]]:
    out = []
    for name in args.models.split(","):
        torch.manual_seed(0)
        if name == "resnet18":
            model = torchvision.models.resnet18(weights=None)
            shape = (args.batch, 3, args.size, args.size)
        elif name == "small_cnn":
            sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
            from models.small_cnn import small_cnn

            model = small_cnn()
            shape = (args.small_batch, 3, 32, 32)
        else:
            raise SystemExit(f"--models: unknown model {name!r} (resnet18, small_cnn)")
        calibrate_batchnorm(model, [torch.randn(*shape) for _ in range(2)])
        out.append((f"{name}, batch {shape[0]}, {shape[2]}x{shape[3]}", model.eval(), torch.randn(*shape)))
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--batch", type=int, default=8)
    ap.add_argument("--size", type=int, default=224)
    ap.add_argument("--small-batch", type=int, default=256)
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--models", default="resnet18,small_cnn")
    ap.add_argument("--fallback", action="store_true")
    ap.add_argument("--fallback-batch", type=int, default=1)
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    print(f"{args.threads} threads, median of {args.repeats}; native kernel: "
          f"{'yes' if _native.library() is not None else 'NO'}, AVX-512 eyeriss loop: "
          f"{'yes' if simd() else 'no'}; load average {os.getloadavg()[0]:.1f}")
    if os.getloadavg()[0] > 0.5:
        print(f"warning: load average {os.getloadavg()[0]:.1f} before the run: other processes share the "
              f"cores, and torch's OpenMP threads wait on each other when one is descheduled, so ratios "
              f"at {args.threads} threads are unreliable (rerun on an idle machine)")
    missed = []
    for label, model, x in models(args):
        with torch.no_grad():
            rss_float = peak_rss_mb(lambda: model(x))  # before the converted models exist
        fixed = {mode: convert(model, x, mode=mode, samples=x.shape[0]) for mode in ("wide", "eyeriss")}
        runs = {"float32": lambda: model(x), **{m: (lambda f=f: f(x)) for m, f in fixed.items()}}
        with torch.no_grad():
            times = interleaved_times(runs, args.repeats)
        t_float = statistics.median(times["float32"])
        nan = (float("nan"), float("nan"))
        print(f"\n{label}\n  float32        : {t_float:8.3f} s   peak RSS {(rss_float or nan)[0]:7.0f} MB "
              f"(+{(rss_float or nan)[1]:.0f} MB during the run)")
        for mode in ("wide", "eyeriss"):
            t_fixed = statistics.median(times[mode])
            rss = peak_rss_mb(runs[mode])
            # the median of per-round ratios: each round times float32 and both modes back to back
            ratio = statistics.median(f / b for f, b in zip(times[mode], times["float32"]))
            target = TARGETS[mode]
            mem = None if rss is None or rss_float is None else rss[0] / rss_float[0]
            ok = ratio <= target and (mem is None or mem <= MEMORY_TARGET)
            if not ok:
                missed.append(f"{label} {mode}")
            print(f"  {mode:<8} 16-bit : {t_fixed:8.3f} s   ratio {ratio:5.2f}x (target <= {target}x)   "
                  f"peak RSS {(rss or nan)[0]:7.0f} MB ({mem or float('nan'):.2f}x, target <= "
                  f"{MEMORY_TARGET}x; +{(rss or nan)[1]:.0f} MB during the run)   {'met' if ok else 'NOT met'}   top-1 agreement "
                  f"{top1_agreement(model, fixed[mode], x):.3f}\n      kernels: {kernels(mode)}")
        del fixed, runs
        gc.collect()
        if args.fallback and label.startswith("resnet18"):
            xf = x[:args.fallback_batch]
            with torch.no_grad():
                t_ref = median_time(lambda: model(xf), args.repeats)
            for env in ("HWAWARE_NO_SIMD", "HWAWARE_NO_NATIVE"):
                for mode in ("wide", "eyeriss"):
                    if env == "HWAWARE_NO_SIMD" and mode == "wide":
                        continue  # the AVX-512 loop is eyeriss only
                    fixed = convert(model, xf, mode=mode, samples=xf.shape[0])
                    os.environ[env] = "1"
                    try:
                        t = time.perf_counter()
                        fixed(xf)
                        t = time.perf_counter() - t
                        print(f"  fallback {env}=1, {mode}, batch {xf.shape[0]}: {t:8.3f} s   ratio "
                              f"{t / t_ref:6.1f}x float32 ({t_ref:.3f} s)   kernels: {kernels(mode)}")
                    finally:
                        del os.environ[env]
    print("\nall targets met" if not missed else f"\ntargets NOT met: {', '.join(missed)}")
    sys.exit(1 if missed else 0)


if __name__ == "__main__":
    main()
