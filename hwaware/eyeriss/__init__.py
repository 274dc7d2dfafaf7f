"""Embedded analytical model of the Eyeriss accelerator (row-stationary dataflow).

``score(workload_or_model, hardware="eyeriss_v1", objective="energy")`` -> :class:`ScoreReport`.
Pieces: :mod:`.hardware` (description + presets), :mod:`.mapper` (exhaustive RS mapping search),
:mod:`.cost` (access counts, energy, cycles), :mod:`.score` (reports, cached :class:`Scorer`), :mod:`.eyexam` (Eyexam's seven throughput bounds).
"""

from . import dataflows  # noqa: F401  (registers the eyeriss_v2 preset)
from .cost import LEVELS, TYPES, Problem, evaluate
from .eyexam import STEPS as EYEXAM_STEPS
from .eyexam import EyexamStep
from .hardware import PRESETS, Hardware, get_preset, register_preset, resolve_hardware
from .mapper import OBJECTIVES, Mapping, search
from .score import LayerScore, Scorer, ScoreReport, Unscored, rlc_ratio, score

__all__ = [
    "EYEXAM_STEPS", "LEVELS", "OBJECTIVES", "EyexamStep", "PRESETS", "TYPES", "Hardware", "LayerScore", "Mapping", "Problem",
    "ScoreReport", "Scorer", "Unscored", "evaluate", "get_preset", "register_preset",
    "resolve_hardware", "rlc_ratio", "score", "search",
]
