"""Accuracy and wall time of small_cnn on builtin:shapes, with a linear baseline for contrast.

    python bench/train_small_cnn.py                 # default trained_small_cnn recipe (no cache)
    python bench/train_small_cnn.py --epochs 6 --threads 2 --skip-linear

Trains from scratch into a temporary cache (the user's cache is never read), then reports the
test/val top-1 and the wall time; the linear baseline is a softmax regression on raw pixels
trained the same way, which shows the data is not linearly separable.
"""

from __future__ import annotations

import argparse
import functools
import os
import tempfile
import time

import torch
from torch import nn

from hwaware import data, train

print = functools.partial(print, flush=True)  # noqa: A001 - lines appear as they are measured


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--epochs", type=int, default=train.SMALL_CNN_EPOCHS)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--skip-linear", action="store_true")
    ap.add_argument("--no-progress", action="store_true")
    args = ap.parse_args()
    torch.set_num_threads(args.threads)

    t = time.perf_counter()
    for split in data.SPLITS:
        data.load_dataset("builtin:shapes", split)
    gen_s = time.perf_counter() - t
    print(f"data: {data.describe('builtin:shapes')}")
    print(f"generation of all splits: {gen_s:.2f} s")

    test = data.make_loader("builtin:shapes", "test", batch_size=500)
    val = data.make_loader("builtin:shapes", "val", batch_size=500)
    with tempfile.TemporaryDirectory() as tmp:
        t, cpu = time.perf_counter(), time.process_time()
        model = train.trained_small_cnn(cache_dir=tmp, epochs=args.epochs, seed=args.seed,
                                        progress=not args.no_progress)
        train_s, train_cpu = time.perf_counter() - t, time.process_time() - cpu
        t = time.perf_counter()
        train.trained_small_cnn(cache_dir=tmp, epochs=args.epochs, seed=args.seed)
        cached_s = time.perf_counter() - t
    acc_test, acc_val = train.evaluate(model, test), train.evaluate(model, val)
    print(f"small_cnn: {args.epochs} epochs, {args.threads} threads: test top-1 {acc_test:.4f}, "
          f"val top-1 {acc_val:.4f}, training {train_s:.1f} s wall / {train_cpu:.1f} s CPU "
          f"(load average {os.getloadavg()[0]:.1f}), cached load {cached_s:.2f} s")

    if not args.skip_linear:
        torch.manual_seed(args.seed)
        linear = nn.Sequential(nn.Flatten(), nn.Linear(3 * 32 * 32, 10))
        loader = data.make_loader("builtin:shapes", "train", batch_size=128, seed=args.seed)
        t = time.perf_counter()
        train.fit(linear, loader, epochs=args.epochs, lr=1e-3, optimizer="adam", weight_decay=1e-4,
                  schedule="cosine", progress=not args.no_progress)
        print(f"linear softmax on pixels: test top-1 {train.evaluate(linear, test):.4f} "
              f"({time.perf_counter() - t:.1f} s); chance 0.1000")


if __name__ == "__main__":
    main()
