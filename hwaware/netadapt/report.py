"""NetAdapt outputs: the family as JSON and a Markdown table, and a Pareto plot (PNG).

``family.json``  every member with its resources, accuracies, chosen block and proposals
``family.md``    one row per member: block shrunk, channels, each resource (value and % of the
                 original), held-out and test accuracy
``pareto.png``   accuracy versus each budgeted resource (% of the original); the Pareto-optimal
                 members (no other member is both cheaper and more accurate) are joined
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from .._io import atomic_open, write_json, write_text
from ..plots import pareto_front
from ..report_table import format_si
from .resources import resource_info


def _fmt(value: float) -> str:
    return format_si(value) if abs(value) >= 1000 else f"{value:.4g}"


def family_table(result: Any) -> str:
    """A Markdown table of the family (one row per member)."""
    names = list(result.initial)
    head = ["iter", "block", "channels"] + [
        f"{n} ({resource_info(n).unit})" if resource_info(n).unit else n for n in names
    ] + ["held-out acc", "test acc"]
    lines = ["| " + " | ".join(head) + " |", "|" + "|".join(["---"] * len(head)) + "|"]
    for m in result.members:
        label = m.kind if m.kind != "iteration" else m.block
        chans = str(m.channels[m.block]) if m.block else "-"
        row = [str(m.iteration) + ("+LT" if m.kind == "long_term" else ""), str(label), chans]
        for n in names:
            v = m.resources.get(n)
            row.append("-" if v is None else f"{_fmt(v)} ({100 * v / result.initial[n]:.1f}%)")
        row.append(f"{m.accuracy:.4f}")
        row.append("-" if m.test_accuracy is None else f"{m.test_accuracy:.4f}")
        lines.append("| " + " | ".join(row) + " |")
    budgets = ", ".join(str(b) for b in result.budgets)
    return f"NetAdapt family (budgets: {budgets})\n\n" + "\n".join(lines) + "\n"


def pareto_plot(result: Any, path: str | Path) -> None:
    """Accuracy versus each budgeted resource (relative to the original), one panel each."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    members = result.members
    use_test = all(m.test_accuracy is not None for m in members)
    acc = [m.test_accuracy if use_test else m.accuracy for m in members]
    resources = [b.resource for b in result.budgets]
    fig, axes = plt.subplots(1, len(resources), figsize=(5.2 * len(resources), 4.2), squeeze=False)
    for ax, (r, b) in zip(axes[0], zip(resources, result.budgets)):
        x = [100 * m.resources[r] / result.initial[r] for m in members]
        steps = [i for i, m in enumerate(members) if m.kind != "long_term"]
        ax.plot([x[i] for i in steps], [acc[i] for i in steps], color="0.75", lw=1, zorder=1)
        ax.scatter([x[i] for i in steps], [acc[i] for i in steps], s=18, color="tab:blue", zorder=2,
                   label="family member")
        lt = [i for i, m in enumerate(members) if m.kind == "long_term"]
        if lt:
            ax.scatter([x[i] for i in lt], [acc[i] for i in lt], s=90, marker="*", color="tab:green",
                       zorder=4, label="after long-term fine-tune")
        front = pareto_front(list(zip(x, acc)))
        ax.plot([x[i] for i in front], [acc[i] for i in front], color="tab:red", lw=1.5, marker="o",
                ms=5, zorder=3, label="Pareto front")
        ax.annotate("original", (x[0], acc[0]), textcoords="offset points", xytext=(-10, 6), fontsize=8)
        last = steps[-1]
        ax.annotate(f"it {members[last].iteration}", (x[last], acc[last]), textcoords="offset points",
                    xytext=(4, -10), fontsize=8)
        ax.axvline(100 * b.limit(result.initial[r]) / result.initial[r], color="k", ls="--", lw=1,
                   label=f"budget {b}")
        ax.set_xlabel(f"{r} (% of original)")
        ax.set_ylabel(("test" if use_test else "held-out") + " top-1 accuracy")
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8, loc="lower right")
    fig.suptitle("NetAdapt family")
    fig.tight_layout()
    with atomic_open(path, "wb") as fh:
        fig.savefig(fh, format="png", dpi=110)
    plt.close(fig)


def write_family(result: Any, workdir: str | Path, *, plot: bool = True) -> dict[str, str]:
    """Write family.json, family.md and (``plot``) pareto.png into ``workdir``; return the paths."""
    workdir = Path(workdir)
    out = {"family.json": str(workdir / "family.json"), "family.md": str(workdir / "family.md")}
    write_json(out["family.json"], result.to_dict())
    write_text(out["family.md"], family_table(result))
    if plot and result.members:
        out["pareto.png"] = str(workdir / "pareto.png")
        pareto_plot(result, out["pareto.png"])
    return out
