"""``profile``: the current model's workload (shapes and measured sparsity), written to workload.json."""

from __future__ import annotations

import time
from typing import TYPE_CHECKING

from ..options import Option
from .base import StageDef, StageResult, register_stage

if TYPE_CHECKING:
    from ..context import RunContext
    from ..schema import Stage


def run_profile(ctx: RunContext, stage: Stage) -> StageResult:
    from ...profiler import profile

    t0 = time.perf_counter()
    n = stage.options["images"]
    data = ctx.calib if n is None else ctx.calib[:n]
    wl = profile(ctx.model, data, progress=False, source=str(ctx.settings["model"]))
    outputs = {}
    d = ctx.stage_dir(stage)
    if d is not None:
        wl.save(d / "workload.json")
        outputs["workload"] = ctx.rel(d / "workload.json")
    zeros = [lay.ifmap_zeros for lay in wl.layers]
    mean_z = sum(zeros) / len(zeros) if zeros else 0.0
    return StageResult(stage.label, stage.name, time.perf_counter() - t0,
                       f"{len(wl.layers)} layers, {wl.macs / 1e6:.2f} M MACs, {wl.weights / 1e6:.3f} M weights, "
                       f"mean ifmap zeros {mean_z:.1%} on {data.shape[0]} images", outputs)


def describe_profile(ctx: RunContext, stage: Stage) -> str:
    return f"profile on {stage.options['images'] or ctx.settings['profile_images']} validation images, write the workload"


register_stage(StageDef("profile", "profile the current model (shapes and measured sparsity) and write its workload",
                        (Option("images", "int", None, "validation images profiled (null: profile_images)",
                                nullable=True, low=1),), run=run_profile, describe=describe_profile))
