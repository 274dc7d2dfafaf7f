"""``score``: the current model's Eyeriss score (score.json, optional per-layer table)."""

from __future__ import annotations

import time
from typing import TYPE_CHECKING

from ..._io import write_json
from ..options import Option
from .base import StageDef, StageResult, register_stage

if TYPE_CHECKING:
    from ..context import RunContext
    from ..schema import Stage


def run_score(ctx: RunContext, stage: Stage) -> StageResult:
    t0 = time.perf_counter()
    _wl, rep = ctx.current_score()
    if stage.options["table"]:
        ctx.log(rep.table())
    outputs = {}
    d = ctx.stage_dir(stage)
    if d is not None:
        write_json(d / "score.json", rep.to_dict())
        outputs["score"] = ctx.rel(d / "score.json")
    tot = rep.total
    return StageResult(stage.label, stage.name, time.perf_counter() - t0,
                       f"energy {tot.energy_total:.4g} (x one 16-bit MAC) = {tot.energy_J * 1e3:.4g} mJ, latency "
                       f"{tot.total_latency_ms:.3f} ms, per batch of {rep.batch}", outputs)


def describe_score(ctx: RunContext, stage: Stage) -> str:
    s = ctx.settings
    return f"score on {s['hardware']} (objective {s['objective']}, batch {s['batch']})"


register_stage(StageDef("score", "score the current model on the Eyeriss model and print the per-layer table",
                        (Option("table", "bool", True, "print the per-layer table"),),
                        run=run_score, describe=describe_score))
