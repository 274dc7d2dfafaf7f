"""The recipe stages, one module each; importing this package registers them in :data:`STAGES`
(in this order, which is the order ``hwaware run --explain`` and docs/recipes.md list them).

A new stage is one module that builds a :class:`StageDef` (options, config check, runner, dry-run
description) and calls :func:`register_stage`, plus one import line below.
"""

from . import train, profile, score, prune, netadapt, report, quantize, export_vectors  # noqa: F401, I001
from .base import STAGES, StageDef, StageResult, register_stage

__all__ = ["STAGES", "StageDef", "StageResult", "register_stage"]
