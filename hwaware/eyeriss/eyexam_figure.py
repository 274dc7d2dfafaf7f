"""The Eyexam figure: a roofline-style view of the seven MAC/cycle bounds of every layer of a score
report (``ScoreReport.eyexam_figure()``, ``hwaware score --eyexam-png``); save it with
:func:`hwaware.plots.save_png`."""

from __future__ import annotations

from typing import Any

from .eyexam import STEPS, binding_step

__all__ = ["eyexam_figure"]


def eyexam_figure(report: Any, *, title: str = "") -> Any:
    """Roofline-style view of Eyexam: per layer, the MACs/cycle bound after each of the seven steps
    (log scale), the array's peak, and the binding step marked on each layer."""
    layers = [ls for ls in report.layers if ls.eyexam]
    names = [ls.name for ls in layers]
    peak = report.hardware.num_pes
    from matplotlib.figure import Figure

    fig = Figure(figsize=(max(6.0, 0.5 * len(names) + 3.0), 4.5), dpi=100, layout="constrained")
    ax = fig.add_subplot(1, 1, 1)
    xs = list(range(len(names)))
    cmap = ["#7f8c8d", "#95a5a6", "#2c3e50", "#2980b9", "#27ae60", "#e67e22", "#c0392b"]
    low = min(ls.eyexam[-1].macs_per_cycle for ls in layers)
    top = peak * 3.0
    off = min(min(ls.eyexam[k].macs_per_cycle for ls in layers) for k in range(2))
    for k in range(len(STEPS)):
        ys = [ls.eyexam[k].macs_per_cycle for ls in layers]
        label = f"{k + 1} {STEPS[k]}" + (" (off scale)" if min(ys) > top else "")
        ax.plot(xs, ys, marker="o", ms=5 - 0.4 * k, lw=1.2, color=cmap[k], label=label)
    ax.axhline(peak, color="k", ls=":", lw=1)
    ax.text(0, peak * 1.08, f"peak {peak} MACs/cycle", fontsize=8)
    for x, ls in zip(xs, layers):
        b = binding_step(ls.eyexam, peak)
        ax.annotate(str(b.step), (x, ls.eyexam[-1].macs_per_cycle), textcoords="offset points",
                    xytext=(0, -12), ha="center", fontsize=7, color="#c0392b")
    ax.set_yscale("log")
    ax.set_ylim(low * 0.6, top)
    if off > top:
        ax.text(len(xs) - 1, top * 0.8, f"steps 1-2 >= {off:.3g} MACs/cycle", fontsize=8, ha="right", va="top")
    ax.set_xticks(xs)
    ax.set_xticklabels(names, rotation=60 if len(names) > 6 else 0, ha="right" if len(names) > 6 else "center",
                       fontsize=8)
    ax.set_ylabel("MACs per cycle (upper bound)")
    ax.set_title(title or f"Eyexam bounds on {report.hardware.name} (red digit: binding step)", fontsize=10, pad=34)
    ax.legend(fontsize=7, ncols=4, loc="lower center", bbox_to_anchor=(0.5, 1.0), frameon=False)
    ax.grid(axis="y", which="both", alpha=0.3)
    return fig
