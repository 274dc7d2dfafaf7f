"""The chip's published AlexNet measurements (JSSC 2017 Tables III and V) as a workload.

Used by the fidelity test and ``bench/fidelity.py``. A copy of the project's reference JSON ships
as package data (``hwaware/eyeriss/data``); ``HWAWARE_REFERENCE`` can point at another copy.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

from ..errors import HwawareError
from ..workload import Layer, Workload

FILENAME = "eyeriss_jssc2017_alexnet.json"


def find_reference() -> Path:
    env = os.environ.get("HWAWARE_REFERENCE")
    candidates = [Path(env)] if env else []
    candidates.append(Path(__file__).resolve().parent / "data" / FILENAME)
    for c in candidates:
        if c.is_file():
            return c
    raise HwawareError(f"{FILENAME} not found (looked in {', '.join(str(c) for c in candidates)}); "
                       "set HWAWARE_REFERENCE to its path")


def load_reference(path: str | Path | None = None) -> dict[str, Any]:
    return json.loads(Path(path or find_reference()).read_text())


def alexnet_workload(ref: dict[str, Any] | None = None) -> Workload:
    """CONV1-5 at the paper's batch with the measured ifmap zeros (H is the padded size)."""
    ref = ref or load_reference()
    n = int(ref["batch"])
    layers = []
    for L in ref["layers"]:
        layers.append(Layer(
            L["name"], N=n, M=L["M"], C=L["C"], H=L["H"], W=L["H"], R=L["R"], S=L["R"], U=L["U"],
            groups=L["groups"], ifmap_zeros=L["measured"]["ifmap_zeros_pct"] / 100.0,
        ))
    return Workload(tuple(layers), source=FILENAME)
