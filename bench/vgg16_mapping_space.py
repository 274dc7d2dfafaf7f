"""Is VGG-16's DRAM gap inside the chip's mapping space? Every legal mapping, layer by layer.

    python bench/vgg16_mapping_space.py          # ~1 min on one core

The model's VGG-16 DRAM total (batch 3, Table VI's ifmap zeros) is 359.9 MB; the JSSC 2017 text
states 321.1 MB (Sec. VI-B). For each of the 13 CONV layers this enumerates *every* mapping
(e, n, p, q, r, t, m) the rules of docs/eyeriss_model.md allow (M1 folding, M3 placement, M4 spads,
M5 exact tiling, M6 GLB banks with every legal m, not only the largest; M8 with and without; no
M7 fill floor and none of the mapper's dominance reductions), evaluates each with the model's own
counts (``cost.evaluate``), and keeps those that match the chip where Table VI is published: the
same active PEs and a processing latency within 10% (issue 10's per-layer tolerance). It prints

(a) the DRAM traffic of the mapping the model chooses,
(b) the least DRAM traffic of any such mapping, and which one it is,
(c) the loop order at the DRAM/GLB level. Under M6 the GLB holds one pass's ifmap strips and the
    psums of m filters (JSSC Sec. IV-A: "n x q x r 2-D ifmaps and n x m 2-D psums"), and filters
    bypass it (Sec. V-A: an 8 kB filter buffer that "preloads the filters used by the next
    processing pass"). That fixes one order, Fig. 7's: image group > strip > filter group (m) >
    channel pass > filter tile (p*t); ifmaps come back from DRAM once per filter group (ceil(M/m))
    and filters once per image group and strip (ceil(N/n) * ceil(E/e)). Two other orders are scored
    for comparison, both outside M6: "ifmap-resident" keeps all C channels of a strip in the GLB
    (ifmaps read once), "filter-once" keeps the psums of all N images and all E rows (filters read
    once); the columns say whether they fit the 25 banks at all for a mapping with the chip's PEs
    and latency.

Nothing here is fitted to anything: the withheld Table VI traffic columns are not in this project.
"""

from __future__ import annotations

import numpy as np

from hwaware.eyeriss import Scorer, evaluate, get_preset
from hwaware.eyeriss.mapper import make_problem, set_slots
from hwaware.eyeriss.reference import load_vgg16_reference, vgg16_workload
from hwaware.report_table import format_table

TEXT_MB = 321.1  # JSSC 2017 Sec. VI-B: "The required DRAM access for a batch of three frames is 321.1 MB"
LATENCY_TOL = 0.10  # issue 10: processing latency within 10% per layer
MB = 2e-6  # 16-bit words to MB


def _divisors(x: int) -> list[int]:
    return [d for d in range(1, x + 1) if x % d == 0]


def enumerate_space(pb, hw, *, side_by_side: bool = False) -> dict[str, np.ndarray]:
    """Every (e, n, p, q, r, t, m) the rules allow (M1, M3, M4, M5, M6; M8 returned as a flag).

    ``side_by_side`` relaxes M3 (sets may sit next to each other even when two fit vertically)."""
    rows = []
    bank = hw.glb_bank_words
    divM = _divisors(pb.M)
    for e in range(1, min(pb.E, (hw.pe_rows // pb.R) * hw.pe_cols) + 1):
        vert, horiz = set_slots(pb.R, e, hw)
        if vert < 1:
            continue
        sets = vert * horiz if side_by_side or vert < 2 else vert
        h = pb.U * (e - 1) + pb.R
        for r in range(1, min(vert, pb.C) + 1):
            for t in range(1, sets // r + 1):
                for p in (d for d in divM if d <= hw.spad_psum):
                    if pb.M % (p * t):
                        continue
                    for q in range(1, hw.spad_ifmap // pb.S + 1):
                        if p * q * pb.S > hw.spad_filter or q * r > pb.C:
                            continue
                        for n in _divisors(pb.N):
                            if_banks = -(-(n * q * r * h * pb.Wp) // bank)
                            m8 = -(-(q * r * h * pb.Wp) // bank) <= -(-(h * pb.Wp) // bank)
                            for m in divM:
                                if m % (p * t):
                                    continue
                                ps_banks = -(-(n * m * min(e, pb.E) * pb.F) // bank)
                                if if_banks + ps_banks <= hw.glb_banks:
                                    rows.append((e, n, p, q, r, t, m, m8))
    a = np.array(rows, dtype=np.int64).T
    return dict(zip(("e", "n", "p", "q", "r", "t", "m", "m8"), a))


def other_orders(pb, hw, c: dict[str, np.ndarray], res: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    """DRAM words of the two loop orders outside M6, and whether their GLB regions fit at all."""
    bank = hw.glb_bank_words
    e, n, p, t = c["e"], c["n"], c["p"], c["t"]
    h = pb.U * (e - 1) + pb.R
    k_e = -(-pb.E // e)
    rows_read = pb.U * (pb.E - k_e) + pb.R * k_e
    if_once = pb.n_if * rows_read / pb.Hp * pb.rlc_if
    # ifmap-resident: all C channel strips of n images stay while every filter group passes
    fit_ifres = (-(-(n * pb.C * h * pb.Wp) // bank) + -(-(n * p * t * np.minimum(e, pb.E) * pb.F) // bank)) <= hw.glb_banks
    ifres = if_once + res["acc_DRAM_filter"] + res["acc_DRAM_psum"]
    # filter-once: psums of all N images and E rows for p*t filters stay while images and strips stream
    fit_fonce = (-(-(n * c["q"] * c["r"] * h * pb.Wp) // bank) + -(-(pb.N * p * t * pb.E * pb.F) // bank)) <= hw.glb_banks
    fonce = if_once * -(-pb.M // (p * t)) + pb.n_w * pb.rlc_w + res["acc_DRAM_psum"]
    return {"ifres": ifres, "fit_ifres": fit_ifres, "fonce": fonce, "fit_fonce": fit_fonce}


def dram(res: dict[str, np.ndarray]) -> np.ndarray:
    return (res["acc_DRAM_ifmap"] + res["acc_DRAM_filter"] + res["acc_DRAM_psum"]) * MB


def analyse(hw=None) -> list[dict]:
    """Per VGG-16 layer: the model's choice, the least-DRAM chip-like mappings (several rule sets) and
    the other loop orders, in MB (see the module docstring)."""
    hw = hw or get_preset("eyeriss_v1")
    sc = Scorer(hw, "energy")
    ref = load_vgg16_reference()
    wl = vgg16_workload(ref)
    rep = sc.score(wl)
    ms_per_cycle = 1.0 / (hw.core_MHz * 1e3)
    out = []
    nxt = [L.ifmap_zeros for L in wl.layers[1:]] + [None]
    for i, (lay, L) in enumerate(zip(wl.layers, ref["layers"])):
        ratios = sc._ratios(lay, i == 0, nxt[i])
        pb = make_problem(lay, hw, rlc_if=ratios[0], rlc_of=ratios[1], rlc_w=ratios[2])
        meas = L["measured"]

        def chip_like(c, pb=pb, meas=meas):
            res = evaluate(pb, hw, c["e"], c["n"], c["p"], c["q"], c["r"], c["t"], c["m"])
            pes = np.broadcast_to(res["active_pes"], c["e"].shape)
            lat = np.broadcast_to(res["cycles"], c["e"].shape) * ms_per_cycle
            ok = (pes == meas["active_pes"]) & (np.abs(lat / meas["processing_latency_ms"] - 1) <= LATENCY_TOL)
            return res, ok, lat

        c = enumerate_space(pb, hw)
        res, ok, lat = chip_like(c)
        d = dram(res)
        ok8 = ok & (c["m8"] == 1)
        j = int(np.flatnonzero(ok8)[np.argmin(d[ok8])])
        j_any = int(np.flatnonzero(ok)[np.argmin(d[ok])])
        oo = other_orders(pb, hw, c, res)
        ifres_ok, fonce_ok = ok8 & oo["fit_ifres"], ok8 & oo["fit_fonce"]
        c2 = enumerate_space(pb, hw, side_by_side=True)
        res2, ok2, _ = chip_like(c2)
        chosen = rep[lay.name]
        out.append({
            "name": lay.name, "chip_like": int(ok.sum()), "legal": int(ok.size),
            "model": chosen.dram_MB, "model_ifmap": chosen.accesses["DRAM"]["ifmap"] * MB,
            "model_mapping": str(chosen.mapping),
            "min": float(d[j]), "min_mapping": " ".join(f"{k}={int(c[k][j])}" for k in "mnepqrt"),
            "min_latency_ms": float(lat[j]), "latency_ms": meas["processing_latency_ms"],
            "min_no_m8": float(d[j_any]), "min_m3_relaxed": float(dram(res2)[ok2 & (c2["m8"] == 1)].min()),
            "ifmap_resident": float(oo["ifres"][ifres_ok].min() * MB) if ifres_ok.any() else None,
            "ifmap_resident_any_glb": float(oo["ifres"][ok].min() * MB),
            "filter_once": float(oo["fonce"][fonce_ok].min() * MB) if fonce_ok.any() else None,
            "filter_once_any_glb": float(oo["fonce"][ok].min() * MB),
            # compulsory: each coded ifmap word read once (no halo, no refetch), each filter and ofmap once
            "compulsory": (pb.n_if * pb.rlc_if + pb.n_w * pb.rlc_w + pb.n_of * pb.rlc_of) * MB,
        })
    return out


def main() -> None:
    rows = analyse()
    f = lambda v: "no fit" if v is None else f"{v:.2f}"
    print("VGG-16 CONV layers, batch 3, Table VI ifmap zeros; DRAM MB per layer. 'chip-like' = the mappings the rules "
          f"allow with Table VI's active PEs and processing latency within {LATENCY_TOL:.0%}")
    print(format_table(
        ["layer", "chip-like/legal", "(a) model", "model mapping", "(b) min", "its mapping", "latency ms",
         "min w/o M8", "min M3 relaxed", "ifmap-resident", "(ignoring GLB)", "filter-once", "(ignoring GLB)"],
        [[r["name"], f"{r['chip_like']}/{r['legal']}", f"{r['model']:.2f}", r["model_mapping"], f"{r['min']:.2f}",
          r["min_mapping"], f"{r['min_latency_ms']:.0f}/{r['latency_ms']:g}", f"{r['min_no_m8']:.2f}",
          f"{r['min_m3_relaxed']:.2f}", f(r["ifmap_resident"]), f"({r['ifmap_resident_any_glb']:.2f})",
          f(r["filter_once"]), f"({r['filter_once_any_glb']:.2f})"] for r in rows],
        align="llrlrlrrrrrrr"))
    tot = {k: sum(r[k] for r in rows) for k in ("model", "model_ifmap", "min", "min_no_m8", "min_m3_relaxed",
                                                "compulsory")}
    ifres = sum(r["min"] if r["ifmap_resident"] is None else r["ifmap_resident"] for r in rows)
    fonce = sum(r["min"] if r["filter_once"] is None else r["filter_once"] for r in rows)
    pct = lambda v: f"{v:.1f} MB ({100 * (v / TEXT_MB - 1):+.1f}% vs the text's {TEXT_MB} MB)"
    print(f"(a) the model's choice: {pct(tot['model'])}; ifmaps alone {tot['model_ifmap']:.1f} MB")
    print(f"(b) least DRAM of any chip-like mapping, Fig. 7's order, M1-M8: {pct(tot['min'])}")
    print(f"    without M8: {pct(tot['min_no_m8'])}; also with M3 relaxed (sets side by side): "
          f"{pct(tot['min_m3_relaxed'])}")
    print(f"(c) other GLB loop orders where their regions fit 25 banks (else Fig. 7's): ifmap-resident {pct(ifres)}; "
          f"filter-once {pct(fonce)}")
    print(f"    compulsory traffic (each coded fmap and filter moved once, any order, unbounded GLB): "
          f"{pct(tot['compulsory'])}")
    print(f"    10% of the text is {1.1 * TEXT_MB:.1f} MB")


if __name__ == "__main__":
    main()
