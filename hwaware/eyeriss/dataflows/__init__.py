"""The dataflow taxonomy on the same hardware: row stationary (RS) against weight stationary (WS),
output stationary (OS_A, OS_B, OS_C) and no local reuse (NLR).

ISCA 2016 (Chen, Emer, Sze) and survey Sec. V compare them at equal storage area and 256 PEs on
AlexNet at batch 16. ``rs`` is the main Eyeriss model (:mod:`hwaware.eyeriss.cost`); the others are
models of their own here (one module each) built on the same energy framework and counting
conventions (:mod:`.framework`), with the storage split of :mod:`.area`.

Select one with ``hardware="eyeriss_isca256:ws"`` (any preset or file, then ``:`` and the dataflow),
``hwaware score ... --dataflow ws``, or :func:`with_dataflow`. Every loop that takes a hardware
name (NetAdapt, energy-aware pruning, quantization, recipes, the plugin) takes these too.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Iterable
from dataclasses import dataclass

import numpy as np

from ...errors import HwawareError
from ...workload import Layer
from ..cost import Problem
from ..hardware import DATAFLOWS, Hardware
from . import eyeriss_v2 as v2
from . import no_local_reuse as nlr
from . import output_stationary as os_
from . import weight_stationary as ws
from .area import storage_split
from .framework import Candidate, DataflowMapping, choose, problem


@dataclass(frozen=True)
class Dataflow:
    name: str
    title: str
    stationary: str  # the data type it is named for / optimizes ("" when none)
    candidates: Callable[[Problem, Hardware], Iterable[Candidate]] | None  # None: the RS model


REGISTRY: dict[str, Dataflow] = {
    "rs": Dataflow("rs", "row stationary", "", None),
    "ws": Dataflow("ws", ws.TITLE, "filter", ws.candidates),
    "os_a": Dataflow("os_a", os_.VARIANTS["os_a"], "psum", lambda pb, hw: os_.candidates(pb, hw, "os_a")),
    "os_b": Dataflow("os_b", os_.VARIANTS["os_b"], "psum", lambda pb, hw: os_.candidates(pb, hw, "os_b")),
    "os_c": Dataflow("os_c", os_.VARIANTS["os_c"], "psum", lambda pb, hw: os_.candidates(pb, hw, "os_c")),
    "nlr": Dataflow("nlr", nlr.TITLE, "DRAM", nlr.candidates),
    # Eyeriss v2's own model (row stationary plus, sparse PEs); it is a chip, not an area re-split
    "v2": Dataflow("v2", "Eyeriss v2 row stationary plus", "", None),
}
# the dataflows of the ISCA 2016 comparison (everything but the v2 chip model)
TAXONOMY = tuple(d for d in REGISTRY if d != "v2")
if set(REGISTRY) != set(DATAFLOWS):  # pragma: no cover - a developer error
    raise RuntimeError("hwaware.eyeriss.hardware.DATAFLOWS and the dataflow registry disagree")

# the spelling of the command line: ``--dataflow os`` means the CONV-oriented variant OS_A
ALIASES = {"os": "os_a"}


def canonical(name: str) -> str:
    key = ALIASES.get(str(name).lower(), str(name).lower())
    if key not in REGISTRY:
        from ..._suggest import did_you_mean

        raise HwawareError(
            f"unknown dataflow '{name}'{did_you_mean(str(name), list(REGISTRY) + list(ALIASES))}; "
            f"allowed: {', '.join(REGISTRY)} (os = os_a)"
        )
    return key


def hardware_spec(hardware: str | None, dataflow: str | None, default: str = "eyeriss_v1") -> str | None:
    """The hardware name a loop takes for ``--hardware H --dataflow D``: ``H:D`` (``D`` checked now)."""
    if not dataflow:
        return hardware
    return f"{hardware or default}:{canonical(dataflow)}"


DATAFLOW_HELP = ("dataflow on the hardware's array at equal storage area: rs (default), ws, os (= os_a), "
                 "os_a, os_b, os_c, nlr; same as --hardware NAME:DATAFLOW (Eyeriss v2: --hardware eyeriss_v2)")


def with_dataflow(hw: Hardware, dataflow: str) -> Hardware:
    """``hw`` running ``dataflow`` at equal storage area (name ``<hw>:<dataflow>``)."""
    df = canonical(dataflow)
    if df == hw.dataflow:
        return hw
    if "v2" in (df, hw.dataflow):
        raise HwawareError(f"dataflow '{dataflow}' on {hw.name}: Eyeriss v2 is a chip with its own model "
                           "(--hardware eyeriss_v2, no --dataflow); the dataflows rs, ws, os_a/b/c, nlr apply "
                           "to row-stationary hardware such as eyeriss_v1 or eyeriss_isca256")
    base = hw.name.split(":", 1)[0]
    out = storage_split(hw, df)
    return dataclasses.replace(out, dataflow=df, name=base if df == "rs" else f"{base}:{df}")


def evaluate_layer(layer: Layer, hw: Hardware, objective: str, tolerance: float, *, rlc_if: float,
                   rlc_of: float, rlc_w: float) -> tuple[DataflowMapping, dict[str, np.ndarray]]:
    """Search ``hw.dataflow``'s mappings of ``layer``; the best one and its result arrays (the keys
    of :func:`hwaware.eyeriss.cost.evaluate`)."""
    if hw.dataflow == "v2":
        return v2.evaluate_layer(layer, hw, objective, tolerance, rlc_if=rlc_if, rlc_of=rlc_of, rlc_w=rlc_w)
    df = REGISTRY[hw.dataflow]
    if df.candidates is None:
        raise HwawareError("the row-stationary dataflow is scored by hwaware.eyeriss.score directly")
    pb = problem(layer, rlc_if=rlc_if, rlc_of=rlc_of, rlc_w=rlc_w)
    try:
        cand, res = choose(pb, hw, df.candidates(pb, hw), objective, tolerance, df.title)
    except HwawareError as exc:
        raise type(exc)(f"layer '{layer.name}': {exc}") from None
    return cand.mapping, res


__all__ = [
    "ALIASES",
    "DATAFLOWS",
    "DATAFLOW_HELP",
    "REGISTRY",
    "Dataflow",
    "DataflowMapping",
    "canonical",
    "evaluate_layer",
    "hardware_spec",
    "with_dataflow",
]
