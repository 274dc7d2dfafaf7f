"""The chip's published measurements (JSSC 2017) as workloads: AlexNet (Tables III, V) and VGG-16 (Table VI).

Used by the fidelity tests and ``bench/fidelity.py``. The tables ship as package data
(``hwaware/eyeriss/data``), so a fresh clone runs the fidelity tests; ``HWAWARE_REFERENCE`` can point
at another copy of the AlexNet file. The VGG-16 file holds only Table VI's active PEs, processing
latency, MACs and ifmap zeros: its traffic, power and total-latency columns are withheld on purpose.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

from ..errors import HwawareError
from ..workload import Layer, Workload

FILENAME = "eyeriss_jssc2017_alexnet.json"
VGG16_FILENAME = "eyeriss_jssc2017_vgg16_throughput.json"
_DATA = Path(__file__).resolve().parent / "data"


def find_reference(filename: str = FILENAME) -> Path:
    env = os.environ.get("HWAWARE_REFERENCE") if filename == FILENAME else None
    candidates = [Path(env)] if env else []
    candidates.append(_DATA / filename)
    for c in candidates:
        if c.is_file():
            return c
    raise HwawareError(f"{filename} not found (looked in {', '.join(str(c) for c in candidates)}); "
                       "set HWAWARE_REFERENCE to its path")


def load_reference(path: str | Path | None = None) -> dict[str, Any]:
    """The AlexNet table (or the JSON file at ``path``)."""
    return json.loads(Path(path or find_reference()).read_text())


def load_vgg16_reference() -> dict[str, Any]:
    return json.loads(find_reference(VGG16_FILENAME).read_text())


def _workload(ref: dict[str, Any], source: str) -> Workload:
    n = int(ref["batch"])
    layers = []
    for L in ref["layers"]:
        layers.append(Layer(
            L["name"], N=n, M=L["M"], C=L["C"], H=L["H"], W=L["H"], R=L["R"], S=L["R"], U=L["U"],
            groups=L["groups"], ifmap_zeros=L["measured"]["ifmap_zeros_pct"] / 100.0,
        ))
    return Workload(tuple(layers), source=source)


def alexnet_workload(ref: dict[str, Any] | None = None) -> Workload:
    """CONV1-5 at the paper's batch (4) with the measured ifmap zeros (H is the padded size)."""
    return _workload(ref or load_reference(), FILENAME)


def vgg16_workload(ref: dict[str, Any] | None = None) -> Workload:
    """VGG-16's 13 CONV layers at the paper's batch (3) with Table VI's measured ifmap zeros."""
    return _workload(ref or load_vgg16_reference(), VGG16_FILENAME)
