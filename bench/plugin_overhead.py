"""Overhead of the training plugin (``hwaware.attach``) on a plain training loop.

Trains the small CNN on ``builtin:shapes`` (batch 64, SGD) twice side by side: one copy without the
monitor (the baseline), one with it at its defaults (``every=200``: profiling on 32 samples of the
live batch on the training thread; scoring, TensorBoard and a figure every 10th log on the
monitor's worker thread at OS priority nice 19). The two copies alternate in short segments of
``--segment`` steps (A B, B A, A B, ...; ``--pairs`` pairs), so load that drifts hits both; each
monitored segment holds one log (the monitor runs ``segment/2`` steps before the first, so its logs
fall mid-segment) and ends with ``hw.flush()``, so background work still pending is charged to it.

Printed per arm, each with a 95% confidence interval:

- **wall**: total monitored time / total baseline time - 1 (bootstrap over pairs; the ratio of
  totals, because a figure lands in one segment of ten and a median would drop it), and the
  median of the per-pair ratios (distribution-free interval from order statistics);
- **CPU**: the monitor's own CPU seconds (process CPU during its work on the training thread, its
  intra-op threads included, plus the worker thread's CPU time) / the baseline segments' process CPU
  seconds: what it takes from the cores, which another job's load hardly changes;
- the one-off cost outside the loop (the step-0 log in ``attach`` and ``close()``'s final figure).

The verdict is "met" when both upper bounds are within the 3% target, "NOT met" when a lower bound
is above it, else "inconclusive" (rerun with more ``--pairs`` or on a quieter machine).

    python bench/plugin_overhead.py                      # 16 pairs x 200 steps, a few minutes idle
    python bench/plugin_overhead.py --arms all           # plus the other settings (slower)
    python bench/plugin_overhead.py --device cuda --model resnet18 --batch-size 128 --size 64

``--device cuda`` trains on the GPU (segments synchronize the device before the clock stops) and
refuses to start without CUDA. Target (issue 12): the default arm within 3% of the baseline.
"""

from __future__ import annotations

import argparse
import copy
import math
import os
import random
import statistics
import sys
import tempfile
import time
from contextlib import contextmanager
from dataclasses import dataclass, field

import torch
import torch.nn.functional as F

import hwaware
from hwaware.data import make_loader
from hwaware.plugin import HardwareMonitor

DEFAULT = "every=200 (default)"
ARMS = {  # label -> attach kwargs; "_nice" sets HardwareMonitor.worker_nice for that arm
    DEFAULT: {},
    "worker at normal priority": {"_nice": 0},
    "every=200, all on the training thread": {"background": False, "figure_every": 1},
    "every=200, no figure": {"figures": False},
    "every=200, samples=8": {"samples": 8},
    "every=50": {"every": 50},
    "every=200 + energy schedule": {"schedule": {"method": "energy", "start": 50, "end": 300, "target": 0.5,
                                                 "every": 50}},
}


@dataclass
class Copy:
    """One model copy and its optimizer, trained segment by segment; ``hw`` is its monitor (or None)."""

    model: torch.nn.Module
    opt: torch.optim.Optimizer
    hw: HardwareMonitor | None = None
    wall: list[float] = field(default_factory=list)
    cpu: list[float] = field(default_factory=list)  # process CPU seconds of each segment
    own: list[float] = field(default_factory=list)  # the monitor's CPU seconds in each segment
    waited: list[float] = field(default_factory=list)  # seconds hw.flush() waited at each segment's end
    one_off: float = 0.0
    position: int = 0

    def train(self, batches: list, steps: int) -> None:
        for _ in range(steps):
            x, y = batches[self.position % len(batches)]
            self.position += 1
            loss = F.cross_entropy(self.model(x), y)
            self.opt.zero_grad()
            loss.backward()
            self.opt.step()
            if self.hw is not None:
                self.hw.step()

    def own_cpu(self) -> float:
        return 0.0 if self.hw is None else self.hw.overhead_cpu_seconds + self.hw.background_cpu_seconds

    def segment(self, batches: list, steps: int, cuda: bool) -> None:
        own, c0, t0 = self.own_cpu(), time.process_time(), time.perf_counter()
        self.train(batches, steps)
        if self.hw is not None:
            t1 = time.perf_counter()
            self.hw.flush()  # pending background work is charged to this segment
            self.waited.append(time.perf_counter() - t1)
        if cuda:
            torch.cuda.synchronize()
        self.wall.append(time.perf_counter() - t0)
        self.cpu.append(time.process_time() - c0)
        self.own.append(self.own_cpu() - own)


@contextmanager
def worker_nice(nice: int | None):
    saved = HardwareMonitor.worker_nice
    if nice is not None:
        HardwareMonitor.worker_nice = nice
    try:
        yield
    finally:
        HardwareMonitor.worker_nice = saved


def make_copy(base: torch.nn.Module, example: torch.Tensor, kwargs: dict | None, logdir: str) -> Copy:
    model = copy.deepcopy(base).train()
    c = Copy(model, torch.optim.SGD(model.parameters(), lr=0.05, momentum=0.9))
    if kwargs is not None:
        kwargs = dict(kwargs)
        t0 = time.perf_counter()
        with worker_nice(kwargs.pop("_nice", None)):
            c.hw = hwaware.attach(model, example, logdir=logdir, **kwargs)
        c.one_off = time.perf_counter() - t0
    return c


def median_ci(values: list[float], confidence: float = 0.95) -> tuple[float, float, float]:
    """Median and a distribution-free interval for it: the k-th smallest and largest values, k the
    largest rank with P(Binomial(n, 1/2) < k) <= (1 - confidence)/2 (the whole range if n is small)."""
    v = sorted(values)
    n = len(v)
    k, tail = 0, 0.0
    while k < n // 2:
        tail += math.comb(n, k) / 2 ** n
        if tail > (1 - confidence) / 2:
            break
        k += 1
    k = max(k, 1)
    return statistics.median(v), v[k - 1], v[n - k]


def ratio_ci(num: list[float], den: list[float], confidence: float = 0.95, draws: int = 4000,
             seed: int = 0) -> tuple[float, float, float]:
    """sum(num)/sum(den) and a percentile-bootstrap interval, resampling pairs."""
    rng = random.Random(seed)
    n = len(num)
    boot = []
    for _ in range(draws):
        idx = [rng.randrange(n) for _ in range(n)]
        boot.append(sum(num[i] for i in idx) / sum(den[i] for i in idx))
    boot.sort()
    lo = boot[int((1 - confidence) / 2 * draws)]
    hi = boot[min(draws - 1, int((1 + confidence) / 2 * draws))]
    return sum(num) / sum(den), lo, hi


def pct(t: tuple[float, float, float], minus: float = 0.0) -> str:
    m, lo, hi = (100 * (x - minus) for x in t)
    return f"{m:+6.2f}% [{lo:+.2f}, {hi:+.2f}]"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--segment", type=int, default=200, help="optimizer steps per segment (one log each)")
    ap.add_argument("--pairs", type=int, default=16, help="alternating baseline/monitor segment pairs")
    ap.add_argument("--threads", type=int, default=0, help="torch threads (default: torch's, all cores)")
    ap.add_argument("--batch-size", type=int, default=64)
    ap.add_argument("--device", default="cpu", help="cpu or cuda")
    ap.add_argument("--model", default="small_cnn", help="small_cnn, or a torchvision name (e.g. resnet18)")
    ap.add_argument("--size", type=int, default=32, help="image side (builtin:shapes images are resized)")
    ap.add_argument("--arms", choices=("default", "priority", "all"), default="default",
                    help="default: the baseline and the default arm; priority: also the worker at normal "
                         "priority; all: every setting in ARMS")
    args = ap.parse_args()
    if args.device not in ("cpu", "cuda") and not args.device.startswith("cuda:"):
        ap.error(f"--device must be cpu or cuda, got {args.device!r}")
    if args.device.startswith("cuda") and not torch.cuda.is_available():
        ap.error("--device cuda needs a CUDA GPU, and torch.cuda.is_available() is False on this machine")
    if args.segment < 2 or args.pairs < 2:
        ap.error("--segment and --pairs must be at least 2")
    if args.threads:
        torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    dev = torch.device(args.device)
    cuda = dev.type == "cuda"
    loader = make_loader("builtin:shapes", "train", batch_size=args.batch_size, drop_last=True)
    batches = list(loader)[: args.segment]
    if args.size != 32:
        batches = [(F.interpolate(x, size=(args.size, args.size), mode="bilinear"), y) for x, y in batches]
    batches = [(x.to(dev), y.to(dev)) for x, y in batches]
    if args.model == "small_cnn":
        base = hwaware.load_model("models/small_cnn.py")
    else:
        base = hwaware.load_model(f"torchvision:{args.model}", num_classes=10)
    base = base.to(dev)
    arms = {"default": [DEFAULT], "priority": [DEFAULT, "worker at normal priority"], "all": list(ARMS)}[args.arms]
    print(f"{args.model} on {dev}, batch {args.batch_size}, {args.size}x{args.size}, {args.pairs} pairs x "
          f"{args.segment} steps per arm, {torch.get_num_threads()} torch thread(s), "
          f"load average {os.getloadavg()[0]:.1f}", flush=True)
    began = time.perf_counter()
    with tempfile.TemporaryDirectory() as tmp:
        baseline = make_copy(base, batches[0][0], None, "")
        copies = {a: make_copy(base, batches[0][0], ARMS[a], f"{tmp}/{k}") for k, a in enumerate(arms)}
        for c in [baseline, *copies.values()]:  # warm-up; the monitors' logs then fall mid-segment
            c.train(batches, args.segment // 2)
            if c.hw is not None:
                c.hw.flush()
        everyone = [baseline, *copies.values()]
        for p in range(args.pairs):
            for c in everyone if p % 2 == 0 else everyone[::-1]:
                c.segment(batches, args.segment, cuda)
            print(f"  pair {p + 1}/{args.pairs}: baseline {1e3 * baseline.wall[-1] / args.segment:.2f} ms/step, "
                  + ", ".join(f"{a} {copies[a].wall[-1] / baseline.wall[-1]:.3f}x" for a in arms)
                  + f" ({time.perf_counter() - began:.0f} s so far, load {os.getloadavg()[0]:.1f})",
                  file=sys.stderr, flush=True)
        for c in copies.values():
            t0 = time.perf_counter()
            c.hw.close()
            c.one_off += time.perf_counter() - t0
    print(f"baseline: {1e3 * statistics.median(baseline.wall) / args.segment:.2f} ms/step wall, "
          f"{1e3 * statistics.median(baseline.cpu) / args.segment:.2f} ms/step CPU (medians over segments)")
    print(f"{'arm':<38} {'wall, total ratio [95% CI]':>30} {'wall, median pair [95% CI]':>30} "
          f"{'monitor CPU / training CPU [95% CI]':>36} {'flush wait':>10} {'one-off':>8}")
    verdict = ""
    for a in arms:
        c = copies[a]
        wall = ratio_ci(c.wall, baseline.wall)
        pair = median_ci([m / b for m, b in zip(c.wall, baseline.wall)])
        own = ratio_ci(c.own, baseline.cpu)
        print(f"{a:<38} {pct(wall, 1):>30} {pct(pair, 1):>30} {pct(own):>36} "
              f"{statistics.median(c.waited):9.3f}s {c.one_off:7.2f}s")
        if a == DEFAULT:
            upper = max(100 * (wall[2] - 1), 100 * own[2])
            lower = max(100 * (wall[1] - 1), 100 * own[1])
            state = "met" if upper <= 3 else "NOT met" if lower > 3 else \
                "inconclusive (rerun with more --pairs or on a quieter machine)"
            verdict = (f"default arm: {100 * (wall[0] - 1):+.2f}% wall [{100 * (wall[1] - 1):+.2f}, "
                       f"{100 * (wall[2] - 1):+.2f}], monitor CPU {100 * own[0]:.2f}% of training CPU "
                       f"[{100 * own[1]:.2f}, {100 * own[2]:.2f}]; target <= 3%: {state} "
                       f"(load average {os.getloadavg()[0]:.1f})")
    print(verdict)


if __name__ == "__main__":
    main()
