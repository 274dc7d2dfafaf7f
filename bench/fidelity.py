"""Model vs chip: the Eyeriss model on AlexNet CONV1-5 against the JSSC 2017 measurements.

    python bench/fidelity.py            # table of every metric with % error, power fit, mappings

Prints, per layer and in total: active PEs, DRAM MB, GLB MB, processing and total latency, power,
each with the model's value, the measured one and the error; then the chosen mappings next to
Table III, and the same metrics when the model is given the chip's own Table III mappings
(separating mapper choices from access-count modeling). Also refits the one power constant
(pJ per normalized energy unit) on the AlexNet total and compares it with the preset.
"""

from __future__ import annotations

import numpy as np

from hwaware.eyeriss import Scorer, evaluate, get_preset
from hwaware.eyeriss.mapper import make_problem
from hwaware.eyeriss.reference import alexnet_workload, load_reference
from hwaware.report_table import format_table


def pct(model: float, chip: float) -> str:
    return f"{100.0 * (model - chip) / chip:+.1f}%"


def main() -> None:
    ref = load_reference()
    wl = alexnet_workload(ref)
    hw = get_preset("eyeriss_v1")
    sc = Scorer(hw, "energy")
    rep = sc.score(wl)
    metrics = [("active PEs", "active_pes", "active_pes"), ("DRAM MB", "dram_MB", "dram_MB"),
               ("GLB MB", "glb_MB", "glb_MB"), ("proc. latency ms", "processing_latency_ms", "processing_latency_ms"),
               ("total latency ms", "total_latency_ms", "total_latency_ms"), ("power mW", "power_mW", "power_mW")]
    rows = []
    for ls, L in zip([*rep.layers, rep.total], [*ref["layers"], {"name": "total", "measured": ref["total"]}]):
        row = [L["name"]]
        for _, attr, key in metrics:
            mv, cv = float(getattr(ls, attr)), float(L["measured"][key])
            row.append(f"{mv:.4g} / {cv:g} ({pct(mv, cv)})")
        rows.append(row)
    print("Eyeriss model vs chip (JSSC 2017 Table V), AlexNet CONV1-5, batch 4, measured ifmap zeros; "
          "model / chip (error)")
    print(format_table(["layer", *[m[0] for m in metrics]], rows))
    fps = rep.frames_per_s
    print(f"\nframes/s {fps:.1f} / {ref['total']['frames_per_s']} ({pct(fps, ref['total']['frames_per_s'])}); "
          f"GMAC/s {rep.gmacs:.1f} / {ref['total']['GMACS']}; DRAM access/MAC "
          f"{rep.total.dram_MB * 1e6 / 2 / rep.total.macs:.4f} / {ref['total']['dram_access_per_mac']}")

    # power constant: chip power x model latency / model on-chip energy, on the AlexNet total
    onchip = rep.total.energy_onchip
    fit = ref["total"]["power_mW"] * 1e-3 * rep.total.total_latency_ms * 1e-3 / onchip * 1e12
    print(f"power calibration: {fit:.3f} pJ per normalized unit fitted on the AlexNet total "
          f"(preset eyeriss_v1.unit_pJ = {hw.unit_pJ:g})")

    print("\nchosen mapping (objective=energy, tolerance 2%) vs JSSC Table III")
    mrows = []
    for ls, L in zip(rep.layers, ref["layers"]):
        mp = ls.mapping.as_dict()
        mrows.append([L["name"], " ".join(f"{k}={mp[k]}" for k in "mnepqrt"),
                      " ".join(f"{k}={L['mapping'][k]}" for k in "mnepqrt"),
                      "same" if all(mp[k] == L["mapping"][k] for k in mp) else "differs"])
    print(format_table(["layer", "model", "Table III", ""], mrows, align="llll"))

    print("\nwith the chip's own Table III mappings (access-count model alone); model / chip (error)")
    rows = []
    nxt = [L.ifmap_zeros for L in wl.layers[1:]] + [None]
    for i, (lay, L) in enumerate(zip(wl.layers, ref["layers"])):
        ratios = sc._ratios(lay, i == 0, nxt[i])
        pb = make_problem(lay, hw, rlc_if=ratios[0], rlc_of=ratios[1], rlc_w=ratios[2])
        res = evaluate(pb, hw, *(np.array([L["mapping"][k]]) for k in "enpqrtm"))
        dram = sum(float(res[f"acc_DRAM_{t}"][0]) for t in ("ifmap", "filter", "psum")) * 2e-6
        glb = sum(float(res[f"acc_GLB_{t}"][0]) for t in ("ifmap", "filter", "psum")) * 2e-6
        proc = float(res["cycles"][0]) / (hw.core_MHz * 1e3)
        m = L["measured"]
        rows.append([L["name"], f"{dram:.3g} / {m['dram_MB']:g} ({pct(dram, m['dram_MB'])})",
                     f"{glb:.3g} / {m['glb_MB']:g} ({pct(glb, m['glb_MB'])})",
                     f"{proc:.3g} / {m['processing_latency_ms']:g} ({pct(proc, m['processing_latency_ms'])})"])
    print(format_table(["layer", "DRAM MB", "GLB MB", "proc. latency ms"], rows))


if __name__ == "__main__":
    main()
