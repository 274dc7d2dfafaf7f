"""What a log step leaves behind: the :class:`MonitorRecord`, its TensorBoard scalars and the
history table of ``HardwareMonitor.summary()``."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from ..measure import ModelMetrics
from ..report_table import format_pct, format_si, format_table


@dataclass(frozen=True, kw_only=True)
class MonitorRecord(ModelMetrics):
    """One log point: the :class:`~hwaware.measure.ModelMetrics` of the model at optimizer step
    ``step`` (energy per inference, normalized to one 16-bit MAC; latency on the Eyeriss model;
    measured zero fractions per layer), the pruning state, and the wall time the log took."""

    step: int
    pruned_fraction: float | None = None
    target_fraction: float | None = None
    seconds: float = 0.0


def write_scalars(w: Any, rec: MonitorRecord) -> None:
    """The record's scalars at its step: ``energy/<level>``, ``energy_by_type/<type>``, latencies,
    ``sparsity/<layer>/{ifmap,weight}`` and, with a schedule, ``prune/{target,weight_sparsity}``."""
    s = rec.step
    for k, v in rec.energy_by_level.items():
        w.add_scalar(f"energy/{k}", v, s)
    w.add_scalar("energy/total", rec.energy, s)
    for k, v in rec.energy_by_type.items():
        w.add_scalar(f"energy_by_type/{k}", v, s)
    w.add_scalar("latency/processing_ms", rec.processing_latency_ms, s)
    w.add_scalar("latency/total_ms", rec.total_latency_ms, s)
    for name in rec.ifmap_sparsity:
        w.add_scalar(f"sparsity/{name}/ifmap", rec.ifmap_sparsity[name], s)
        w.add_scalar(f"sparsity/{name}/weight", rec.weight_sparsity[name], s)
    if rec.target_fraction is not None:
        w.add_scalar("prune/target", rec.target_fraction, s)
        w.add_scalar("prune/weight_sparsity", rec.pruned_fraction or 0.0, s)


def history_table(history: list[MonitorRecord]) -> str:
    """Energy, DRAM share, latency and sparsity of every log step, then the change first -> last."""
    rows = []
    for r in history:
        ifz = list(r.ifmap_sparsity.values())
        wz = list(r.weight_sparsity.values())
        rows.append([str(r.step), format_si(r.energy), format_pct(r.energy_by_level.get("DRAM", 0.0) / r.energy
                                                                if r.energy else 0.0),
                     f"{r.processing_latency_ms:.3f}", format_pct(sum(ifz) / len(ifz) if ifz else 0.0),
                     format_pct(sum(wz) / len(wz) if wz else 0.0),
                     "" if r.pruned_fraction is None else format_pct(r.pruned_fraction)])
    hist = format_table(["step", "energy/inference", "DRAM share", "proc ms", "mean ifmap zeros",
                         "mean weight zeros", "pruned"], rows)
    first, last = history[0], history[-1]
    change = (f"energy {last.energy / first.energy:.3f}x of step {first.step}, latency "
              f"{last.processing_latency_ms / first.processing_latency_ms:.3f}x"
              if first.energy and first.processing_latency_ms else "")
    return f"{hist}\n{change}"
