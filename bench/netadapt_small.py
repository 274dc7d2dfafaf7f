"""NetAdapt on the small CNN (builtin:shapes) to 50% of its Eyeriss latency, from the CLI,
against a uniform width-multiplier baseline at the same latency (NetAdapt's comparison).

    python bench/netadapt_small.py                  # ~10 min on 2 cores (the baseline trains from scratch)
    python bench/netadapt_small.py --budget 0.5 --threads 2 --out runs/bench_netadapt

Steps: (1) the trained small CNN (hwaware.train.trained_small_cnn, cached) is saved as a model file;
(2) ``hwaware netadapt`` runs on it with --budget latency=BUDGET and default options plus a
long-term fine-tune, timed; (3) the largest width multiplier whose small CNN is no slower than
NetAdapt's final network on the Eyeriss model is trained from scratch with the same recipe and
epochs as the original; (4) everything is scored on the test split. Prints a Markdown table and
writes OUT/bench.json.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--budget", type=float, default=0.5, help="Eyeriss latency budget, fraction of the original")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--long-term-steps", type=int, default=500, help="long-term fine-tune of the final network")
    ap.add_argument("--out", default=str(ROOT / "runs" / "bench_netadapt_small"))
    ap.add_argument("--skip-baseline", action="store_true", help="no width-multiplier training")
    args = ap.parse_args()

    import torch

    torch.set_num_threads(args.threads)
    from hwaware._io import write_json
    from hwaware.checkpoint import save_model
    from hwaware.data import make_loader
    from hwaware.modelref import load_model
    from hwaware.netadapt import NetAdaptConfig, ResourceMeter
    from hwaware.netadapt.rules import derive_seed
    from hwaware.splits import HeldoutSplit
    from hwaware.train import SMALL_CNN_EPOCHS, SMALL_CNN_RECIPE, evaluate, fit, trained_small_cnn

    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    t0 = time.perf_counter()
    original = trained_small_cnn(progress=False)
    model_file = out / "small_cnn_trained.pt"
    save_model(original, model_file)
    print(f"trained small CNN ready in {time.perf_counter() - t0:.0f} s -> {model_file}", flush=True)

    workdir = out / "job"
    if workdir.exists():
        import shutil

        shutil.rmtree(workdir)
    cmd = [sys.executable, "-m", "hwaware", "netadapt", str(model_file), "--budget", f"latency={args.budget}",
           "--data", "builtin:shapes", "--workdir", str(workdir), "--threads", str(args.threads),
           "--long-term-steps", str(args.long_term_steps), "--no-progress"]
    print("$ " + " ".join(cmd[2:]), flush=True)
    t1 = time.perf_counter()
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    proc = subprocess.run(cmd, cwd=ROOT, env={**os.environ, "OMP_NUM_THREADS": str(args.threads)})
    wall = time.perf_counter() - t1
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    load = os.getloadavg()[0]
    if proc.returncode:
        sys.exit(f"hwaware netadapt failed with exit code {proc.returncode}")
    fam = json.loads((workdir / "family.json").read_text())
    members = fam["members"]
    initial = fam["initial"]
    orig = members[0]
    short = [m for m in members if m["kind"] == "iteration"][-1]
    long_ = next((m for m in members if m["kind"] == "long_term"), None)
    iterations = short["iteration"]

    rows = [("original", orig), (f"NetAdapt, {iterations} iterations (short-term fine-tuned)", short)]
    if long_ is not None:
        rows.append((f"NetAdapt + long-term fine-tune ({args.long_term_steps} steps)", long_))

    baseline = None
    if not args.skip_baseline:
        # the same resource measurement as the job: its held-out images, the same options
        cfg = NetAdaptConfig()
        data = HeldoutSplit("builtin:shapes", holdout=cfg.holdout, seed=derive_seed(cfg.seed, "split"),
                            train_size=cfg.train_size, profile_images=cfg.profile_images,
                            batch_size=cfg.batch_size)
        meter = ResourceMeter(["latency", "energy", "macs", "weights"])
        target = short["resources"]["latency"]
        width = None
        for k in range(64, 0, -1):  # widths 64/64 .. 1/64; channel counts round(w * (32, 64, 128, 128))
            w = k / 64
            lat = meter.measure_model(load_model(str(ROOT / "models/small_cnn.py:small_cnn"), width=w),
                                      data.profile_images)[0]["latency"]
            if lat <= target:
                width = w
                break
        if width is None:
            sys.exit("no width multiplier reaches NetAdapt's latency")
        print(f"width multiplier {width:.4f} is the widest no slower than NetAdapt's network; training it "
              f"from scratch ({SMALL_CNN_EPOCHS} epochs, the original's recipe)", flush=True)
        t2 = time.perf_counter()
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(0)
            net = load_model(str(ROOT / "models/small_cnn.py:small_cnn"), width=width)
            loader = make_loader("builtin:shapes", "train", batch_size=SMALL_CNN_RECIPE["batch_size"], seed=0)
            fit(net, loader, epochs=SMALL_CNN_EPOCHS, lr=SMALL_CNN_RECIPE["lr"], optimizer=SMALL_CNN_RECIPE["optimizer"],
                momentum=SMALL_CNN_RECIPE["momentum"], weight_decay=SMALL_CNN_RECIPE["weight_decay"],
                schedule=SMALL_CNN_RECIPE["schedule"], progress=False)
        net.eval()
        values = meter.measure_model(net, data.profile_images)[0]
        test = evaluate(net, make_loader("builtin:shapes", "test", batch_size=256))
        baseline = {"width": width, "resources": values, "test_accuracy": test, "accuracy": None,
                    "train_seconds": time.perf_counter() - t2}
        rows.append((f"width multiplier {width:.3f}, trained from scratch", baseline))

    def pct(m: dict, r: str) -> str:
        return f"{100 * m['resources'][r] / initial[r]:.1f}%"

    lines = [
        "| network | Eyeriss latency (ms) | latency | energy | MACs | weights | test top-1 |",
        "|---|---|---|---|---|---|---|",
    ]
    for name, m in rows:
        lines.append(f"| {name} | {m['resources']['latency']:.4f} | {pct(m, 'latency')} | {pct(m, 'energy')} | "
                     f"{pct(m, 'macs')} | {pct(m, 'weights')} | {m['test_accuracy']:.4f} |")
    table = "\n".join(lines)
    print()
    print(table)
    print(f"\nNetAdapt job: {iterations} iterations, {wall:.0f} s wall ({cpu:.0f} s CPU; load average {load:.1f} "
          f"at the end) from the CLI on {args.threads} threads (budget latency<={args.budget:.0%}); "
          f"channels {short['channels']}")
    write_json(out / "bench.json", {"budget": args.budget, "threads": args.threads, "wall_s": wall, "cpu_s": cpu,
                                    "iterations": iterations, "initial": initial, "rows": [
                                        {"name": n, **m} for n, m in rows], "table": table})


if __name__ == "__main__":
    main()
