"""``report``: options of the run's report (:mod:`hwaware.recipes.report` writes it after the last stage)."""

from __future__ import annotations

from typing import TYPE_CHECKING

from ..options import Option
from .base import StageDef, StageResult, register_stage

if TYPE_CHECKING:
    from ..context import RunContext
    from ..schema import Stage


def run_report(ctx: RunContext, stage: Stage) -> StageResult:
    # the report itself is written by run_recipe after the last stage; this records its options
    ctx.extra["report"] = dict(stage.options)
    return StageResult(stage.label, stage.name, 0.0, "report written at the end of the run")


def describe_report(ctx: RunContext, stage: Stage) -> str:
    return "write summary.md, plots, JSON"


register_stage(StageDef("report", "write summary.md, plots and JSON (always done at the end; list it to "
                        "set options)", (
                            Option("title", "str", "", "report title (default: the recipe name)"),
                            Option("plots", "bool", True, "write the PNG plots"),
                            Option("test_accuracy", "bool", True, "also measure test-split accuracy of the "
                                   "input and final models (when the data has one)"),
                        ), run=run_report, describe=describe_report))
