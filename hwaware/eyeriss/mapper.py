"""Row-stationary mapper: the best legal mapping (m, n, e, p, q, r, t) of a layer, exhaustively.

Legal space (JSSC Sec. IV-A, Table II):
- PE set R x e. If e <= pe_cols, floor(pe_rows/R) * floor(pe_cols/e) sets fit; a wider set is
  folded into ceil(e/pe_cols) segments stacked vertically, and floor(pe_rows/(R*segments)) fit.
  r * t <= sets; q * r <= C and p * t <= M (per group).
- Spads: p*q*S <= filter spad, q*S <= ifmap spad, p <= psum spad.
- GLB: n*q*r*h*Wp ifmap words and n*m*e*F psum words, each rounded up to whole banks, fit the
  banks of the ifmap/psum buffer; m is a multiple of p*t and at most M (rounded up to p*t).

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
from .cost import Problem, energy, evaluate
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


def _min_tiles(size: int) -> np.ndarray:
    """The smallest tile for each tile count: {ceil(size/k) : k = 1..size}."""
    return np.unique(-(-size // np.arange(1, size + 1)))


@lru_cache(maxsize=64)
def _rt_pairs(max_sets: int) -> tuple[np.ndarray, np.ndarray]:
    r, t = [], []
    for ri in range(1, max_sets + 1):
        for ti in range(1, max_sets // ri + 1):
            r.append(ri)
            t.append(ti)
    return np.array(r, dtype=np.int64), np.array(t, dtype=np.int64)


@dataclass(frozen=True)
class Space:
    """The legal mapping space of one layer, factored so blocks of (p, q) can be expanded lazily."""

    ps: np.ndarray  # legal (p, q) pairs
    qs: np.ndarray
    r_ok: np.ndarray  # r_ok[q, r]: r is a smallest tile of ceil(C/q) and q*r <= C
    t_ok: np.ndarray  # t_ok[p, t] likewise for ceil(M/p)
    e: np.ndarray  # (e, r, t) triples whose sets fit the array
    r: np.ndarray
    t: np.ndarray
    ns: np.ndarray  # batch tiles

    @property
    def size(self) -> int:
        return int(self.ps.size)


def build_space(pb: Problem, hw: Hardware) -> Space | None:
    # p, q: smallest value per pass count (ceil(M/p) drives passes, array reads and compute; a larger
    # p with the same count only computes more per pass), within the spads
    pv = _min_tiles(pb.M)
    pv = pv[pv <= hw.spad_psum]
    qv = _min_tiles(pb.C)
    qv = qv[qv <= hw.spad_ifmap // pb.S]
    if pv.size == 0 or qv.size == 0:
        return None
    P, Q = np.meshgrid(pv, qv, indexing="ij")
    ok = P * Q * pb.S <= hw.spad_filter
    ps, qs = P[ok], Q[ok]
    max_sets = (hw.pe_rows // pb.R) * hw.pe_cols
    r_ok = np.zeros((int(qv.max()) + 1, max_sets + 1), dtype=bool)
    for q in qv:
        r = _min_tiles(-(-pb.C // int(q)))
        r_ok[q, r[(r <= max_sets) & (r * q <= pb.C)]] = True
    t_ok = np.zeros((int(pv.max()) + 1, max_sets + 1), dtype=bool)
    for p in pv:
        t = _min_tiles(-(-pb.M // int(p)))
        t_ok[p, t[(t <= max_sets) & (t * p <= pb.M)]] = True
    r_any, t_any = r_ok.any(axis=0), t_ok.any(axis=0)
    es, rs, ts = [], [], []
    for e in _min_tiles(pb.E):
        if e <= hw.pe_cols:
            sets = (hw.pe_rows // pb.R) * (hw.pe_cols // e)
        else:
            sets = hw.pe_rows // (pb.R * math.ceil(e / hw.pe_cols))
        if sets < 1:
            continue
        r, t = _rt_pairs(int(sets))
        keep = r_any[r] & t_any[t]
        es.append(np.full(int(keep.sum()), e))
        rs.append(r[keep])
        ts.append(t[keep])
    if not es:
        return None
    return Space(ps, qs, r_ok, t_ok, np.concatenate(es), np.concatenate(rs), np.concatenate(ts), _min_tiles(pb.N))


def expand(pb: Problem, hw: Hardware, space: Space, pq_index: np.ndarray | None = None) -> dict[str, np.ndarray]:
    """Candidate arrays (e, n, p, q, r, t, m) for the chosen (p, q) pairs (all when None)."""
    ps, qs = (space.ps, space.qs) if pq_index is None else (space.ps[pq_index], space.qs[pq_index])
    # cross (e, r, t) x (p, q), keeping only the legal (q, r) and (p, t) combinations
    i, j = np.nonzero(space.r_ok[qs][:, space.r].T & space.t_ok[ps][:, space.t].T)
    e, r, t, p, q = space.e[i], space.r[i], space.t[i], ps[j], qs[j]
    ns = space.ns
    if ns.size > 1:
        i = np.repeat(np.arange(e.size), ns.size)
        e, r, t, p, q = e[i], r[i], t[i], p[i], q[i]
        n = np.tile(ns, e.size // ns.size)
    else:
        n = np.full(e.size, int(ns[0]))
    # GLB: ifmap banks, then the largest m (multiple of p*t) that the remaining banks hold
    bank = hw.glb_bank_words
    h = pb.U * (e - 1) + pb.R
    ifmap_banks = -(-(n * q * r * h * pb.Wp) // bank)
    psum_cap = (hw.glb_banks - ifmap_banks) * bank
    pt = p * t
    m_fit = (psum_cap // (n * e * pb.F)) // pt * pt
    m_full = -(-pb.M // pt) * pt  # all filters of the group (rounded up to whole passes)
    m = np.minimum(m_fit, m_full)
    keep = (ifmap_banks < hw.glb_banks) & (m >= pt)
    m = np.minimum(m, pb.M)  # report m as channels really held
    return {"e": e[keep], "n": n[keep], "p": p[keep], "q": q[keep], "r": r[keep], "t": t[keep], "m": m[keep]}


def candidates(pb: Problem, hw: Hardware) -> dict[str, np.ndarray]:
    """All legal (e, n, p, q, r, t, m) after the dominance reductions, as flat int arrays."""
    space = build_space(pb, hw)
    return {} if space is None else expand(pb, hw, space)


def energy_lower_bound(pb: Problem, hw: Hardware, space: Space) -> np.ndarray:
    """A lower bound of :func:`cost.energy` over every candidate of each (p, q) pair.

    Each term of the energy is bounded at the most favourable value of the parameters it shares
    with other pairs: the fewest ifmap rows read (one strip, or one row per strip when U > R) and
    one filter fetch, n = N, m = M, and r, t at their largest legal values for that pair. The bound is tested against the exhaustive minimum.
    """
    p, q = space.ps, space.qs
    r_max = np.array([np.flatnonzero(space.r_ok[qq]).max() for qq in q])
    t_max = np.array([np.flatnonzero(space.t_ok[pp]).max() for pp in p])
    n_if, n_w, n_of = float(pb.n_if), float(pb.n_w), float(pb.n_of)
    si, sw = pb.ifmap_scale, pb.weight_scale
    # rows read, U*(E-k) + R*k, is linear in the strip count k: its minimum is at k = 1 or k = E
    rows_min = min(pb.U * (pb.E - 1) + pb.R, pb.R * pb.E)
    halo = rows_min / pb.Hp
    costs = hw.energy_costs()
    gate_if = (1.0 - pb.ifmap_zeros) if hw.gate_zero_ifmap else 1.0
    gate_w = (1.0 - pb.weight_zeros) if hw.gate_zero_weights else 1.0
    macs = float(pb.macs)
    dram = n_if * halo * pb.rlc_if * si + n_w * pb.rlc_w * sw + n_of * pb.rlc_of * si
    glb = n_if * halo * (1 + -(-pb.M // (p * t_max))) * si + 2.0 * n_of * -(-pb.C // (q * r_max))
    array = n_if * -(-pb.M // p) * (pb.R * pb.E / pb.Hp) * si + n_w * pb.E * sw \
        + n_of * (-(-pb.C // q) * pb.R - -(-pb.C // q))
    rf = macs * si + macs * gate_if * sw + 2.0 * n_of * np.maximum(pb.C * pb.R * pb.S - -(-pb.C // q) * pb.R, 0)
    return (dram * costs["DRAM"] + glb * costs["GLB"] + array * costs["array"] + rf * costs["RF"]
            + macs * gate_if * gate_w * pb.mac_scale * costs["MAC"])


def _search_energy(pb: Problem, hw: Hardware, space: Space, tolerance: float) -> dict[str, np.ndarray]:
    """Branch and bound over (p, q) blocks: every mapping within ``tolerance`` of the minimum."""
    lb = energy_lower_bound(pb, hw, space)
    order = np.argsort(lb, kind="stable")
    best = np.inf
    kept: list[dict[str, np.ndarray]] = []
    chunk = 8  # small chunks in bound order: the incumbent tightens and prunes the rest early
    for start in range(0, order.size, chunk):
        block = order[start:start + chunk]
        block = block[lb[block] <= best * (1.0 + tolerance) * (1 + 1e-12)]
        if block.size == 0:
            break  # sorted by bound: no later pair can hold a near-optimal mapping
        cand = expand(pb, hw, space, block)
        if cand["e"].size == 0:
            continue
        en = energy(pb, hw, *(cand[k] for k in "enpqrtm"))["energy"]
        best = min(best, float(en.min()))
        near = en <= best * (1.0 + tolerance) * (1 + 1e-12)
        kept.append({k: v[near] for k, v in cand.items()})
    if not kept:
        return {}
    cand = {k: np.concatenate([c[k] for c in kept]) for k in kept[0]}
    en = energy(pb, hw, *(cand[k] for k in "enpqrtm"))["energy"]
    near = en <= en.min() * (1.0 + tolerance) * (1 + 1e-12)
    return {k: v[near] for k, v in cand.items()}


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
    space = build_space(pb, hw)
    if space is None:
        cand: dict[str, np.ndarray] = {}
    elif objective == "energy":
        # energy by branch and bound; cycles only for the near-optimal mappings it returns
        cand = _search_energy(pb, hw, space, tolerance)
    else:
        cand = expand(pb, hw, space)
    if not cand or cand["e"].size == 0:
        raise UnsupportedLayerError(
            f"no legal row-stationary mapping on {hw.name} (R={pb.R}, S={pb.S}, E={pb.E}, F={pb.F}, "
            f"Wp={pb.Wp}): the smallest PE set or its GLB tile does not fit"
        )
    res = evaluate(pb, hw, cand["e"], cand["n"], cand["p"], cand["q"], cand["r"], cand["t"], cand["m"])
    primary = objective_value(res, objective)
    latency = res["cycles"] + res["stall_cycles"]
    secondary = latency if objective != "latency" else res["energy"]
    near = np.flatnonzero(primary <= primary.min() * (1.0 + tolerance) * (1 + 1e-12))
    # within the near-optimal set: secondary metric, then the primary, then more active PEs
    order = np.lexsort((-res["active_pes"][near], _round(primary[near]), _round(secondary[near])))
    b = int(near[order[0]])
    return Mapping(**{k: int(cand[k][b]) for k in ("m", "n", "e", "p", "q", "r", "t")})


def _round(x: np.ndarray) -> np.ndarray:
    scale = np.where(x > 0, 10.0 ** (np.floor(np.log10(np.maximum(x, 1e-300))) - 11), 1.0)
    return np.round(x / scale) * scale
