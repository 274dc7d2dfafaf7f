"""The end of a run: final model, workload/score JSON, ``summary.md`` with per-layer tables, PNG plots.

Energy is the Eyeriss model's normalized unit (one 16-bit MAC = 1, a DRAM access = 200) per batch
of ``batch`` images; latency is ms on the model (processing, and total with DRAM stalls).
"""

from __future__ import annotations

import datetime as _dt
from dataclasses import asdict
from typing import Any

from .._io import write_json, write_text
from ..report_table import format_pct, format_si

__all__ = ["layer_table", "pipeline_table", "write_report"]


def _md_table(headers: list[str], rows: list[list[str]], align: str | None = None) -> str:
    align = align or ("l" + "r" * (len(headers) - 1))
    rule = ["---:" if a == "r" else "---" for a in align]
    out = ["| " + " | ".join(headers) + " |", "| " + " | ".join(rule) + " |"]
    out += ["| " + " | ".join(r) + " |" for r in rows]
    return "\n".join(out)


def layer_table(report: Any) -> str:
    """Per-layer Markdown table of a ScoreReport: shape, MACs, zeros, energy by level and by type."""
    total = report.total.energy_total
    headers = ["layer", "M×C×R×S", "H×W→E×F", "MACs", "ifmap zeros", "weight zeros", "DRAM", "GLB", "array",
               "RF", "MAC", "ifmap", "filter", "psum", "energy", "share", "latency ms"]
    rows = []
    for ls in [*report.layers, report.total]:
        lay = ls.layer
        e, t = ls.energy, ls.energy_by_type
        shape = f"{lay.M}×{lay.C}×{lay.R}×{lay.S}" + (f" g{lay.groups}" if lay.groups > 1 else "") if lay else ""
        fmap = f"{lay.H}×{lay.W}→{lay.E}×{lay.F}" if lay else ""
        name = f"**{ls.name}**" if lay is None else ls.name
        rows.append([name, shape, fmap, format_si(ls.macs), format_pct(lay.ifmap_zeros) if lay else "",
                     format_pct(lay.weight_zeros) if lay else "",
                     *(format_si(e[k]) for k in ("DRAM", "GLB", "array", "RF", "MAC")),
                     *(format_si(t[k]) for k in ("ifmap", "filter", "psum")),
                     format_si(ls.energy_total), format_pct(ls.energy_total / total if total else 0.0),
                     f"{ls.total_latency_ms:.3f}"])
    return _md_table(headers, rows, "lll" + "r" * (len(headers) - 3))


def pipeline_table(timeline: list[Any]) -> str:
    """One row per snapshot (input, after each model-changing stage, final)."""
    headers = ["after", "energy", "DRAM", "GLB", "array", "RF", "MAC", "latency ms", "MACs (non-zero)",
               "weights (non-zero)", "val accuracy"]
    rows = []
    for s in timeline:
        e = s.energy_by_level
        rows.append([s.label, format_si(s.energy), *(format_pct(e[k] / s.energy if s.energy else 0.0)
                                                    for k in ("DRAM", "GLB", "array", "RF", "MAC")),
                     f"{s.total_latency_ms:.3f}", f"{format_si(s.macs)} ({format_si(s.nonzero_macs)})",
                     f"{format_si(s.weights)} ({format_si(s.nonzero_weights)})",
                     "-" if s.accuracy is None else f"{s.accuracy:.4f}"])
    return _md_table(headers, rows)


def _ratio(a: float, b: float) -> str:
    return f"{b / a:.3f}×" if a else "-"


def write_report(ctx: Any, *, seconds: float) -> dict[str, str]:
    """Write every end-of-run file into ``ctx.run_dir``; returns {name: relative path}."""
    from .. import __version__
    from ..checkpoint import save_model
    from ..plots import Point, energy_breakdown_figure, save_png, tradeoff_figure

    run_dir = ctx.run_dir
    opts = {"title": "", "plots": True, "test_accuracy": True, **ctx.extra.get("report", {})}
    files: dict[str, str] = {}
    in_wl, in_rep = ctx.input_score
    wl, rep = ctx.current_score()
    first, final = ctx.timeline[0], ctx.timeline[-1]

    test_acc = None
    if opts["test_accuracy"] and ctx.data is not None:
        from ..errors import HwawareError
        from ..train import evaluate

        try:
            test_acc = evaluate(ctx.model, ctx.loader("test"), progress=False)
        except HwawareError:
            test_acc = None  # the dataset has no test split

    meta = {"recipe": ctx.recipe.name, "energy": final.energy, "latency_ms": final.total_latency_ms,
            "val_accuracy": final.accuracy, "test_accuracy": test_acc, "hardware": ctx.settings["hardware"],
            "input_size": list(ctx.input_size)}
    save_model(ctx.model, run_dir / "model.pt", meta=meta)
    files["model"] = "model.pt"
    in_wl.save(run_dir / "input_workload.json")
    write_json(run_dir / "input_score.json", in_rep.to_dict())
    wl.save(run_dir / "workload.json")
    write_json(run_dir / "score.json", rep.to_dict())
    files.update({"input_workload": "input_workload.json", "input_score": "input_score.json",
                  "workload": "workload.json", "score": "score.json"})

    if opts["plots"]:
        save_png(energy_breakdown_figure(rep, title=f"{ctx.recipe.name}: final model, energy per batch of "
                                                     f"{rep.batch} ({rep.total.energy_total:.4g})"),
                 run_dir / "energy_breakdown.png")
        save_png(energy_breakdown_figure(in_rep, title=f"{ctx.recipe.name}: input model, energy per batch of "
                                                        f"{in_rep.batch} ({in_rep.total.energy_total:.4g})"),
                 run_dir / "energy_breakdown_input.png")
        files.update({"energy_breakdown": "energy_breakdown.png", "energy_breakdown_input": "energy_breakdown_input.png"})
        pipeline: list[Point] = []
        for snap in ctx.timeline[1:]:  # the input model is usually untrained: left out
            p = Point(snap.energy, snap.total_latency_ms, snap.accuracy, snap.label)
            if pipeline and (pipeline[-1].energy, pipeline[-1].accuracy) == (p.energy, p.accuracy):
                continue  # a stage that did not change the model (e.g. 'final' after the last stage)
            pipeline.append(p)
        families = {"pipeline (after each stage)": pipeline}
        families.update(ctx.families)
        if any(p.accuracy is not None for pts in families.values() for p in pts):
            save_png(tradeoff_figure(families, title=f"{ctx.recipe.name}: accuracy vs Eyeriss energy and latency"),
                     run_dir / "tradeoff.png")
            files["tradeoff"] = "tradeoff.png"

    # summary.md
    title = opts["title"] or f"Run {ctx.recipe.name}"
    s = ctx.settings
    lines = [f"# {title}", ""]
    if s.get("description"):
        lines += [str(s["description"]).strip(), ""]
    lines += [
        f"- recipe: `{ctx.recipe.source}`" + (f" with `--set {' '.join(ctx.recipe.overrides)}`"
                                              if ctx.recipe.overrides else ""),
        f"- model: `{s['model']}`, data: `{s['data']}`, hardware: `{s['hardware']}` (objective {s['objective']}, "
        f"batch {s['batch']})",
        f"- finished {_dt.datetime.now().isoformat(timespec='seconds')} in {seconds:.1f} s (hwaware {__version__})",
        "- energy: normalized to one 16-bit MAC (DRAM access = 200), per batch; latency: Eyeriss model, ms per batch",
        "",
        "## Result",
        "",
    ]
    rows = [
        ["energy", format_si(first.energy), format_si(final.energy), _ratio(first.energy, final.energy)],
        ["energy (mJ)", f"{in_rep.total.energy_J * 1e3:.4g}", f"{rep.total.energy_J * 1e3:.4g}",
         _ratio(in_rep.total.energy_J, rep.total.energy_J)],
        ["latency ms", f"{first.total_latency_ms:.3f}", f"{final.total_latency_ms:.3f}",
         _ratio(first.total_latency_ms, final.total_latency_ms)],
        ["DRAM MB", f"{in_rep.total.dram_MB:.3f}", f"{rep.total.dram_MB:.3f}",
         _ratio(in_rep.total.dram_MB, rep.total.dram_MB)],
        ["MACs", format_si(first.macs), format_si(final.macs), _ratio(first.macs, final.macs)],
        ["non-zero MACs", format_si(first.nonzero_macs), format_si(final.nonzero_macs),
         _ratio(first.nonzero_macs, final.nonzero_macs)],
        ["weights", format_si(first.weights), format_si(final.weights), _ratio(first.weights, final.weights)],
        ["non-zero weights", format_si(first.nonzero_weights), format_si(final.nonzero_weights),
         _ratio(first.nonzero_weights, final.nonzero_weights)],
        ["val accuracy", "-" if first.accuracy is None else f"{first.accuracy:.4f}",
         "-" if final.accuracy is None else f"{final.accuracy:.4f}", ""],
    ]
    if test_acc is not None:
        rows.append(["test accuracy", "", f"{test_acc:.4f}", ""])
    lines += [_md_table(["", "input model", "final model", "final / input"], rows), ""]
    lines += ["## Stages", ""]
    lines += [_md_table(["stage", "time s", "result"],
                        [[r.label, f"{r.seconds:.1f}", r.summary.replace("|", "/")] for r in ctx.results], "lrl"), ""]
    lines += ["## After each stage", "", pipeline_table(ctx.timeline), ""]
    for name, pts in ctx.families.items():
        lines += [f"### Family: {name}", "",
                  _md_table(["model", "energy", "latency ms", "accuracy"],
                            [[p.label, format_si(p.energy), f"{p.latency_ms:.3f}",
                              "-" if p.accuracy is None else f"{p.accuracy:.4f}"] for p in pts]), ""]
    if opts["plots"]:
        lines += ["## Plots", "", "![final energy breakdown](energy_breakdown.png)", "",
                  "![input energy breakdown](energy_breakdown_input.png)", ""]
        if "tradeoff" in files:
            lines += ["![accuracy vs energy and latency](tradeoff.png)", ""]
    lines += ["## Final model per layer", "", layer_table(rep), "",
              "## Input model per layer", "", layer_table(in_rep), ""]
    if rep.unmodeled or rep.unscored:
        lines += ["Not scored (listed with their MACs): " + ", ".join(
            f"{getattr(u, 'name', '?')} ({format_si(getattr(u, 'macs', 0))} MACs)"
            for u in (*rep.unscored, *rep.unmodeled)), ""]
    stage_files = [(r.label, k, v) for r in ctx.results for k, v in r.outputs.items()]
    lines += ["## Files", "", "- `recipe.yaml`: the resolved recipe"]
    lines += [f"- `{v}`" for v in files.values()]
    lines += [f"- `{v}` ({label}: {k})" for label, k, v in stage_files]
    lines += ["- `tensorboard/`: `tensorboard --logdir " + str(run_dir / "tensorboard") + "`", ""]
    write_text(run_dir / "summary.md", "\n".join(lines))
    files["summary"] = "summary.md"

    write_json(run_dir / "run.json", {
        "status": "ok", "recipe": ctx.recipe.to_dict(), "source": ctx.recipe.source,
        "overrides": list(ctx.recipe.overrides), "seconds": seconds, "test_accuracy": test_acc,
        "timeline": [t.to_dict() for t in ctx.timeline],
        "stages": [asdict(r) for r in ctx.results],
        "families": {k: [asdict(p) for p in v] for k, v in ctx.families.items()},
        "files": files,
    })
    files["run"] = "run.json"
    return files
