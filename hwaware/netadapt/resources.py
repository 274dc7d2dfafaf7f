"""Resources NetAdapt can budget, in a registry (one entry per name).

=========  ====  ==========================================================================
name       unit  what it measures (per inference at ``batch`` images, default 1)
=========  ====  ==========================================================================
latency    ms    Eyeriss model: total latency (processing + DRAM-bound), summed over layers
energy     --    Eyeriss model: energy normalized to one 16-bit MAC, with measured sparsity
macs       --    multiply-accumulates of the Conv/Linear layers
weights    --    weights of the Conv/Linear layers (bias excluded)
measured   ms    latency on this machine from per-layer look-up tables (:mod:`.lut`)
=========  ====  ==========================================================================

Every resource is a function of the network's :class:`~hwaware.workload.Workload` (profiled on a
fixed batch of held-out images, so the Eyeriss energy sees real activation sparsity). A new
resource is one decorated factory::

    @register_resource("dram", unit="MB", description="Eyeriss DRAM traffic")
    def _dram(ctx):
        return lambda wl: ctx.eyeriss(wl).total.dram_MB
"""

from __future__ import annotations

import warnings
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..errors import HwawareError
from ..measure import ModelMetrics
from ..workload import Workload

Measure = Callable[[Workload], float]


@dataclass(frozen=True)
class ResourceInfo:
    name: str
    unit: str
    description: str
    deterministic: bool  # False for wall-clock measurements (noisy run to run)
    factory: Callable[[ResourceContext], Measure]


_REGISTRY: dict[str, ResourceInfo] = {}


def register_resource(
    name: str, *, unit: str = "", description: str = "", deterministic: bool = True
) -> Callable[[Callable[[ResourceContext], Measure]], Callable[[ResourceContext], Measure]]:
    """Decorator: register ``factory(ctx) -> measure(workload) -> float`` under ``name``."""

    def deco(factory: Callable[[ResourceContext], Measure]) -> Callable[[ResourceContext], Measure]:
        if name in _REGISTRY:
            warnings.warn(f"resource '{name}' registered twice; the later definition wins", stacklevel=2)
        _REGISTRY[name] = ResourceInfo(name, unit, description, deterministic, factory)
        return factory

    return deco


def resource_names() -> tuple[str, ...]:
    return tuple(_REGISTRY)


def resource_info(name: str) -> ResourceInfo:
    info = _REGISTRY.get(name)
    if info is None:
        from .._suggest import did_you_mean

        raise HwawareError(
            f"unknown resource '{name}'{did_you_mean(name, _REGISTRY)}; known resources: {', '.join(_REGISTRY)}"
        )
    return info


def resource_unit(name: str) -> str:
    return resource_info(name).unit


@dataclass
class ResourceContext:
    """What resource factories may share: the Eyeriss scorer and the latency table."""

    hardware: str = "eyeriss_v1"
    objective: str = "energy"
    lut_dir: Path | None = None
    lut_device: str = "cpu"
    lut_dtype: str = "float32"
    lut_step: int = 8
    lut_warmup: int = 3
    lut_repeats: int = 10
    _reports: dict[Workload, Any] = field(default_factory=dict, repr=False)
    _lut: Any = field(default=None, repr=False)
    _scorer: Any = field(default=None, repr=False)

    def eyeriss(self, workload: Workload) -> Any:
        """The Eyeriss score report of ``workload`` (latency and energy share one scoring).

        One :class:`~hwaware.eyeriss.Scorer` is shared by all workloads of the job: its mapping
        cache is a pure function of the layer (shape and rounded statistics), so its numbers do
        not depend on what it scored before, and a resumed or multi-process job reproduces an
        uninterrupted single-process run bit for bit while unchanged layers are not remapped.
        """
        hit = self._reports.get(workload)
        if hit is not None:
            return hit
        if self._scorer is None:
            from ..eyeriss import Scorer

            self._scorer = Scorer(self.hardware, self.objective)
        report = self._scorer.score(workload)
        if len(self._reports) >= 64:
            self._reports.pop(next(iter(self._reports)))
        self._reports[workload] = report
        return report

    def metrics(self, workload: Workload) -> ModelMetrics:
        """The :class:`~hwaware.measure.ModelMetrics` of ``workload`` on the Eyeriss model."""
        return ModelMetrics.from_report(self.eyeriss(workload), workload)

    def lut(self) -> Any:
        if self._lut is None:
            from .lut import LatencyLUT

            self._lut = LatencyLUT(
                self.lut_dir, device=self.lut_device, dtype=self.lut_dtype, step=self.lut_step,
                warmup=self.lut_warmup, repeats=self.lut_repeats,
            )
        return self._lut


@register_resource("latency", unit="ms", description="Eyeriss model latency (processing and DRAM bound)")
def _latency(ctx: ResourceContext) -> Measure:
    return lambda wl: ctx.metrics(wl).total_latency_ms


@register_resource("energy", unit="", description="Eyeriss model energy, normalized to one 16-bit MAC")
def _energy(ctx: ResourceContext) -> Measure:
    return lambda wl: ctx.metrics(wl).energy


@register_resource("macs", unit="", description="multiply-accumulates of the Conv/Linear layers")
def _macs(ctx: ResourceContext) -> Measure:
    return lambda wl: float(wl.macs)


@register_resource("weights", unit="", description="weights of the Conv/Linear layers")
def _weights(ctx: ResourceContext) -> Measure:
    return lambda wl: float(wl.weights)


@register_resource(
    "measured", unit="ms", deterministic=False,
    description="latency on this machine from per-layer look-up tables (interpolated)",
)
def _measured(ctx: ResourceContext) -> Measure:
    return lambda wl: float(ctx.lut().network_latency(wl))


class ResourceMeter:
    """Measures a fixed set of resources on workloads or models.

    >>> meter = ResourceMeter(["latency", "macs"])
    >>> values, wl = meter.measure_model(model, images)   # {'latency': 0.41, 'macs': 1.2e6}
    """

    def __init__(self, names: Sequence[str], *, context: ResourceContext | None = None, batch: int = 1) -> None:
        if batch < 1:
            raise HwawareError(f"resource batch must be >= 1, got {batch}")
        self.names = tuple(dict.fromkeys(names))
        self.context = context or ResourceContext()
        self.batch = batch
        self._measures = {n: resource_info(n).factory(self.context) for n in self.names}

    def measure(self, workload: Workload) -> dict[str, float]:
        wl = workload.with_batch(self.batch)
        return {n: m(wl) for n, m in self._measures.items()}

    def measure_model(self, model: Any, images: Any) -> tuple[dict[str, float], Workload]:
        """Profile ``model`` on ``images`` (eval mode, no grad, model untouched) and measure."""
        wl = profile_model(model, images)
        return self.measure(wl), wl


def profile_model(model: Any, images: Any) -> Workload:
    """The model's workload on ``images`` (the profiler runs it in eval mode and restores it)."""
    from ..profiler import profile

    return profile(model, images, progress=False)
