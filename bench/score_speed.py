"""Speed of profiling + full Eyeriss scoring, relative to one float forward pass (same process).

    python bench/score_speed.py

For torchvision ResNet-50 and VGG-16 at batch 1 (224x224), prints: one float forward pass (the
baseline, median of 5), profile, cold scoring (empty mapping cache: every distinct layer shape is
mapped; the default ``Scorer``, one thread), their sum ``prof+cold``, ``prof+score``: the same
work as one ``hwaware.score(model, data=x)`` call, which maps each shape on a background thread
while the profiling pass runs (hwaware/eyeriss/background_search.py), the cold score on every
core this process may use (``Scorer(workers=N)``, a thread pool over shapes: its ratio to the
one-thread column, printed below the table, is what the cores buy), warm rescoring of the
unchanged network, and a warm rescore after one layer changed (only that layer is remapped).
Targets (issue 12): cold profile+score of ResNet-50 within 2 forward passes; a warm rescore after
one change within 5 ms. Each measurement is paired with a forward pass run just before it and the
ratio is the median over ``--repeat`` rounds (default 5), so load that drifts during the run hits
both sides; the load average is printed because the machine is shared.
"""

from __future__ import annotations

import argparse
import os
import statistics
import time

import torch
import torchvision

import hwaware
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
    ap.add_argument("--repeat", type=int, default=5, help="paired rounds (median of the ratios)")
    ap.add_argument("--models", default="resnet50,vgg16", help="torchvision names, comma separated")
    ap.add_argument("--threads", type=int, default=0,
                    help="torch threads (default: torch's, all cores; 1 on a machine shared with other jobs, "
                         "where OpenMP threads that wait for a core inflate the forward pass many times)")
    args = ap.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    workers = default_workers()
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads, {workers} cores for this process, "
          f"load average {os.getloadavg()[0]:.1f}")
    header = f"{'network':10s} {'forward':>9s} {'profile':>9s} {'cold score':>11s} {'prof+cold':>10s} " \
             f"{'prof+score':>11s} {f'cold {workers} thr':>11s} {'warm score':>11s} {'1-layer rescore':>16s} " \
             f"{'layers':>7s} {'shapes':>7s}"
    print(header)
    scaling = []
    for name in args.models.split(","):
        model = torchvision.models.get_model(name, weights=None).eval()
        x = torch.randn(1, 3, 224, 224)
        with torch.no_grad():
            model(x)  # warm-up
        wl = profile(model, x)

        def forward() -> None:
            with torch.no_grad():
                model(x)

        def cold(n: int | None) -> None:
            clear_mapping_cache()
            Scorer("eyeriss_v1", workers=n).score(wl)

        def prof_score() -> None:
            clear_mapping_cache()
            hwaware.score(model, data=x)

        # paired rounds: a forward pass right before each measurement, ratio per round, median of
        # the rounds -- load that drifts during the run hits numerator and denominator alike
        rounds: dict[str, list[float]] = {"fwd": [], "profile": [], "cold": [], "coldN": [], "both": []}
        for _ in range(args.repeat):
            for key, fn in (("profile", lambda: profile(model, x)), ("cold", lambda: cold(None)),
                            ("coldN", lambda: cold(workers)), ("both", prof_score)):
                f = timed(forward)
                rounds["fwd"].append(f)
                rounds[key].append(timed(fn) / f)
        fwd = statistics.median(rounds["fwd"])
        r_prof, r_cold, r_coldn, r_both = (statistics.median(rounds[k]) for k in ("profile", "cold", "coldN", "both"))
        scaling.append(f"{name} {r_cold / r_coldn:.2f}x")
        sc = Scorer("eyeriss_v1")
        sc.score(wl)
        t_warm = timed(lambda: sc.score(wl), repeat=5)
        # change one layer (prune 8 filters of a middle layer) and rescore on the warm cache
        i = len(wl.layers) // 2
        changed = wl.replace_layer(i, wl.layers[i].replace(M=wl.layers[i].M - 8))
        t_one = statistics.median(timed(lambda: Scorer.score(sc, changed.replace_layer(
            i, changed.layers[i].replace(M=changed.layers[i].M - k)))) for k in range(args.repeat))
        shapes = len({layer.shape_key() for layer in wl.layers})
        print(f"{name:10s} {fwd * 1e3:7.1f}ms {r_prof:8.2f}x {r_cold:10.2f}x "
              f"{r_prof + r_cold:9.2f}x {r_both:10.2f}x {r_coldn:10.2f}x {t_warm * 1e3:9.2f}ms {t_one * 1e3:14.2f}ms "
              f"{len(wl.layers):7d} {shapes:7d}")
    print(f"ratios are relative to one float32 forward pass at batch 1 of the same network in this run; "
          f"target: resnet50 prof+score <= 2x, 1-layer rescore <= 5 ms; load average now {os.getloadavg()[0]:.1f}")
    print(f"cold scoring, 1 thread -> {workers} threads (speed-up; < 1 is a slow-down): {', '.join(scaling)}")


if __name__ == "__main__":
    main()
