"""Overhead of the training plugin (``hwaware.attach``) on a plain training loop.

Trains the small CNN on ``builtin:shapes`` (batch 64, SGD) for ``--steps`` optimizer steps without
the monitor and with it at several logging frequencies, interleaving the arms (A B C ... A B C ...)
so that machine load drifts hit every arm alike. Reports, per arm, the time per step, the overhead
against the baseline measured in the same process, and the time the monitor itself counted
(``hw.overhead_seconds``: profiling + scoring + TensorBoard + figure), which is less noisy on a
shared machine than the difference of two wall times.

    python bench/plugin_overhead.py                 # 400 steps x 2 rounds per arm, 1 thread
    python bench/plugin_overhead.py --steps 1000 --threads 2
    python bench/plugin_overhead.py --device cuda --model resnet18 --batch-size 128 --size 64 --steps 1000

``--device cuda`` trains on the GPU (timings synchronize the device at the end of each arm). The
target is an overhead of at most 3% at the defaults (``every=200``).
"""

from __future__ import annotations

import argparse
import copy
import os
import statistics
import tempfile
import time

import torch
import torch.nn.functional as F

import hwaware
from hwaware.data import make_loader

ARMS = [  # (label, attach kwargs or None for the baseline)
    ("no monitor", None),
    ("every=200 (default)", {"every": 200}),
    ("every=200, all on the training thread", {"every": 200, "background": False, "figure_every": 1}),
    ("every=200, no figure", {"every": 200, "figures": False}),
    ("every=50", {"every": 50}),
    ("every=200 + energy schedule", {"every": 200, "schedule": {"method": "energy", "start": 50, "end": 300,
                                                                 "target": 0.5, "every": 50}}),
]


def run_arm(base: torch.nn.Module, batches: list, kwargs: dict | None, logdir: str) -> tuple[float, float]:
    model = copy.deepcopy(base).train()
    cuda = batches[0][0].is_cuda
    opt = torch.optim.SGD(model.parameters(), lr=0.05, momentum=0.9)
    hw = hwaware.attach(model, batches[0][0], logdir=logdir, **kwargs) if kwargs is not None else None
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
        counted = hw.overhead_seconds - hw.history[0].seconds  # the step-0 log happens before the loop
        hw.close()  # (pending background work finishes outside the timed loop: it overlapped training)
    return seconds, counted


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--steps", type=int, default=400)
    ap.add_argument("--rounds", type=int, default=2)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--batch-size", type=int, default=64)
    ap.add_argument("--device", default="cpu", help="cpu or cuda")
    ap.add_argument("--model", default="small_cnn", help="small_cnn, or a torchvision name (e.g. resnet18)")
    ap.add_argument("--size", type=int, default=32, help="image side (builtin:shapes images are resized)")
    args = ap.parse_args()
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
    run_arm(base, batches[:20], None, "")  # warm-up: allocator, kernels
    times: dict[str, list[float]] = {label: [] for label, _ in ARMS}
    counted: dict[str, list[float]] = {label: [] for label, _ in ARMS}
    with tempfile.TemporaryDirectory() as tmp:
        for r in range(args.rounds):
            for i, (label, kwargs) in enumerate(ARMS):
                s, c = run_arm(base, batches, kwargs, f"{tmp}/r{r}-{i}")
                times[label].append(s)
                counted[label].append(c)
    t0 = statistics.median(times["no monitor"])
    print(f"{args.model} on {dev}, batch {args.batch_size}, {args.size}x{args.size}, {args.steps} steps x "
          f"{args.rounds} rounds, {args.threads} thread(s); median over rounds; target: default arm <= 3%")
    print(f"{'arm':<38} {'ms/step':>8} {'overhead (wall)':>16} {'training-thread time (counted)':>31}")
    for label, _ in ARMS:
        t = statistics.median(times[label])
        c = statistics.median(counted[label])
        print(f"{label:<38} {1e3 * t / args.steps:8.2f} {100 * (t - t0) / t0:15.2f}% {100 * c / t0:30.2f}%")
    d = "every=200 (default)"
    wall = 100 * (statistics.median(times[d]) - t0) / t0
    paid = 100 * statistics.median(counted[d]) / t0
    print(f"default arm: {wall:.2f}% wall, {paid:.2f}% counted on the training thread; target <= 3%: "
          f"{'met' if max(wall, paid) <= 3 else 'NOT met'} (load average {os.getloadavg()[0]:.1f})")


if __name__ == "__main__":
    main()
