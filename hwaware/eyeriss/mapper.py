"""Row-stationary mapper: the best legal mapping (m, n, e, p, q, r, t) of a layer, exhaustively.

Legal space (JSSC Sec. IV-A, Table II):
- PE set R x e. If e <= pe_cols, floor(pe_rows/R) * floor(pe_cols/e) sets fit; a wider set is
  folded into ceil(e/pe_cols) segments stacked vertically, and floor(pe_rows/(R*segments)) fit.
  r * t <= sets; q * r <= C and p * t <= M (per group).
- Spads: p*q*S <= filter spad, q*S <= ifmap spad, p <= psum spad.
- GLB: n*q*r*h*Wp ifmap words and n*m*e*F psum words, each rounded up to whole banks, fit the
  banks of the ifmap/psum buffer; m is a multiple of p*t and at most M (rounded up to p*t).
  One image's q*r*h*Wp ifmap words take no more banks than one channel's h*Wp when R > 1 (rule M8).

Search. Every (e, n, p, q, r, t) candidate is evaluated with :func:`cost.evaluate` in one NumPy
call; three reductions keep it exhaustive yet small:
- e only takes the values ceil(E/k): for a given strip count k the smallest e has the same passes,
  reads and compute and uses fewer PEs, buffer and rows, so larger e with the same k are dominated
  (same for n with ceil(N/n)).
- likewise p only takes the smallest value for each ceil(M/p) and q for each ceil(C/q), r the
  smallest for each ceil(ceil(C/q)/r) and t for each ceil(ceil(M/p)/t): a larger value with the same
  pass count computes or streams more per pass for nothing (ceil(ceil(a/b)/c) = ceil(a/(bc))).
- m is set in closed form to the largest legal value: m only enters through ceil(M/m) (DRAM ifmap
  refetch, non-increasing in m) and the GLB constraint, so the largest m that fits is optimal.
Ties on the objective go to lower latency, then to more active PEs (the original code's rule).
Results are cached by shape and statistics, so rescoring after one layer changes remaps one layer.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from functools import lru_cache

import numpy as np

from ..errors import UnsupportedLayerError
from ..workload import Layer
from .cost import Problem, evaluate
from .hardware import Hardware

OBJECTIVES = ("energy", "latency", "edp")


@dataclass(frozen=True)
class Mapping:
    """RS mapping parameters (JSSC Table II); ``e`` is the (strip-mined) PE-set width."""

    m: int
    n: int
    e: int
    p: int
    q: int
    r: int
    t: int

    def as_dict(self) -> dict[str, int]:
        return {"m": self.m, "n": self.n, "e": self.e, "p": self.p, "q": self.q, "r": self.r, "t": self.t}

    def __str__(self) -> str:
        return " ".join(f"{k}={v}" for k, v in self.as_dict().items())


@dataclass(frozen=True)
class Split:
    """How a layer outside native support is run: R split into row chunks, or nothing."""

    r_chunks: int = 1
    note: str = ""


def check_native(layer: Layer, hw: Hardware) -> Split:
    """Raise UnsupportedLayerError for shapes that cannot run; describe splits for R > max_R."""
    where = f"layer '{layer.name}'"
    if layer.S > hw.max_S:
        raise UnsupportedLayerError(
            f"{where}: filter width S={layer.S} exceeds the native 1..{hw.max_S} of {hw.name} (JSSC Table IV)"
        )
    if layer.S > hw.spad_ifmap:
        raise UnsupportedLayerError(
            f"{where}: filter width S={layer.S} does not fit the {hw.spad_ifmap}-word ifmap spad of {hw.name}"
        )
    if layer.U not in hw.vertical_strides:
        raise UnsupportedLayerError(
            f"{where}: vertical stride {layer.U} is not supported by {hw.name} "
            f"(allowed: {', '.join(map(str, hw.vertical_strides))})"
        )
    if layer.U_h > hw.max_horizontal_stride:
        raise UnsupportedLayerError(
            f"{where}: horizontal stride {layer.U_h} exceeds {hw.max_horizontal_stride} on {hw.name}"
        )
    if layer.R > hw.max_R:
        k = math.ceil(layer.R / hw.max_R)
        return Split(k, f"R={layer.R} > {hw.max_R}: filter rows split into {k} chunks accumulated as channels")
    return Split()


def make_problem(layer: Layer, hw: Hardware, *, rlc_if: float, rlc_of: float, rlc_w: float) -> Problem:
    split = check_native(layer, hw)
    R, C, Hp = layer.R, layer.C, layer.Hp
    if split.r_chunks > 1:
        # k row-chunks of ceil(R/k) rows each act as k times the channels, each reading its own rows
        R = math.ceil(layer.R / split.r_chunks)
        C = layer.C * split.r_chunks
        Hp = layer.U * (layer.E - 1) + R
    return Problem(
        G=layer.groups, N=layer.N, M=layer.M // layer.groups, C=C, Hp=Hp, Wp=layer.Wp, R=R, S=layer.S,
        E=layer.E, F=layer.F, U=layer.U,
        ifmap_zeros=layer.ifmap_zeros, weight_zeros=layer.weight_zeros,
        rlc_if=rlc_if, rlc_of=rlc_of, rlc_w=rlc_w,
        ifmap_scale=layer.act_bits / 16.0, weight_scale=layer.weight_bits / 16.0,
        mac_scale=layer.weight_bits * layer.act_bits / 256.0,
        macs=layer.macs,
    )


def _ceil_div(a, b):
    return -(-a // b)


def _divisors(x: int) -> np.ndarray:
    d = np.arange(1, x + 1, dtype=np.int64)
    return d[x % d == 0]


def set_slots(R: int, e: int, hw: Hardware) -> tuple[int, int]:
    """(vertical, horizontal) places for an R x e PE set on the array (JSSC Sec. IV-A, Fig. 5).

    A set wider than the array is folded into ceil(e/pe_cols) segments stacked vertically.
    """
    seg = -(-e // hw.pe_cols)
    vert = hw.pe_rows // (R * seg)
    horiz = hw.pe_cols // e if e <= hw.pe_cols else 1
    return vert, horiz


def max_sets(R: int, e: int, hw: Hardware) -> int:
    """How many sets the chip replicates: stacked vertically when two or more fit (the r sets must
    be, since psums accumulate up the vertical local network, Sec. V-B), otherwise side by side
    (t sets sharing the ifmap, as CONV1 in Fig. 5)."""
    vert, horiz = set_slots(R, e, hw)
    return vert if vert >= 2 else vert * horiz


def candidates(pb: Problem, hw: Hardware) -> dict[str, np.ndarray]:
    """Every legal mapping (e, n, p, q, r, t, m) of the chip's rules, as flat int arrays.

    Rules (docs/eyeriss_model.md, "Mapping"): sets placed by :func:`max_sets`, r sets stacked
    vertically; spads p*q*S <= filter, q*S <= ifmap, p <= psum; passes tile the filters and images
    exactly (p*t divides m, m divides M, n divides N, as the pass schedule of Fig. 7) and carry up
    to q*r channels (Sec. IV-A; the last channel pass of a tile fewer when q*r does not divide C);
    GLB ifmap and psum tiles in whole banks, one image's q*r ifmap channels in no more banks than
    one channel's strip (``hw.ifmap_tile_one_bank``); m the largest legal value; active PEs at least
    ``hw.mapping_fill`` of the most any of them gets (M7's floor, see :func:`filled`).
    """
    R, E = pb.R, pb.E
    e0, r0, t0 = placements(pb, hw)
    if not e0.size:
        return {}
    # M7's fill floor reads the shape only, so it is applied here and only mappings that can win are
    # built and evaluated. Build from the (e, r, t) placements within the floor of the best one first;
    # that is exact whenever the best placement has a legal mapping (then no legal mapping has more
    # PEs), else everything is built and the floor applied to what is legal.
    pes0 = R * np.minimum(e0, E) * r0 * t0
    top = pes0 >= hw.mapping_fill * pes0.max()
    cand = _build(pb, hw, e0[top], r0[top], t0[top])
    if cand["e"].size and (R * np.minimum(cand["e"], E) * cand["r"] * cand["t"]).max() == pes0.max():
        return cand
    return _build(pb, hw, e0, r0, t0)


def placements(pb: Problem, hw: Hardware) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Every (e, r, t) set placement, in the order e, then r, then t ascending: PE-set width e up to
    E, r <= the vertical slots (:func:`set_slots`), r <= C and r*t <= :func:`max_sets`, t dividing M.
    One NumPy pass over the (e, r, t) grid, t taken from the divisors of M (the search's
    per-shape Python loop over these cost ~0.4 ms a shape)."""
    R, E = pb.R, pb.E
    e = np.arange(1, min(E, (hw.pe_rows // R) * hw.pe_cols) + 1, dtype=np.int64)
    vert = hw.pe_rows // (R * _ceil_div(e, hw.pe_cols))  # set_slots, vectorised
    horiz = np.where(e <= hw.pe_cols, hw.pe_cols // e, 1)
    sets = np.where(vert >= 2, vert, vert * horiz)  # max_sets
    r_max = np.minimum(np.minimum(vert, sets), pb.C)
    empty = np.zeros(0, dtype=np.int64)
    if not e.size or r_max.max(initial=0) < 1:
        return empty, empty, empty
    rv = np.arange(1, int(r_max.max()) + 1, dtype=np.int64)
    tv = _divisors(pb.M)
    tv = tv[tv <= sets.max()]
    ei, r, t = (a.ravel() for a in np.meshgrid(np.arange(e.size), rv, tv, indexing="ij"))
    ok = (r <= r_max[ei]) & (t <= sets[ei] // r)
    return e[ei[ok]], r[ok], t[ok]


def _build(pb: Problem, hw: Hardware, e0: np.ndarray, r0: np.ndarray, t0: np.ndarray) -> dict[str, np.ndarray]:
    """The legal mappings on the given (e, r, t) placements, M7's floor applied among them."""
    R, S, E = pb.R, pb.S, pb.E
    pv = _divisors(pb.M)
    pv = pv[pv <= hw.spad_psum]
    # q and r need not divide C: a pass carries "up to q x r channels" (rule M5); for each channel
    # count per PE (ceil(C/q)) only the smallest q is kept, the larger ones do more per pass for nothing
    qv = np.arange(1, min(pb.C, hw.spad_ifmap // S) + 1, dtype=np.int64)
    qv = qv[qv == _ceil_div(pb.C, _ceil_div(pb.C, qv))]
    nv = _divisors(pb.N)
    P, Q, Nn = (a.ravel() for a in np.meshgrid(pv, qv, nv, indexing="ij"))
    ok = P * Q * S <= hw.spad_filter
    P, Q, Nn = P[ok], Q[ok], Nn[ok]
    i = np.repeat(np.arange(e0.size), P.size)
    j = np.tile(np.arange(P.size), e0.size)
    e, r, t, p, q, n = e0[i], r0[i], t0[i], P[j], Q[j], Nn[j]
    cq = _ceil_div(pb.C, q)  # channel groups of q; r sets take r of them per pass, the last pass fewer
    ok = (r == _ceil_div(cq, _ceil_div(cq, r))) & (q * r <= pb.C) & (pb.M % (p * t) == 0)
    e, r, t, p, q, n = e[ok], r[ok], t[ok], p[ok], q[ok], n[ok]
    # GLB: ifmap banks, then the largest m (a divisor of M, multiple of p*t) the other banks hold
    bank = hw.glb_bank_words
    h = pb.U * (e - 1) + pb.R
    ifmap_banks = -(-(n * q * r * h * pb.Wp) // bank)
    m_fit = np.maximum(hw.glb_banks - ifmap_banks, 0) * bank // (n * np.minimum(e, E) * pb.F)
    pt = p * t
    m = np.zeros_like(e)
    for d in _divisors(pb.M):
        m[(d <= m_fit) & (d % pt == 0)] = d
    keep = (ifmap_banks < hw.glb_banks) & (m >= pt)
    if hw.ifmap_tile_one_bank and pb.R > 1:
        # one image's q*r channels sit in as many banks as one channel's strip needs (rule M8,
        # observed on the chip's 3x3..11x11 layers only; 1x1 layers are outside its evidence)
        keep &= -(-(q * r * h * pb.Wp) // bank) <= -(-(h * pb.Wp) // bank)
    # M7's floor among these (the most active PEs survive it, so :func:`filled` keeps them all)
    pes = pb.R * np.minimum(e, E) * r * t
    if keep.any():
        keep &= pes >= hw.mapping_fill * pes[keep].max()
    return {"e": e[keep], "n": n[keep], "p": p[keep], "q": q[keep], "r": r[keep], "t": t[keep], "m": m[keep]}


def legal_candidates(pb: Problem, hw: Hardware) -> dict[str, np.ndarray]:
    """:func:`candidates`, or UnsupportedLayerError when there is none."""
    cand = candidates(pb, hw)
    if not cand or cand["e"].size == 0:
        raise UnsupportedLayerError(
            f"no legal row-stationary mapping on {hw.name} (R={pb.R}, S={pb.S}, E={pb.E}, F={pb.F}, "
            f"Wp={pb.Wp}): the smallest PE set or its GLB tile does not fit"
        )
    return cand


def objective_value(res: dict[str, np.ndarray], objective: str) -> np.ndarray:
    if objective == "energy":
        return res["energy"]
    latency = res["cycles"] + res["stall_cycles"]
    if objective == "latency":
        return latency
    return res["energy"] * latency


DEFAULT_TOLERANCE = 0.02


def search(pb: Problem, hw: Hardware, objective: str = "energy", tolerance: float = DEFAULT_TOLERANCE) -> Mapping:
    """The best mapping for ``objective`` (energy, latency or edp).

    The energy landscape of RS mappings is flat: on AlexNet the chip's own Table III mappings lie
    within 0-3% of the model's minimum, while the strict minimum can be 40% slower (CONV2). So
    among mappings within ``tolerance`` (relative) of the best objective value, the fastest wins
    (for ``latency``, the least energy); ``tolerance=0`` gives the strict optimum. Remaining ties
    go to more active PEs.
    """
    if objective not in OBJECTIVES:
        from ..errors import HwawareError

        raise HwawareError(f"unknown objective '{objective}'; allowed: {', '.join(OBJECTIVES)}")
    if tolerance < 0:
        from ..errors import HwawareError

        raise HwawareError(f"tolerance must be >= 0, got {tolerance}")
    cand = legal_candidates(pb, hw)
    res = evaluate(pb, hw, cand["e"], cand["n"], cand["p"], cand["q"], cand["r"], cand["t"], cand["m"])
    full = filled(res, hw)
    n = cand["e"].size
    b = int(full[choose({k: np.broadcast_to(v, (n,))[full] for k, v in res.items()}, objective, tolerance)])
    return Mapping(**{k: int(cand[k][b]) for k in ("m", "n", "e", "p", "q", "r", "t")})


def filled(res: dict[str, np.ndarray], hw: Hardware) -> np.ndarray:
    """Indices of the mappings that keep the array filled: the chip only uses mappings within
    ``hw.mapping_fill`` of the most active PEs (a rule on the shape alone, never on statistics)."""
    pes = res["active_pes"]
    return np.flatnonzero(pes >= hw.mapping_fill * pes.max())


def choose(res: dict[str, np.ndarray], objective: str, tolerance: float) -> int:
    """Index of the winner among evaluated mappings (already :func:`filled`): within ``tolerance``
    of the best ``objective`` value, the secondary metric (latency; energy for ``latency``), then
    the primary, then more active PEs; remaining ties go to the first (a stable sort)."""
    pes = res["active_pes"]
    primary = objective_value(res, objective)
    latency = res["cycles"] + res["stall_cycles"]
    secondary = latency if objective != "latency" else res["energy"]
    near_f = np.flatnonzero(primary <= primary.min() * (1.0 + tolerance) * (1 + 1e-12))
    # within the near-optimal set: secondary metric, then the primary, then more active PEs
    order = np.lexsort((-pes[near_f], _round(primary[near_f]), _round(secondary[near_f])))
    return int(near_f[order[0]])


def _round(x: np.ndarray) -> np.ndarray:
    scale = np.where(x > 0, 10.0 ** (np.floor(np.log10(np.maximum(x, 1e-300))) - 11), 1.0)
    return np.round(x / scale) * scale
