"""Eyeriss v2 vs v1 (JETCAS 2019; 2020 slides): MobileNet dense and sparse at batch 1, and the
speed-up over v1 by PE count, with the published figures beside the model's.

    python bench/eyeriss_v2.py [--quick]

Published (JETCAS 2019 abstract): sparse MobileNet at batch 1, 1470.6 inferences/s and 2560.3
inferences/J, 12.6x faster and 2.5x more energy-efficient than Eyeriss v1. Slides (Sze 2020):
speed-up over v1 at 256 / 1024 / 16384 PEs: AlexNet 17.9 / 71.5 / 1086.7, GoogLeNet 10.4 / 37.8 /
448.8, MobileNet 15.7 / 57.9 / 873.0.

Which MobileNet the paper ran is not in our material. Its absolute numbers bound it: v1 at 1470.6 /
12.6 = 116.7 inferences/s can run at most 168 PEs x 200 MHz / 116.7 = 288M MACs per inference, so it is
not MobileNet 1.0-224 (569M MACs). The bench runs 1.0-224 (the standard model) and 0.5-128 (49M MACs,
one variant inside the bound) and splits the speed-up gap into a v1 part and a v2 part against the
per-chip numbers the published figures imply (v1: 116.7 inferences/s, 2560.3 / 2.5 = 1024 inferences/J).

How the model is run (every difference is listed in docs/dataflows.md): v1 is the eyeriss_v1 preset
(16-bit, RLC, zero gating without skipping); v2 the eyeriss_v2 preset (8-bit, CSC, zero skipping).
Both chips run with the data on chip (``on_chip``: unbounded DRAM link, as the paper's chip-level
numbers): throughput over the processing latency, energy efficiency over on-chip energy (DRAM
excluded). "Sparse" MobileNet: the paper's pruned model
is not available, so its sparsity is an assumption: 50% zero weights in every layer and 50% zero
activations after each ReLU (the first layer's input dense). For the PE-count table both chips are
grown by ``grown`` (v1 to a square array of the same PE count, v2 by 12-PE clusters, both keeping
their spads, the GLB scaled with the PEs); the published table's own scaling rules are not in our
material, so the bench also prints the growth of the speed-up from 256 PEs beside the published one.
"""

from __future__ import annotations

import argparse
import time

import torch

from hwaware.eyeriss import Scorer, resolve_hardware
from hwaware.eyeriss.dataflows.eyeriss_v2 import grown, on_chip
from hwaware.profiler import profile
from hwaware.report_table import format_table
from hwaware.workload import Workload

# JETCAS 2019 abstract: sparse MobileNet, batch 1
PUB_V2_FPS, PUB_V2_INF_J, PUB_SPEEDUP, PUB_EFF = 1470.6, 2560.3, 12.6, 2.5
PUB_V1_FPS, PUB_V1_INF_J = PUB_V2_FPS / PUB_SPEEDUP, PUB_V2_INF_J / PUB_EFF
MOBILENETS = ((1.0, 224), (0.5, 128))  # (width, resolution): the standard one and one inside the bound
PUBLISHED_SPEEDUP = {"alexnet": (17.9, 71.5, 1086.7), "googlenet": (10.4, 37.8, 448.8),
                     "mobilenet": (15.7, 57.9, 873.0)}
PE_COUNTS = (256, 1024, 16384)


def mobilenet(width: float = 1.0, size: int = 224) -> Workload:
    import sys
    from pathlib import Path

    sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "models"))
    from mobilenet_v1 import mobilenet_v1

    x = torch.randn((1, 3, size, size), generator=torch.Generator().manual_seed(0))
    return profile(mobilenet_v1(width_mult=width, input_size=size).eval(), x)


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
    rep = Scorer(on_chip(resolve_hardware(hw) if isinstance(hw, str) else hw)).score(wl)
    fps = rep.batch / (rep.total.processing_latency_ms / 1e3)
    inf_per_J = rep.batch / (rep.total.energy_onchip * rep.hardware.unit_pJ * 1e-12)
    return fps, inf_per_J


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--quick", action="store_true", help="MobileNet comparison only (skip the PE-count table)")
    args = ap.parse_args()
    t0 = time.perf_counter()
    v1_peak = resolve_hardware("eyeriss_v1")
    bound = v1_peak.num_pes * v1_peak.core_MHz * 1e6 / PUB_V1_FPS
    print(f"published (JETCAS 2019, sparse MobileNet, batch 1): v2 {PUB_V2_FPS} inf/s, {PUB_V2_INF_J} inf/J, "
          f"{PUB_SPEEDUP}x faster and {PUB_EFF}x more efficient than v1 -> v1 {PUB_V1_FPS:.1f} inf/s, "
          f"{PUB_V1_INF_J:.0f} inf/J; v1 at 100% of its 168 PEs x 200 MHz does at most {bound / 1e6:.0f}M MACs "
          "in that time, so the paper's MobileNet has at most that many (1.0-224 has 569M)")
    rows, split = [], []
    for width, size in MOBILENETS:
        mb = mobilenet(width, size)
        tag = f"{width:.1f}-{size} ({mb.macs / 1e6:.0f}M MACs)"
        for label, wl in (("dense", dense(mb)), ("sparse 50%/50% (assumed)", sparse(mb))):
            f1, e1 = chip_numbers("eyeriss_v1", wl)
            f2, e2 = chip_numbers("eyeriss_v2", wl)
            pub = label.startswith("sparse")
            p = (lambda v: f" ({v})") if pub else (lambda v: "")
            rows.append([f"{tag} {label}", f"{f1:.1f}{p(f'{PUB_V1_FPS:.1f}')}", f"{f2:.1f}{p(PUB_V2_FPS)}",
                         f"{e1:.0f}{p(f'{PUB_V1_INF_J:.0f}')}", f"{e2:.0f}{p(PUB_V2_INF_J)}",
                         f"{f2 / f1:.1f}x{p(f'{PUB_SPEEDUP}x')}", f"{e2 / e1:.2f}x{p(f'{PUB_EFF}x')}"])
            if pub:
                split.append([tag, f"{f1 / PUB_V1_FPS:.2f}", f"{f2 / PUB_V2_FPS:.2f}", f"{e1 / PUB_V1_INF_J:.2f}",
                              f"{e2 / PUB_V2_INF_J:.2f}"])
    print("\nMobileNet v1 at batch 1; model (published, or implied by the published ratios for v1)")
    print(format_table(["MobileNet", "v1 inf/s", "v2 inf/s", "v1 inf/J", "v2 inf/J", "v2/v1 speed",
                        "v2/v1 energy eff."], rows))
    print("\nsparse rows, model / published per chip (speed-up gap = v2 column / v1 column):")
    print(format_table(["MobileNet", "v1 inf/s", "v2 inf/s", "v1 inf/J", "v2 inf/J"], split))
    if not args.quick:
        rows = []
        for name, wl in workloads().items():
            wl = dense(wl)
            ups = []
            for pes in PE_COUNTS:
                f1, _ = chip_numbers(grown(resolve_hardware("eyeriss_v1"), pes), wl)
                f2, _ = chip_numbers(grown(resolve_hardware("eyeriss_v2"), pes), wl)
                ups.append(f2 / f1)
            pub = PUBLISHED_SPEEDUP[name]
            rows.append([name, *(f"{u:.1f}x ({p}x)" for u, p in zip(ups, pub)),
                         *(f"{u / ups[0]:.2f} ({p / pub[0]:.2f})" for u, p in zip(ups[1:], pub[1:]))])
        print("\nspeed-up of v2 over v1 by PE count, dense, batch 1, data on chip; model (published, slides 2020)")
        print(format_table(["network", *(f"{p} PEs" for p in PE_COUNTS),
                            *(f"{p}/{PE_COUNTS[0]} scaling" for p in PE_COUNTS[1:])], rows))
    print(f"\n({time.perf_counter() - t0:.0f}s)")


if __name__ == "__main__":
    main()
