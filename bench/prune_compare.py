"""Energy-aware vs magnitude pruning where the paper's effect lives, at one fine-tuning budget.

The network (default ``vgg_small``, models/vgg_small.py, trained once on builtin:shapes and cached
like the small CNN) keeps large feature maps in its first CONV layers and most of its weights in a
fully connected layer, so its Eyeriss energy is feature-map traffic (printed per data type), as in
AlexNet's CONV layers. Every variant prunes the same trained network with the same loop settings,
the same accuracy limit and the same number of fine-tuning optimizer steps (``--budget``: local,
global and final fine-tuning together; a method that stops early spends the rest on its final
fine-tune):

- ``magnitude``: Han et al. 2015, one global magnitude threshold;
- ``energy``: Yang, Chen, Sze (CVPR 2017), most energy-hungry layer first, least-squares restoration
  of its output feature maps;
- ``energy-norestore``: the ablation, the same without the restoration;
- ``structured``: the channel-level energy-aware variant, whole channels of the channel group that
  holds the most energy (the model shrinks, so latency falls too), the layers reading them refit by
  least squares; ``structured-norestore``: the same without the refit; ``structured-latency``: the
  same with every step also keeping the Eyeriss latency at most the unpruned model's
  (``max_latency=1.0``: channel counts the chip maps badly, e.g. 31 of 64, are refused);
- ``l1-filter``: the channel-level magnitude baseline (Li et al. 2017, smallest filter L1 first);
- ``magnitude-3pt``: the weight-level baseline with its loop allowed 3 points (it passes through
  lower-energy states within 1 point than with the study's limit).

Every accepted state of every run is a point (energy and latency vs validation top-1); ``--plot``
draws each method's non-dominated front, the rolled-back states and each method's anchor: the lowest
energy it reached with validation top-1 at most ``--max-drop`` points below the start. The table
compares every arm at that accuracy with both magnitude baselines (weight level, Han et al. 2015,
the paper's; channel level, Li et al. 2017) as the ratio of energy reductions (the paper's measure,
1.74x on AlexNet = 3.7x / ~2.1x) and as the ratio of energy fractions saved.

    python bench/prune_compare.py --val 1000 --threads 1 --plot prune_pareto.png   # the study; hours on 2 loaded cores
    python bench/prune_compare.py --model small_cnn --methods magnitude,energy
    python bench/prune_compare.py --quick                           # smoke run
    python bench/prune_compare.py --json out.json
    python bench/prune_compare.py --methods magnitude --json m.json &     # variants in parallel ...
    python bench/prune_compare.py --methods energy --json e.json; wait
    python bench/prune_compare.py --merge m.json e.json --plot p.png      # ... one table and plot
    python bench/prune_compare.py --methods structured --seed 1 --json s1.json   # other data orders ...
    python bench/prune_compare.py --merge *_s*.json --plot p.png          # ... a table and plot per seed, the spread
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path
from typing import Any

import torch

from hwaware.compress.prune import PruneConfig, Pruner
from hwaware.data import make_loader
from hwaware.report_table import format_si, format_table
from hwaware.train import evaluate, trained_shapes_model

# label -> PruneConfig overrides
VARIANTS: dict[str, dict[str, Any]] = {
    "magnitude": {"method": "magnitude"},
    "energy": {"method": "energy"},
    "energy-norestore": {"method": "energy", "restore": False},
    "structured": {"method": "structured"},
    "structured-norestore": {"method": "structured", "restore": False},
    "structured-latency": {"method": "structured", "max_latency": 1.0},
    "l1-filter": {"method": "l1-filter"},
    # the same baseline run further down its curve (the loop accepts states 3 points below); its
    # trajectory passes through lower-energy states within 1 point than the 1-point-limited run's
    "magnitude-3pt": {"method": "magnitude", "max_drop": 3.0},
}
# the two magnitude baselines every other arm is compared with
BASELINES: dict[str, str] = {
    "magnitude": "weight-level magnitude (Han et al. 2015; the CVPR 2017 paper's baseline)",
    "l1-filter": "channel-level magnitude, filter L1 norm (Li et al. 2017)",
    "magnitude-3pt": "weight-level magnitude, loop limit 3 points instead of the study's (its best within 1 point)",
}
PAPER_GAIN = 1.74  # Yang, Chen, Sze, CVPR 2017, AlexNet: 3.7x vs ~2.1x energy reduction
TARGET_GAIN = 1.5  # issue 17


def best_at(points: list[dict[str, Any]], base_acc: float, drop: float) -> dict[str, Any]:
    """The lowest-energy accepted point whose validation top-1 is at most ``drop`` points below
    ``base_acc`` (the unpruned start always qualifies)."""
    ok = [p for p in points if p.get("accepted", True) and 100.0 * (base_acc - p["val_accuracy"]) <= drop + 1e-9]
    # energies within 0.1% are one state's (a fine-tune moves activation sparsity a little): best accuracy
    return min(ok, key=lambda p: (round(p["energy_ratio"], 3), -p["val_accuracy"]))


def run_variant(label: str, model: torch.nn.Module, common: dict[str, Any], *, train: Any, val: Any,
                test: Any, calib: torch.Tensor) -> dict[str, Any]:
    """One pruning run; every measured state becomes a point (accepted ones with their test top-1)."""
    cfg = PruneConfig(**{**common, **VARIANTS[label]})
    t0 = time.perf_counter()
    pruner = Pruner(model, train=train, val=val, calib=calib, config=cfg)
    b = pruner.baseline

    def point(m: Any, kind: str, accepted: bool = True, test_acc: float | None = None) -> dict[str, Any]:
        return {"kind": kind, "accepted": accepted, "energy_ratio": m.energy / b.energy,
                "latency_ratio": m.latency_ms / b.latency_ms, "energy": m.energy, "latency_ms": m.latency_ms,
                "val_accuracy": m.accuracy, "test_accuracy": test_acc, "nonzero_weights": m.nonzero_weights,
                "nonzero_macs": m.nonzero_macs, "energy_by_type": m.energy_by_type,
                "finetune_steps": pruner.finetune_steps_used}

    points = [point(b, "start", test_acc=evaluate(pruner.model, test))]
    n_prune = 0
    for step in pruner.steps():
        n_prune += step.kind == "prune"
        print(f"  {label:16s} {step.index:3d} {step.kind:8s} {step.target:10s} "
              f"{'ok  ' if step.accepted else 'back'} E={step.metrics.energy / b.energy:.3f} "
              f"acc={step.metrics.accuracy:.4f}  {step.message}", file=sys.stderr)
        # after an accepted step pruner.model is the state just measured
        points.append(point(step.metrics, step.kind, step.accepted,
                            evaluate(pruner.model, test) if step.accepted else None))
    res = pruner.result()
    f = res.final
    return {
        "label": label, "config": {**VARIANTS[label]}, "points": points,
        "final": point(f, "final", test_acc=evaluate(res.model, test)),
        "test_accuracy": evaluate(res.model, test), "proposals": n_prune,
        "finetune_steps": pruner.finetune_steps_used, "seconds": time.perf_counter() - t0,
        "message": res.message, "layer_sparsity": f.layer_sparsity, "baseline": points[0],
        "baseline_accuracy": b.accuracy,
    }


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model", default="vgg_small", choices=("vgg_small", "small_cnn"))
    ap.add_argument("--max-drop", type=float, default=1.0,
                    help="validation top-1 points the headline compares at (1.0)")
    ap.add_argument("--curve-drop", type=float, default=1.0,
                    help="accuracy limit of the runs, in points: how far down the Pareto curve goes (1.0, the "
                         "study's: every arm's budget is spent within the accuracy it is compared at)")
    ap.add_argument("--methods", default="magnitude,energy,structured,l1-filter,structured-norestore",
                    help=f"comma-separated, of: {', '.join(VARIANTS)}")
    ap.add_argument("--budget", type=int, default=400, help="fine-tuning optimizer steps per run (400)")
    ap.add_argument("--batch", type=int, default=4, help="images per inference the energy is scored at (4, the chip's)")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--quick", action="store_true", help="few steps: checks that everything runs")
    ap.add_argument("--plot", help="write the Pareto curves as a PNG")
    ap.add_argument("--val", type=int, default=2000, help="validation images (2000)")
    ap.add_argument("--seed", type=int, default=0,
                    help="seed of the fine-tuning data order and of the restoration's sampling (0); repeat the "
                         "study over seeds and --merge the JSON files for the spread")
    ap.add_argument("--json", help="write the numbers as JSON")
    ap.add_argument("--merge", nargs="+", metavar="JSON",
                    help="no pruning: report the runs saved by earlier --json runs together")
    args = ap.parse_args(argv)
    if args.merge:
        import json

        loaded = [json.loads(Path(path).read_text(encoding="utf-8")) for path in args.merge]
        by_seed: dict[int, dict[str, Any]] = {}
        for d in loaded:  # files of one seed are one study; several seeds give the spread
            seed = int(d.get("seed", 0))
            if seed in by_seed:
                by_seed[seed]["runs"].update(d["runs"])
            else:
                by_seed[seed] = {**d, "runs": dict(d["runs"])}
        plot = args.plot
        for seed, out in sorted(by_seed.items()):
            if len(by_seed) > 1:
                print(f"\n=== seed {seed} (fine-tuning data order) ===")
                if plot:
                    args.plot = str(Path(plot).with_name(f"{Path(plot).stem}-seed{seed}{Path(plot).suffix}"))
            report(out, args)
        if len(by_seed) > 1:
            summary = seed_summary(by_seed)
            if args.json:
                from hwaware._io import write_json

                write_json(args.json, {"seeds": sorted(by_seed), "summary": summary,
                                       "studies": {str(k): v for k, v in sorted(by_seed.items())}})
        return 0
    torch.set_num_threads(args.threads)
    labels = [m.strip() for m in args.methods.split(",") if m.strip()]
    for m in labels:
        if m not in VARIANTS:
            ap.error(f"unknown method '{m}'; allowed: {', '.join(VARIANTS)}")

    model = trained_shapes_model(args.model, progress=True)
    # 2000 validation / test images: one point of accuracy is 20 images
    data = f"builtin:shapes?n_val={args.val}&n_test=2000"
    val = make_loader(data, "val", batch_size=500)
    test = make_loader(data, "test", batch_size=500)
    calib = next(iter(make_loader(data, "train", batch_size=64, seed=1)))[0]

    common: dict[str, Any] = dict(target_energy=0.05, max_drop=args.curve_drop, step=0.3, min_step=0.04,
                                  local_steps=10, global_steps=40, finetune_every=4, final_steps=100,
                                  max_steps=40, lr=0.003, batch=args.batch, finetune_budget=args.budget,
                                  seed=args.seed)
    if args.quick:
        common.update(local_steps=2, global_steps=2, final_steps=4, max_steps=3, finetune_budget=0)
    # a fresh training loader per arm: every arm sees the same data order (that of --seed), whether
    # the arms run in one process or each in its own
    runs = {label: run_variant(label, model, common, val=val, test=test, calib=calib,
                               train=make_loader(data, "train", batch_size=64, seed=args.seed))
            for label in labels}

    first = runs[labels[0]]
    out: dict[str, Any] = {"model": args.model, "seed": args.seed, "batch": args.batch,
                           "budget": common["finetune_budget"],
                           "curve_drop": args.curve_drop, "val": args.val, "baseline_val": first["baseline_accuracy"],
                           "baseline_test": evaluate(model, test), "runs": runs}
    report(out, args)
    if args.json:
        from hwaware._io import write_json

        write_json(args.json, out)
    return 0


def seed_summary(by_seed: dict[int, dict[str, Any]]) -> dict[str, dict[str, list[float]]]:
    """Print, per arm, the mean, sample standard deviation and range over seeds of its energy within
    the accuracy limit and of its ratios of energy reductions against each baseline (each seed's arm
    against the same seed's baseline; :func:`report` must have run on every seed). Returns the
    per-seed values: ``{arm: {"seeds": [...], "energy_ratio": [...], "gain_vs_<baseline>": [...]}}``."""
    import statistics

    arms = list(dict.fromkeys(a for out in by_seed.values() for a in out["runs"]))
    keys = ["energy_ratio", "latency_ratio"] + [f"gain_vs_{bl.replace('-', '_')}" for bl in BASELINES]
    values: dict[str, dict[str, list[float]]] = {}
    for arm in arms:
        v: dict[str, list[float]] = {"seeds": []}
        for seed, out in sorted(by_seed.items()):
            r = out["runs"].get(arm)
            if r is None:
                continue
            v["seeds"].append(seed)
            for k in keys:
                x = r["at_max_drop"][k] if k in ("energy_ratio", "latency_ratio") else r.get(k)
                if x is not None:
                    v.setdefault(k, []).append(float(x))
        values[arm] = v

    def cell(xs: list[float] | None, d: int) -> str:
        if not xs:
            return "-"
        if len(xs) == 1:
            return f"{xs[0]:.{d}f} (one seed)"
        return f"{statistics.mean(xs):.{d}f} +- {statistics.stdev(xs):.{d}f} [{min(xs):.{d}f}, {max(xs):.{d}f}]"

    heads = ["method", "seeds", "E/E0", "lat/L0"] + [f"x vs {bl}" for bl in BASELINES]
    rows = [[arm, ",".join(map(str, v["seeds"])), *(cell(v.get(k), 3 if k in keys[:2] else 2) for k in keys)] for arm, v in values.items()]
    print(f"\nover seeds {sorted(by_seed)} (data order): mean +- sample SD [min, max] of each arm's lowest energy "
          "within the accuracy limit and of its ratio of energy reductions vs each baseline of the same seed")
    print(format_table(heads, rows))
    return values


def report(out: dict[str, Any], args: argparse.Namespace) -> None:
    """Print the tables and the gains (and plot) of the runs in ``out``; adds each run's ``at_max_drop``
    and, against each baseline present, ``gain_vs_<baseline>`` (ratio of energy reductions, the
    paper's measure) and ``saved_vs_<baseline>`` (ratio of the energy fractions saved)."""
    runs = out["runs"]
    labels = list(runs)
    b = runs[labels[0]]["baseline"]
    base_acc, base_test = out["baseline_val"], out["baseline_test"]
    by_type = b["energy_by_type"]
    total = sum(by_type.values())
    drop = args.max_drop
    print(f"{out['model']} on builtin:shapes ({out['val']} val / 2000 test images); Eyeriss v1 at batch {out['batch']}: "
          f"energy {format_si(b['energy'])} (x one 16-bit MAC), latency {b['latency_ms']:.3f} ms; by data type "
          + ", ".join(f"{k} {100 * v / total:.0f}%" for k, v in by_type.items())
          + f"; validation top-1 {100 * base_acc:.2f}%, test {100 * base_test:.2f}%")
    print(f"each run: accuracy limit {out['curve_drop']} points, fine-tuning budget {out['budget']} steps "
          "(0: none)")
    out["max_drop"] = drop
    for r in runs.values():
        r["at_max_drop"] = best_at(r["points"], base_acc, drop)
    print(f"\nfinal models (the loop's limit {out['curve_drop']} points):")
    rows: list[list[str] | None] = []
    for label, r in runs.items():
        f = r["final"]
        rows.append([label, f"{f['energy_ratio']:.3f}", f"{f['latency_ratio']:.3f}",
                     format_si(f["nonzero_weights"]), format_si(f["nonzero_macs"]),
                     f"{100 * f['val_accuracy']:.2f}", f"{100 * r['test_accuracy']:.2f}",
                     f"{100 * (base_test - r['test_accuracy']):+.2f}",
                     str(r["proposals"]), str(r["finetune_steps"]), f"{r['seconds']:.0f}"])
    print(format_table(["method", "E/E0", "lat/L0", "nz weights", "nz MACs", "val %", "test %", "test drop",
                        "proposals", "FT steps", "s"], rows))
    present = [bl for bl in BASELINES if bl in runs]
    print(f"\nat <= {drop} point of validation top-1 (each method's lowest-energy accepted state within it; "
          "x = energy reduction / the baseline's, the paper's measure; saved = (1 - E) / the baseline's):")
    rows = []
    for label, r in runs.items():
        at = r["at_max_drop"]
        row = [label, f"{at['energy_ratio']:.3f}", f"{at['latency_ratio']:.3f}",
               f"{100 * (base_acc - at['val_accuracy']):+.2f}",
               "" if at.get("test_accuracy") is None else f"{100 * (base_test - at['test_accuracy']):+.2f}",
               f"{1 / at['energy_ratio']:.2f}x"]
        for bl in present:
            e_bl = runs[bl]["at_max_drop"]["energy_ratio"]
            gain = e_bl / at["energy_ratio"]
            saved = (1 - at["energy_ratio"]) / (1 - e_bl) if e_bl < 1 else float("inf")
            key = bl.replace("-", "_")
            r[f"gain_vs_{key}"] = gain
            r[f"saved_vs_{key}"] = saved
            if bl == "magnitude" and label != bl:
                out.setdefault("gain_vs_magnitude", {})[label] = gain  # the key earlier runs wrote
            row += [f"{gain:.2f}x", f"{saved:.2f}x" if saved != float("inf") else "inf"]
        rows.append(row)
    heads = ["method", "E/E0", "lat/L0", "val drop", "test drop", "reduction"]
    for bl in present:
        heads += [f"x vs {bl}", f"saved vs {bl}"]
    print(format_table(heads, rows))
    for bl in present:
        print(f"  baseline {bl}: {BASELINES[bl]}")
    print(f"  target {TARGET_GAIN}x more energy saved than magnitude at equal accuracy (issue 17); "
          f"paper (CVPR 2017, AlexNet, vs Han et al.) {PAPER_GAIN}x = 3.7x / 2.1x reduction")
    weight_level = [m for m, r in runs.items() if VARIANTS[m]["method"] in ("energy", "magnitude")]
    if weight_level:
        names = list(runs[weight_level[0]]["layer_sparsity"])
        print("\nper-layer weight sparsity of the final models (weight-level methods):")
        print(format_table(["method", *names],
                           [[m, *(f"{100 * runs[m]['layer_sparsity'].get(n, 0.0):.0f}%" for n in names)]
                            for m in weight_level]))
    if args.plot:
        from hwaware.plots import Point, pareto_figure, save_png

        def pt(p: dict[str, Any], label: str = "") -> Point:
            return Point(energy=p["energy_ratio"], latency_ms=p["latency_ratio"], accuracy=p["val_accuracy"],
                         label=label)

        families = {label: [pt(p) for p in r["points"] if p.get("accepted", True)] for label, r in runs.items()}
        rejected = {label: [pt(p) for p in r["points"] if not p.get("accepted", True)] for label, r in runs.items()}
        anchors = {label: pt(r["at_max_drop"], f"E {r['at_max_drop']['energy_ratio']:.3f}, "
                                              f"latency {r['at_max_drop']['latency_ratio']:.3f}")
                   for label, r in runs.items()}
        marks = []
        if "magnitude" in runs:
            e_mag = runs["magnitude"]["at_max_drop"]["energy_ratio"]
            marks = [(e_mag / TARGET_GAIN, f"target: magnitude / {TARGET_GAIN}"),
                     (e_mag / PAPER_GAIN, f"CVPR 2017: magnitude / {PAPER_GAIN}")]
        fig = pareto_figure(families, title=f"{out['model']} on builtin:shapes, Eyeriss v1 at batch {out['batch']}: "
                            f"pruning at {out['budget']} fine-tuning steps each (validation top-1; "
                            f"stars: lowest energy within {drop} point)",
                            energy_unit="energy / unpruned", latency_unit="latency / unpruned",
                            anchors=anchors, accuracy_floor=base_acc - drop / 100, energy_marks=marks,
                            rejected=rejected, start=pt(b, "unpruned"))
        save_png(fig, args.plot)
        print(f"Pareto fronts: {args.plot}")


if __name__ == "__main__":
    sys.exit(main())
