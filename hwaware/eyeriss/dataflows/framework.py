"""The ISCA 2016 energy framework shared by the WS, OS and NLR models.

Chen, Emer, Sze, "Eyeriss: A Spatial Architecture for Energy-Efficient Dataflow for CNNs", ISCA 2016
(cited by the survey as [80]): every value moved costs a*EC(DRAM) + ab*EC(GLB) + abc*EC(array) +
abcd*EC(RF) for input data (a DRAM reads, each reused b times from the GLB, c times through the
array and d times from the RF), and (2a-1)*EC(DRAM) + 2a(b-1)*EC(GLB) + ab(c-1)*EC(array) +
2abc(d-1)*EC(RF) for a psum accumulated a*b*c*d = C*R*S times. Each dataflow module turns a layer
and one of its mappings into those access counts (whole layer, 16-bit words scaled by bits/16);
this module holds what they share: the per-layer problem, the candidate value type, the choice of
the best candidate and the conversion to the row-stationary model's result keys, so a dataflow
layer is reported through the same :class:`~hwaware.eyeriss.score.LayerScore` contract.

Counting conventions are the row-stationary model's (docs/eyeriss_model.md), so the comparison is
like for like: GLB ifmap counts the fill from DRAM plus every read; GLB psum counts every pass's
write and read-back plus the final write and the read-out; array deliveries are counted per
receiving PE; zero ifmaps gate the weight-register read and the MAC; zero weights gate the MAC.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any

import numpy as np

from ...errors import HwawareError, UnsupportedLayerError
from ...workload import Layer
from ..cost import LEVELS, TYPES, Problem
from ..hardware import Hardware


@dataclass(frozen=True)
class DataflowMapping:
    """A mapping of a non-RS dataflow: its parameters by name (printed in the report's mapping column)."""

    dataflow: str
    params: tuple[tuple[str, int], ...]

    def as_dict(self) -> dict[str, Any]:
        return {"dataflow": self.dataflow, **dict(self.params)}

    def __str__(self) -> str:
        return " ".join(f"{k}={v}" for k, v in self.params)


@dataclass(frozen=True)
class Candidate:
    """One legal mapping with its access counts (words) and timing."""

    mapping: DataflowMapping
    acc: dict[str, dict[str, float]]  # acc[level][type]
    cycles: float  # processing cycles (compute, before DRAM bounds)
    active_pes: int
    passes: int


def problem(layer: Layer, *, rlc_if: float, rlc_of: float, rlc_w: float) -> Problem:
    """The per-group problem of ``layer`` (no native-shape checks: those are the RS chip's)."""
    return Problem(
        G=layer.groups, N=layer.N, M=layer.M // layer.groups, C=layer.C, Hp=layer.Hp, Wp=layer.Wp,
        R=layer.R, S=layer.S, E=layer.E, F=layer.F, U=layer.U,
        ifmap_zeros=layer.ifmap_zeros, weight_zeros=layer.weight_zeros,
        rlc_if=rlc_if, rlc_of=rlc_of, rlc_w=rlc_w,
        ifmap_scale=layer.act_bits / 16.0, weight_scale=layer.weight_bits / 16.0,
        mac_scale=layer.weight_bits * layer.act_bits / 256.0, macs=layer.macs,
    )


def ceil(a: int, b: int) -> int:
    return -(-a // b)


def tiles(size: int) -> list[int]:
    """The smallest tile for each tile count (larger tiles with the same count are dominated)."""
    return sorted({ceil(size, k) for k in range(1, size + 1)})


def tile_options(size: int, limit: int | None = None) -> list[int]:
    """Tiles to search for a loop of ``size`` (at most ``limit``): every smallest tile per tile count
    when there are few (<= 48), else powers of two plus the tiles for up to 16 passes."""
    lim = size if limit is None else min(size, limit)
    if lim < 1:
        return []
    every = [v for v in tiles(size) if v <= lim]
    if len(every) <= 48:
        return every
    pow2 = {1 << k for k in range(lim.bit_length()) if 1 << k <= lim}
    return sorted(pow2 | {v for v in (ceil(size, k) for k in range(1, 17)) if v <= lim})


def pow2(limit: int) -> list[int]:
    """Powers of two up to ``limit`` (the coarse grid of the larger two-sided searches)."""
    return [1 << k for k in range(max(limit, 1).bit_length()) if 1 << k <= limit]


def rf_words(hw: Hardware) -> int:
    return hw.spad_filter + hw.spad_ifmap + hw.spad_psum


def gates(pb: Problem, hw: Hardware) -> tuple[float, float]:
    g_if = (1.0 - pb.ifmap_zeros) if hw.gate_zero_ifmap else 1.0
    g_w = (1.0 - pb.weight_zeros) if hw.gate_zero_weights else 1.0
    return g_if, g_w


def counts(**kw: float) -> dict[str, dict[str, float]]:
    """Build acc[level][type] from keyword arguments named ``<level>_<type>`` (missing = 0)."""
    acc = {lv: {ty: 0.0 for ty in TYPES} for lv in LEVELS}
    for key, value in kw.items():
        lv, ty = key.split("_", 1)
        if lv not in acc or ty not in acc[lv]:
            raise KeyError(key)
        acc[lv][ty] = float(value)
    return acc


def arrays(hw: Hardware, acc: dict[str, dict[str, float]], *, mac_energy: float, cycles: float,
           stall_cycles: float, active_pes: int, passes: int) -> dict[str, np.ndarray]:
    """Access counts and timing in the RS model's result keys (``acc_<level>_<type>``,
    ``energy_<level>``, ``energy_MAC``, ``energy``, ``cycles``, ...), as :func:`cost.evaluate` gives."""
    costs = hw.energy_costs()
    out: dict[str, np.ndarray] = {}
    total = 0.0
    for lv in LEVELS:
        level_total = 0.0
        for ty in TYPES:
            out[f"acc_{lv}_{ty}"] = np.array([acc[lv][ty]])
            level_total += acc[lv][ty] * costs[lv]
        out[f"energy_{lv}"] = np.array([level_total])
        total += level_total
    out["energy_MAC"] = np.array([mac_energy])
    out["energy"] = np.array([total + mac_energy])
    out["cycles"] = np.array([cycles])
    out["stall_cycles"] = np.array([stall_cycles])
    out["active_pes"] = np.array([active_pes])
    out["passes"] = np.array([passes])
    return out


def result(pb: Problem, hw: Hardware, cand: Candidate) -> dict[str, np.ndarray]:
    """The candidate in the RS model's result keys."""
    g_if, g_w = gates(pb, hw)
    bw = hw.dram_words_per_cycle
    # filters stream from DRAM while the array computes; ifmap loads and ofmap dumps do not overlap
    # (the same rule as the RS latency model, JSSC Sec. VI-A)
    return arrays(
        hw, cand.acc, mac_energy=pb.macs * g_if * g_w * pb.mac_scale * hw.e_MAC,
        cycles=max(cand.cycles, cand.acc["DRAM"]["filter"] / bw),
        stall_cycles=(cand.acc["DRAM"]["ifmap"] + cand.acc["DRAM"]["psum"]) / bw,
        active_pes=cand.active_pes, passes=cand.passes,
    )


def _timing(hw: Hardware, cand: Candidate) -> float:
    bw = hw.dram_words_per_cycle
    acc = cand.acc["DRAM"]
    return max(cand.cycles, acc["filter"] / bw) + (acc["ifmap"] + acc["psum"]) / bw


def choose(pb: Problem, hw: Hardware, cands: Iterable[Candidate], objective: str, tolerance: float,
           name: str) -> tuple[Candidate, dict[str, np.ndarray]]:
    """The best candidate for ``objective`` with the RS mapper's rule: among those within
    ``tolerance`` of the best objective value the fastest wins (for latency: the least energy),
    then the most active PEs."""
    if objective not in ("energy", "latency", "edp"):
        raise HwawareError(f"unknown objective '{objective}'; allowed: energy, latency, edp")
    costs = hw.energy_costs()
    rows = []
    for c in cands:
        e = sum(c.acc[lv][ty] * costs[lv] for lv in LEVELS for ty in TYPES)  # MAC energy is common
        t = _timing(hw, c)
        rows.append((c, e, t))
    if not rows:
        raise UnsupportedLayerError(
            f"no legal {name} mapping on {hw.name} (M={pb.M}, C={pb.C}, R={pb.R}, S={pb.S}, E={pb.E}, "
            f"F={pb.F}): the PE array, register file or global buffer is too small for this layer"
        )
    g_if, g_w = gates(pb, hw)
    mac = pb.macs * g_if * g_w * pb.mac_scale * costs["MAC"]
    energy = np.array([r[1] for r in rows]) + mac
    latency = np.array([r[2] for r in rows])
    if objective == "energy":
        primary, secondary = energy, latency
    elif objective == "latency":
        primary, secondary = latency, energy
    else:
        primary, secondary = energy * latency, latency
    near = np.flatnonzero(primary <= primary.min() * (1.0 + tolerance) * (1 + 1e-12))
    pes = np.array([r[0].active_pes for r in rows])
    best = rows[int(near[np.lexsort((-pes[near], primary[near], secondary[near]))[0]])][0]
    return best, result(pb, hw, best)


Enumerator = Callable[[Problem, Hardware], Iterable[Candidate]]


def dram(pb: Problem, d_if: float, d_w: float) -> dict[str, float]:
    """The DRAM counts of a buffer plan as :func:`counts` keywords: ``d_if`` ifmap and ``d_w`` weight
    words read (raw), the ofmaps written once; each compressed and scaled to its bit width."""
    return {"DRAM_ifmap": d_if * pb.rlc_if * pb.ifmap_scale, "DRAM_filter": d_w * pb.rlc_w * pb.weight_scale,
            "DRAM_psum": float(pb.n_of) * pb.rlc_of * pb.ifmap_scale}


def _dram_cost(pb: Problem, d_if: float, d_w: float) -> float:
    """DRAM words (ifmaps + weights) of a plan: what the buffer plans minimize."""
    return d_if * pb.rlc_if * pb.ifmap_scale + d_w * pb.rlc_w * pb.weight_scale


def glb_plan(pb: Problem, hw: Hardware, options: Iterable[tuple[float, float, float]]) -> tuple[float, float] | None:
    """The cheapest DRAM traffic (ifmap words, weight words) among buffer plans that fit.

    ``options`` are (GLB words the plan keeps resident, DRAM ifmap words, DRAM weight words), raw
    (before compression and bit-width scaling). None when no plan fits the global buffer.
    """
    cap = hw.glb_words
    best: tuple[float, tuple[float, float]] | None = None
    for words, d_if, d_w in options:
        if words > cap:
            continue
        cost = _dram_cost(pb, d_if, d_w)
        if best is None or cost < best[0]:
            best = (cost, (d_if, d_w))
    return None if best is None else best[1]
