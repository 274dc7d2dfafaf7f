"""Speed of profiling + full Eyeriss scoring, relative to one float forward pass (same process).

    python bench/score_speed.py

For torchvision ResNet-50 and VGG-16 at batch 1 (224x224), prints: one float forward pass (the
baseline, median of 5), profile, cold scoring (empty mapping cache: every distinct layer shape is
mapped), warm rescoring of the unchanged network, and a warm rescore after one layer changed
(only that layer is remapped). Targets (issue 12): cold profile+score of ResNet-50 within 2
forward passes; a warm rescore after one change within 5 ms. Cold scoring runs on every core this
process may use (``Scorer(workers=...)``); the ``cold 1 core`` column is the same on one thread, so
their ratio shows what the cores buy. Medians of ``--repeat`` runs (default 3); the load average
is printed because the machine is shared.
"""

from __future__ import annotations

import argparse
import os
import statistics
import time

import torch
import torchvision

from hwaware.eyeriss import Scorer
from hwaware.eyeriss.score import clear_mapping_cache, default_workers
from hwaware.profiler import profile


def timed(fn, repeat: int = 1) -> float:
    times = []
    for _ in range(repeat):
        t = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t)
    return statistics.median(times)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--repeat", type=int, default=3, help="runs of each cold measurement (median)")
    ap.add_argument("--models", default="resnet50,vgg16", help="torchvision names, comma separated")
    args = ap.parse_args()
    torch.manual_seed(0)
    workers = default_workers()
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads, scoring on {workers} workers, "
          f"load average {os.getloadavg()[0]:.1f}")
    header = f"{'network':10s} {'forward':>9s} {'profile':>9s} {'cold score':>11s} {'prof+cold':>10s} " \
             f"{'cold 1 core':>12s} {'warm score':>11s} {'1-layer rescore':>16s} {'layers':>7s} {'shapes':>7s}"
    print(header)
    for name in args.models.split(","):
        model = torchvision.models.get_model(name, weights=None).eval()
        x = torch.randn(1, 3, 224, 224)
        with torch.no_grad():
            model(x)  # warm-up
            fwd = timed(lambda: model(x), repeat=5)
        wl = profile(model, x)
        t_prof = timed(lambda: profile(model, x), repeat=args.repeat)

        def cold(n: int | None) -> None:
            clear_mapping_cache()
            Scorer("eyeriss_v1", workers=n).score(wl)

        t_cold = timed(lambda: cold(None), repeat=args.repeat)
        t_cold1 = timed(lambda: cold(1), repeat=args.repeat)
        sc = Scorer("eyeriss_v1")
        sc.score(wl)
        t_warm = timed(lambda: sc.score(wl), repeat=5)
        # change one layer (prune 8 filters of a middle layer) and rescore on the warm cache
        i = len(wl.layers) // 2
        changed = wl.replace_layer(i, wl.layers[i].replace(M=wl.layers[i].M - 8))
        t_one = timed(lambda: Scorer.score(sc, changed))
        shapes = len({layer.shape_key() for layer in wl.layers})
        print(f"{name:10s} {fwd * 1e3:7.1f}ms {t_prof / fwd:8.2f}x {t_cold / fwd:10.2f}x "
              f"{(t_prof + t_cold) / fwd:9.2f}x {t_cold1 / fwd:11.2f}x {t_warm * 1e3:9.2f}ms {t_one * 1e3:14.2f}ms "
              f"{len(wl.layers):7d} {shapes:7d}")
    print(f"ratios are relative to one float32 forward pass at batch 1 of the same network in this run; "
          f"target: resnet50 prof+cold <= 2x, 1-layer rescore <= 5 ms; load average now {os.getloadavg()[0]:.1f}")


if __name__ == "__main__":
    main()
