"""Overhead of the training plugin (``hwaware.attach``) on a plain training loop.

Trains the small CNN on ``builtin:shapes`` (batch 64, SGD) for ``--steps`` optimizer steps without
the monitor and with it at several logging frequencies, interleaving the arms (A B C ... A B C ...)
so that machine load drifts hit every arm alike. Reports, per arm, the time per step, the overhead
against the baseline measured in the same process, and the time the monitor itself counted
(``hw.overhead_seconds``: profiling + scoring + TensorBoard + figure), which is less noisy on a
shared machine than the difference of two wall times.

    python bench/plugin_overhead.py                 # 400 steps x 2 rounds per arm, 1 thread
    python bench/plugin_overhead.py --steps 1000 --threads 2
"""

from __future__ import annotations

import argparse
import copy
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
    ("every=200, no figure", {"every": 200, "figures": False}),
    ("every=50", {"every": 50}),
    ("every=200 + energy schedule", {"every": 200, "schedule": {"method": "energy", "start": 50, "end": 300,
                                                                 "target": 0.5, "every": 50}}),
]


def run_arm(base: torch.nn.Module, batches: list, kwargs: dict | None, logdir: str) -> tuple[float, float]:
    model = copy.deepcopy(base).train()
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
    seconds = time.perf_counter() - start
    counted = 0.0
    if hw is not None:
        counted = hw.overhead_seconds - hw.history[0].seconds  # the step-0 log happens before the loop
        hw.close()
    return seconds, counted


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--steps", type=int, default=400)
    ap.add_argument("--rounds", type=int, default=2)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--batch-size", type=int, default=64)
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    loader = make_loader("builtin:shapes", "train", batch_size=args.batch_size, drop_last=True)
    batches = []
    while len(batches) < args.steps:
        batches += list(loader)
    batches = batches[: args.steps]
    base = hwaware.load_model("models/small_cnn.py")
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
    print(f"small CNN, batch {args.batch_size}, {args.steps} steps x {args.rounds} rounds, "
          f"{args.threads} thread(s); median over rounds")
    print(f"{'arm':<30} {'ms/step':>8} {'overhead (wall)':>16} {'overhead (counted)':>19}")
    for label, _ in ARMS:
        t = statistics.median(times[label])
        c = statistics.median(counted[label])
        print(f"{label:<30} {1e3 * t / args.steps:8.2f} {100 * (t - t0) / t0:15.2f}% {100 * c / t0:18.2f}%")


if __name__ == "__main__":
    main()
