"""Eyeriss v2 vs v1 (JETCAS 2019; 2020 slides): MobileNet dense and sparse at batch 1, and the
speed-up over v1 by PE count, with the published figures beside the model's.

    python bench/eyeriss_v2.py [--quick]

Published (JETCAS 2019 abstract): sparse MobileNet at batch 1, 1470.6 inferences/s and 2560.3
inferences/J, 12.6x faster and 2.5x more energy-efficient than Eyeriss v1. Slides (Sze 2020):
speed-up over v1 at 256 / 1024 / 16384 PEs: AlexNet 17.9 / 71.5 / 1086.7, GoogLeNet 10.4 / 37.8 /
448.8, MobileNet 15.7 / 57.9 / 873.0.

How the model is run (every difference is listed in docs/dataflows.md): v1 is the eyeriss_v1 preset
(16-bit, RLC, zero gating without skipping); v2 the eyeriss_v2 preset (8-bit, CSC, zero skipping).
Throughput is over the processing latency (data on chip, as the paper's chip-level numbers) and
energy efficiency over on-chip energy (DRAM excluded). "Sparse" MobileNet: the paper's pruned model
is not available, so its sparsity is an assumption: 50% zero weights in every layer and 50% zero
activations after each ReLU (the first layer's input dense). For the PE-count table, v1 is scaled to
a square array of the same PE count and v2 to 12-PE clusters, both keeping their spads, the GLB
scaled with the PEs; the published table's own scaling rules are not in our material.
"""

from __future__ import annotations

import argparse
import dataclasses
import math
import time

import torch

from hwaware.eyeriss import Scorer, resolve_hardware
from hwaware.profiler import profile
from hwaware.report_table import format_table
from hwaware.workload import Workload

PUBLISHED_SPEEDUP = {"alexnet": (17.9, 71.5, 1086.7), "googlenet": (10.4, 37.8, 448.8),
                     "mobilenet": (15.7, 57.9, 873.0)}
PE_COUNTS = (256, 1024, 16384)


def workloads() -> dict[str, Workload]:
    import sys
    from pathlib import Path

    import torchvision

    sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "models"))
    from alexnet import AlexNet
    from mobilenet_v1 import mobilenet_v1

    gen = torch.Generator().manual_seed(0)
    nets = {
        "alexnet": (AlexNet(), (1, 3, 227, 227)),
        "googlenet": (torchvision.models.googlenet(weights=None, aux_logits=False, init_weights=False),
                      (1, 3, 224, 224)),
        "mobilenet": (mobilenet_v1(), (1, 3, 224, 224)),
    }
    out = {}
    for name, (model, size) in nets.items():
        out[name] = profile(model.eval(), torch.randn(size, generator=gen))
    return out


def sparse(wl: Workload, z_act: float = 0.5, z_w: float = 0.5) -> Workload:
    return Workload(tuple(L.replace(ifmap_zeros=z_act if i else 0.0, weight_zeros=z_w)
                          for i, L in enumerate(wl.layers)))


def dense(wl: Workload) -> Workload:
    return Workload(tuple(L.replace(ifmap_zeros=0.0, weight_zeros=0.0, ofmap_zeros=0.0) for L in wl.layers))


def chip_numbers(hw, wl: Workload) -> tuple[float, float]:
    rep = Scorer(hw).score(wl)
    fps = rep.batch / (rep.total.processing_latency_ms / 1e3)
    inf_per_J = rep.batch / (rep.total.energy_onchip * rep.hardware.unit_pJ * 1e-12)
    return fps, inf_per_J


def scaled(name: str, pes: int):
    hw = resolve_hardware(name)
    if name == "eyeriss_v1":
        side = math.isqrt(pes)
        return dataclasses.replace(hw, name=f"v1@{pes}", pe_rows=side, pe_cols=pes // side, max_R=min(hw.max_R, side),
                                   glb_kB=hw.glb_kB * pes / hw.num_pes, glb_banks=max(1, round(hw.glb_banks * pes / hw.num_pes)))
    clusters = pes // 12 if pes % 12 == 0 else round(pes / 12)
    return dataclasses.replace(hw, name=f"v2@{pes}", pe_rows=clusters, glb_kB=hw.glb_kB * pes / hw.num_pes,
                               glb_banks=max(1, round(hw.glb_banks * pes / hw.num_pes)))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--quick", action="store_true", help="MobileNet comparison only (skip the PE-count table)")
    args = ap.parse_args()
    t0 = time.perf_counter()
    wls = workloads()
    mb = wls["mobilenet"]
    rows = []
    for label, wl in (("dense", dense(mb)), ("sparse (50%/50%, assumed)", sparse(mb))):
        f1, e1 = chip_numbers("eyeriss_v1", wl)
        f2, e2 = chip_numbers("eyeriss_v2", wl)
        pub = ("1470.6", "2560.3", "12.6x", "2.5x") if label.startswith("sparse") else ("-", "-", "-", "-")
        rows.append([label, f"{f1:.1f}", f"{f2:.1f} ({pub[0]})", f"{e1:.0f}", f"{e2:.0f} ({pub[1]})",
                     f"{f2 / f1:.1f}x ({pub[2]})", f"{e2 / e1:.2f}x ({pub[3]})"])
    print("MobileNet v1 (224x224, width 1.0) at batch 1; model (published)")
    print(format_table(["MobileNet", "v1 inf/s", "v2 inf/s", "v1 inf/J", "v2 inf/J", "v2/v1 speed",
                        "v2/v1 energy eff."], rows))
    if not args.quick:
        rows = []
        for name, wl in wls.items():
            wl = dense(wl)
            cells = [name]
            for pes, pub in zip(PE_COUNTS, PUBLISHED_SPEEDUP[name]):
                f1, _ = chip_numbers(scaled("eyeriss_v1", pes), wl)
                f2, _ = chip_numbers(scaled("eyeriss_v2", pes), wl)
                cells.append(f"{f2 / f1:.1f}x ({pub}x)")
            rows.append(cells)
        print("\nspeed-up of v2 over v1 by PE count, dense, batch 1; model (published, slides 2020)")
        print(format_table(["network", *(f"{p} PEs" for p in PE_COUNTS)], rows))
    print(f"\n({time.perf_counter() - t0:.0f}s)")


if __name__ == "__main__":
    main()
