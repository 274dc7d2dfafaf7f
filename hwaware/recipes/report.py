"""The end of a run: final model, workload/score JSON, ``summary.md`` with per-layer tables, PNG plots.

Energy is the Eyeriss model's normalized unit (one 16-bit MAC = 1, a DRAM access = 200) per batch
of ``batch`` images; latency is ms on the model (processing, and total with DRAM stalls).
"""

from __future__ import annotations

import datetime as _dt
from dataclasses import asdict
from collections.abc import Sequence
from typing import Any

from .._io import write_json, write_text
from ..report_table import format_pct, format_si, signed_change, signed_points

__all__ = ["baseline_index", "layer_table", "pipeline_table", "pipeline_points", "write_report"]


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


def pipeline_table(timeline: list[Any], baseline: int | None = None) -> str:
    """One row per snapshot (input, after each model-changing stage, final); the ``baseline``-th
    row is marked."""
    headers = ["after", "energy", "DRAM", "GLB", "array", "RF", "MAC", "latency ms", "MACs (non-zero)",
               "weights (non-zero)", "val accuracy"]
    rows = []
    for i, s in enumerate(timeline):
        e = s.energy_by_level
        label = s.label + (" (baseline)" if i == baseline and i else "") + \
            (" (untrained)" if i == 0 and baseline else "")
        rows.append([label, format_si(s.energy), *(format_pct(e[k] / s.energy if s.energy else 0.0)
                                                    for k in ("DRAM", "GLB", "array", "RF", "MAC")),
                     f"{s.total_latency_ms:.3f}", f"{format_si(s.macs)} ({format_si(s.nonzero_macs)})",
                     f"{format_si(s.weights)} ({format_si(s.nonzero_weights)})",
                     "-" if s.accuracy is None else f"{s.accuracy:.4f}"])
    return _md_table(headers, rows)


def _ratio(a: float, b: float) -> str:
    return f"{b / a:.3f}×" if a else "-"


# stages that compress a model: the baseline of a run is the model before the first of them
COMPRESSING = frozenset({"prune", "netadapt", "quantize"})


def baseline_index(timeline: Sequence[Any], results: Sequence[Any]) -> int:
    """Index in ``timeline`` of the model compression started from: the snapshot after the last
    stage before the first compressing stage (the trained model), or the input if none came first."""
    names = {r.label: r.name for r in results}
    idx = 0
    for i, snap in enumerate(timeline[1:-1], start=1):
        if names.get(snap.label) in COMPRESSING:
            break
        idx = i
    return idx


def pipeline_points(ctx: Any, base: int) -> list[Any]:
    """The baseline and the model after each later stage that changed it, as trade-off points;
    a quantize stage gives a point with its fixed-point accuracy even when its energy did not move."""
    from ..plots import Point

    snaps = {s.label: s for s in ctx.timeline}
    b = ctx.timeline[base]
    dense = ", dense" if b.nonzero_weights >= 0.999 * b.weights else ""
    points = [Point(b.energy, b.total_latency_ms, b.accuracy, f"{b.label} (baseline{dense})")]
    labels = [r.label for r in ctx.results]
    after = labels.index(b.label) + 1 if b.label in labels else 0
    current = b
    for r in ctx.results[after:]:
        snap = snaps.get(r.label)
        if r.name == "quantize" and r.details.get("fixed_accuracy") is not None:
            s = snap or current
            bits = r.details.get("bits")
            width = f"{bits}-bit" if isinstance(bits, int) else ("16-bit" if not bits else "mixed-width")
            points.append(Point(s.energy, s.total_latency_ms, r.details["fixed_accuracy"],
                                f"{r.label} ({width} fixed point)"))
            current = s
        elif snap is not None:
            points.append(Point(snap.energy, snap.total_latency_ms, snap.accuracy, r.label))
            current = snap
    return points


def write_report(ctx: Any, *, seconds: float) -> dict[str, str]:
    """Write every end-of-run file into ``ctx.run_dir``; returns {name: relative path}.

    ``seconds``: the run's time before the report; the report's own time is measured here and
    recorded as the report stage's time."""
    import time
    from dataclasses import replace

    from .. import __version__
    from ..checkpoint import save_model
    from ..plots import energy_breakdown_figure, save_png, tradeoff_figure

    t_report = time.perf_counter()
    run_dir = ctx.run_dir
    opts = {"title": "", "plots": True, "test_accuracy": True, **ctx.extra.get("report", {})}
    files: dict[str, str] = {}
    in_wl, in_rep = ctx.input_score
    wl, rep = ctx.current_score()
    base_i = baseline_index(ctx.timeline, ctx.results)
    first, base, final = ctx.timeline[0], ctx.timeline[base_i], ctx.timeline[-1]
    base_rep = ctx.reports[base_i] if len(ctx.reports) == len(ctx.timeline) else in_rep
    batch = rep.batch
    per = f"per batch of {batch}"

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

    base_name = "trained model (before compression)" if base_i else "input model"
    if opts["plots"]:
        # one y scale for both breakdowns, so the saving shows as shorter bars
        top = max(max((ls.energy_total for ls in r.layers), default=0.0) for r in (rep, base_rep))
        save_png(energy_breakdown_figure(rep, ymax=top, title=f"{ctx.recipe.name}: final model, energy {per} "
                                                              f"({rep.total.energy_total:.4g} x one 16-bit MAC)"),
                 run_dir / "energy_breakdown.png")
        save_png(energy_breakdown_figure(base_rep, ymax=top,
                                         title=f"{ctx.recipe.name}: {base_name}, energy {per} "
                                               f"({base_rep.total.energy_total:.4g} x one 16-bit MAC)"),
                 run_dir / "energy_breakdown_baseline.png")
        files.update({"energy_breakdown": "energy_breakdown.png",
                      "energy_breakdown_baseline": "energy_breakdown_baseline.png"})
        families = {"pipeline (after each stage)": pipeline_points(ctx, base_i)}
        families.update(ctx.families)
        if any(p.accuracy is not None for pts in families.values() for p in pts):
            save_png(tradeoff_figure(families, title=f"{ctx.recipe.name}: accuracy vs Eyeriss energy and latency "
                                                     f"({per})",
                                     energy_unit=f"energy (x one 16-bit MAC, {per})",
                                     latency_unit=f"latency (ms {per}, Eyeriss model)", annotate_first=True),
                     run_dir / "tradeoff.png")
            files["tradeoff"] = "tradeoff.png"

    # summary.md
    title = opts["title"] or f"Run {ctx.recipe.name}"
    s = ctx.settings
    report_s = time.perf_counter() - t_report
    ctx.results[:] = [replace(r, seconds=report_s, summary="summary.md, plots, model, JSON and test accuracy "
                                                          "written after the last stage")
                      if r.name == "report" else r for r in ctx.results]
    total_s = seconds + report_s
    lines = [f"# {title}", ""]
    if s.get("description"):
        lines += [str(s["description"]).strip(), ""]
    lines += [
        f"- recipe: `{ctx.recipe.source}`" + (f" with `--set {' '.join(ctx.recipe.overrides)}`"
                                              if ctx.recipe.overrides else ""),
        f"- model: `{s['model']}`, data: `{s['data']}`, hardware: `{s['hardware']}` (objective {s['objective']}, "
        f"batch {batch})",
        f"- finished {_dt.datetime.now().isoformat(timespec='seconds')} in {total_s:.1f} s (hwaware {__version__})",
        f"- energy: Eyeriss model, normalized to one 16-bit MAC (a DRAM access = 200), {per} image(s); "
        f"mJ: the same energy in joules; latency: Eyeriss model, ms {per}",
        f"- baseline: the {base_name}" + (f", i.e. after stage `{base.label}`" if base_i else "")
        + "; every ratio and change below is measured against it",
        "",
        "## Result",
        "",
    ]

    def acc(x: float | None) -> str:
        return "-" if x is None else f"{x:.4f}"

    def row(name: str, a: float, b: float, text: Any = str) -> list[str]:
        return [name, text(a), text(b), _ratio(a, b), signed_change(a, b)]

    def mj(x: float) -> str:
        return f"{x * 1e3:.4g}"

    acc_change = ("-" if base.accuracy is None or final.accuracy is None
                  else signed_points(100.0 * (final.accuracy - base.accuracy)))
    rows = [
        row(f"energy (x one 16-bit MAC, {per})", base.energy, final.energy, format_si),
        row(f"energy (mJ {per})", base.energy_J, final.energy_J, mj),
        row(f"latency (ms {per})", base.total_latency_ms, final.total_latency_ms, lambda x: f"{x:.3f}"),
        row(f"DRAM traffic (MB {per})", base.dram_MB, final.dram_MB, lambda x: f"{x:.3f}"),
        row(f"MACs ({per})", base.macs, final.macs, format_si),
        row(f"non-zero MACs ({per})", base.nonzero_macs, final.nonzero_macs, format_si),
        row("weights", base.weights, final.weights, format_si),
        row("non-zero weights", base.nonzero_weights, final.nonzero_weights, format_si),
        ["val accuracy", acc(base.accuracy), acc(final.accuracy), "", acc_change],
    ]
    if test_acc is not None:
        rows.append(["test accuracy", "", f"{test_acc:.4f}", "", ""])
    lines += [_md_table(["", base_name, "final model", "final / baseline", "change"], rows), ""]
    if base_i:
        lines += [f"The untrained input model (before `{base.label}`) had energy {format_si(first.energy)} "
                  f"(x one 16-bit MAC, {per}) and val accuracy {acc(first.accuracy)}; it is the `input` "
                  "row below, not the baseline.", ""]
    lines += ["## Stages", ""]
    other = total_s - sum(r.seconds for r in ctx.results)
    stage_rows = [[r.label, f"{r.seconds:.1f}", r.summary.replace("|", "/")] for r in ctx.results]
    stage_rows.append(["(other)", f"{other:.1f}", "scoring the input and final models, loading data"])
    stage_rows.append(["**total**", f"{total_s:.1f}", ""])
    lines += [_md_table(["stage", "time s", "result"], stage_rows, "lrl"), ""]
    lines += ["## After each stage", "",
              f"Energy: x one 16-bit MAC, {per}; level columns: share of that energy.", "",
              pipeline_table(ctx.timeline, baseline=base_i), ""]
    for name, pts in ctx.families.items():
        lines += [f"### Family: {name}", "",
                  _md_table(["model", f"energy (x one 16-bit MAC, {per})", f"latency (ms {per})", "accuracy"],
                            [[p.label, format_si(p.energy), f"{p.latency_ms:.3f}",
                              "-" if p.accuracy is None else f"{p.accuracy:.4f}"] for p in pts]), ""]
    if opts["plots"]:
        lines += ["## Plots", "", "Both breakdowns share one energy axis.", "",
                  "![final energy breakdown](energy_breakdown.png)", "",
                  f"![{base_name} energy breakdown](energy_breakdown_baseline.png)", ""]
        if "tradeoff" in files:
            lines += ["![accuracy vs energy and latency](tradeoff.png)", ""]
    unit = f"Energy columns (DRAM ... psum, energy): x one 16-bit MAC, {per}."
    lines += ["## Final model per layer", "", unit, "", layer_table(rep), "",
              f"## Baseline ({base_name}) per layer", "", unit, "", layer_table(base_rep), ""]
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
        "overrides": list(ctx.recipe.overrides), "seconds": total_s, "test_accuracy": test_acc,
        "baseline": base.label,
        "timeline": [t.to_dict() for t in ctx.timeline],
        "stages": [asdict(r) for r in ctx.results],
        "families": {k: [asdict(p) for p in v] for k, v in ctx.families.items()},
        "files": files,
    })
    files["run"] = "run.json"
    return files
