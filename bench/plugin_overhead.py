"""Overhead of the training plugin (``hwaware.attach``) on a plain training loop.

Trains the small CNN on ``builtin:shapes`` (batch 64, SGD) for ``--steps`` optimizer steps without
the monitor and with it at its defaults (``every=200``: profiling on 32 samples of the live batch,
scoring, TensorBoard and figures on the monitor's worker thread, a figure every 10th log). Each
round runs both arms back to back (the order alternates between rounds) and the overhead is the
median over rounds of the per-round ratio, so load that drifts during the run hits both arms.
Also printed: the time the monitor counted on the training thread (``hw.overhead_seconds``, less
noisy on a shared machine than a difference of wall times) and the one-off cost outside the loop
(the step-0 log in ``attach`` and ``close()``'s final figure), which a longer run amortizes.

    python bench/plugin_overhead.py                      # 3 rounds x 400 steps per arm, a few minutes
    python bench/plugin_overhead.py --arms all           # plus the other settings (slower)
    python bench/plugin_overhead.py --device cuda --model resnet18 --batch-size 128 --size 64 --steps 1000

``--device cuda`` trains on the GPU (each arm synchronizes the device before its clock stops) and
refuses to start without CUDA. Target (issue 12): the default arm within 3% of the baseline.
"""

from __future__ import annotations

import argparse
import copy
import os
import statistics
import sys
import tempfile
import time

import torch
import torch.nn.functional as F

import hwaware
from hwaware.data import make_loader

BASELINE, DEFAULT = "no monitor", "every=200 (default)"
ARMS = {  # label -> attach kwargs (None: the baseline)
    BASELINE: None,
    DEFAULT: {},
    "every=200, all on the training thread": {"background": False, "figure_every": 1},
    "every=200, no figure": {"figures": False},
    "every=50": {"every": 50},
    "every=200 + energy schedule": {"schedule": {"method": "energy", "start": 50, "end": 300, "target": 0.5,
                                                 "every": 50}},
}


def run_arm(base: torch.nn.Module, batches: list, kwargs: dict | None, logdir: str) -> tuple[float, float, float]:
    """(seconds of the training loop, seconds the monitor counted on the training thread inside it,
    seconds of the one-off work outside it: the step-0 log and close())."""
    model = copy.deepcopy(base).train()
    cuda = batches[0][0].is_cuda
    opt = torch.optim.SGD(model.parameters(), lr=0.05, momentum=0.9)
    t0 = time.perf_counter()
    hw = hwaware.attach(model, batches[0][0], logdir=logdir, **kwargs) if kwargs is not None else None
    one_off = time.perf_counter() - t0
    before = hw.overhead_seconds if hw is not None else 0.0  # the step-0 log, in attach()
    if cuda:
        torch.cuda.synchronize()
    start = time.perf_counter()
    for x, y in batches:
        loss = F.cross_entropy(model(x), y)
        opt.zero_grad()
        loss.backward()
        opt.step()
        if hw is not None:
            hw.step()
    if cuda:
        torch.cuda.synchronize()
    seconds = time.perf_counter() - start
    counted = 0.0
    if hw is not None:
        counted = hw.overhead_seconds - before
        t0 = time.perf_counter()
        hw.close()  # pending background work finishes here: it overlapped training
        one_off += time.perf_counter() - t0
    return seconds, counted, one_off


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--steps", type=int, default=400, help="optimizer steps per arm and round")
    ap.add_argument("--rounds", type=int, default=3, help="paired rounds (median of the per-round ratios)")
    ap.add_argument("--threads", type=int, default=0, help="torch threads (default: torch's, all cores)")
    ap.add_argument("--batch-size", type=int, default=64)
    ap.add_argument("--device", default="cpu", help="cpu or cuda")
    ap.add_argument("--model", default="small_cnn", help="small_cnn, or a torchvision name (e.g. resnet18)")
    ap.add_argument("--size", type=int, default=32, help="image side (builtin:shapes images are resized)")
    ap.add_argument("--arms", choices=("default", "all"), default="default",
                    help="default: the baseline and the default arm; all: every setting in ARMS")
    args = ap.parse_args()
    if args.device not in ("cpu", "cuda") and not args.device.startswith("cuda:"):
        ap.error(f"--device must be cpu or cuda, got {args.device!r}")
    if args.device.startswith("cuda") and not torch.cuda.is_available():
        ap.error("--device cuda needs a CUDA GPU, and torch.cuda.is_available() is False on this machine")
    if args.steps < 1 or args.rounds < 1:
        ap.error("--steps and --rounds must be positive")
    if args.threads:
        torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    dev = torch.device(args.device)
    loader = make_loader("builtin:shapes", "train", batch_size=args.batch_size, drop_last=True)
    batches = []
    while len(batches) < args.steps:
        batches += list(loader)
    batches = batches[: args.steps]
    if args.size != 32:
        batches = [(F.interpolate(x, size=(args.size, args.size), mode="bilinear"), y) for x, y in batches]
    batches = [(x.to(dev), y.to(dev)) for x, y in batches]
    if args.model == "small_cnn":
        base = hwaware.load_model("models/small_cnn.py")
    else:
        base = hwaware.load_model(f"torchvision:{args.model}", num_classes=10)
    base = base.to(dev)
    arms = [BASELINE, DEFAULT] if args.arms == "default" else list(ARMS)
    print(f"{args.model} on {dev}, batch {args.batch_size}, {args.size}x{args.size}, {args.steps} steps x "
          f"{args.rounds} rounds per arm, {torch.get_num_threads()} torch thread(s), "
          f"load average {os.getloadavg()[0]:.1f}", flush=True)
    run_arm(base, batches[: min(20, len(batches))], None, "")  # warm-up: allocator, kernels
    times: dict[str, list[float]] = {a: [] for a in arms}
    counted: dict[str, list[float]] = {a: [] for a in arms}
    one_off: dict[str, list[float]] = {a: [] for a in arms}
    began = time.perf_counter()
    with tempfile.TemporaryDirectory() as tmp:
        for r in range(args.rounds):
            order = arms if r % 2 == 0 else arms[::-1]  # alternate which arm runs first
            for label in order:
                s, c, o = run_arm(base, batches, ARMS[label], f"{tmp}/r{r}-{arms.index(label)}")
                times[label].append(s)
                counted[label].append(c)
                one_off[label].append(o)
                print(f"  round {r + 1}/{args.rounds} {label:<38} {1e3 * s / args.steps:8.2f} ms/step "
                      f"({time.perf_counter() - began:.0f} s so far)", file=sys.stderr, flush=True)
    t0 = statistics.median(times[BASELINE])
    print(f"{'arm':<38} {'ms/step':>8} {'overhead (wall)':>16} {'counted on the training thread':>31} "
          f"{'one-off (attach+close)':>23}")
    for label in arms:
        ratio = statistics.median(t / b for t, b in zip(times[label], times[BASELINE])) - 1
        paid = statistics.median(c / b for c, b in zip(counted[label], times[BASELINE]))
        t = statistics.median(times[label])
        print(f"{label:<38} {1e3 * t / args.steps:8.2f} {100 * ratio:15.2f}% {100 * paid:30.2f}% "
              f"{statistics.median(one_off[label]):21.2f} s")
    wall = 100 * (statistics.median(t / b for t, b in zip(times[DEFAULT], times[BASELINE])) - 1)
    paid = 100 * statistics.median(c / b for c, b in zip(counted[DEFAULT], times[BASELINE]))
    spread = 100 * (max(times[BASELINE]) - min(times[BASELINE])) / t0
    if spread > 3:  # the rounds of the baseline alone differ by more than the target
        verdict = "inconclusive (rerun on a quieter machine or with more --rounds/--steps)"
    else:
        verdict = "met" if max(wall, paid) <= 3 else "NOT met"
    print(f"default arm: {wall:+.2f}% wall, {paid:.2f}% counted on the training thread (baseline rounds "
          f"spread {spread:.1f}%); target <= 3%: {verdict} (load average {os.getloadavg()[0]:.1f})")


if __name__ == "__main__":
    main()
