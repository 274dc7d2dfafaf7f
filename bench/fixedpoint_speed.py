"""Exact 16-bit inference of ResNet-18 (batch 8, 224x224) against float32 PyTorch, same process.

    python bench/fixedpoint_speed.py [--threads 2] [--batch 8] [--size 224] [--repeats 3]

Prints the float32 time, the fixed-point time per mode (best of ``--repeats``) and the ratios.
Targets (issue 4): wide <= 4x float32, eyeriss <= 20x. The network has random weights with
BatchNorm statistics from a calibration pass; the speed does not depend on the weights' values.
"""

from __future__ import annotations

import argparse
import time

import torch
import torchvision

from hwaware.fixedpoint import _native, convert
from hwaware.fixedpoint.convert import calibrate_batchnorm, top1_agreement


def best_time(fn, repeats: int) -> float:
    fn()  # warm-up (first-call allocations, kernel build)
    times = []
    for _ in range(repeats):
        t = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t)
    return min(times)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--batch", type=int, default=8)
    ap.add_argument("--size", type=int, default=224)
    ap.add_argument("--repeats", type=int, default=3)
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    model = torchvision.models.resnet18(weights=None)
    x = torch.randn(args.batch, 3, args.size, args.size)
    calibrate_batchnorm(model, [torch.randn(args.batch, 3, args.size, args.size) for _ in range(2)])
    print(f"ResNet-18, batch {args.batch}, {args.size}x{args.size}, {args.threads} threads, "
          f"native kernel: {'yes' if _native.library() is not None else 'NO (torch fallback)'}")
    with torch.no_grad():
        t_float = best_time(lambda: model(x), args.repeats)
    print(f"float32 PyTorch : {t_float:8.3f} s")
    targets = {"wide": 4.0, "eyeriss": 20.0}
    for mode in ("wide", "eyeriss"):
        fixed = convert(model, x, mode=mode, samples=args.batch)
        t_fixed = best_time(lambda fixed=fixed: fixed(x), args.repeats)
        ratio = t_fixed / t_float
        agree = top1_agreement(model, fixed, x)
        print(f"{mode:<8} 16-bit  : {t_fixed:8.3f} s   ratio {ratio:5.2f}x  (target <= {targets[mode]:.0f}x: "
              f"{'met' if ratio <= targets[mode] else 'NOT met'})   top-1 agreement {agree:.3f}")


if __name__ == "__main__":
    main()
