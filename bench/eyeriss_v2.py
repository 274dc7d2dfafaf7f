"""Eyeriss v2 vs v1 (JETCAS 2019; 2020 slides): MobileNet dense and sparse at batch 1, and the
speed-up over v1 by PE count, with the published figures beside the model's.

    python bench/eyeriss_v2.py [--quick]

Published (JETCAS 2019 abstract): sparse MobileNet at batch 1, 1470.6 inferences/s and 2560.3
inferences/J, 12.6x faster and 2.5x more energy-efficient than Eyeriss v1. Slides (Sze 2020):
speed-up over v1 at 256 / 1024 / 16384 PEs: AlexNet 17.9 / 71.5 / 1086.7, GoogLeNet 10.4 / 37.8 /
448.8, MobileNet 15.7 / 57.9 / 873.0.

Which MobileNet and sparsity: the v2 authors' group published one v2 PE's cycles on each layer of
a "mobilenet0.5-sparse" (Sparseloop, MICRO 2022, artifact fig12; hwaware/eyeriss/dataflows/
v2_reference.py): MobileNet v1 at width 0.5 and 128 x 128 input (49M MACs), with bit masks of the
non-zero activations and weights of nine of its layers. The published numbers agree: v1 at 1470.6 /
12.6 = 116.7 inferences/s can run at most 168 PEs x 200 MHz / 116.7 = 288M MACs per inference (1.0-224
has 569M). The sparse row uses that sparsity (measured on nine layers, the mean of the measured
layers of the same kind on the others, the first layer dense); 1.0-224 and dense 0.5-128 are context.

How the model is run (every difference is listed in docs/dataflows.md), following the paper's own
setup (JETCAS 2019 text): the published ratios compare v2 on the *sparse* MobileNet with "Eyeriss v1",
the original design "with the storage capacity, number of PEs and data precision scaled to the same
level as" v2 (Sec. V-A; ``scaled_v1``), on the *dense* MobileNet (49.2M MACs), batch 1. v2 is the
eyeriss_v2 preset (8-bit, CSC, zero skipping, two-MAC SIMD, PE cycles per Sec. IV and V-A and the
per-PE reference). Rows with "v1 as fabricated" use the eyeriss_v1 preset (168 PEs, 16-bit) for
context. Both chips run with the data on chip (``on_chip``: unbounded DRAM link): throughput over the
processing latency, energy efficiency over on-chip energy (DRAM excluded). The bench splits the
speed-up gap into a v1 part and a v2 part against the per-chip numbers the published figures imply
(v1: 116.7 inferences/s, 2560.3 / 2.5 = 1024 inferences/J) and compares the v2 PE model with the
reference cycles. The PE-count table follows the paper's Sec. III-D (``grown``): v2 in 4 x 4-PE
clusters at 1 MAC per PE per cycle, v1 in square arrays, dense, batch 1, no off-chip limit; it
prints the growth of the speed-up from 256 PEs beside the published one. The paper's other ratios
(Sec. I-C: 225.1x / 42.0x over v1 on AlexNet, the 1.2x / 1.3x sparsity gain) are printed against the
model too: they fix the scaled v1 on AlexNet and split v2's speed into the dense model and the
sparsity gain, and show that the PE-count table's v1 is not the scaled v1 of Sec. V.
"""

from __future__ import annotations

import argparse
import dataclasses
import time

import numpy as np
import torch

from hwaware.eyeriss import Scorer, resolve_hardware
from hwaware.eyeriss.dataflows import v2_reference as ref
from hwaware.eyeriss.dataflows.eyeriss_v2 import (
    at_8_bits,
    grown,
    on_chip,
    pe_cycles,
    scaled_v1,
    simd_lanes,
    sparse_imbalance,
)
from hwaware.eyeriss.dataflows.imbalance import imbalance
from hwaware.profiler import profile
from hwaware.report_table import format_table
from hwaware.workload import Workload

# JETCAS 2019 abstract: sparse MobileNet, batch 1
PUB_V2_FPS, PUB_V2_INF_J, PUB_SPEEDUP, PUB_EFF = 1470.6, 2560.3, 12.6, 2.5
PUB_V1_FPS, PUB_V1_INF_J = PUB_V2_FPS / PUB_SPEEDUP, PUB_V2_INF_J / PUB_EFF
PUBLISHED_SPEEDUP = {"alexnet": (17.9, 71.5, 1086.7), "googlenet": (10.4, 37.8, 448.8),
                     "mobilenet": (15.7, 57.9, 873.0)}
PE_COUNTS = (256, 1024, 16384)
# JETCAS 2019 Sec. I-C (and V-A/V-C): v2 on sparse MobileNet is 225.1x faster and 42.0x more efficient
# than v1 on (dense) AlexNet, 724.4M MACs; the hierarchical mesh alone (v1.5 over v1) gives MobileNet 5.6x
# throughput and 1.8x efficiency, and "exploiting sparsity results in an additional 1.2x and 1.3x"
PUB_V2MB_OVER_V1ALEX = (225.1, 42.0)
PUB_ALEXNET_MACS = 724.4e6
PUB_SPARSITY_GAIN = (1.2, 1.3)


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


def alexnet() -> Workload:
    import sys
    from pathlib import Path

    sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "models"))
    from alexnet import AlexNet

    x = torch.randn((1, 3, 227, 227), generator=torch.Generator().manual_seed(0))
    return profile(AlexNet().eval(), x)


def dense(wl: Workload) -> Workload:
    """``wl`` with no zeros anywhere; the measured RLC sizes go too (they come from the randomly
    initialized model: left in, they made the v1 mapping, and the numbers, change from run to run)."""
    return Workload(tuple(L.replace(ifmap_zeros=0.0, weight_zeros=0.0, ofmap_zeros=0.0, ifmap_rlc=0.0) for L in wl.layers))


def chip_report(hw, wl: Workload):
    return Scorer(on_chip(resolve_hardware(hw) if isinstance(hw, str) else hw)).score(wl)


def chip_numbers(hw, wl: Workload) -> tuple[float, float]:
    rep = chip_report(hw, wl)
    fps = rep.batch / (rep.total.processing_latency_ms / 1e3)
    # on-chip access energy plus the time-proportional (clock) energy of hwaware.eyeriss.clock
    inf_per_J = rep.batch / (rep.total.energy_onchip * rep.hardware.unit_pJ * 1e-12 + rep.total.clock_J)
    return fps, inf_per_J


def load_masks(folder: str, n: int, layer) -> tuple[np.ndarray, np.ndarray] | None:
    """The artifact's masks of layer ``n`` as (C, E, F) and (M, C) booleans, or None when absent.
    Each file is one '0'/'1' per element in Timeloop's data-space order reversed: iacts [W][H][C],
    weights [M][C] (C fastest). Checked on the data: grouped that way, channels' iact densities
    spread 0.26-0.40 (std), as ReLU outputs of different channels do; grouped C-outermost, 0.02-0.14."""
    from pathlib import Path

    f_i, f_w = Path(folder) / f"L{n:02d}_iacts.txt", Path(folder) / f"L{n:02d}_weights.txt"
    if not (f_i.is_file() and f_w.is_file()):
        return None
    bits = [np.frombuffer(f.read_bytes().strip(), dtype=np.uint8) == ord("1") for f in (f_i, f_w)]
    C, E, F, M = layer.C, layer.E, layer.F, layer.M
    if bits[0].size != C * E * F or bits[1].size != M * C:
        raise SystemExit(f"{f_i}: {bits[0].size} iacts / {bits[1].size} weights, layer {layer.name} needs "
                         f"{C * E * F} / {M * C}")
    return bits[0].reshape(F, E, C).transpose(2, 1, 0), bits[1].reshape(M, C)


def imbalance_table(wl: Workload, rep, masks: str | None, v1_numbers: tuple[float, float]) -> None:
    """v2's workload imbalance on the 1x1 layers (JETCAS 2019 Sec. I-B, V-B; hwaware/eyeriss/dataflows/
    imbalance.py) with the model's own mappings: the model's loss (independent zeros), the loss on the
    artifact's measured masks (--masks), and what the measured one does to the v2 throughput."""
    hw = rep.hardware
    rows = []
    cyc = {"even": 0.0, "model": 0.0, "measured": 0.0, "layer": 0.0}
    for n, (L, ls) in enumerate(zip(wl.layers, rep.layers), start=1):
        total = ls.processing_latency_ms * 1e-3 * hw.core_MHz * 1e6
        mp = ls.mapping.as_dict()
        f_model = sparse_imbalance(L, mp, simd_lanes(L, hw))
        if f_model == 1.0:
            for k in cyc:
                cyc[k] += total
            continue
        kw = {k: mp[k] for k in "pqrte"}
        lanes = simd_lanes(L, hw)
        even = pe_cycles(L, m0=mp["p"], lanes=lanes) / min(hw.num_pes, L.N * L.M * L.E * L.F * L.C * L.R)
        noc = total if total > even * f_model * (1 + 1e-9) else 0.0  # NoC-bound layers keep their time
        ones = imbalance(np.ones((L.C, L.E, L.F), bool), np.ones((L.M, L.C), bool), lanes=lanes, **kw)
        got = load_masks(masks, n, L) if masks else None
        real = imbalance(*got, lanes=lanes, **kw) if got is not None else None
        f_real = real.factor / ones.factor if real else f_model
        f_lay = real.factor_layer / ones.factor_layer if real else f_model
        cyc["even"] += max(noc, even)
        cyc["model"] += total
        cyc["measured"] += max(noc, even * f_real)
        cyc["layer"] += max(noc, even * max(1.0, f_lay))
        rows.append([f"L{n:02d} {L.name}", " ".join(f"{k}={v}" for k, v in kw.items()), f"{ones.factor:.2f}",
                     f"{f_model:.2f}", f"{f_real:.2f}" if real else "-", f"{f_lay:.2f}" if real else "-",
                     f"{max(noc, even) / hw.core_MHz:.1f}", f"{ls.processing_latency_ms * 1e3:.1f}",
                     f"{max(noc, even * f_real) / hw.core_MHz:.1f}"])
    print("\nv2 workload imbalance on the 1x1 layers: each pass lasts as long as its busiest PE (JETCAS Sec. I-B); "
          "loss = cycles on the masks / cycles on all-ones masks (the tiling's own loss, column 'tiling')")
    print(format_table(["layer", "RS mapping", "tiling", "model (indep. zeros)", "measured masks",
                        "measured, layer-end only", "even us", "model us", "measured us"], rows))
    fps = {k: hw.core_MHz * 1e6 / v for k, v in cyc.items()}
    print(f"v2 inf/s: evenly spread {fps['even']:.0f}; model (independent zeros) {fps['model']:.0f}; with the "
          + (f"measured masks where the artifact has them {fps['measured']:.0f}; measured, PEs waiting only at "
             f"the layer's end on those layers {fps['layer']:.0f}" if masks else "measured masks: give --masks")
          + f" (published {PUB_V2_FPS})")
    if masks:
        # the clock energy grows with the latency (hwaware.eyeriss.clock); access energy is unchanged
        t = rep.total
        inf_J = 1.0 / (t.energy_onchip * hw.unit_pJ * 1e-12 + t.clock_J * cyc["measured"] / cyc["model"])
        f1, e1 = v1_numbers
        print(f"with the measured imbalance: v2 {inf_J:.0f} inf/J (published {PUB_V2_INF_J}); v2/v1 speed-up "
              f"{fps['measured'] / f1:.1f}x (published {PUB_SPEEDUP}x), energy efficiency {inf_J / e1:.2f}x "
              f"(published {PUB_EFF}x)")


def text_checks(sparse_wl: Workload, v1_scaled, v2_fps: float, v2_inf_J: float) -> None:
    """The paper's other ratios (JETCAS 2019 Sec. I-C) against the model: (a) the scaled v1 on AlexNet,
    which 225.1x and 42.0x fix; (b) what that v1 says about the PE-count table's level; (c) the split of
    v2's speed into the dense model and the sparsity gain (1.2x / 1.3x)."""
    v1_fps_pub = PUB_V2_FPS / PUB_V2MB_OVER_V1ALEX[0]
    v1_inf_J_pub = PUB_V2_INF_J / PUB_V2MB_OVER_V1ALEX[1]
    alex = at_8_bits(dense(alexnet()))
    f1, e1 = chip_numbers(v1_scaled, alex)
    r1 = chip_report(v1_scaled, alex)
    fc = sum(ls.processing_latency_ms for ls in r1.layers if ls.layer.kind == "fc")
    print(f"\nthe paper's other ratios (JETCAS 2019 Sec. I-C): v2 on sparse MobileNet is {PUB_V2MB_OVER_V1ALEX[0]}x "
          f"faster and {PUB_V2MB_OVER_V1ALEX[1]}x more efficient than the scaled v1 on AlexNet -> that v1 runs AlexNet "
          f"at {v1_fps_pub:.2f} inf/s ({1e3 / v1_fps_pub:.0f} ms) and {v1_inf_J_pub:.1f} inf/J")
    rows = [["scaled v1, dense AlexNet, 8-bit", f"{f1:.2f} ({v1_fps_pub:.2f})", f"{f1 / v1_fps_pub:.2f}",
             f"{e1:.1f} ({v1_inf_J_pub:.1f})", f"{e1 / v1_inf_J_pub:.2f}",
             f"{r1.total.processing_latency_ms:.1f} ms, FC {fc:.1f}"]]
    # the other reading of v1's NoC at 8 bits (Table V is an image): the buses keep their words, not their
    # bits (JSSC 2017: the filter bus is "64 b (4 x 16 b)"); bench and tests use the bits-kept one
    words = dataclasses.replace(v1_scaled, filter_bus_words=v1_scaled.filter_bus_words // 2,
                                ifmap_bus_words=max(1, v1_scaled.ifmap_bus_words // 2))
    mb8 = at_8_bits(dense(sparse_wl))
    for net, wl, pub_f, pub_e in (("AlexNet", alex, v1_fps_pub, v1_inf_J_pub), ("MobileNet 0.5-128", mb8,
                                  PUB_V1_FPS, PUB_V1_INF_J)):
        fw, ew = chip_numbers(words, wl)
        rows.append([f"scaled v1, dense {net}, buses keep words", f"{fw:.2f} ({pub_f:.2f})", f"{fw / pub_f:.2f}",
                     f"{ew:.1f} ({pub_e:.1f})", f"{ew / pub_e:.2f}", "sensitivity only"])
    hw2 = resolve_hardware("eyeriss_v2")
    # (c) the dense model: the pruned model's iact zeros kept (ReLU zeros exist in the dense model too; its own
    # activation statistics are not published), weights unpruned; and everything dense
    unpruned = Workload(tuple(L.replace(weight_zeros=0.0) for L in sparse_wl.layers))
    fu, eu = chip_numbers(hw2, unpruned)
    fd, ed = chip_numbers(hw2, dense(sparse_wl))
    imp_fps, imp_J = PUB_V2_FPS / PUB_SPARSITY_GAIN[0], PUB_V2_INF_J / PUB_SPARSITY_GAIN[1]
    rows += [["v2, MobileNet 0.5-128, weights unpruned", f"{fu:.0f} ({imp_fps:.0f})", f"{fu / imp_fps:.2f}",
              f"{eu:.0f} ({imp_J:.0f})", f"{eu / imp_J:.2f}",
              f"sparsity gain {v2_fps / fu:.2f}x ({PUB_SPARSITY_GAIN[0]}x), eff. {v2_inf_J / eu:.2f}x "
              f"({PUB_SPARSITY_GAIN[1]}x)"],
             ["v2, MobileNet 0.5-128, all dense", f"{fd:.0f} ({imp_fps:.0f})", f"{fd / imp_fps:.2f}",
              f"{ed:.0f} ({imp_J:.0f})", f"{ed / imp_J:.2f}", f"sparsity gain {v2_fps / fd:.2f}x"]]
    print(format_table(["chip, network", "inf/s (implied)", "model/implied", "inf/J (implied)", "model/implied",
                        "note"], rows))
    pub256 = PUBLISHED_SPEEDUP["alexnet"][0]
    t_ideal = PUB_ALEXNET_MACS / PE_COUNTS[0] / (hw2.core_MHz * 1e3)
    print(f"the PE-count table's v1 (Fig. 14, the paper's analytical model) at {PE_COUNTS[0]} PEs is at least "
          f"{pub256} x {t_ideal:.2f} ms (v2 at its ideal, 1 MAC per PE, 200 MHz) = {pub256 * t_ideal:.0f} ms on "
          f"AlexNet, {pub256 * t_ideal * v1_fps_pub / 1e3:.2f}x the {1e3 / v1_fps_pub:.0f} ms of the same paper's "
          f"scaled v1 with fewer PEs ({v1_scaled.num_pes}): not the same v1 configuration, and the text does not "
          "say how Fig. 14's v1 differs")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--quick", action="store_true", help="MobileNet comparison only (skip the PE-count table)")
    ap.add_argument("--masks", default=None, help="folder of the Sparseloop artifact's actual_data_masks "
                    "(L07_iacts.txt, ...): workload imbalance from the measured masks (default: random masks at "
                    "the reference densities only)")
    args = ap.parse_args()
    t0 = time.perf_counter()
    v1_peak = resolve_hardware("eyeriss_v1")
    bound = v1_peak.num_pes * v1_peak.core_MHz * 1e6 / PUB_V1_FPS
    print(f"published (JETCAS 2019, sparse MobileNet, batch 1): v2 {PUB_V2_FPS} inf/s, {PUB_V2_INF_J} inf/J, "
          f"{PUB_SPEEDUP}x faster and {PUB_EFF}x more efficient than v1 -> v1 {PUB_V1_FPS:.1f} inf/s, "
          f"{PUB_V1_INF_J:.0f} inf/J; v1 at 100% of its 168 PEs x 200 MHz does at most {bound / 1e6:.0f}M MACs "
          "in that time, so the paper's MobileNet has at most that many (1.0-224 has 569M)")
    rows, split = [], []
    v1, v2 = resolve_hardware("eyeriss_v1"), resolve_hardware("eyeriss_v2")
    mb05 = mobilenet(*ref.MOBILENET)
    # (label, v1 hardware, v1 workload, v2 workload, published?)
    cases = (("1.0-224 dense; v1 as fabricated", v1, dense(mobilenet(1.0, 224)), None, False),
             ("0.5-128 dense; v1 as fabricated", v1, dense(mb05), None, False),
             ("0.5-128 sparse (reference); v1 as fabricated", v1, dense(mb05), ref.sparse_mobilenet(mb05), False),
             ("0.5-128 sparse (reference); v1 scaled, 8-bit (paper)", scaled_v1(v1, v2), at_8_bits(dense(mb05)),
              ref.sparse_mobilenet(mb05), True))
    for tag, hw1, wl1, wl2, pub in cases:
        wl2 = wl1 if wl2 is None else wl2
        f1, e1 = chip_numbers(hw1, wl1)
        f2, e2 = chip_numbers(v2, wl2)
        p = (lambda v: f" ({v})") if pub else (lambda v: "")
        rows.append([tag, f"{f1:.1f}{p(f'{PUB_V1_FPS:.1f}')}", f"{f2:.1f}{p(PUB_V2_FPS)}",
                     f"{e1:.0f}{p(f'{PUB_V1_INF_J:.0f}')}", f"{e2:.0f}{p(PUB_V2_INF_J)}",
                     f"{f2 / f1:.1f}x{p(f'{PUB_SPEEDUP}x')}", f"{e2 / e1:.2f}x{p(f'{PUB_EFF}x')}"])
        if pub:
            sparse_wl, v2_fps, v2_inf_J, v1_numbers = wl2, f2, e2, (f1, e1)
            split.append([tag, f"{f1 / PUB_V1_FPS:.2f}", f"{f2 / PUB_V2_FPS:.2f}", f"{e1 / PUB_V1_INF_J:.2f}",
                          f"{e2 / PUB_V2_INF_J:.2f}"])
    print("\nMobileNet v1 at batch 1; model (published, or implied by the published ratios for v1)")
    print(format_table(["MobileNet", "v1 inf/s", "v2 inf/s", "v1 inf/J", "v2 inf/J", "v2/v1 speed",
                        "v2/v1 energy eff."], rows))
    print("\nsparse row, model / published per chip (speed-up gap = v2 column / v1 column):")
    print(format_table(["MobileNet", "v1 inf/s", "v2 inf/s", "v1 inf/J", "v2 inf/J"], split))
    # the v2 PE model (one MAC unit, the model's own output channels per PE) against the reference
    # cycles of one v2 PE, and what the reference implies for the chip
    m0 = [ls.mapping.as_dict()["p"] for ls in chip_report(v2, sparse_wl).layers]
    model = [pe_cycles(L, m0=m, lanes=1) for L, m in zip(sparse_wl.layers, m0)]
    kinds = {"1x1, measured sparsity": [n for n in ref.DENSITY if n != 20],
             "depthwise": [n for n, L in enumerate(sparse_wl.layers, 1) if L.groups > 1],
             "first layer (dense)": [1], "FC (sparsity assumed)": [len(model)],
             "whole network": list(range(1, len(model) + 1))}
    prow = []
    for kind, nums in kinds.items():
        r = [ref.PE_CYCLES[n - 1] / model[n - 1] for n in nums]
        tot = sum(ref.PE_CYCLES[n - 1] for n in nums) / sum(model[n - 1] for n in nums)
        prow.append([kind, len(nums), f"{min(r):.2f} - {max(r):.2f}", f"{tot:.2f}"])
    print("\none v2 PE, reference cycles (Sparseloop artifact) / model PE-cycles, sparse MobileNet 0.5-128")
    print(format_table(["layers", "n", "per layer", "sum"], prow))
    hw2 = v2
    cyc = hw2.core_MHz * 1e6 / PUB_V2_FPS
    simd = [simd_lanes(L, v2) for L in sparse_wl.layers]
    ref_pe = sum(c / s for c, s in zip(ref.PE_CYCLES, simd))  # SIMD at its best: a lower bound
    mod_pe = sum(pe_cycles(L, m0=m, lanes=s) for L, m, s in zip(sparse_wl.layers, m0, simd))
    print(f"the chip at {PUB_V2_FPS} inf/s runs {cyc:.0f} cycles per inference. The reference's "
          f"{sum(ref.PE_CYCLES) / 1e6:.2f}M one-MAC PE-cycles fill {sum(ref.PE_CYCLES) / cyc / hw2.num_pes:.0%} of "
          f"its {hw2.num_pes} PEs, or at least {ref_pe / cyc / hw2.num_pes:.0%} with two-MAC SIMD on the "
          f"non-depthwise layers; the model's {mod_pe / 1e6:.2f}M SIMD PE-cycles would fill "
          f"{mod_pe / cyc / hw2.num_pes:.0%}, and its own latency keeps "
          f"{mod_pe / (hw2.core_MHz * 1e6 / v2_fps) / hw2.num_pes:.0%} busy (every PE active; NoC-bound layers idle)")
    imbalance_table(sparse_wl, chip_report(v2, sparse_wl), args.masks, v1_numbers)
    text_checks(sparse_wl, scaled_v1(v1, v2), v2_fps, v2_inf_J)
    if not args.quick:
        rows, level = [], []
        for name, wl in workloads().items():
            wl = dense(wl)
            ups = []
            for pes in PE_COUNTS:
                r1 = chip_report(grown(resolve_hardware("eyeriss_v1"), pes), wl)
                r2 = chip_report(grown(resolve_hardware("eyeriss_v2"), pes), wl)
                ups.append(r1.total.processing_latency_ms / r2.total.processing_latency_ms)
                if pes == PE_COUNTS[0]:
                    t1, t2 = r1.total.processing_latency_ms, r2.total.processing_latency_ms
                    ideal = sum(L.macs for L in wl.layers) / pes / (r2.hardware.core_MHz * 1e3)
                    by_kind: dict[str, float] = {}
                    for ls in r1.layers:
                        by_kind[ls.layer.kind] = by_kind.get(ls.layer.kind, 0.0) + ls.processing_latency_ms
            pub = PUBLISHED_SPEEDUP[name]
            rows.append([name, *(f"{u:.1f}x ({p}x)" for u, p in zip(ups, pub)),
                         *(f"{u / ups[0]:.2f} ({p / pub[0]:.2f})" for u, p in zip(ups[1:], pub[1:]))])
            level.append([name, f"{t2:.2f} ({ideal:.2f})", f"{pub[0] * t2:.0f}", f"{t1:.1f}",
                          ", ".join(f"{k} {v:.1f}" for k, v in sorted(by_kind.items())), f"{pub[0] * t2 / t1:.2f}"])
        print("\nspeed-up of v2 over v1 by PE count, dense, batch 1, data on chip; model (published, slides 2020)")
        print(format_table(["network", *(f"{p} PEs" for p in PE_COUNTS),
                            *(f"{p}/{PE_COUNTS[0]} scaling" for p in PE_COUNTS[1:])], rows))
        print(f"\nthe level at {PE_COUNTS[0]} PEs: v1 latency the published speed-up implies with the model's v2 "
              "(which runs near its ideal), against the model's v1, ms per inference")
        print(format_table(["network", "v2 model (ideal)", "v1 implied", "v1 model", "v1 model by layer kind",
                            "implied / model"], level))
    print(f"\n({time.perf_counter() - t0:.0f}s)")


if __name__ == "__main__":
    main()
