"""Energy-aware vs magnitude pruning (and structured) on the small CNN trained on builtin:shapes.

Each method prunes the same trained network with the same loop settings and the same accuracy
limit (``--max-drop`` points of validation top-1); the table reports the Eyeriss energy (per
inference, normalized to one 16-bit MAC), latency, weights, non-zero MACs and accuracy of the
result, and the energy reduction of energy-aware pruning relative to magnitude pruning (Yang, Chen,
Sze, CVPR 2017 report 1.74x on AlexNet). Test accuracy is measured once, at the end.

    python bench/prune_compare.py                 # magnitude vs energy-aware (see docs/pruning.md)
    python bench/prune_compare.py --methods magnitude,energy,structured
    python bench/prune_compare.py --quick         # smoke run, about a minute
    python bench/prune_compare.py --json out.json
"""

from __future__ import annotations

import argparse
import sys
import time

import torch

from hwaware.compress.prune import PruneConfig, Pruner
from hwaware.data import make_loader
from hwaware.report_table import format_si, format_table
from hwaware.train import evaluate, trained_small_cnn


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--max-drop", type=float, default=1.0, help="validation accuracy points allowed (1.0)")
    ap.add_argument("--methods", default="magnitude,energy",
                    help="comma-separated: magnitude, energy, structured (default magnitude,energy)")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--quick", action="store_true", help="few steps: checks that everything runs")
    ap.add_argument("--json", help="write the numbers as JSON")
    args = ap.parse_args(argv)
    torch.set_num_threads(args.threads)

    model = trained_small_cnn(progress=False)
    # 2000 validation / test images: one point of accuracy is 20 images, not 10
    data = "builtin:shapes?n_val=2000&n_test=2000"
    train = make_loader(data, "train", batch_size=64, seed=0)
    val = make_loader(data, "val", batch_size=500)
    test = make_loader(data, "test", batch_size=500)
    calib = next(iter(make_loader(data, "train", batch_size=64, seed=1)))[0]
    base_test = evaluate(model, test)

    common = dict(target_energy=0.05, max_drop=args.max_drop, step=0.3, min_step=0.04, local_steps=10,
                  global_steps=40, finetune_every=4, final_steps=120, max_steps=30, lr=0.003)
    if args.quick:
        common.update(local_steps=2, global_steps=2, final_steps=4, max_steps=4)
    rows = []
    out: dict[str, dict] = {}
    baseline = None
    for method in args.methods.split(","):
        t0 = time.perf_counter()
        pruner = Pruner(model, train=train, val=val, calib=calib, config=PruneConfig(method=method, **common))
        n_prune = n_ft = 0
        for step in pruner.steps():
            if step.kind == "prune":
                n_prune += 1
                n_ft += common["local_steps"]
            else:
                n_ft += common["global_steps"] if step.kind == "finetune" else common["final_steps"]
            print(f"  {method:10s} {step.index:3d} {step.kind:8s} {step.target:8s} "
                  f"{'ok  ' if step.accepted else 'back'} E={step.metrics.energy / pruner.baseline.energy:.3f} "
                  f"acc={step.metrics.accuracy:.4f}  {step.message}", file=sys.stderr)
        res = pruner.result()
        seconds = time.perf_counter() - t0
        test_acc = evaluate(res.model, test)
        baseline = baseline or res.baseline
        f = res.final
        out[method] = {
            "energy": f.energy, "energy_ratio": f.energy / res.baseline.energy,
            "energy_by_level": f.energy_by_level, "latency_ms": f.latency_ms, "weights": f.weights,
            "nonzero_weights": f.nonzero_weights, "macs": f.macs, "nonzero_macs": f.nonzero_macs,
            "val_accuracy": f.accuracy, "test_accuracy": test_acc, "proposals": n_prune,
            "finetune_steps": n_ft, "seconds": seconds, "message": res.message,
            "layer_sparsity": f.layer_sparsity,
        }
        rows.append((method, f, test_acc, n_prune, n_ft, seconds))

    b = baseline
    table = [["unpruned", format_si(b.energy), "1.000", f"{b.latency_ms:.3f}", format_si(b.weights),
              format_si(b.nonzero_weights), format_si(b.nonzero_macs), f"{100 * b.accuracy:.2f}",
              f"{100 * base_test:.2f}", "", "", "", ""]]
    table.append(None)
    for method, f, test_acc, n_prune, n_ft, seconds in rows:
        table.append([method, format_si(f.energy), f"{f.energy / b.energy:.3f}", f"{f.latency_ms:.3f}",
                      format_si(f.weights), format_si(f.nonzero_weights), format_si(f.nonzero_macs),
                      f"{100 * f.accuracy:.2f}", f"{100 * test_acc:.2f}",
                      f"{100 * (base_test - test_acc):+.2f}", str(n_prune), str(n_ft), f"{seconds:.0f}"])
    print(f"small CNN on builtin:shapes (2000 val / 2000 test images), Eyeriss v1 energy per inference (x one 16-bit MAC), "
          f"accuracy limit {args.max_drop} point(s) of validation top-1")
    print(format_table(["method", "energy", "E/E0", "latency ms", "weights", "nz weights", "nz MACs",
                        "val %", "test %", "test drop", "proposals", "FT steps", "s"], table))
    if "magnitude" in out and "energy" in out:
        mag, ea = out["magnitude"]["energy_ratio"], out["energy"]["energy_ratio"]
        gain = mag / ea
        out["energy_vs_magnitude"] = gain
        print(f"energy reduction: energy-aware {1 / ea:.2f}x, magnitude {1 / mag:.2f}x -> energy-aware saves "
              f"{gain:.2f}x more (paper, AlexNet: 3.7x vs ~2.1x = 1.74x)")
    print("per-layer weight sparsity:")
    names = list(b.layer_sparsity)
    print(format_table(["method", *names],
                       [[m, *(f"{100 * out[m]['layer_sparsity'].get(n, 0.0):.0f}%" for n in names)]
                        for m in out if m in ("magnitude", "energy")]))
    if args.json:
        from hwaware._io import write_json

        write_json(args.json, {"baseline": b.to_dict(), "baseline_test_accuracy": base_test, **out})
    return 0


if __name__ == "__main__":
    sys.exit(main())
