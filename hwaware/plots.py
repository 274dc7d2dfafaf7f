"""Matplotlib figures shared by the training plugin and the run reports (no pyplot state).

    >>> fig = energy_breakdown_figure(report)          # per-layer stacked bars, two panels
    >>> save_png(fig, "runs/x/energy_breakdown.png")   # atomic write
    >>> fig = tradeoff_figure({"energy-aware": [Point(energy=0.4, latency_ms=1.1, accuracy=0.93)]})

Figures are built with :class:`matplotlib.figure.Figure` directly (never ``pyplot``), so they
work headless, in threads and in notebooks, and are freed when dropped. Energy is the Eyeriss
model's normalized unit (one 16-bit MAC = 1, a DRAM access = 200).
"""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from ._io import atomic_open

__all__ = ["LEVEL_COLORS", "TYPE_COLORS", "Point", "energy_breakdown_figure", "save_png", "tradeoff_figure"]

# One colour per memory level / data type, the same in every figure.
LEVEL_COLORS = {"DRAM": "#c0392b", "GLB": "#e67e22", "array": "#f1c40f", "RF": "#27ae60", "MAC": "#2980b9"}
TYPE_COLORS = {"ifmap": "#8e44ad", "filter": "#16a085", "psum": "#d35400", "MAC": "#2980b9"}


@dataclass(frozen=True)
class Point:
    """One model of a trade-off curve: energy (normalized units), latency (ms) and accuracy (0-1)."""

    energy: float
    latency_ms: float
    accuracy: float | None
    label: str = ""


def _figure(width: float, height: float) -> Any:
    from matplotlib.figure import Figure

    return Figure(figsize=(width, height), dpi=100, layout="constrained")


def _stacked(ax: Any, names: Sequence[str], parts: Mapping[str, Sequence[float]],
             colors: Mapping[str, str], title: str) -> None:
    bottom = [0.0] * len(names)
    xs = range(len(names))
    for key, values in parts.items():
        ax.bar(xs, values, bottom=bottom, label=key, color=colors.get(key), width=0.75)
        bottom = [b + v for b, v in zip(bottom, values)]
    ax.set_xticks(list(xs))
    ax.set_xticklabels(names, rotation=60 if len(names) > 6 else 0, ha="right" if len(names) > 6 else "center",
                       fontsize=8)
    ax.set_title(title, fontsize=10, pad=20)
    ax.set_ylabel("energy (x one 16-bit MAC)")
    ax.ticklabel_format(axis="y", style="sci", scilimits=(0, 3))
    # legend between the title and the axes, so it never hides bars or the axis' scale
    ax.legend(fontsize=8, ncols=len(parts), loc="lower center", bbox_to_anchor=(0.5, 1.0), frameon=False)
    ax.grid(axis="y", alpha=0.3)
    if bottom:
        ax.set_ylim(0, max(bottom) * 1.2 or 1.0)


def energy_breakdown_figure(report: Any, *, title: str = "") -> Any:
    """Two panels of per-layer stacked bars: energy by memory level (DRAM, GLB, array, RF, MAC)
    and by data type (ifmap, filter, psum, MAC). ``report`` is a :class:`hwaware.eyeriss.ScoreReport`."""
    from .eyeriss import LEVELS, TYPES

    layers = list(report.layers)
    names = [ls.name for ls in layers]
    by_level = {lv: [ls.energy[lv] for ls in layers] for lv in (*LEVELS, "MAC")}
    by_type = {ty: [ls.energy_by_type[ty] for ls in layers] for ty in (*TYPES, "MAC")}
    width = min(16.0, max(8.0, 0.45 * len(names) * 2 + 3))
    fig = _figure(width, 4.2)
    ax1, ax2 = fig.subplots(1, 2, sharey=True)
    _stacked(ax1, names, by_level, LEVEL_COLORS, "energy by memory level")
    _stacked(ax2, names, by_type, TYPE_COLORS, "energy by data type")
    ax2.set_ylabel("")
    total = report.total.energy_total
    fig.suptitle(title or f"{report.hardware.name}: {total:.4g} per batch of {report.batch}", fontsize=11)
    return fig


def tradeoff_figure(families: Mapping[str, Sequence[Point]], *, title: str = "",
                    energy_unit: str = "energy (x one 16-bit MAC)", annotate: bool = True) -> Any:
    """Accuracy versus energy and versus latency, one line per family (pruning steps, a NetAdapt
    family, ...). Points without an accuracy are left out of the plot; families of at most 10
    points get their labels written next to them (``annotate``)."""
    fig = _figure(11.0, 4.2)
    ax_e, ax_l = fig.subplots(1, 2, sharey=True)
    markers = "osD^v<>p*h"
    plotted = 0
    for i, (name, points) in enumerate(families.items()):
        pts = [p for p in points if p.accuracy is not None]
        if not pts:
            continue
        plotted += 1
        acc = [100.0 * float(p.accuracy) for p in pts]  # type: ignore[arg-type]
        m = markers[i % len(markers)]
        ax_e.plot([p.energy for p in pts], acc, marker=m, label=name)
        ax_l.plot([p.latency_ms for p in pts], acc, marker=m, label=name)
        if annotate and len(pts) <= 10:
            for p, a in zip(pts, acc):
                if p.label:
                    ax_e.annotate(p.label, (p.energy, a), textcoords="offset points", xytext=(3, 4), fontsize=7)
    from matplotlib.ticker import MaxNLocator
    ax_e.set_xlabel(energy_unit)
    ax_e.set_ylabel("top-1 accuracy (%)")
    ax_l.set_xlabel("latency (ms, Eyeriss model)")
    for ax in (ax_e, ax_l):
        ax.xaxis.set_major_locator(MaxNLocator(nbins=5))
        ax.grid(alpha=0.3)
        if plotted:
            ax.legend(fontsize=8, frameon=False)
    ax_e.set_title("accuracy vs energy", fontsize=10)
    ax_l.set_title("accuracy vs latency", fontsize=10)
    if title:
        fig.suptitle(title, fontsize=11)
    return fig


def save_png(fig: Any, path: str | os.PathLike[str]) -> None:
    """Write ``fig`` as a PNG through a temporary file and rename (never a half-written image)."""
    with atomic_open(path, "wb") as fh:
        fig.savefig(fh, format="png")
