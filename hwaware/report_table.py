"""Plain-text tables and human-readable numbers for the command line reports.

    >>> rows = [["conv1", format_si(105415200)], None, ["total", "105.42 M"]]
    >>> print(format_table(["layer", "MACs"], rows))
    layer      MACs
    -----  --------
    conv1  105.42 M
    -----  --------
    total  105.42 M

A row ``None`` draws a rule (e.g. above a totals line). Columns are right-aligned except the
first, unless ``align`` says otherwise (one ``l`` or ``r`` per column).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

__all__ = ["format_table", "format_si", "format_pct", "signed_change", "signed_points"]

_PREFIXES = ((1e12, "T"), (1e9, "G"), (1e6, "M"), (1e3, "K"))


def format_si(x: float, digits: int = 2) -> str:
    """``15470000000 -> '15.47 G'``, ``96 -> '96'`` (decimal prefixes K, M, G, T)."""
    for scale, prefix in _PREFIXES:
        if abs(x) >= scale:
            return f"{x / scale:.{digits}f} {prefix}"
    return f"{x:g}" if isinstance(x, float) else str(x)


def format_pct(fraction: float, digits: int = 1) -> str:
    """``0.387 -> '38.7%'``."""
    return f"{100.0 * fraction:.{digits}f}%"


def signed_points(points: float, digits: int = 2) -> str:
    """An accuracy change in percentage points with a word matching its sign:
    ``0.8 -> '+0.80 points, a rise'``, ``-1.2 -> '-1.20 points, a drop'``, ``0 -> 'no change'``."""
    if round(points, digits) == 0:
        return "no change"
    return f"{points:+.{digits}f} points, {'a rise' if points > 0 else 'a drop'}"


def signed_change(before: float, after: float, *, lower: str = "lower", higher: str = "higher") -> str:
    """The relative change from ``before`` to ``after`` with a word matching its sign:
    ``(100, 65.5) -> '-34.5% (lower)'``, ``(2, 3) -> '+50.0% (higher)'``, equal -> ``'no change'``."""
    if not before:
        return "-"
    change = after / before - 1.0
    if round(100.0 * change, 1) == 0:
        return "no change"
    return f"{100.0 * change:+.1f}% ({higher if change > 0 else lower})"


def format_table(headers: Sequence[str], rows: Sequence[Sequence[Any] | None],
                 align: str | Sequence[str] | None = None, *, gap: int = 2) -> str:
    """Align ``rows`` under ``headers``; ``None`` rows become a rule. No trailing newline."""
    ncol = len(headers)
    if align is None:
        align = "l" + "r" * (ncol - 1)
    align = list(align)
    if len(align) != ncol or any(a not in ("l", "r") for a in align):
        raise ValueError(f"align must give 'l' or 'r' for each of the {ncol} columns, "
                         f"got {align!r}")
    cells = [[str(h) for h in headers]]
    for row in rows:
        if row is None:
            continue
        if len(row) != ncol:
            raise ValueError(f"row {list(row)!r} has {len(row)} cells, "
                             f"the table has {ncol} columns")
        cells.append(["" if v is None else str(v) for v in row])
    widths = [max(len(r[i]) for r in cells) for i in range(ncol)]
    sep = " " * gap

    def line(values: Sequence[str]) -> str:
        parts = [v.ljust(w) if a == "l" else v.rjust(w) for v, w, a in zip(values, widths, align)]
        return sep.join(parts).rstrip()

    rule = sep.join("-" * w for w in widths)
    out = [line(cells[0]), rule]
    it = iter(cells[1:])
    for row in rows:
        out.append(rule if row is None else line(next(it)))
    return "\n".join(out)
