"""NetAdapt options: one frozen, serializable dataclass (recipes and the job identity use it).

Defaults follow the public NetAdapt reimplementation where it has one (ΔR_1 = 2.5% of the initial
resource, decay 0.96 per iteration, channel step 8); fine-tune lengths are sized for the small CNN
on a CPU and should be raised for real networks.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from ..errors import HwawareError

PICK_RULES = ("accuracy", "efficiency")


@dataclass(frozen=True)
class NetAdaptConfig:
    """Everything that determines a NetAdapt job's result (besides the model, data and budgets).

    delta            ΔR_1, the first step, as a fraction of each resource's initial value
    decay            ΔR_i = ΔR_1 * decay**(i-1)
    channel_step     filters are removed in multiples of this (the last step may be smaller)
    min_channels     no block is shrunk below this many channels
    short_term_steps SGD steps of the short-term fine-tune of every proposal
    long_term_steps  SGD steps of the long-term fine-tune of the final network (0 = none)
    lr, momentum, weight_decay, batch_size    the fine-tune's SGD settings
    holdout          training images held out to rank proposals (never the test split)
    train_size       cap on the training images used to fine-tune (None = all the rest)
    pick             'accuracy': highest held-out accuracy (the paper); 'efficiency': smallest
                     accuracy loss per unit of resource saved (the public reimplementation)
    seed             every proposal's fine-tune is seeded from (seed, iteration, block)
    hardware, objective   the Eyeriss preset and the mapper's objective
    batch            images per inference when measuring resources
    profile_images   held-out images whose activations give the measured sparsity
    report           resources recorded for every family member besides the budgeted ones
    max_iterations   a safety stop (a HwawareError if budgets are still unmet)
    test_eval        evaluate every family member on the test split at the end
    lut_step, lut_warmup, lut_repeats, lut_dtype   the measured-latency tables
    """

    delta: float = 0.025
    decay: float = 0.96
    channel_step: int = 8
    min_channels: int = 1
    short_term_steps: int = 20
    long_term_steps: int = 0
    lr: float = 0.01
    momentum: float = 0.9
    weight_decay: float = 0.0
    batch_size: int = 32
    holdout: int = 500
    train_size: int | None = None
    pick: str = "accuracy"
    seed: int = 0
    hardware: str = "eyeriss_v1"
    objective: str = "energy"
    batch: int = 1
    profile_images: int = 8
    report: tuple[str, ...] = ("latency", "energy", "macs", "weights")
    max_iterations: int = 200
    test_eval: bool = True
    lut_step: int = 8
    lut_warmup: int = 3
    lut_repeats: int = 10
    lut_dtype: str = "float32"

    def __post_init__(self) -> None:
        def bad(key: str, allowed: str) -> HwawareError:
            return HwawareError(f"netadapt option '{key}' = {getattr(self, key)!r}: {allowed}")

        def number(key: str) -> float:
            v = getattr(self, key)
            if isinstance(v, bool) or not isinstance(v, (int, float)) or not math.isfinite(v):
                raise bad(key, "must be a finite number")
            return float(v)

        def integer(key: str, low: int) -> None:
            v = getattr(self, key)
            if isinstance(v, bool) or not isinstance(v, int) or v < low:
                raise bad(key, f"must be an integer >= {low}")

        if not 0.0 < number("delta") < 1.0:
            raise bad("delta", "ΔR_1 is a fraction of the initial resource in (0, 1)")
        if not 0.0 < number("decay") <= 1.0:
            raise bad("decay", "must be in (0, 1]")
        if number("lr") <= 0 or number("momentum") < 0 or number("weight_decay") < 0:
            raise HwawareError(
                f"netadapt options: lr must be > 0, momentum and weight_decay >= 0 "
                f"(got lr={self.lr}, momentum={self.momentum}, weight_decay={self.weight_decay})"
            )
        for key, low in (("channel_step", 1), ("min_channels", 1), ("short_term_steps", 0),
                         ("long_term_steps", 0), ("batch_size", 1), ("holdout", 1), ("seed", 0),
                         ("batch", 1), ("profile_images", 1), ("max_iterations", 1), ("lut_step", 1),
                         ("lut_warmup", 0), ("lut_repeats", 1)):
            integer(key, low)
        if self.train_size is not None:
            integer("train_size", 1)
        if self.pick not in PICK_RULES:
            from .._suggest import did_you_mean

            raise bad("pick", f"must be one of {', '.join(PICK_RULES)}{did_you_mean(self.pick, PICK_RULES)}")
        if self.objective not in ("energy", "latency"):
            raise bad("objective", "must be 'energy' or 'latency'")
        object.__setattr__(self, "report", tuple(self.report))
        from .resources import resource_info

        for name in self.report:
            resource_info(name)

    def step(self, iteration: int) -> float:
        """ΔR_i as a fraction of the initial value (iteration counts from 1)."""
        return self.delta * self.decay ** (iteration - 1)

    def to_dict(self) -> dict[str, Any]:
        d = dataclasses.asdict(self)
        d["report"] = list(self.report)
        return d

    @classmethod
    def from_dict(cls, d: Mapping[str, Any], where: str = "netadapt options") -> NetAdaptConfig:
        """Build from a mapping; unknown keys are errors with a suggestion."""
        names = [f.name for f in dataclasses.fields(cls)]
        for key in d:
            if key not in names:
                from .._suggest import did_you_mean

                raise HwawareError(f"{where}: unknown option '{key}'{did_you_mean(key, names)}; allowed: {', '.join(names)}")
        kw = dict(d)
        if "report" in kw:
            kw["report"] = tuple(kw["report"])
        return cls(**kw)

    def replace(self, **changes: Any) -> NetAdaptConfig:
        return dataclasses.replace(self, **changes)
