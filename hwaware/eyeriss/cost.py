"""Access counts, energy and cycles of a row-stationary mapping (pure, NumPy-vectorized).

One function, :func:`evaluate`, is used both by the mapper (over arrays of candidate mappings) and
by the report (one mapping), so what is searched and what is reported cannot disagree.

Letters follow the JSSC paper. Per group: M filters, C channels; Hp, Wp padded input; the PE set is
R rows (filter rows) by e columns (ofmap rows), strip-mined into k_e = ceil(E/e) strips. Each PE runs
p x q 1-D primitives (p filters, q channels) on n images; r x t sets share the array (r channels,
t filters); m ofmap channels are kept in the GLB.

Counts, in 16-bit words (scaled by bits/16 for narrower data), over the whole layer:

===========  =================================  ===============================  ==========================
level        ifmap                              filter                           psum / ofmap
===========  =================================  ===============================  ==========================
DRAM         #if*h*ceil(M/m)*rlc_if             #w*ceil(N/n)*k_e*c_w             #of*rlc_of (writes)
GLB          #if*h*(ceil(M/m) + ceil(M/pt))     0 (own 8 kB filter buffer)       2*#of*ceil(C/qr)
array        #if*ceil(M/p)*R*E/Hp               #w*ceil(N/n)*E                   #of*(ceil(C/q)*R - ceil(C/qr))
RF           MACs                               MACs*(1-z_if) (zero gating)      2*#of*(C*R*S - ceil(C/q)*R)
===========  =================================  ===============================  ==========================

#if = G*N*C*Hp*Wp, #w = G*M*C*R*S, #of = G*N*M*E*F; h = rows read / Hp, with U*(E-k_e) + R*k_e rows
read per channel over all strips (the halo re-read between strips). GLB ifmap counts the fill from
DRAM plus one read per filter-pass; GLB psum counts every pass's write and read-back, the final
write and the read-out to DRAM. These are the ISCA 2016 formulas (NOTES.md) with exact strip and
pass counts; MACs are gated by zero ifmaps and (CVPR 2017 model) zero weights.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from .hardware import Hardware

LEVELS = ("DRAM", "GLB", "array", "RF")
TYPES = ("ifmap", "filter", "psum")


@dataclass(frozen=True)
class Problem:
    """A layer as the cost model sees it: per-group shape, statistics and compression ratios."""

    G: int
    N: int
    M: int  # filters per group
    C: int  # channels per group
    Hp: int
    Wp: int
    R: int
    S: int
    E: int
    F: int
    U: int
    ifmap_zeros: float
    weight_zeros: float
    rlc_if: float  # DRAM words of the (compressed) ifmap / raw words; 1.0 when not compressed
    rlc_of: float
    rlc_w: float
    ifmap_scale: float  # act_bits / 16
    weight_scale: float  # weight_bits / 16
    mac_scale: float  # (weight_bits * act_bits) / 256
    macs: int  # real MACs of the original layer (before any R-split padding)

    @property
    def n_if(self) -> int:
        return self.G * self.N * self.C * self.Hp * self.Wp

    @property
    def n_w(self) -> int:
        return self.G * self.M * self.C * self.R * self.S

    @property
    def n_of(self) -> int:
        return self.G * self.N * self.M * self.E * self.F


def _ceil(a, b):
    return -(-a // b)


def _full(value: float, shape: tuple[int, ...]) -> np.ndarray:
    """A float64 array of ``shape`` holding ``value`` (``np.broadcast_to`` plus a copy costs ~10 us a
    call in Python, more than the arithmetic here on a few hundred mappings)."""
    return np.full(shape, value, dtype=np.float64)


def shaped(a, shape: tuple[int, ...]):
    """``a`` seen with ``shape``: ``a`` itself when it has it already (the usual case), else a
    read-only broadcast view."""
    return a if getattr(a, "shape", None) == shape else np.broadcast_to(a, shape)


def evaluate(pb: Problem, hw: Hardware, e, n, p, q, r, t, m) -> dict[str, np.ndarray]:
    """Counts, energy and cycles for mapping arrays (broadcastable ints). Returns arrays.

    Keys: ``acc_<level>_<type>`` (words), ``energy_<level>`` and ``energy_MAC`` (normalized),
    ``energy`` (total), ``passes``, ``cycles`` (processing, incl. DRAM bound), ``stall_cycles``
    (non-overlapped ifmap load / ofmap dump), ``active_pes``.
    """
    out = energy(pb, hw, e, n, p, q, r, t, m)
    out.update(cycles(pb, hw, e, n, p, q, r, t, out))
    return out


def energy(pb: Problem, hw: Hardware, e, n, p, q, r, t, m) -> dict[str, np.ndarray]:
    """Access counts and normalized energy (the first half of :func:`evaluate`)."""
    e, n, p, q, r, t, m = (np.asarray(x, dtype=np.int64) for x in (e, n, p, q, r, t, m))
    N, M, C, Hp, R, S, E, U = pb.N, pb.M, pb.C, pb.Hp, pb.R, pb.S, pb.E, pb.U
    n_if, n_w, n_of = float(pb.n_if), float(pb.n_w), float(pb.n_of)
    macs = float(pb.macs)

    k_e = _ceil(E, e)  # strips
    rows_read = U * (E - k_e) + R * k_e  # ifmap rows read per channel over all strips
    halo = rows_read / Hp
    m_passes = _ceil(M, m)
    pt_passes = _ceil(M, p * t)
    c_passes = _ceil(C, q * r)
    n_passes = _ceil(N, n)

    out: dict[str, np.ndarray] = {}
    si, sw = pb.ifmap_scale, pb.weight_scale
    # DRAM
    out["acc_DRAM_ifmap"] = n_if * halo * m_passes * pb.rlc_if * si
    out["acc_DRAM_filter"] = n_w * n_passes * k_e * pb.rlc_w * sw
    out["acc_DRAM_psum"] = _full(n_of * pb.rlc_of * si, e.shape)
    # GLB (filters bypass it through the separate filter buffer)
    out["acc_GLB_ifmap"] = n_if * halo * (m_passes + pt_passes) * si
    out["acc_GLB_filter"] = np.zeros(np.broadcast(e, n, p, q, r, t, m).shape)
    out["acc_GLB_psum"] = 2.0 * n_of * c_passes
    # array (inter-PE NoC deliveries counted per receiving PE)
    out["acc_array_ifmap"] = n_if * _ceil(M, p) * (R * E / Hp) * si
    out["acc_array_filter"] = n_w * n_passes * E * sw
    out["acc_array_psum"] = n_of * (_ceil(C, q) * R - c_passes)
    # RF (spads)
    gate_if = (1.0 - pb.ifmap_zeros) if hw.gate_zero_ifmap else 1.0
    gate_w = (1.0 - pb.weight_zeros) if hw.gate_zero_weights else 1.0
    out["acc_RF_ifmap"] = _full(macs * si, e.shape)
    out["acc_RF_filter"] = _full(macs * gate_if * sw, e.shape)
    out["acc_RF_psum"] = 2.0 * n_of * np.maximum(C * R * S - _ceil(C, q) * R, 0)

    shape = np.broadcast(*(out[k] for k in out)).shape
    costs = hw.energy_costs()
    total = np.zeros(shape)
    for level in LEVELS:
        lv = sum(shaped(out[f"acc_{level}_{ty}"], shape) for ty in TYPES) * costs[level]
        out[f"energy_{level}"] = lv
        total = total + lv
    mac_energy = macs * gate_if * gate_w * pb.mac_scale * costs["MAC"]
    out["energy_MAC"] = _full(mac_energy, shape)
    out["energy"] = total + mac_energy
    return out


def cycles(pb: Problem, hw: Hardware, e, n, p, q, r, t, acc: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    """Processing cycles, stalls, passes and active PEs (the second half of :func:`evaluate`).

    A layer runs ``G*ceil(N/n)*ceil(M/pt)`` (image, filter) tiles; each sweeps ``ceil(E/e)`` strips
    (the last one ``E - e*floor(E/e)`` rows wide when E is not a multiple of e) and each strip takes
    ``ceil(C/qr)`` processing passes. A pass lasts the longest of (JSSC Sec. V-B, V-C):

    - compute: ``n*p*q*F*S`` MACs per PE at one MAC per cycle;
    - ifmap delivery: ``n*q*r*h*Wp`` words on the 16-bit ifmap GIN (1 word/cycle, multicast);
    - psum delivery: ``n*p*t*e*F`` psums read in on the 64-bit psum GIN and as many written out on
      the 64-bit GON (4 words/cycle each, in parallel);

    plus its ramp-up: the pass's ``p*t*q*r*R*S`` filter words on the 64-bit filter GIN and the first
    ``q*S``-wide window of each ifmap row before the PEs can start. The layer also takes at least its
    filter DRAM traffic over the link (1.2 words/cycle), streamed during processing. Returned totals (``*_cycles_total``) feed Eyexam.
    """
    e, n, p, q, r, t = (np.asarray(x, dtype=np.int64) for x in (e, n, p, q, r, t))
    G, N, M, C, Wp, R, S, E, F, U = pb.G, pb.N, pb.M, pb.C, pb.Wp, pb.R, pb.S, pb.E, pb.F, pb.U
    shape = np.broadcast(e, n, p, q, r, t).shape
    k_e = _ceil(E, e)
    k_full = E // e
    e_last = E - k_full * e
    c_passes = _ceil(C, q * r)
    tiles = G * _ceil(N, n) * _ceil(M, p * t)
    passes = tiles * k_e * c_passes
    compute = n * p * q * F * S  # MACs per PE per pass
    filt_ramp = _ceil(p * t * q * r * R * S, hw.filter_bus_words)

    def strip(width):
        h = U * (width - 1) + R
        ifmap = _ceil(n * q * r * h * Wp, hw.ifmap_bus_words)
        psum = _ceil(n * p * t * width * F, hw.psum_bus_words)
        ramp = filt_ramp + _ceil(q * r * h * S, hw.ifmap_bus_words)
        busy = np.maximum(np.maximum(compute + 0 * width, ifmap), psum)
        return c_passes * (busy + ramp), c_passes * ifmap, c_passes * psum, c_passes * ramp

    full = strip(e)
    last = strip(np.maximum(e_last, 1))
    has_last = (e_last > 0).astype(np.int64)
    per_tile = [k_full * a + has_last * b for a, b in zip(full, last)]
    pass_cyc, ifmap_cyc, psum_cyc, ramp_cyc = (shaped(tiles * x, shape).astype(np.float64) for x in per_tile)
    compute_cyc = shaped(passes * compute, shape).astype(np.float64)
    bw = hw.dram_words_per_cycle
    # filters stream from DRAM while the array works (the filter buffer preloads the next pass,
    # JSSC Sec. V-A); ifmap loads and ofmap dumps are the separate stall below
    dram_cyc = shaped(acc["acc_DRAM_filter"], shape) / bw
    out: dict[str, np.ndarray] = {}
    out["passes"] = shaped(passes, shape)
    out["cycles"] = np.maximum(pass_cyc, dram_cyc)
    # the chip does not compute while it loads ifmaps from DRAM or dumps ofmaps (JSSC Sec. VI-A)
    out["stall_cycles"] = shaped(acc["acc_DRAM_ifmap"] + acc["acc_DRAM_psum"], shape) / bw
    out["active_pes"] = shaped(R * np.minimum(e, E) * r * t, shape)
    out["compute_cycles_total"] = compute_cyc
    out["ifmap_noc_cycles_total"] = ifmap_cyc
    out["psum_noc_cycles_total"] = psum_cyc
    out["ramp_cycles_total"] = ramp_cyc
    out["dram_cycles_total"] = np.asarray(dram_cyc, dtype=np.float64)
    return out
