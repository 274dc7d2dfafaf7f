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

__all__ = ["LEVEL_COLORS", "TYPE_COLORS", "Point", "energy_breakdown_figure", "eyexam_figure", "pareto_figure",
           "pareto_front", "save_png", "tradeoff_figure"]

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


def pareto_front(points: Sequence[tuple[float, float]]) -> list[int]:
    """Indices of points (cost, accuracy) that no other point beats on both (lower cost, higher
    accuracy; at least one strictly), sorted by cost."""
    front = []
    for i, (c, a) in enumerate(points):
        dominated = any(
            (c2 <= c and a2 >= a and (c2 < c or a2 > a)) for j, (c2, a2) in enumerate(points) if j != i
        )
        if not dominated:
            front.append(i)
    return sorted(front, key=lambda i: points[i][0])


def pareto_figure(families: Mapping[str, Sequence[Point]], *, title: str = "",
                  energy_unit: str = "energy (x one 16-bit MAC)", latency_unit: str = "latency (ms)",
                  anchors: Mapping[str, Point] | None = None, accuracy_floor: float | None = None,
                  energy_marks: Sequence[tuple[float, str]] = (),
                  rejected: Mapping[str, Sequence[Point]] | None = None, start: Point | None = None) -> Any:
    """Accuracy versus energy and versus latency: every point of every family faint, and each
    family's non-dominated front (lower cost, higher accuracy) as a staircase: the best accuracy
    reachable at or below each cost. ``anchors[family]``: a point marked with a star, its ``label``
    added to the family's legend entry; ``accuracy_floor`` (0-1): a dotted horizontal line; ``energy_marks``: dashed
    vertical lines on the energy panel, ``(x, label)``; ``rejected[family]``: measured states the
    method did not keep (small crosses, not part of the fronts); ``start``: the common starting point,
    labelled. Points without an accuracy are left out."""
    fig = _figure(12.0, 5.2)
    ax_e, ax_l = fig.subplots(1, 2, sharey=True)
    colors = [f"C{i}" for i in range(10)]
    kept_x: dict[Any, list[float]] = {ax_e: [], ax_l: []}
    kept_acc: list[float] = []
    for i, (name, points) in enumerate(families.items()):
        pts = [p for p in points if p.accuracy is not None]
        if not pts:
            continue
        color = colors[i % len(colors)]
        anchor = (anchors or {}).get(name)
        label = name if anchor is None or not anchor.label else f"{name}: {anchor.label}"
        acc = [100.0 * float(p.accuracy) for p in pts]  # type: ignore[arg-type]
        kept_acc += acc
        for ax, cost in ((ax_e, [p.energy for p in pts]), (ax_l, [p.latency_ms for p in pts])):
            kept_x[ax] += cost
            ax.scatter(cost, acc, s=14, color=color, alpha=0.3, linewidths=0)
            front = pareto_front(list(zip(cost, acc)))
            ax.plot([cost[k] for k in front], [acc[k] for k in front], drawstyle="steps-post", color=color,
                    marker="o", markersize=4, linewidth=1.6, label=label)
        off = [p for p in (rejected or {}).get(name, ()) if p.accuracy is not None]
        if off:
            acc_off = [100.0 * float(p.accuracy) for p in off]  # type: ignore[arg-type]
            ax_e.scatter([p.energy for p in off], acc_off, s=14, marker="x", color=color, alpha=0.4, linewidths=0.8)
            ax_l.scatter([p.latency_ms for p in off], acc_off, s=14, marker="x", color=color, alpha=0.4,
                         linewidths=0.8)
        if anchor is not None and anchor.accuracy is not None:
            for ax, x in ((ax_e, anchor.energy), (ax_l, anchor.latency_ms)):
                ax.scatter([x], [100.0 * anchor.accuracy], marker="*", s=170, color=color, edgecolors="black",
                           linewidths=0.6, zorder=5)
    lows = list(kept_acc)
    if accuracy_floor is not None:
        lows.append(100.0 * accuracy_floor)
        for ax in (ax_e, ax_l):
            ax.axhline(100.0 * accuracy_floor, color="grey", linestyle=":", linewidth=1)
        ax_e.annotate("accuracy limit", (0.0, 100.0 * accuracy_floor), xycoords=("axes fraction", "data"),
                      textcoords="offset points", xytext=(4, -10), fontsize=7, color="grey")
    if start is not None and start.accuracy is not None:
        for ax, x in ((ax_e, start.energy), (ax_l, start.latency_ms)):
            ax.scatter([x], [100.0 * start.accuracy], marker="s", s=40, color="black", zorder=6)
            ax.annotate(start.label or "start", (x, 100.0 * start.accuracy), textcoords="offset points",
                        xytext=(-6, 8), fontsize=8, ha="right")
            kept_x[ax].append(x)
    for x, label in energy_marks:
        kept_x[ax_e].append(x)
        ax_e.axvline(x, color="black", linestyle="--", linewidth=0.8, alpha=0.6)
        ax_e.annotate(label, (x, 0.02), xycoords=("data", "axes fraction"), rotation=90, fontsize=7,
                      textcoords="offset points", xytext=(-9, 0), va="bottom")
    # the axes frame the kept states and the marks; rolled-back states far off are cut at the edges
    if lows:
        top = max(lows + ([100.0 * start.accuracy] if start is not None and start.accuracy is not None else []))
        bottom = min(lows)
        pad = max(0.5, 0.15 * (top - bottom))
        ax_e.set_ylim(bottom - 2 * pad, top + pad)
    for ax, xs in kept_x.items():
        if xs:
            lo, hi = min(xs), max(xs)
            pad = max(0.01, 0.08 * (hi - lo))
            ax.set_xlim(lo - pad, hi + pad)
    ax_e.set_xlabel(energy_unit)
    ax_e.set_ylabel("top-1 accuracy (%)")
    ax_l.set_xlabel(latency_unit)
    for ax in (ax_e, ax_l):
        ax.grid(alpha=0.3)
    ax_e.legend(fontsize=8, frameon=True, framealpha=0.85, loc="upper left",
                title="front of each method: star's energy", title_fontsize=8)
    ax_e.set_title("accuracy vs energy (non-dominated fronts; dots: kept states, x: rolled back)", fontsize=9)
    ax_l.set_title("accuracy vs latency (non-dominated fronts)", fontsize=9)
    if title:
        fig.suptitle(title, fontsize=11)
    return fig


def save_png(fig: Any, path: str | os.PathLike[str]) -> None:
    """Write ``fig`` as a PNG through a temporary file and rename (never a half-written image)."""
    with atomic_open(path, "wb") as fh:
        fig.savefig(fh, format="png")
