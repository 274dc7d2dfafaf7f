"""The chip's published measurements (JSSC 2017) as workloads: AlexNet (Tables III, V) and VGG-16 (Table VI).

Used by the fidelity tests and ``bench/fidelity.py``. The tables ship as package data
(``hwaware/eyeriss/data``), so a fresh clone runs the fidelity tests; ``HWAWARE_REFERENCE`` can point
at another copy of the AlexNet file. The VGG-16 file holds only Table VI's active PEs, processing
latency, MACs and ifmap zeros: its traffic, power and total-latency columns are withheld on purpose.

The ofmap a layer writes is its ReLU output before pooling (the chip has no pooling unit), which the
tables do not count. Where the paper states its compression, the workload carries it as
``Layer.ofmap_rlc`` (:data:`FMAP_RLC_SAVING`, AlexNet CONV1 and CONV5); every other layer is left to
the hardware model's rule for an unmeasured ofmap (the zeros the next layer reads: fewer zeros than the
chip wrote where a pooling layer sits in between, so those layers' ofmap traffic is an upper bound).
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

from ..errors import HwawareError
from ..workload import Layer, Workload
from ..workload.rlc import rlc_ratio

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


# JSSC 2017 Sec. IV-B, on AlexNet: "the DRAM accesses for fmaps alone, including both ifmaps and
# ofmaps, can be saved by nearly 30% in CONV1, and nearly 75% in CONV5" (read as 30% and 75%)
FMAP_RLC_SAVING = {"CONV1": 0.30, "CONV5": 0.75}


def written_rlc_from_saving(layer: Layer, saving: float, *, first: bool) -> float:
    """The ofmap's coded / raw size implied by a stated saving of the layer's fmap DRAM accesses.

    "fmaps" is read as each fmap stored once: the (padded) ifmap read, coded at the layer's measured
    ifmap zeros (not coded for the network's input, Sec. IV-B), and the ofmap written. So
    ``coded ofmap = (1 - saving) * (ifmap + ofmap) - coded ifmap``. (Counting the ifmap's refetches
    instead cannot give CONV5's 75%: its ifmap, read 4 times at 77.6% zeros, alone costs more.)
    CONV1: 1 - 0.30 * (618,348 + 1,161,600) / 1,161,600 = 0.540.
    """
    n_if = layer.N * layer.in_channels * layer.Hp * layer.Wp
    n_of = layer.ofmap_size
    coded_if = n_if * (1.0 if first else rlc_ratio(layer.Hp * layer.Wp, layer.ifmap_zeros))
    coded_of = (1.0 - saving) * (n_if + n_of) - coded_if
    if coded_of <= 0:
        raise HwawareError(f"layer '{layer.name}': a {saving:.0%} fmap saving leaves no room for the ofmap")
    return coded_of / n_of


def _workload(ref: dict[str, Any], source: str, savings: dict[str, float]) -> Workload:
    n = int(ref["batch"])
    layers = []
    for i, L in enumerate(ref["layers"]):
        layer = Layer(
            L["name"], N=n, M=L["M"], C=L["C"], H=L["H"], W=L["H"], R=L["R"], S=L["R"], U=L["U"],
            groups=L["groups"], ifmap_zeros=L["measured"]["ifmap_zeros_pct"] / 100.0,
        )
        if L["name"] in savings:
            layer = layer.replace(ofmap_rlc=written_rlc_from_saving(layer, savings[L["name"]], first=i == 0))
        layers.append(layer)
    return Workload(tuple(layers), source=source)


def alexnet_workload(ref: dict[str, Any] | None = None) -> Workload:
    """CONV1-5 at the paper's batch (4) with the measured ifmap zeros (H is the padded size), and
    CONV1's and CONV5's written ofmaps coded as Sec. IV-B states (:data:`FMAP_RLC_SAVING`)."""
    return _workload(ref or load_reference(), FILENAME, FMAP_RLC_SAVING)


def vgg16_workload(ref: dict[str, Any] | None = None) -> Workload:
    """VGG-16's 13 CONV layers at the paper's batch (3) with Table VI's measured ifmap zeros."""
    return _workload(ref or load_vgg16_reference(), VGG16_FILENAME, {})
