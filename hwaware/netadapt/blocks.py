"""One prunable block's candidates: how many channel units it may keep, the scan of its
candidate widths against the targets, and the check that the budgets are reachable at all."""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping, Sequence
from typing import Any

from ..errors import HwawareError
from .budget import Budget
from .resources import resource_info
from .rules import RESOURCE_EPS, candidate_units, meets

Measure = Callable[[Any], dict[str, float]]


def min_units(g: Any, min_channels: int) -> int:
    """The fewest units of group ``g`` that keep at least ``min_channels`` channels (at least one)."""
    return max(1, min(g.size, math.ceil(min_channels / g.channels_per_unit)))


def unit_step(g: Any, channel_step: int) -> int:
    """``channel_step`` channels in units of group ``g`` (at least one)."""
    return max(1, round(channel_step / g.channels_per_unit))


def block_widths(graph: Any) -> dict[str, int]:
    """Width of every prunable block of ``graph``."""
    return {g.name: g.width for g in graph.prunable_groups()}


def scan_block(graph: Any, g: Any, targets: Mapping[str, float], measure: Measure, *, channel_step: int,
               min_channels: int) -> list[tuple[int, dict[str, float]]]:
    """(units kept, resources) for this block's candidates, largest first, up to the first that
    meets ``targets`` (all of them when none does)."""
    out = []
    for units in candidate_units(g.size, unit_step(g, channel_step), min_units(g, min_channels)):
        values = measure(graph.prune(g.name, g.size - units))
        out.append((units, values))
        if meets(values, targets):
            break
    return out


def check_reachable(graph: Any, budgets: Sequence[Budget], initial: Mapping[str, float], measure: Measure, *,
                    min_channels: int) -> None:
    """Fail before any work when even the smallest network (every block at ``min_channels``)
    misses a budget; the error says the smallest budget that can be asked for."""
    keep = {}
    for g in graph.prunable_groups():
        keep[g.name] = sorted(graph.ranking(g)[:min_units(g, min_channels)])
    smallest = measure(graph.shrink(keep))
    for b in budgets:
        r = b.resource
        lim = b.limit(initial[r])
        if smallest[r] > lim * (1 + RESOURCE_EPS):
            unit = f" {resource_info(r).unit}" if resource_info(r).unit else ""
            raise HwawareError(
                f"budget {b} cannot be met: with every prunable block cut to "
                f"min_channels={min_channels} the network's {r} is {smallest[r]:.4g}{unit} "
                f"({smallest[r] / initial[r]:.1%} of the original {initial[r]:.4g}{unit}); "
                f"ask for at least {math.ceil(1000 * smallest[r] / initial[r]) / 1000:g}"
            )
