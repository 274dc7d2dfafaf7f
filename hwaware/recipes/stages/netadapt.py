"""``netadapt``: NetAdapt (:mod:`hwaware.netadapt`) against resource budgets; the family is plotted
and one member continues the pipeline. Options mirror :class:`~hwaware.netadapt.NetAdaptConfig`."""

from __future__ import annotations

import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ...errors import HwawareError
from ..options import REQUIRED, Option, dataclass_options
from .base import StageDef, StageResult, register_stage

if TYPE_CHECKING:
    from ..context import RunContext
    from ..schema import Stage


def _check_budgets(value: list[str]) -> str | None:
    from ...netadapt import parse_budgets

    try:
        parse_budgets(value)
    except HwawareError as exc:
        return str(exc)
    return None


def netadapt_options() -> tuple[Option, ...]:
    from ..._config import config_docs
    from ...netadapt import NetAdaptConfig

    docs = config_docs(NetAdaptConfig)
    budgets = Option("budgets", "list[str]", REQUIRED, "resource budgets, e.g. [latency=0.5] or "
                     "[energy=60%, macs=abs:2e6]; NetAdapt stops when every one is met", check=_check_budgets)
    member = Option("member", "int", -1, "which family member continues the pipeline (-1: the last)")
    return (budgets, member, *dataclass_options(NetAdaptConfig, docs, skip=("hardware", "objective", "batch")))


def build_netadapt(opts: dict[str, Any], recipe: dict[str, Any]) -> Any:
    from ...netadapt import NetAdaptConfig

    cfg = {k: v for k, v in opts.items() if k not in ("budgets", "member", "skip")}
    objective = recipe["objective"] if recipe["objective"] in ("energy", "latency") else "energy"
    return NetAdaptConfig.from_dict({**cfg, "hardware": recipe["hardware"], "objective": objective,
                                     "batch": recipe["batch"]})


def run_netadapt(ctx: RunContext, stage: Stage) -> StageResult:
    from ...netadapt import netadapt
    from ...plots import Point

    t0 = time.perf_counter()
    o = stage.options
    cfg = build_netadapt(dict(o), ctx.settings)
    d = ctx.stage_dir(stage)
    logdir = ctx.run_dir / "tensorboard" / stage.label if ctx.run_dir is not None else None
    res = netadapt(ctx.model, budgets=o["budgets"], data=ctx.data, workdir=d / "netadapt" if d else None,
                   logdir=logdir, config=cfg, progress=ctx.progress)
    n = len(res.members)
    idx = o["member"]
    if not -n <= idx < n:
        raise HwawareError(f"recipe {ctx.recipe.source}: stages[{stage.index}].netadapt.member: {idx} is out of "
                           f"range; the family has {n} members")
    points = []
    for m in res.members:
        if "energy" in m.resources and "latency" in m.resources:
            points.append(Point(m.resources["energy"], m.resources["latency"],
                                m.test_accuracy if m.test_accuracy is not None else m.accuracy,
                                f"{m.kind} {m.iteration}"))
    if points:
        ctx.families["netadapt"] = points
    ctx.set_model(res.model(idx))
    ctx.masks = None
    ctx.snapshot(stage.label)
    outputs = {k: ctx.rel(Path(v)) if ctx.run_dir is not None and Path(v).is_relative_to(ctx.run_dir) else v
               for k, v in res.outputs.items()}
    chosen = res.members[idx]
    rel = ", ".join(f"{b.resource} {res.relative(chosen, b.resource):.3f}" for b in res.budgets)
    return StageResult(stage.label, stage.name, time.perf_counter() - t0,
                       f"{res.iterations} iterations, {n} family members; member {idx}: {rel} of the original",
                       outputs, {"family": res.to_dict()})


def check_netadapt(opts: dict[str, Any], settings: dict[str, Any]) -> None:
    build_netadapt(opts, settings)


def describe_netadapt(ctx: RunContext, stage: Stage) -> str:
    o = stage.options
    return (f"NetAdapt to budgets {', '.join(o['budgets'])} (delta {o['delta']:g}, {o['short_term_steps']} "
            f"short-term steps per proposal); continue with family member {o['member']}")


register_stage(StageDef("netadapt", "NetAdapt against resource budgets (hwaware.netadapt); the family is "
                        "plotted", netadapt_options(), needs_data=True, config_check=check_netadapt,
                        run=run_netadapt, describe=describe_netadapt))
