"""Per-layer text table of a :class:`ScoreReport` (what ``hwaware score`` prints)."""

from __future__ import annotations

from typing import TYPE_CHECKING

from ..report_table import format_pct, format_si, format_table

if TYPE_CHECKING:
    from .score import LayerScore, ScoreReport


def _shape(ls: LayerScore) -> str:
    lay = ls.layer
    if lay is None:
        return ""
    g = f" g{lay.groups}" if lay.groups > 1 else ""
    return f"{lay.M}x{lay.C}x{lay.R}x{lay.S} {lay.H}x{lay.W}->{lay.E}x{lay.F} /{lay.U}{g}"


def _row(ls: LayerScore, total: float) -> list[str]:
    e = ls.energy
    bt = ls.energy_by_type
    mp = ls.mapping
    mapping = " ".join(str(v) for k, v in mp.as_dict().items() if k != "dataflow") if mp else ""
    zeros = format_pct(ls.layer.ifmap_zeros) if ls.layer is not None else ""
    return [
        ls.name, _shape(ls), mapping, str(ls.active_pes), format_si(ls.macs), zeros,
        format_si(e["DRAM"]), format_si(e["GLB"]), format_si(e["array"]), format_si(e["RF"]), format_si(e["MAC"]),
        format_si(bt["ifmap"]), format_si(bt["filter"]), format_si(bt["psum"]),
        format_si(ls.energy_total), format_pct(ls.energy_total / total if total else 0.0),
        f"{ls.dram_MB:.2f}", f"{ls.processing_latency_ms:.3f}", f"{ls.total_latency_ms:.3f}", f"{ls.power_mW:.0f}",
    ]


def _params(rep: ScoreReport) -> str:
    mp = next((ls.mapping for ls in rep.layers if ls.mapping is not None), None)
    return " ".join(k for k in mp.as_dict() if k != "dataflow") if mp else ""


def format_report(rep: ScoreReport) -> str:
    mapping = "m n e p q r t" if rep.hardware.dataflow == "rs" else "mapping " + _params(rep)
    headers = ["layer", "shape MxCxRxS HxW->ExF /U", mapping, "PEs", "MACs", "if0",
               "E:DRAM", "GLB", "array", "RF", "MAC", "ifmap", "filter", "psum",
               "energy", "share", "DRAM MB", "proc ms", "total ms", "mW"]
    tot = rep.total.energy_total
    rows: list[list[str] | None] = [_row(ls, tot) for ls in rep.layers]
    rows.append(None)
    rows.append(_row(rep.total, tot))
    hw = rep.hardware
    lines = [
        f"hwaware score on {hw.name} ({hw.dataflow.upper()} dataflow, {hw.pe_rows}x{hw.pe_cols} PEs, {hw.glb_kB:g} kB GLB, "
        f"{hw.core_MHz:g} MHz), objective={rep.objective}, batch N={rep.batch}. "
        "Energy normalized to one 16-bit MAC (DRAM access = 200).",
        format_table(headers, rows),
        f"{rep.frames_per_s:.1f} frames/s, {rep.gmacs:.1f} GMAC/s, PE utilization "
        f"{format_pct(rep.pe_utilization)}, energy {rep.total.energy_J * 1e3:.3f} mJ/batch "
        f"(at {hw.unit_pJ:g} pJ per unit"
        + (f" + {hw.clock_pJ:g} pJ per PE-cycle of clock" if hw.clock_pJ else "")
        + f"), chip power {rep.total.power_mW:.0f} mW (DRAM excluded).",
    ]
    notes = [f"  {ls.name}: {ls.note}" for ls in rep.layers if ls.note]
    if notes:
        lines.append("Split layers:")
        lines.extend(notes)
    if rep.unscored or rep.unmodeled:
        share = rep.unscored_share()
        lines.append(f"NOT scored ({format_pct(share)} of all MACs):")
        for u in rep.unscored:
            lines.append(f"  {u.name}: {format_si(u.macs)} MACs - {u.reason}")
        for op in rep.unmodeled:
            lines.append(f"  {op.name} ({op.op}): {format_si(op.macs)} MACs - no hardware model for this op")
    return "\n".join(lines)


def format_eyexam(rep: ScoreReport) -> str:
    """One row per layer: the seven Eyexam bounds (MACs/cycle), the binding step, what limits step 7."""
    from .eyexam import STEPS, binding_step

    hw = rep.hardware
    headers = ["layer", *[f"{i + 1} {name}" for i, name in enumerate(STEPS)], "binding step", "limited by"]
    rows: list[list[str] | None] = []
    for ls in rep.layers:
        if not ls.eyexam:
            continue
        b = binding_step(ls.eyexam, hw.num_pes)
        rows.append([ls.name, *[f"{s.macs_per_cycle:.4g}" for s in ls.eyexam], f"{b.step} {b.name}", ls.bound])
    return "\n".join([
        f"Eyexam bounds on {hw.name} (MACs per cycle; {hw.num_pes} PEs = peak {hw.num_pes}); each step "
        "can only lower the one before, step 7 = MACs / modeled processing cycles",
        format_table(headers, rows),
    ])
