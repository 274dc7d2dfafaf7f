"""Eyexam: seven successive upper bounds on a layer's MACs per cycle (Sze et al., 2020; NOTES.md).

Each step adds one constraint and can only lower the bound of the step before it:

1. layer shape -- every MAC of the layer at once (unbounded workload parallelism);
2. dataflow -- row stationary runs one 1-D row convolution (F*S MACs, one per cycle) per PE, so at
   most G*N*M*C*R*E PEs can be busy;
3. number of PEs -- at most the array's PEs;
4. array dimensions -- the best placement of R x e PE sets on the 12 x 14 array (folding,
   strip-mining, replication; the last strip may be partial), ignoring storage;
5. storage capacity -- the mapping the spads and the GLB admit (the chosen one): its active PEs and
   its pass tiling, every PE computing at one MAC per cycle;
6. average bandwidth -- also each channel's total traffic over its width: ifmap GIN (1 word/cycle),
   psum GIN/GON (4 words/cycle) and the filters' DRAM link (1.2 words/cycle);
7. instantaneous bandwidth -- pass by pass, the slowest of compute and deliveries plus each pass's
   ramp-up (filter load and first ifmap windows). This equals MACs / the latency model's cycles.

Example: AlexNet CONV1 (batch 4) on eyeriss_v1 -> 4.2e8, 7.0e5 (= MACs/(F*S)), 168, 154, 151, 151, 133
MACs/cycle: the array's 11-row sets leave 14 PEs idle (step 4), the last 55-row strip is partial
(step 5), and each pass's ramp-up costs the rest (step 7; the chip measured 16.5 ms = 127 MACs/cycle).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from .cost import Problem
from .hardware import Hardware
from .mapper import max_sets

STEPS = (
    "layer shape",
    "dataflow",
    "number of PEs",
    "array dimensions",
    "storage capacity",
    "average bandwidth",
    "instantaneous bandwidth",
)

# what limits step 6/7 (the names used in reports)
RESOURCES = ("compute", "ifmap NoC", "psum NoC", "DRAM link", "pass ramp-up")


@dataclass(frozen=True)
class EyexamStep:
    step: int  # 1..7
    name: str
    macs_per_cycle: float

    def to_dict(self) -> dict[str, Any]:
        return {"step": self.step, "name": self.name, "macs_per_cycle": self.macs_per_cycle}


def _array_bound(pb: Problem, hw: Hardware) -> float:
    """Step 4: the most MACs/cycle any set placement gets (strip use E/(k*e) counted)."""
    best = 0.0
    for e in range(1, min(pb.E, (hw.pe_rows // pb.R) * hw.pe_cols) + 1):
        sets = min(max_sets(pb.R, e, hw), pb.C * pb.M)
        k = -(-pb.E // e)
        best = max(best, pb.R * e * sets * pb.E / (k * e))
    return best


def bounds(pb: Problem, hw: Hardware, res: dict[str, np.ndarray]) -> tuple[EyexamStep, ...]:
    """The seven bounds for one evaluated mapping (``res`` from :func:`cost.evaluate`, one entry)."""

    def v(key: str) -> float:
        return float(np.asarray(res[key]).ravel()[0])

    macs = float(pb.macs)
    s1 = macs
    s2 = min(s1, macs / (pb.F * pb.S))
    s3 = min(s2, float(hw.num_pes))
    s4 = min(s3, _array_bound(pb, hw))
    s5 = min(s4, macs / v("compute_cycles_total"))
    avg = max(v("compute_cycles_total"), v("ifmap_noc_cycles_total"), v("psum_noc_cycles_total"),
              v("dram_cycles_total"))
    s6 = min(s5, macs / avg)
    s7 = min(s6, macs / v("cycles"))
    values = (s1, s2, s3, s4, s5, s6, s7)
    return tuple(EyexamStep(i + 1, STEPS[i], float(x)) for i, x in enumerate(values))


def binding_step(steps: tuple[EyexamStep, ...], num_pes: int) -> EyexamStep:
    """The step that loses the most throughput relative to the one before (bounds capped at the
    array's PEs, so that steps 1-2, always far above any real array, do not count)."""
    capped = [min(s.macs_per_cycle, num_pes) for s in steps]
    drops = [capped[i - 1] / capped[i] if capped[i] > 0 else np.inf for i in range(1, len(steps))]
    return steps[1 + int(np.argmax(drops))]


def limiting_resource(res: dict[str, np.ndarray]) -> str:
    """Which of compute, ifmap NoC, psum NoC, DRAM link or ramp-up takes the most cycles."""

    def v(key: str) -> float:
        return float(np.asarray(res[key]).ravel()[0])

    dram = v("dram_cycles_total")
    if dram >= v("cycles") * (1 - 1e-9) and dram > 0:
        return "DRAM link"
    parts = {"compute": v("compute_cycles_total"), "ifmap NoC": v("ifmap_noc_cycles_total"),
             "psum NoC": v("psum_noc_cycles_total")}
    busy = max(parts, key=parts.get)
    if v("ramp_cycles_total") > parts[busy]:
        return "pass ramp-up"
    return busy
