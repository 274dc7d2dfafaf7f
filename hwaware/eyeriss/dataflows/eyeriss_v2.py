"""Eyeriss v2: row stationary plus on a hierarchical-mesh NoC with sparse, compressed-domain PEs.

Chen, Yang, Emer, Sze, "Eyeriss v2: A Flexible Accelerator for Emerging Deep Neural Networks on
Mobile Devices", IEEE JETCAS 9(2), 2019, and the 2020 "How to evaluate" slides (speed-up table).
What the model takes from them (details beyond the abstract and slides are recalled from the paper's
text, which our material does not hold; each is a documented assumption in docs/dataflows.md):

- 192 PEs in 16 PE clusters (8 x 2) of 12 PEs (3 x 4), with 16 GLB clusters and 16 router clusters
  (the hierarchical mesh: unicast, grouped/interleaved multicast and broadcast per data type);
- 8-bit weights and input activations, 20-bit psums (the paper's precision), 200 MHz, 65 nm;
- PEs read weights and iacts in compressed sparse column (CSC) form — an 8-bit value plus a 4-bit
  count per non-zero — and skip zeros in both operands, so cycles and MAC energy scale with the
  non-zero MACs; two MACs per PE per cycle (SIMD over two weights sharing an iact).

Model. Energy: the row-stationary access counts of :mod:`hwaware.eyeriss.cost`, mapped by the RS
search on the v2 array (16 x 12 PEs, its spads and GLB), then (a) iacts and weights are 8-bit and
move in CSC at every level (their words scale by 8/16 and by the CSC ratio, never above raw),
(b) the RF reads of weights happen only for non-zero iacts and weights, (c) psums are 20-bit,
(d) MAC energy scales with the non-zero MACs and 8x8/16x16 = 1/4. Latency: the hierarchical mesh
lets every PE get data whatever the layer shape, so the active PEs are the layer's parallelism
(output channels x output pixels x groups, capped at 192) and processing takes the larger of the
compute cycles (non-zero MACs / 2 per PE per cycle) and the NoC delivery cycles (iact, weight and
psum words over the 16 clusters' routers, in CSC). DRAM transfers are assumed overlapped with
processing (the paper reports processing throughput at batch 1); DRAM energy is counted.
"""

from __future__ import annotations

import dataclasses

import numpy as np

from ...workload import Layer
from ..cost import LEVELS, TYPES, evaluate
from ..hardware import Hardware
from ..mapper import make_problem, search
from .framework import DataflowMapping, arrays

CLUSTERS = 16
PES_PER_CLUSTER = 12
SIMD = 2  # MACs per PE per cycle
DATA_BITS = 8
PSUM_BITS = 20
CSC_BITS = DATA_BITS + 4  # value + 4-bit count per non-zero
# words per cycle each router cluster delivers per data type (3 iact, 3 weight, 4 psum routers)
ROUTERS = {"ifmap": 3, "filter": 3, "psum": 4}


def csc_ratio(zero_fraction: float) -> float:
    """CSC words / raw words for 8-bit data: (1 - z) * 12/8, never above raw (dense data is sent raw)."""
    return min(1.0, (1.0 - float(zero_fraction)) * CSC_BITS / DATA_BITS)


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
    compute = layer.macs * nz / (SIMD * active)
    # average NoC bandwidth (Eyexam step 6): the words each data type's source sends (GLB reads for
    # iacts and psums, weights as loaded), over the router clusters' routers of that type (one router
    # cluster per PE cluster: 16 on the chip, pe_rows of the preset)
    sent = {"ifmap": acc["GLB"]["ifmap"], "filter": acc["DRAM"]["filter"], "psum": acc["GLB"]["psum"]}
    noc = max(sent[ty] / (hw.pe_rows * ROUTERS[ty]) for ty in TYPES)
    out = arrays(hw, acc, mac_energy=mac, cycles=max(compute, noc), stall_cycles=0.0, active_pes=active,
                 passes=int(res["passes"][0]))
    mapping = DataflowMapping("v2", tuple(mp.as_dict().items()))
    return mapping, out


PRESET = Hardware(
    name="eyeriss_v2",
    dataflow="v2",
    pe_rows=CLUSTERS,  # one row per PE cluster ...
    pe_cols=PES_PER_CLUSTER,  # ... of 12 PEs: the RS mapping view of the 192 PEs
    spad_filter=192,  # 96 entries of two 8-bit weights
    spad_ifmap=16,
    spad_psum=32,
    glb_kB=192.0,
    glb_banks=48,
    glb_filter_kB=0.0,
    core_MHz=200.0,
    unit_pJ=2.85,  # same 65 nm process as v1: v1's calibration constant (an assumption)
    default_batch=1,
    notes="Eyeriss v2, JETCAS 2019: 192 PEs in 16 clusters, hierarchical mesh, CSC sparse PEs, 8-bit data.",
)
