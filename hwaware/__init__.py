"""hwaware: hardware-aware model compression for PyTorch.

Profile a real network with forward hooks, score it on an embedded model of the Eyeriss
accelerator (energy per memory level and data type, DRAM traffic, latency, power), and adapt it
to an energy or latency budget with energy-aware pruning, quantization and NetAdapt.

    >>> import hwaware
    >>> wl = hwaware.profile(model, images)          # one record per Conv/Linear call
    >>> report = hwaware.score(wl, hardware="eyeriss_v1")
    >>> print(report.table())
"""

from __future__ import annotations

import importlib
from typing import Any

__version__ = "0.1.0"

# public name -> module that defines it (imported on first use, so `import hwaware` stays fast)
_EXPORTS = {
    "Layer": "hwaware.workload",
    "Workload": "hwaware.workload",
    "UnmodeledOp": "hwaware.workload",
    "HwawareError": "hwaware.errors",
    "UnsupportedLayerError": "hwaware.errors",
    "profile": "hwaware.profiler",
    "Profiler": "hwaware.profiler",
    "score": "hwaware.eyeriss",
    "Hardware": "hwaware.eyeriss",
    "load_model": "hwaware.modelref",
    "attach": "hwaware.plugin",
    "prune": "hwaware.compress.prune",
    "convert": "hwaware.fixedpoint",
    "netadapt": "hwaware.netadapt",
    "save_model": "hwaware.checkpoint",
    "load_model_file": "hwaware.modelref",
}

__all__ = ["__version__", *_EXPORTS]


def __getattr__(name: str) -> Any:
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module 'hwaware' has no attribute {name!r}")
    value = getattr(importlib.import_module(module), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(__all__)
