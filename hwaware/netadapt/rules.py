"""The NetAdapt step rules as pure functions of resource values (no models, no training): the
per-iteration targets, whether a proposal meets them, the candidate channel counts of a block,
which count to propose, which proposal to pick, and the seeds of every fine-tune."""

from __future__ import annotations

import hashlib
import math
from collections.abc import Mapping, Sequence
from typing import Any

from ..errors import HwawareError
from .family import Proposal

# relative slack when comparing resources (float noise of summed per-layer values)
RESOURCE_EPS = 1e-9


def step_targets(current: Mapping[str, float], initial: Mapping[str, float], limits: Mapping[str, float],
                 step: float) -> dict[str, float]:
    """Per-resource targets of one iteration (``step`` = ΔR_i as a fraction of the initial value)."""
    out = {}
    for r, lim in limits.items():
        cur = current[r]
        out[r] = cur if cur <= lim * (1 + RESOURCE_EPS) else max(cur - step * initial[r], lim)
    return out


def meets(values: Mapping[str, float], targets: Mapping[str, float]) -> bool:
    return all(values[r] <= t * (1 + RESOURCE_EPS) for r, t in targets.items())


def budgets_met(values: Mapping[str, float], limits: Mapping[str, float]) -> bool:
    return meets(values, limits)


def candidate_units(size: int, unit_step: int, min_units: int) -> list[int]:
    """Unit counts to try for a block of ``size`` units, largest first: size−step, size−2·step, ...,
    then ``min_units`` (never below it)."""
    out = []
    k = size - unit_step
    while k > min_units:
        out.append(k)
        k -= unit_step
    if size > min_units:
        out.append(min_units)
    return out


Scan = Sequence[tuple[int, Mapping[str, float]]]  # (units kept, resources), largest first


def lowers(values: Mapping[str, float], current: Mapping[str, float], limits: Mapping[str, float]) -> bool:
    """Whether ``values`` lowers every resource still above its budget and raises none within it
    (then some small enough ΔR accepts it)."""
    for r, lim in limits.items():
        if current[r] <= lim * (1 + RESOURCE_EPS):
            if values[r] > current[r] * (1 + RESOURCE_EPS):
                return False
        elif values[r] >= current[r]:
            return False
    return True


def choose_units(scans: Mapping[int, Scan], current: Mapping[str, float], initial: Mapping[str, float],
                 limits: Mapping[str, float], step: float
                 ) -> tuple[float, dict[str, float], dict[int, int]] | None:
    """Per block, the first (largest) unit count whose resources meet the step's targets.

    When no block meets them, ΔR is halved until one does (the scans are complete in that case);
    returns ``(step, targets, {block index: units})``, or None when no candidate lowers the
    resources at all (the budgets cannot be reached from here).
    """
    if not any(lowers(v, current, limits) for scan in scans.values() for _, v in scan):
        return None
    while step > 1e-12:
        targets = step_targets(current, initial, limits, step)
        chosen = {}
        for k, scan in scans.items():
            for units, values in scan:
                if meets(values, targets):
                    chosen[k] = units
                    break
        if chosen:
            return step, targets, chosen
        step /= 2
    return None


def pick_proposal(proposals: Sequence[Proposal], *, rule: str, current_accuracy: float,
                  current: Mapping[str, float], initial: Mapping[str, float],
                  budgeted: Sequence[str]) -> Proposal | None:
    """The chosen proposal among the eligible ones (None if none is eligible).

    ``accuracy``: highest accuracy. ``efficiency``: smallest (accuracy lost) / (resource saved),
    resource saved = mean over the budgeted resources of (current − new) / original. Ties go to
    the lower block index.
    """
    ok = [p for p in proposals if p.eligible]
    if not ok:
        return None
    if rule == "accuracy":
        return min(ok, key=lambda p: (-p.accuracy, p.index))
    if rule == "efficiency":
        def cost(p: Proposal) -> float:
            saved = sum((current[r] - p.resources[r]) / initial[r] for r in budgeted) / len(budgeted)
            return (current_accuracy - p.accuracy) / saved if saved > 0 else math.inf
        return min(ok, key=lambda p: (cost(p), p.index))
    raise HwawareError(f"unknown pick rule '{rule}'; allowed: accuracy, efficiency")


def derive_seed(seed: int, *parts: Any) -> int:
    """A 63-bit seed from ``seed`` and the parts (iteration, block index, ...)."""
    digest = hashlib.sha256(repr((int(seed),) + parts).encode()).digest()
    return int.from_bytes(digest[:8], "little") & (2**63 - 1)
