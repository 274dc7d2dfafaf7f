"""The survey's Fig. 33/34 for hwaware's models: energy per MAC of each dataflow, stacked by storage
level (a) and by data type (b)."""

from __future__ import annotations

from pathlib import Path

from ..score import ScoreReport

_LEVELS = (("MAC", "ALU"), ("RF", "RF"), ("array", "NoC (array)"), ("GLB", "buffer"), ("DRAM", "DRAM"))
_TYPES = (("MAC", "ALU"), ("ifmap", "ifmaps"), ("filter", "weights"), ("psum", "psums"))
_COLORS = {"MAC": "0.6", "RF": "tab:orange", "array": "tab:green", "GLB": "tab:red", "DRAM": "tab:purple",
           "ifmap": "tab:blue", "filter": "tab:olive", "psum": "tab:cyan"}


def plot_comparison(reports: dict[str, ScoreReport], path: str | Path, *, title: str) -> Path:
    """Write a two-panel stacked-bar PNG of ``{dataflow: report}``; returns the path."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    names = list(reports)
    labels = [n.upper().replace("_", "") if n.startswith("os") else n.upper() for n in names]
    fig, axes = plt.subplots(1, 2, figsize=(11, 4.2), sharey=True)
    for ax, parts, what in ((axes[0], _LEVELS, "(a) by storage level"), (axes[1], _TYPES, "(b) by data type")):
        bottom = [0.0] * len(names)
        for key, label in parts:
            vals = []
            for n in names:
                tot = reports[n].total
                src = tot.energy if key in tot.energy and parts is _LEVELS else tot.energy_by_type
                vals.append(src[key] / tot.macs)
            ax.bar(labels, vals, bottom=bottom, label=label, color=_COLORS[key], edgecolor="black", linewidth=0.5)
            bottom = [b + v for b, v in zip(bottom, vals)]
        ax.set_title(what)
        ax.legend(loc="upper center", bbox_to_anchor=(0.5, -0.1), ncol=len(parts), frameon=False, fontsize=8)
        ax.grid(axis="y", alpha=0.3)
    axes[0].set_ylabel("energy / MAC (normalized to one 16-bit MAC)")
    fig.suptitle(title)
    fig.tight_layout()
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp.png")
    fig.savefig(tmp, dpi=120)
    plt.close(fig)
    tmp.replace(path)
    return path
