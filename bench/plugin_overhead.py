"""Overhead of the training plugin (``hwaware.attach``) on a plain training loop: does it cost <= 3%?

Trains the small CNN on ``builtin:shapes`` (batch 64, SGD) twice side by side: one copy without the
monitor (the baseline), one with it at its defaults (``every=200``: profiling on 32 samples of the
live batch on the training thread; scoring, TensorBoard and a figure every 10th log on the
monitor's worker thread at OS priority nice 19). After a warm-up the copies alternate in short
blocks of ``--segment`` steps (A B, B A, A B, ...), one pair of blocks per round, for ``--seconds``
of training (or ``--pairs`` rounds), so load that drifts hits both alike; one monitored block in
``every/segment`` holds a log.

Measured per block: its wall time, the seconds the training thread spent inside ``hw.step()`` (the
monitor's **blocking** time: profiling, and any wait for a full worker queue), the process CPU
seconds and the monitor's own CPU seconds. The overhead is accounted in three parts, each a share of
the baseline's time, with one 95% bootstrap interval over rounds for their sum:

- **blocking**: seconds in ``hw.step()`` / baseline block seconds (ratio of totals);
- **worker CPU**: the worker thread's CPU seconds / the baseline's process CPU seconds: on a loop
  that keeps every core busy the worker can take at most that from training; on a spare core less;
- **steady**: the median over rounds of (monitored block seconds - its blocking) / baseline block
  seconds, minus 1: what the monitor costs on every step (its forward pre-hook, the TensorBoard
  scalar writes, cache effects). Medians over many short blocks hardly move with the load's spikes.

The plain **wall** ratio of totals (all monitored blocks / all baseline blocks, bootstrap interval)
is printed as the check of that accounting: on a shared 2-core machine its interval is wide.

Decision rule (issue 12 item 3, target 3%), printed as one line:

- **met** when the accounted overhead's upper bound is <= 3% and the wall does not contradict it
  (the wall interval's lower bound is <= 3%);
- **NOT met** when the accounted lower bound or the wall's lower bound is above 3%;
- else **inconclusive** (rerun with more ``--seconds`` or on a quieter machine).

On a GPU (``--device cuda``) blocks end with ``torch.cuda.synchronize()`` before the clock is read,
the monitor's GPU work runs asynchronously on the training stream, so the accounted sum would miss
it: there the accounted overhead is the wall ratio of totals itself (a GPU loop does not share its
device with other jobs' load), blocking and worker CPU are printed for information.

    python bench/plugin_overhead.py                      # ~6 min of training, under 8 min in all
    python bench/plugin_overhead.py --arms all           # plus the other settings (slower)
    python bench/plugin_overhead.py --device cuda --model resnet18 --batch-size 128 --size 64

``--device cuda`` refuses to start without CUDA.
"""

from __future__ import annotations

import argparse
import copy
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

TARGET = 3.0  # percent of training time (issue 12 item 3)
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
    """One model copy and its optimizer, trained block by block; ``hw`` is its monitor (or None)."""

    model: torch.nn.Module
    opt: torch.optim.Optimizer
    hw: HardwareMonitor | None = None
    wall: list[float] = field(default_factory=list)  # seconds of each block
    blocked: list[float] = field(default_factory=list)  # seconds inside hw.step() in each block
    cpu: list[float] = field(default_factory=list)  # process CPU seconds of each block
    worker: list[float] = field(default_factory=list)  # the worker thread's CPU seconds in each block
    one_off: float = 0.0
    position: int = 0

    def train(self, batches: list, steps: int) -> float:
        """``steps`` optimizer steps; returns the seconds spent in ``hw.step()``."""
        blocked = 0.0
        for _ in range(steps):
            x, y = batches[self.position % len(batches)]
            self.position += 1
            loss = F.cross_entropy(self.model(x), y)
            self.opt.zero_grad()
            loss.backward()
            self.opt.step()
            if self.hw is not None:
                t0 = time.perf_counter()
                self.hw.step()
                blocked += time.perf_counter() - t0
        return blocked

    def worker_cpu(self) -> float:
        return 0.0 if self.hw is None else self.hw.background_cpu_seconds

    def block(self, batches: list, steps: int, cuda: bool) -> None:
        if cuda:
            torch.cuda.synchronize()  # the previous block's GPU work is not charged to this one
        w0, c0, t0 = self.worker_cpu(), time.process_time(), time.perf_counter()
        self.blocked.append(self.train(batches, steps))
        if cuda:
            torch.cuda.synchronize()
        self.wall.append(time.perf_counter() - t0)
        self.cpu.append(time.process_time() - c0)
        self.worker.append(self.worker_cpu() - w0)


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


def bootstrap(stat, n: int, confidence: float = 0.95, draws: int = 2000,
              seed: int = 0) -> tuple[float, float, float]:
    """``stat(indices)`` on all ``n`` rounds and a percentile-bootstrap interval, resampling rounds."""
    rng = random.Random(seed)
    boot = sorted(stat([rng.randrange(n) for _ in range(n)]) for _ in range(draws))
    lo = boot[int((1 - confidence) / 2 * draws)]
    hi = boot[min(draws - 1, int((1 + confidence) / 2 * draws))]
    return stat(list(range(n))), lo, hi


@dataclass(frozen=True)
class Overhead:
    """The overhead of one arm against the baseline, each part ``(estimate, low, high)`` in percent
    of the baseline's time, 95% intervals."""

    blocking: tuple[float, float, float]
    worker_cpu: tuple[float, float, float]
    steady: tuple[float, float, float]
    accounted: tuple[float, float, float]
    wall: tuple[float, float, float]


def overhead(arm: Copy, base: Copy, *, cuda: bool) -> Overhead:
    n = len(base.wall)

    def total(num: list[float], den: list[float], idx: list[int]) -> float:
        return 100 * sum(num[i] for i in idx) / sum(den[i] for i in idx)

    def steady(idx: list[int]) -> float:
        return 100 * (statistics.median((arm.wall[i] - arm.blocked[i]) / base.wall[i] for i in idx) - 1)

    def wall(idx: list[int]) -> float:
        return total(arm.wall, base.wall, idx) - 100

    def accounted(idx: list[int]) -> float:
        if cuda:  # the monitor's GPU work is asynchronous: only the wall sees it
            return wall(idx)
        return total(arm.blocked, base.wall, idx) + total(arm.worker, base.cpu, idx) + steady(idx)

    return Overhead(blocking=bootstrap(lambda i: total(arm.blocked, base.wall, i), n),
                    worker_cpu=bootstrap(lambda i: total(arm.worker, base.cpu, i), n),
                    steady=bootstrap(steady, n), accounted=bootstrap(accounted, n),
                    wall=bootstrap(wall, n))


def verdict(o: Overhead, target: float = TARGET) -> str:
    """The decision rule of the module docstring."""
    if o.accounted[1] > target or o.wall[1] > target:
        return "NOT met"
    if o.accounted[2] <= target:
        return "met"
    return "inconclusive (rerun with more --seconds or on a quieter machine)"


def pct(t: tuple[float, float, float]) -> str:
    return f"{t[0]:+6.2f}% [{t[1]:+.2f}, {t[2]:+.2f}]"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--segment", type=int, default=20, help="optimizer steps per block (default 20)")
    ap.add_argument("--seconds", type=float, default=360.0,
                    help="training time to spend in rounds after the warm-up (default 360)")
    ap.add_argument("--pairs", type=int, default=0,
                    help="rounds (one block of each copy) to run instead of --seconds (0: --seconds decides)")
    ap.add_argument("--warmup", type=int, default=100, help="steps each copy trains before the clock starts")
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
    if args.segment < 1 or args.pairs < 0 or args.pairs == 1 or args.seconds <= 0 or args.warmup < 0:
        ap.error("--segment must be >= 1, --pairs 0 or >= 2, --seconds > 0, --warmup >= 0")
    if args.threads:
        torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    dev = torch.device(args.device)
    cuda = dev.type == "cuda"
    if cuda and dev.index is not None:  # synchronize() then waits for the device trained on
        torch.cuda.set_device(dev)
    loader = make_loader("builtin:shapes", "train", batch_size=args.batch_size, drop_last=True)
    batches = list(loader)[:200]
    if args.size != 32:
        batches = [(F.interpolate(x, size=(args.size, args.size), mode="bilinear"), y) for x, y in batches]
    batches = [(x.to(dev), y.to(dev)) for x, y in batches]
    if args.model == "small_cnn":
        base = hwaware.load_model("models/small_cnn.py")
    else:
        base = hwaware.load_model(f"torchvision:{args.model}", num_classes=10)
    base = base.to(dev)
    arms = {"default": [DEFAULT], "priority": [DEFAULT, "worker at normal priority"], "all": list(ARMS)}[args.arms]
    print(f"{args.model} on {dev}, batch {args.batch_size}, {args.size}x{args.size}, blocks of {args.segment} "
          f"steps, {torch.get_num_threads()} torch thread(s), {os.cpu_count()} cores, "
          f"load average {os.getloadavg()[0]:.1f}", flush=True)
    with tempfile.TemporaryDirectory() as tmp:
        baseline = make_copy(base, batches[0][0], None, "")
        copies = {a: make_copy(base, batches[0][0], ARMS[a], f"{tmp}/{k}") for k, a in enumerate(arms)}
        everyone = [baseline, *copies.values()]
        for c in everyone:  # warm-up: allocator, caches, the first figure's imports
            c.train(batches, args.warmup)
            if c.hw is not None:
                c.hw.flush()
        began = time.perf_counter()
        r = 0
        while (r < args.pairs) if args.pairs else (time.perf_counter() - began < args.seconds or r < 2):
            for c in everyone if r % 2 == 0 else everyone[::-1]:
                c.block(batches, args.segment, cuda)
            r += 1
            if r % 25 == 0:
                print(f"  round {r}: baseline {1e3 * statistics.median(baseline.wall[-25:]) / args.segment:.2f} "
                      f"ms/step ({time.perf_counter() - began:.0f} s, load {os.getloadavg()[0]:.1f})",
                      file=sys.stderr, flush=True)
        for c in copies.values():
            t0 = time.perf_counter()
            c.hw.close()
            c.one_off += time.perf_counter() - t0
    logs = {a: len(c.hw._history) for a, c in copies.items()}
    print(f"{r} rounds; baseline {1e3 * statistics.median(baseline.wall) / args.segment:.2f} ms/step wall, "
          f"{1e3 * statistics.median(baseline.cpu) / args.segment:.2f} ms/step CPU (medians over blocks)")
    print(f"{'arm':<38} {'logs':>4} {'blocking':>24} {'worker CPU':>24} {'steady':>24} "
          f"{'accounted':>24} {'wall':>24} {'one-off':>8}")
    line = ""
    for a in arms:
        o = overhead(copies[a], baseline, cuda=cuda)
        print(f"{a:<38} {logs[a]:>4} {pct(o.blocking):>24} {pct(o.worker_cpu):>24} {pct(o.steady):>24} "
              f"{pct(o.accounted):>24} {pct(o.wall):>24} {copies[a].one_off:7.2f}s")
        if a == DEFAULT:
            line = (f"plugin overhead at its defaults on {dev}: accounted {pct(o.accounted).strip()}, wall "
                    f"{pct(o.wall).strip()} (95% CIs, {r} rounds, load {os.getloadavg()[0]:.1f}); "
                    f"target <= {TARGET:g}%: {verdict(o)}")
    print(line)


if __name__ == "__main__":
    main()
