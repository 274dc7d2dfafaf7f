"""``prune``: the pruning loop of :mod:`hwaware.compress.prune` against the Eyeriss energy; the
options mirror :class:`~hwaware.compress.prune.PruneConfig`."""

from __future__ import annotations

import time
from dataclasses import asdict
from typing import TYPE_CHECKING, Any

from ..._io import write_json
from ...report_table import signed_points
from ..options import Option, dataclass_options
from .base import StageDef, StageResult, register_stage

if TYPE_CHECKING:
    from ..context import RunContext
    from ..schema import Stage


def prune_options() -> tuple[Option, ...]:
    from ..._config import config_docs
    from ...compress.prune import PruneConfig

    return dataclass_options(PruneConfig, config_docs(PruneConfig), skip=("hardware", "batch"))


def build_prune(opts: dict[str, Any], recipe: dict[str, Any]) -> Any:
    from ...compress.prune import PruneConfig

    kw = {k: v for k, v in opts.items() if k in PruneConfig.keys()}
    return PruneConfig(**kw, hardware=recipe["hardware"], batch=recipe["batch"])


def run_prune(ctx: RunContext, stage: Stage) -> StageResult:
    from ...compress.prune import Pruner
    from ...compress.prune_log import PruneLog
    from ...plots import Point

    t0 = time.perf_counter()
    cfg = build_prune(dict(stage.options), ctx.settings)
    pruner = Pruner(ctx.model, train=ctx.train_loader, val=ctx.val_loader, calib=ctx.calib, config=cfg,
                    progress=ctx.progress)
    base = pruner.baseline
    points = [Point(base.energy, base.latency_ms, base.accuracy, "start")]
    log = PruneLog(writer=ctx.writer, prefix=f"prune/{stage.label}/", log=ctx.log)
    for step in pruner.steps():
        log(step, pruner)
        if step.accepted:
            m = step.metrics
            if step.kind == "prune":
                points.append(Point(m.energy, m.latency_ms, m.accuracy, f"{step.kind} {step.target}"))
            else:  # a kept fine-tune: the same sparsity, new accuracy (the path stays monotone in energy)
                points[-1] = Point(m.energy, m.latency_ms, m.accuracy, points[-1].label + " + fine-tune")
    result = pruner.result()
    ctx.set_model(result.model)
    ctx.masks = result.masks
    ctx.families[f"prune ({cfg.method})"] = points
    outputs = {}
    d = ctx.stage_dir(stage)
    if d is not None:
        write_json(d / "history.json", {"config": asdict(cfg), "baseline": base.to_dict(),
                                        "final": result.final.to_dict(), "message": result.message,
                                        "target_reached": result.target_reached, "steps": log.rows})
        outputs["history"] = ctx.rel(d / "history.json")
    ctx.snapshot(stage.label)
    drop = result.accuracy_drop
    acc_text = ""
    if drop is not None:
        acc_text = (f", val accuracy {base.accuracy:.4f} -> {result.final.accuracy:.4f} "
                    f"({signed_points(-drop)})")
    # the loop's message was written before its final fine-tune: quote only its reason, not its number
    reason = ("target reached" if result.target_reached
              else result.message.split(":")[0].split(" at energy")[0])
    return StageResult(stage.label, stage.name, time.perf_counter() - t0,
                       f"energy {result.energy_ratio:.3f} of the model it started from (target "
                       f"{cfg.target_energy}: {reason}){acc_text}", outputs,
                       {"energy_ratio": result.energy_ratio, "accuracy_drop": drop,
                        "target_reached": result.target_reached})


def check_prune(opts: dict[str, Any], settings: dict[str, Any]) -> None:
    build_prune(opts, settings)


def describe_prune(ctx: RunContext, stage: Stage) -> str:
    o = stage.options
    ctx.extra["pruned"] = True
    return (f"{o['method']} pruning until energy <= {o['target_energy']:g} of the start, at most "
            f"{o['max_drop']:g} accuracy points lost, steps of {o['step']:.0%}, <= {o['max_steps']} proposals")


register_stage(StageDef("prune", "pruning loop against the Eyeriss energy (hwaware.compress.prune)",
                        prune_options(), needs_data=True, config_check=check_prune, run=run_prune,
                        describe=describe_prune))
