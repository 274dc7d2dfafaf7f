"""Dataflow comparison at equal area (survey Sec. V-B.5, Fig. 33/34; ISCA 2016): RS vs WS, OS_A/B/C, NLR
on AlexNet CONV and FC layers at batch 16, 256 PEs, with the published ratios beside the model's.

    python bench/dataflows.py [--out bench_out/dataflows]

Writes dataflows_conv.png / dataflows_fc.png (energy per MAC by storage level and by data type, like
Fig. 33) and prints the tables that docs/dataflows.md and the closing note quote.
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

from hwaware.eyeriss.dataflows.compare import alexnet_isca, compare, ratios
from hwaware.eyeriss.dataflows.figure import plot_comparison
from hwaware.report_table import format_table

# survey Sec. V-B.5: "RS dataflow uses 1.4x to 2.5x lower energy than other dataflows" (CONV);
# "RS still consumes 1.3x lower energy compared to other dataflows" (FC)
PUBLISHED = {"conv": "1.4x - 2.5x", "fc": "1.3x below the others, i.e. the closest"}


def table(reps: dict, part: str) -> str:
    r = ratios(reps)
    rows = []
    for df, rep in reps.items():
        t = rep.total
        q = t.macs
        rows.append([
            df, f"{rep.hardware.glb_kB:g}", f"{t.energy_total / q:.2f}",
            *(f"{t.energy[k] / q:.2f}" for k in ("DRAM", "GLB", "array", "RF", "MAC")),
            *(f"{t.energy_by_type[k] / q:.2f}" for k in ("ifmap", "filter", "psum")),
            f"{r[df]:.2f}x",
        ])
    others = [v for k, v in r.items() if k != "rs"]
    head = (f"AlexNet {part.upper()} layers, batch 16, 256 PEs, equal storage area; energy per MAC "
            "(normalized to one 16-bit MAC)")
    tab = format_table(["dataflow", "GLB kB", "total", "DRAM", "GLB", "array", "RF", "ALU", "ifmap", "weight",
                        "psum", "vs RS"], rows)
    best = {ty: min(reps, key=lambda d, ty=ty: reps[d].total.energy_by_type[ty]) for ty in ("ifmap", "filter", "psum")}
    dram = min(reps, key=lambda d: reps[d].total.energy["DRAM"])
    near = min((k for k in r if k != "rs"), key=r.get)
    far = max((k for k in r if k != "rs"), key=r.get)
    extra = ""
    if part == "fc":  # survey Sec. V-B.5: "OS_C now consumes lower energy than OS_A since it is designed for FC"
        extra = (f"\nOS_C below OS_A on FC (survey): {'yes' if r['os_c'] < r['os_a'] else 'NO'} "
                 f"({r['os_c']:.2f}x vs {r['os_a']:.2f}x)")
    return (f"{head}\n{tab}\nRS is {min(others):.2f}x - {max(others):.2f}x more energy-efficient than the others "
            f"(closest {near}, farthest {far}; published: {PUBLISHED[part]}){extra}\n"
            f"lowest weight energy: {best['filter']}, lowest psum energy: "
            f"{best['psum']}, lowest ifmap energy: {best['ifmap']}, lowest DRAM energy: {dram}")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--out", default="bench_out/dataflows", help="folder for the PNGs")
    args = ap.parse_args()
    out = Path(args.out)
    for part in ("conv", "fc"):
        t0 = time.perf_counter()
        reps = compare(alexnet_isca(part))
        dt = time.perf_counter() - t0
        print(table(reps, part))
        png = plot_comparison(reps, out / f"dataflows_{part}.png",
                              title=f"AlexNet {part.upper()} layers, batch 16, 256 PEs, equal area (hwaware model)")
        print("mappings per dataflow:")
        for df, rep in reps.items():
            print(f"  {df:5s} " + "; ".join(f"{ls.name} {ls.mapping}" for ls in rep.layers))
        print(f"wrote {png} (scoring took {dt:.1f}s)\n")


if __name__ == "__main__":
    main()
