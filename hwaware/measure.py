"""One way to measure a model: profile it, score the workload, summarize the numbers.

Every layer above the hardware model that needs "how much energy, latency and sparsity does this
model have now" goes through here: the pruning loop (:mod:`hwaware.compress.prune`), NetAdapt's
resources (:mod:`hwaware.netadapt.resources`), the recipe timeline (:mod:`hwaware.recipes`) and
the training plugin (:mod:`hwaware.plugin`).

    >>> from hwaware.eyeriss import Scorer
    >>> m = measure(model, images, scorer=Scorer("eyeriss_v1"), batch=1)
    >>> m.energy, m.total_latency_ms, m.weight_sparsity["conv1"]

Units: energy is normalized to one 16-bit MAC (a DRAM access costs 200 of them) and is per
``batch`` images (default 1: per inference); latencies are in ms on the hardware model; sparsity
values are measured fractions of zeros; accuracy is top-1 in [0, 1] or ``None`` when not known.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import asdict, dataclass, field
from typing import Any

__all__ = ["ModelMetrics", "measure", "module_energy", "module_of"]


def module_of(layer_name: str) -> str:
    """Profiler layer name -> module name (a second call of a module is ``name#1``)."""
    return layer_name.split("#", 1)[0]


def module_energy(report_or_layer_energy: Any) -> dict[str, float]:
    """Energy per module: the scored layer entries summed over the calls of each module.

    Takes a score report (its ``layers``) or a ``{layer name: energy}`` mapping; a module called
    twice (``fc`` and ``fc#1``) gets the sum of both calls.
    """
    if isinstance(report_or_layer_energy, Mapping):
        items = report_or_layer_energy.items()
    else:
        items = ((s.name, s.energy_total) for s in report_or_layer_energy.layers)
    out: dict[str, float] = {}
    for name, e in items:
        key = module_of(name)
        out[key] = out.get(key, 0.0) + float(e)
    return out


@dataclass(frozen=True, kw_only=True)
class ModelMetrics:
    """Hardware and accuracy numbers of one model state, from one workload and its score report.

    ``layer_energy``/``ifmap_sparsity``/``weight_sparsity`` are per profiled layer (call).
    """

    energy: float
    energy_by_level: dict[str, float]
    energy_by_type: dict[str, float]
    processing_latency_ms: float
    total_latency_ms: float
    macs: int
    nonzero_macs: float
    weights: int
    nonzero_weights: float
    accuracy: float | None = None
    layer_energy: dict[str, float] = field(default_factory=dict)
    ifmap_sparsity: dict[str, float] = field(default_factory=dict)
    weight_sparsity: dict[str, float] = field(default_factory=dict)

    @classmethod
    def fields_from(cls, report: Any, workload: Any, *, accuracy: float | None = None) -> dict[str, Any]:
        """The keyword arguments of :class:`ModelMetrics` (or a subclass) for ``report``/``workload``."""
        tot = report.total
        return dict(
            energy=float(tot.energy_total),
            energy_by_level={k: float(v) for k, v in tot.energy.items()},
            energy_by_type={k: float(v) for k, v in tot.energy_by_type.items()},
            processing_latency_ms=float(tot.processing_latency_ms),
            total_latency_ms=float(tot.total_latency_ms),
            macs=int(tot.macs),
            nonzero_macs=float(tot.nonzero_macs),
            weights=int(workload.weights),
            nonzero_weights=float(workload.nonzero_weights),
            accuracy=accuracy,
            layer_energy={s.name: float(s.energy_total) for s in report.layers},
            ifmap_sparsity={lay.name: float(lay.ifmap_zeros) for lay in workload.layers},
            weight_sparsity={lay.name: float(lay.weight_zeros) for lay in workload.layers},
        )

    @classmethod
    def from_report(cls, report: Any, workload: Any, *, accuracy: float | None = None,
                    **extra: Any) -> ModelMetrics:
        """Build from a :class:`~hwaware.eyeriss.ScoreReport` and the workload it scored;
        ``extra``: the fields a subclass adds (a recipe snapshot's ``label``, a log record's ``step``)."""
        return cls(**cls.fields_from(report, workload, accuracy=accuracy), **extra)

    @property
    def latency_ms(self) -> float:
        """Total latency (processing and DRAM bound), ms."""
        return self.total_latency_ms

    @property
    def layer_sparsity(self) -> dict[str, float]:
        """Measured weight zero fraction per layer (the pruning history's name for it)."""
        return self.weight_sparsity

    def to_dict(self) -> dict[str, Any]:
        """The fields, plus ``latency_ms`` and ``layer_sparsity`` (the keys pruning histories have always had)."""
        d = asdict(self)
        d["latency_ms"] = self.latency_ms
        d["layer_sparsity"] = dict(self.weight_sparsity)
        return d


def measure(model: Any, images: Any, *, scorer: Any, batch: int = 1, accuracy: float | None = None,
            source: str = "") -> ModelMetrics:
    """Profile ``model`` on ``images`` (measured zeros; eval mode, no grad, the model is left as
    it was) and score the workload with ``scorer`` at ``batch`` images."""
    from .profiler import profile

    wl = profile(model, images, progress=False, source=source)
    return ModelMetrics.from_report(scorer.score(wl, batch=batch), wl, accuracy=accuracy)
