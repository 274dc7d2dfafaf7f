"""Gradual pruning inside a training loop: the schedule (when and how much) and the per-event masks.

The ramp is the cubic one of Zhu and Gupta ("To prune, or not to prune", 2017):
``s(t) = target * (1 - (1 - (t - start)/(end - start))^3)`` from step ``start`` to ``end``, one
pruning event every ``every`` steps. ``method="magnitude"`` zeroes the smallest weights (one global
threshold, or per layer with ``scope="layer"``); ``method="energy"`` spends each event's weights on
the layers in proportion to their share of the Eyeriss energy (:func:`energy_allocation`; energy-aware
pruning, Yang et al. CVPR 2017), smallest magnitudes first inside each layer, no layer above
``max_layer_sparsity``. Masks only grow. The training plugin (:mod:`hwaware.plugin`) drives it.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, fields
from typing import Any

from torch import nn

from .._suggest import did_you_mean
from ..errors import HwawareError
from .energy_aware import energy_order
from .magnitude import SCOPES, Masks, magnitude_masks

__all__ = ["SCHEDULE_METHODS", "PruneSchedule", "energy_allocation", "schedule_masks"]

SCHEDULE_METHODS = ("magnitude", "energy")


@dataclass(frozen=True)
class PruneSchedule:
    """Gradual pruning inside a training loop (see the module docstring).

    ``start``/``end``: optimizer steps (counted by ``hw.step()``) of the first and last pruning
    event; ``every``: steps between events; ``target``: final fraction of pruned Conv/Linear
    weights; ``layers``: module names to prune (default: every Conv1d/Conv2d/Linear).
    """

    method: str = "magnitude"
    start: int = 0
    end: int = 1000
    target: float = 0.5
    every: int = 100
    scope: str = "global"
    max_layer_sparsity: float = 0.95
    layers: tuple[str, ...] | None = None

    def __post_init__(self) -> None:
        if self.method not in SCHEDULE_METHODS:
            raise HwawareError(f"schedule: unknown method '{self.method}'{did_you_mean(self.method, SCHEDULE_METHODS)}; "
                               f"allowed: {', '.join(SCHEDULE_METHODS)}")
        if self.scope not in SCOPES:
            raise HwawareError(f"schedule: unknown scope '{self.scope}'; allowed: {', '.join(SCOPES)}")
        for name in ("start", "end", "every"):
            v = getattr(self, name)
            if isinstance(v, bool) or not isinstance(v, int):
                raise HwawareError(f"schedule: {name} must be an integer step, got {v!r}")
        if self.start < 0 or self.end <= self.start:
            raise HwawareError(f"schedule: need 0 <= start < end, got start={self.start}, end={self.end}")
        if self.every < 1:
            raise HwawareError(f"schedule: every must be >= 1, got {self.every}")
        if not 0.0 < float(self.max_layer_sparsity) < 1.0:
            raise HwawareError(f"schedule: max_layer_sparsity must be in (0, 1), got {self.max_layer_sparsity}")
        if not 0.0 < float(self.target) <= float(self.max_layer_sparsity):
            raise HwawareError(f"schedule: target must be in (0, max_layer_sparsity={self.max_layer_sparsity}], "
                               f"got {self.target}")
        if self.layers is not None:
            object.__setattr__(self, "layers", tuple(str(n) for n in self.layers))

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> PruneSchedule:
        keys = [f.name for f in fields(cls)]
        for k in d:
            if k not in keys:
                raise HwawareError(f"schedule: unknown key '{k}'{did_you_mean(k, keys)}; allowed: {', '.join(keys)}")
        return cls(**dict(d))

    def sparsity_at(self, step: int) -> float:
        """Target fraction of pruned weights after ``step`` optimizer steps (0 before ``start``)."""
        if step < self.start:
            return 0.0
        progress = min(1.0, (step - self.start) / (self.end - self.start))
        return float(self.target) * (1.0 - (1.0 - progress) ** 3)

    def is_event(self, step: int) -> bool:
        """Whether pruning happens after ``step`` optimizer steps."""
        if step < self.start or step > self.end:
            return False
        return (step - self.start) % self.every == 0 or step == self.end



def schedule_masks(model: nn.Module, schedule: PruneSchedule, goal: float, layers: Sequence[str], *,
                   previous: Masks | None = None, fractions: Mapping[str, float] | None = None) -> Masks:
    """The masks after one event that brings ``layers`` to ``goal`` pruned: by magnitude (global or
    per layer), or with ``fractions`` per layer (the energy method's :func:`energy_allocation`);
    intersected with ``previous`` so masks only grow."""
    names = list(layers)
    if schedule.method == "magnitude":
        if schedule.scope == "global":
            new = magnitude_masks(model, goal, scope="global", layers=names)
        else:
            new = magnitude_masks(model, {n: goal for n in names}, scope="layer", layers=names)
    else:
        if fractions is None:
            raise HwawareError("schedule: the energy method needs per-layer fractions (energy_allocation)")
        new = magnitude_masks(model, dict(fractions), scope="layer", layers=names)
    if previous is not None:
        new = Masks({n: new.masks[n] & previous.masks[n] for n in new.masks})
    return new


def energy_allocation(sizes: Mapping[str, int], pruned: Mapping[str, int], energy: Mapping[str, float],
                      goal: float, cap: float) -> dict[str, float]:
    """Per-layer pruned fractions that bring the total to ``goal`` of all weights.

    The weights still to prune, ``round(goal * total) - already pruned``, are shared among the
    layers in proportion to their energy (water-filling: a layer stops at ``cap`` of its weights
    and its excess goes to the others, again by energy); a layer's fraction never falls. Layers
    with no measured energy (never called) get nothing while others have room.
    """
    total = sum(sizes.values())
    want = round(goal * total) - sum(pruned.values())
    room = {n: max(0, math.floor(cap * sizes[n]) - pruned[n]) for n in sizes}
    give = {n: 0 for n in sizes}
    rest = max(0, want)
    order = energy_order({n: energy.get(n, 0.0) for n in sizes})
    while rest > 0:
        active = [n for n in order if room[n] - give[n] > 0 and energy.get(n, 0.0) > 0]
        if not active:
            active = [n for n in order if room[n] - give[n] > 0]
            if not active:
                break
            weights = {n: float(sizes[n]) for n in active}
        else:
            weights = {n: float(energy[n]) for n in active}
        wsum = sum(weights.values())
        handed = 0
        for n in active:
            share = min(room[n] - give[n], math.floor(rest * weights[n] / wsum))
            give[n] += share
            handed += share
        if handed == 0:  # rounding left a few weights: one each, most energy first
            for n in active:
                if rest - handed == 0:
                    break
                give[n] += 1
                handed += 1
        rest -= handed
    return {n: (pruned[n] + give[n]) / sizes[n] if sizes[n] else 0.0 for n in sizes}
