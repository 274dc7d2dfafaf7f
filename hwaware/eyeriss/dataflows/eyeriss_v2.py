"""Eyeriss v2: row stationary plus on a hierarchical-mesh NoC with sparse, compressed-domain PEs.

Chen, Yang, Emer, Sze, "Eyeriss v2: A Flexible Accelerator for Emerging Deep Neural Networks on
Mobile Devices", IEEE JETCAS 9(2), 2019, and the 2020 "How to evaluate" slides (speed-up table).
The preset ``eyeriss_v2`` (:mod:`hwaware.eyeriss.hardware`) holds the chip's sizes; docs/dataflows.md
lists the source of every number (the paper's text, its tables being images, and other readings):

- 192 PEs in an 8 x 2 array of PE clusters of 3 x 4 PEs, one GLB cluster and one router cluster
  per PE cluster (the hierarchical mesh: unicast, grouped/interleaved multicast and broadcast per
  data type); a router cluster has 3 iact, 3 weight and 4 psum routers;
- 8-bit weights and input activations, 20-bit psums, 200 MHz, 65 nm;
- PEs read weights and iacts in compressed sparse column (CSC) form — an 8-bit value plus a 4-bit
  count per non-zero — and skip zeros in both operands, so MAC energy scales with the non-zero MACs.
  SIMD: two MACs per PE per cycle on two weights that share an iact (two output channels of the
  same input channel — never in a depthwise layer, which has one per channel). PE cycles: see
  :func:`pe_cycles` (JETCAS Sec. IV and V-A, checked against the per-PE reference cycles of
  :mod:`.v2_reference`).

Model. Energy: the row-stationary access counts of :mod:`hwaware.eyeriss.cost`, mapped by the RS
search on the v2 array (16 x 12 PEs, its spads and GLB), then (a) iacts and weights are 8-bit and
move in CSC at every level (their words scale by 8/16 and by the CSC ratio, never above raw),
(b) the RF reads of weights happen only for non-zero iacts and weights, (c) psums are 20-bit,
(d) MAC energy scales with the non-zero MACs and 8x8/16x16 = 1/4. Latency: the hierarchical mesh
lets every PE get data whatever the layer shape, so the active PEs are the layer's parallelism
(outputs x input channels x filter rows, capped at 192) and processing takes the larger of the
compute cycles (:func:`pe_cycles` over the active PEs, times the workload imbalance of
:func:`sparse_imbalance` on sparse 1x1 layers) and the NoC delivery cycles (iact, weight and psum
words over the 16 clusters' routers, in CSC). DRAM transfers are assumed overlapped with
processing (the paper reports processing throughput at batch 1); DRAM energy is counted.
"""

from __future__ import annotations

import dataclasses
import math

import numpy as np

from ...workload import Layer, Workload
from ..cost import LEVELS, TYPES, evaluate
from ..hardware import Hardware
from ..mapper import make_problem, search
from .framework import DataflowMapping, arrays
from .imbalance import imbalance

DATA_BITS = 8
PSUM_BITS = 20
CSC_BITS = DATA_BITS + 4  # value + 4-bit count per non-zero
# bits per cycle each router cluster moves per data type (JETCAS 2019 Sec. II and III-C): 3 iact and
# 3 weight routers with 24-bit ports (three 8-bit raw values or two 12-bit CSC pairs), 4 psum routers
# with 40-bit ports (two 20-bit psums)
ROUTER_BITS = {"ifmap": 3 * 24, "filter": 3 * 24, "psum": 4 * 40}


def csc_ratio(zero_fraction: float) -> float:
    """CSC words / raw words for 8-bit data: (1 - z) * 12/8, never above raw (dense data is sent raw)."""
    return min(1.0, (1.0 - float(zero_fraction)) * CSC_BITS / DATA_BITS)


def simd_lanes(layer: Layer, hw: Hardware) -> int:
    """MACs per PE per cycle: the SIMD (``hw.macs_per_pe``, 2 on the chip) pairs two weights of
    different output channels that use the same iact, so a layer with one output channel per input
    channel (depthwise) gets one."""
    return hw.macs_per_pe if layer.M // layer.groups >= 2 else 1


def pe_cycles(layer: Layer, *, m0: int, lanes: int = 1) -> float:
    """Cycles a layer takes on v2 PEs, summed over PEs, with ``m0`` output channels per PE and
    ``lanes`` MACs per PE per cycle (JETCAS 2019 Sec. IV): for each non-zero iact the PE reads the
    column of its ``m0`` weights in CSC and runs the non-zero ones, ``lanes`` per cycle; a column
    with an odd count leaves the second lane idle in its last cycle, and an iact takes at least its
    one fetch cycle even when its column is empty. So per visit of a non-zero iact to a column,
    E[max(1, ceil(X / lanes))] cycles with X ~ Binomial(m0, weight density). A depthwise layer (one
    output channel per input channel) gets no cycles from zeros: "the CSC compression does not create
    skippable cycles when the number of input and output channels are both one" (Sec. V-A) — one per
    MAC. The per-PE reference (:mod:`.v2_reference`, one MAC unit) agrees: 1.01-1.07x on the 1x1
    layers, 0.84-1.00x of the dense MACs on the depthwise ones."""
    if layer.M // layer.groups < 2:
        return float(layer.macs)
    m0 = max(1, min(int(m0), layer.M // layer.groups))
    d_w = 1.0 - layer.weight_zeros
    per_visit = sum(math.comb(m0, k) * d_w**k * (1.0 - d_w) ** (m0 - k) * max(1, -(-k // lanes))
                    for k in range(m0 + 1))
    return layer.macs / m0 * (1.0 - layer.ifmap_zeros) * per_visit


def sparse_imbalance(layer: Layer, mapping: dict, lanes: int) -> float:
    """How much longer a 1x1 layer's compute takes because each pass waits for its busiest PE
    (JETCAS 2019 Sec. I-B: the throughput "will be bounded by the PE that has the most non-zero
    MACs"), for zeros placed independently at the layer's densities: :func:`.imbalance.imbalance` on
    random masks (fixed seed) over the same on all-ones masks (the tiling's own loss, which the
    flexible NoC avoids). 1.0 for dense layers and for layers other than 1x1 convolutions (not
    modelled: depthwise layers skip no cycles; other shapes are not covered by the PE-work count).
    Measured masks place zeros less evenly: on the eight 1x1 layers of the reference sparse MobileNet
    with masks (bench/eyeriss_v2.py --masks) the loss is 1.25-1.80x against 1.13-1.53x here."""
    dense = layer.ifmap_zeros == 0 and layer.weight_zeros == 0
    if dense or layer.kind != "conv" or layer.R != 1 or layer.S != 1 or layer.groups != 1 or layer.N != 1:
        return 1.0
    kw = {k: int(mapping[k]) for k in "pqrte"}
    rng = np.random.default_rng(0)
    shape_i, shape_w = (layer.C, layer.E, layer.F), (layer.M, layer.C)
    rnd = imbalance(rng.random(shape_i) >= layer.ifmap_zeros, rng.random(shape_w) >= layer.weight_zeros,
                    lanes=lanes, **kw)
    ones = imbalance(np.ones(shape_i, bool), np.ones(shape_w, bool), lanes=lanes, **kw)
    return max(1.0, rnd.factor / ones.factor)


def evaluate_layer(layer: Layer, hw: Hardware, objective: str, tolerance: float, *, rlc_if: float,
                   rlc_of: float, rlc_w: float) -> tuple[DataflowMapping, dict[str, np.ndarray]]:
    # 8-bit data, as the chip processes it (a model profiled at other widths is run at 8 bits)
    lay8 = layer.replace(weight_bits=DATA_BITS, act_bits=DATA_BITS)
    c_if, c_w = csc_ratio(layer.ifmap_zeros), csc_ratio(layer.weight_zeros)
    rs_hw = dataclasses.replace(hw, dataflow="rs")
    pb = make_problem(lay8, rs_hw, rlc_if=c_if, rlc_of=csc_ratio(layer.ofmap_zeros or layer.ifmap_zeros), rlc_w=c_w)
    mp = search(pb, rs_hw, objective, tolerance)
    res = evaluate(pb, rs_hw, *(np.array([getattr(mp, k)]) for k in ("e", "n", "p", "q", "r", "t", "m")))
    acc = {lv: {ty: float(res[f"acc_{lv}_{ty}"][0]) for ty in TYPES} for lv in LEVELS}
    # compressed domain on chip: iacts and weights stay in CSC in the GLB, NoC and spads
    for lv in ("GLB", "array", "RF"):
        acc[lv]["ifmap"] *= c_if
        acc[lv]["filter"] *= c_w
    nz = (1.0 - layer.ifmap_zeros) * (1.0 - layer.weight_zeros)
    acc["RF"]["ifmap"] = layer.macs * (1.0 - layer.ifmap_zeros) * DATA_BITS / 16 * CSC_BITS / DATA_BITS
    acc["RF"]["filter"] = layer.macs * nz * DATA_BITS / 16 * CSC_BITS / DATA_BITS
    for lv in LEVELS:
        acc[lv]["psum"] *= PSUM_BITS / 16
    mac = layer.macs * nz * (DATA_BITS * DATA_BITS / 256) * hw.e_MAC
    # latency: the flexible NoC tiles the MACs "spatially across PEs through any layer dimension"
    # (JETCAS Sec. II): outputs (N, M, E, F, groups) and, with psums accumulated across PEs vertically
    # (Sec. III-C), input channels and filter rows (C, R); zeros skipped per pe_cycles
    P = hw.num_pes
    parallel = layer.N * layer.M * layer.E * layer.F * layer.C * layer.R
    active = int(min(P, parallel))
    lanes = simd_lanes(layer, hw)
    compute = pe_cycles(layer, m0=mp.p, lanes=lanes) / active * sparse_imbalance(layer, mp.as_dict(), lanes)
    # average NoC bandwidth (Eyexam step 6): what each data type's source sends (GLB reads for iacts
    # and psums, weights as loaded; counted in 16-bit words of CSC/20-bit data), over the bits per
    # cycle of the router clusters' routers of that type (one router cluster per PE cluster: the
    # preset's pe_rows, 16 on the chip)
    sent = {"ifmap": acc["GLB"]["ifmap"], "filter": acc["DRAM"]["filter"], "psum": acc["GLB"]["psum"]}
    noc = max(sent[ty] * 16 / (hw.pe_rows * ROUTER_BITS[ty]) for ty in TYPES)
    out = arrays(hw, acc, mac_energy=mac, cycles=max(compute, noc), stall_cycles=0.0, active_pes=active,
                 passes=int(res["passes"][0]))
    mapping = DataflowMapping("v2", tuple(mp.as_dict().items()))
    return mapping, out


# --- the rules of the v2-vs-v1 comparisons (bench/eyeriss_v2.py, tests/test_eyeriss_v2.py) ---------


def on_chip(hw: Hardware) -> Hardware:
    """``hw`` with an unbounded DRAM link: processing with the data on chip, the basis on which the
    v1 and v2 throughputs are compared. The v2 model has no link (neither published figure states
    one); v1's 60 MHz x 64-bit link would otherwise bound its FC layers at batch 1 (AlexNet fc6-8:
    244 of 272 ms) and make the comparison lopsided."""
    return dataclasses.replace(hw, dram_MHz=1e9)


def scaled_v1(v1: Hardware, v2: Hardware) -> Hardware:
    """The Eyeriss v1 of the paper's v2-vs-v1 figures (12.6x / 2.5x on MobileNet): "the same design
    as the original Eyeriss, but with the storage capacity, number of PEs and data precision scaled to
    the same level as v1.5 and v2 for a fair comparison" (JETCAS 2019 Sec. V-A), running the *dense*
    MobileNet (Sec. V: "unless otherwise specified, AlexNet and MobileNet are referring to the dense
    model"). Score 8-bit layers on it (``act_bits = weight_bits = 8``). Our reading, where the paper's
    Table V (an image) is not in our material: v2's PEs as ``v1.pe_rows`` rows (v1's filter-height
    support kept) x the columns that make v2's count (12 x 16 = 192); v2's spad entries; v2's GLB
    capacity, v1's 8 kB filter buffer included, in v1's bank size, counted in 16-bit words as v2's
    preset counts it; the NoC buses keep their bits, so the filter and ifmap buses carry twice the
    8-bit words (psums stay 16-bit)."""
    cols = max(1, round(v2.num_pes / v1.pe_rows))
    glb = v2.glb_kB - v1.glb_filter_kB
    bank_kB = v1.glb_kB / v1.glb_banks
    return dataclasses.replace(
        v1, name=f"{v1.name}@{v2.name}", pe_cols=cols, spad_filter=v2.spad_filter, spad_ifmap=v2.spad_ifmap,
        spad_psum=v2.spad_psum, glb_kB=glb, glb_banks=max(1, round(glb / bank_kB)), word_bits=v2.word_bits,
        filter_bus_words=v1.filter_bus_words * 2, ifmap_bus_words=v1.ifmap_bus_words * 2)


def at_8_bits(wl: Workload) -> Workload:
    """``wl`` with 8-bit weights and activations (the precision of v2 and of :func:`scaled_v1`)."""
    return Workload(tuple(L.replace(weight_bits=DATA_BITS, act_bits=DATA_BITS) for L in wl.layers))


def grown(hw: Hardware, pes: int) -> Hardware:
    """``hw`` grown to ``pes`` PEs for the speed-up-by-PE-count table, by the paper's rule (JETCAS 2019
    Sec. III-D): a v2 chip as clusters of 4 x 4 PEs (4 x 4, 8 x 8 and 32 x 32 clusters for 256, 1024
    and 16384 PEs), every PE at 1 MAC per cycle; any other chip a square array (16 x 16, 32 x 32,
    128 x 128). Spads stay; the GLB and its bank count grow with the PEs (the paper does not say how
    its storage scaled: our assumption). The paper also assumes no off-chip limit and no sparsity:
    score dense layers with :func:`on_chip`."""
    scale = {"glb_kB": hw.glb_kB * pes / hw.num_pes, "glb_banks": max(1, round(hw.glb_banks * pes / hw.num_pes))}
    base = hw.name.split("@", 1)[0]
    if hw.dataflow == "v2":
        return dataclasses.replace(hw, name=f"{base}@{pes}", pe_rows=max(1, pes // 16), pe_cols=16, macs_per_pe=1,
                                   **scale)
    side = math.isqrt(pes)
    return dataclasses.replace(hw, name=f"{base}@{pes}", pe_rows=side, pe_cols=pes // side,
                               max_R=min(hw.max_R, side), **scale)
