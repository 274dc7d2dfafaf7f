"""Matplotlib figures shared by the training plugin and the run reports (no pyplot state).

    >>> fig = energy_breakdown_figure(report)          # per-layer stacked bars, two panels
    >>> save_png(fig, "runs/x/energy_breakdown.png")   # atomic write
    >>> fig = tradeoff_figure({"energy-aware": [Point(energy=0.4, latency_ms=1.1, accuracy=0.93)]})

Figures are built with :class:`matplotlib.figure.Figure` directly (never ``pyplot``), so they
work headless, in threads and in notebooks, and are freed when dropped. Energy is the Eyeriss
model's normalized unit (one 16-bit MAC = 1, a DRAM access = 200).
"""

from __future__ import annotations

import math
import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from ._io import atomic_open
from .eyeriss.eyexam_figure import eyexam_figure  # defined beside the Eyexam bounds

__all__ = ["LEVEL_COLORS", "TYPE_COLORS", "Point", "energy_breakdown_figure", "eyexam_figure", "save_png",
           "tradeoff_figure"]

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


def _scale(top: float) -> tuple[float, str]:
    """(divisor, text) putting ``top`` in [1, 1000): the scale goes into the axis label, never into
    an offset text above the axis, where a legend would cover it."""
    exp = 3 * int(math.floor(math.log10(top) / 3)) if top > 0 else 0
    return 10.0 ** exp, ("" if exp == 0 else f"1e{exp} x ")


def _stacked(ax: Any, names: Sequence[str], parts: Mapping[str, Sequence[float]],
             colors: Mapping[str, str], title: str, ymax: float) -> None:
    div, text = _scale(ymax)
    bottom = [0.0] * len(names)
    xs = range(len(names))
    for key, values in parts.items():
        scaled = [v / div for v in values]
        ax.bar(xs, scaled, bottom=bottom, label=key, color=colors.get(key), width=0.75)
        bottom = [b + v for b, v in zip(bottom, scaled)]
    ax.set_xticks(list(xs))
    ax.set_xticklabels(names, rotation=60 if len(names) > 6 else 0, ha="right" if len(names) > 6 else "center",
                       fontsize=8)
    ax.set_title(title, fontsize=10, pad=20)
    ax.set_ylabel(f"energy ({text}one 16-bit MAC)")
    # legend between the title and the axes, so it never hides bars; no offset text to hide
    ax.legend(fontsize=8, ncols=len(parts), loc="lower center", bbox_to_anchor=(0.5, 1.0), frameon=False)
    ax.grid(axis="y", alpha=0.3)
    ax.set_ylim(0, (ymax / div) * 1.1 if ymax > 0 else 1.0)


def energy_breakdown_figure(report: Any, *, title: str = "", ymax: float | None = None) -> Any:
    """Two panels of per-layer stacked bars: energy by memory level (DRAM, GLB, array, RF, MAC)
    and by data type (ifmap, filter, psum, MAC). ``report`` is a :class:`hwaware.eyeriss.ScoreReport`.
    ``ymax``: the top of the energy axis (give two figures the same one to compare them; default:
    this report's largest layer)."""
    from .eyeriss import LEVELS, TYPES

    layers = list(report.layers)
    names = [ls.name for ls in layers]
    by_level = {lv: [ls.energy[lv] for ls in layers] for lv in (*LEVELS, "MAC")}
    by_type = {ty: [ls.energy_by_type[ty] for ls in layers] for ty in (*TYPES, "MAC")}
    top = ymax if ymax is not None else max((ls.energy_total for ls in layers), default=0.0)
    width = min(16.0, max(8.0, 0.45 * len(names) * 2 + 3))
    fig = _figure(width, 4.2)
    ax1, ax2 = fig.subplots(1, 2, sharey=True)
    _stacked(ax1, names, by_level, LEVEL_COLORS, "energy by memory level", top)
    _stacked(ax2, names, by_type, TYPE_COLORS, "energy by data type", top)
    ax2.set_ylabel("")
    total = report.total.energy_total
    fig.suptitle(title or f"{report.hardware.name}: {total:.4g} per batch of {report.batch}", fontsize=11)
    return fig


def tradeoff_figure(families: Mapping[str, Sequence[Point]], *, title: str = "",
                    energy_unit: str = "energy (x one 16-bit MAC)",
                    latency_unit: str = "latency (ms, Eyeriss model)", annotate: bool = True,
                    annotate_first: bool = False) -> Any:
    """Accuracy versus energy and versus latency, one line per family (the pipeline's stages,
    pruning steps, a NetAdapt family, ...). Points without an accuracy are left out. Families of at
    most 10 points get their labels written next to them (``annotate``; ``annotate_first``: only
    the first family). The first family is drawn on top with large filled markers; the others
    with open markers, so no point hides another."""
    fig = _figure(11.0, 4.4)
    ax_e, ax_l = fig.subplots(1, 2, sharey=True)
    markers = "osD^v<>p*h"
    plotted = 0
    div, scale = _scale(max((p.energy for pts in families.values() for p in pts), default=0.0))
    for i, (name, points) in enumerate(families.items()):
        pts = [p for p in points if p.accuracy is not None]
        if not pts:
            continue
        plotted += 1
        acc = [100.0 * float(p.accuracy) for p in pts]  # type: ignore[arg-type]
        first = i == 0
        style = dict(marker=markers[i % len(markers)], label=name, zorder=3 if first else 2,
                     markersize=9 if first else 6, linewidth=2.0 if first else 1.0,
                     markerfacecolor=None if first else "none", alpha=1.0 if first else 0.85)
        ax_e.plot([p.energy / div for p in pts], acc, **style)
        ax_l.plot([p.latency_ms for p in pts], acc, **style)
        if annotate and len(pts) <= 10 and (first or not annotate_first):
            for k, (p, a) in enumerate(zip(pts, acc)):
                if p.label:  # alternate above/below so neighbouring labels do not overlap
                    ax_e.annotate(p.label, (p.energy / div, a), textcoords="offset points",
                                  xytext=(5, 7 if k % 2 == 0 else -12), fontsize=7)
    from matplotlib.ticker import MaxNLocator
    ax_e.set_xlabel(energy_unit + (f" / {scale.removesuffix(' x ')}" if scale else ""))
    ax_e.set_ylabel("top-1 accuracy (%)")
    ax_l.set_xlabel(latency_unit)
    for ax in (ax_e, ax_l):
        ax.xaxis.set_major_locator(MaxNLocator(nbins=5))
        ax.ticklabel_format(axis="x", style="plain", useOffset=False)
        ax.grid(alpha=0.3)
        ax.margins(x=0.12, y=0.12)
    if plotted:
        ax_l.legend(fontsize=8, frameon=False, loc="best")
    ax_e.set_title("accuracy vs energy", fontsize=10)
    ax_l.set_title("accuracy vs latency", fontsize=10)
    if title:
        fig.suptitle(title, fontsize=11)
    return fig


def save_png(fig: Any, path: str | os.PathLike[str]) -> None:
    """Write ``fig`` as a PNG through a temporary file and rename (never a half-written image)."""
    with atomic_open(path, "wb") as fh:
        fig.savefig(fh, format="png")
