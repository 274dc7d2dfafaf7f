"""Eyeriss v2: row stationary plus on a hierarchical-mesh NoC with sparse, compressed-domain PEs.

Chen, Yang, Emer, Sze, "Eyeriss v2: A Flexible Accelerator for Emerging Deep Neural Networks on
Mobile Devices", IEEE JETCAS 9(2), 2019, and the 2020 "How to evaluate" slides (speed-up table).
The preset ``eyeriss_v2`` (:mod:`hwaware.eyeriss.hardware`) holds the chip's sizes; docs/dataflows.md
lists the source of every number and what could not be checked against the paper's own text:

- 192 PEs in an 8 x 2 array of PE clusters of 3 x 4 PEs, one GLB cluster and one router cluster
  per PE cluster (the hierarchical mesh: unicast, grouped/interleaved multicast and broadcast per
  data type); a router cluster has 3 iact, 3 weight and 4 psum routers;
- 8-bit weights and input activations, 20-bit psums, 200 MHz, 65 nm;
- PEs read weights and iacts in compressed sparse column (CSC) form — an 8-bit value plus a 4-bit
  count per non-zero — and skip zeros in both operands, so MAC energy scales with the non-zero MACs.
  A PE's work follows the per-PE reference of :mod:`.v2_reference` (the authors' group's cycles of
  one v2 PE, with one MAC unit, on each layer of the sparse MobileNet): one MAC-cycle per non-zero
  MAC on 1x1 and other layers with several output channels per input channel (reference: 1.01-1.07x),
  one per MAC, zeros or not, on depthwise layers (reference: 0.84-1.00x of the dense MACs). SIMD: the
  chip's PE does two MACs per cycle on two weights that share an iact (two output channels of the
  same input channel — never in a depthwise layer, which has one per channel).

Model. Energy: the row-stationary access counts of :mod:`hwaware.eyeriss.cost`, mapped by the RS
search on the v2 array (16 x 12 PEs, its spads and GLB), then (a) iacts and weights are 8-bit and
move in CSC at every level (their words scale by 8/16 and by the CSC ratio, never above raw),
(b) the RF reads of weights happen only for non-zero iacts and weights, (c) psums are 20-bit,
(d) MAC energy scales with the non-zero MACs and 8x8/16x16 = 1/4. Latency: the hierarchical mesh
lets every PE get data whatever the layer shape, so the active PEs are the layer's parallelism
(output channels x output pixels x groups, capped at 192) and processing takes the larger of the
compute cycles (:func:`pe_cycles` over the active PEs' SIMD lanes) and the NoC delivery cycles (iact, weight and
psum words over the 16 clusters' routers, in CSC). DRAM transfers are assumed overlapped with
processing (the paper reports processing throughput at batch 1); DRAM energy is counted.
"""

from __future__ import annotations

import dataclasses
import math

import numpy as np

from ...workload import Layer
from ..cost import LEVELS, TYPES, evaluate
from ..hardware import Hardware
from ..mapper import make_problem, search
from .framework import DataflowMapping, arrays

SIMD = 2  # MACs per PE per cycle when two weights share an iact
DATA_BITS = 8
PSUM_BITS = 20
CSC_BITS = DATA_BITS + 4  # value + 4-bit count per non-zero
# words per cycle each router cluster delivers per data type (3 iact, 3 weight, 4 psum routers)
ROUTERS = {"ifmap": 3, "filter": 3, "psum": 4}


def csc_ratio(zero_fraction: float) -> float:
    """CSC words / raw words for 8-bit data: (1 - z) * 12/8, never above raw (dense data is sent raw)."""
    return min(1.0, (1.0 - float(zero_fraction)) * CSC_BITS / DATA_BITS)


def simd_lanes(layer: Layer) -> int:
    """MACs per PE per cycle: the SIMD pairs two weights of different output channels that use the
    same iact, so a layer with one output channel per input channel (depthwise) gets one."""
    return SIMD if layer.M // layer.groups >= 2 else 1


def pe_cycles(layer: Layer) -> float:
    """MAC-cycles a layer takes on v2 PEs with one MAC unit (summed over PEs; the quantity of the
    per-PE reference cycles of :mod:`.v2_reference`): one per non-zero MAC (zeros of both operands
    skipped) when each iact meets a column of several output channels' weights; one per MAC when it
    meets a single weight (depthwise: one output channel per input channel), where the reference
    shows no saving from zeros."""
    if layer.M // layer.groups < 2:
        return float(layer.macs)
    return layer.macs * (1.0 - layer.ifmap_zeros) * (1.0 - layer.weight_zeros)


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
    # latency: flexible NoC -> parallelism of the layer's outputs, zero skipping in both operands
    P = hw.num_pes
    parallel = layer.groups * (layer.M // layer.groups) * layer.E * layer.F * layer.N
    active = int(min(P, parallel))
    compute = pe_cycles(layer) / (simd_lanes(layer) * active)
    # average NoC bandwidth (Eyexam step 6): the words each data type's source sends (GLB reads for
    # iacts and psums, weights as loaded), over the router clusters' routers of that type (one router
    # cluster per PE cluster: the preset's pe_rows, 16 on the chip)
    sent = {"ifmap": acc["GLB"]["ifmap"], "filter": acc["DRAM"]["filter"], "psum": acc["GLB"]["psum"]}
    noc = max(sent[ty] / (hw.pe_rows * ROUTERS[ty]) for ty in TYPES)
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


def grown(hw: Hardware, pes: int) -> Hardware:
    """``hw`` grown to about ``pes`` PEs for the speed-up-by-PE-count table (the published table's
    own rule is not in our material): a v2 chip adds 12-PE clusters (256 -> 21 clusters, 252 PEs),
    any other chip becomes a square array; spads stay, the GLB and its bank count grow with the PEs."""
    scale = {"glb_kB": hw.glb_kB * pes / hw.num_pes, "glb_banks": max(1, round(hw.glb_banks * pes / hw.num_pes))}
    base = hw.name.split("@", 1)[0]
    if hw.dataflow == "v2":
        return dataclasses.replace(hw, name=f"{base}@{pes}", pe_rows=max(1, round(pes / hw.pe_cols)), **scale)
    side = math.isqrt(pes)
    return dataclasses.replace(hw, name=f"{base}@{pes}", pe_rows=side, pe_cols=pes // side,
                               max_R=min(hw.max_R, side), **scale)
