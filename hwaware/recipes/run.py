"""Execute a validated recipe: stages share one :class:`RunContext` (model, data, workload, score,
masks, families) and write into a fresh run directory.

    >>> recipe = load_recipe("recipes/quickstart.yaml", overrides=["train.epochs=1"])
    >>> result = run_recipe(recipe)                 # runs/quickstart-20250101-120000/
    >>> print(dry_run(recipe))                      # validation + predicted energy, no work

Run directory (``runs/<name>-<YYYYmmdd-HHMMSS>[-N]``, or ``out=`` which must not exist; created
with an exclusive ``mkdir``, so no run ever overwrites another):

=========================  =====================================================================
``recipe.yaml``            the resolved recipe (every default filled in, overrides listed)
``model.pt``               the final model (:func:`hwaware.checkpoint.save_model`)
``workload.json``          the final model's workload (shapes and measured sparsity)
``score.json``             its Eyeriss score; ``input_workload.json``/``input_score.json``: the input model's
``summary.md``             the Markdown report with per-layer tables
``*.png``                  energy breakdown by level and by data type per layer (input, final);
                           accuracy versus energy and latency (pipeline, pruning, NetAdapt)
``run.json``               every stage's metrics, timings and output files
``tensorboard/``           run-level scalars and the training plugin's logs
``stages/<i>-<name>/``     stage outputs (pruning history, NetAdapt family, vectors, ...)
=========================  =====================================================================
"""

from __future__ import annotations

import datetime as _dt
import math
import os
import sys
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from .._io import write_json, write_text
from ..errors import HwawareError
from ..measure import ModelMetrics
from .schema import Recipe, Stage

__all__ = [
    "STAGE_RUNNERS",
    "RunContext",
    "RunResult",
    "Snapshot",
    "StageResult",
    "dry_run",
    "make_run_dir",
    "run_recipe",
]


# --- value types ---------------------------------------------------------------------------------

@dataclass(frozen=True, kw_only=True)
class Snapshot(ModelMetrics):
    """The :class:`~hwaware.measure.ModelMetrics` of the model after a stage (energy per ``batch``
    images, normalized to one 16-bit MAC; latency in ms on the Eyeriss model; accuracy top-1 on val)."""

    label: str


@dataclass(frozen=True)
class StageResult:
    label: str
    name: str
    seconds: float
    summary: str
    outputs: dict[str, str] = field(default_factory=dict)
    details: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class RunResult:
    """What a run produced: its directory, the per-stage results and the input/final snapshots."""

    run_dir: Path
    recipe: Recipe
    stages: tuple[StageResult, ...]
    timeline: tuple[Snapshot, ...]
    seconds: float

    @property
    def input(self) -> Snapshot:
        return self.timeline[0]

    @property
    def final(self) -> Snapshot:
        return self.timeline[-1]


# --- context -------------------------------------------------------------------------------------

class RunContext:
    """State shared by the stages. ``model`` is the current model; every stage that changes it
    calls :meth:`changed`, and :meth:`current_score` re-profiles lazily."""

    def __init__(self, recipe: Recipe, run_dir: Path | None, *, progress: bool = True,
                 log: Callable[[str], None] | None = None) -> None:
        import torch

        from ..eyeriss import Scorer

        self.recipe = recipe
        self.settings = recipe.settings
        self.run_dir = run_dir
        self.progress = progress
        self.log = log or (lambda msg: print(msg, file=sys.stderr, flush=True))
        if self.settings["threads"]:
            torch.set_num_threads(int(self.settings["threads"]))
        torch.manual_seed(int(self.settings["seed"]))
        self.scorer = Scorer(self.settings["hardware"], self.settings["objective"])
        self.model = self._load_model()
        self.input_size = self._input_size()
        self.masks: Any = None
        self.fixed: Any = None
        self.bits: Any = 16  # operand width(s) the workload is scored at: an int or {layer: bits}
        self._train_loader: Any = None
        self._val_loader: Any = None
        self._calib: Any = None
        self._score: tuple[Any, Any] | None = None  # (workload, report) of the current model
        self._accuracy: float | None = None
        self._accuracy_valid = False
        self.timeline: list[Snapshot] = []
        self.families: dict[str, list[Any]] = {}
        self.results: list[StageResult] = []
        self.input_score: tuple[Any, Any] | None = None
        self.extra: dict[str, Any] = {}
        self.writer: Any = None
        if run_dir is not None:
            from torch.utils.tensorboard import SummaryWriter

            self.writer = SummaryWriter(log_dir=str(run_dir / "tensorboard"))

    # -- inputs ----------------------------------------------------------------------------------
    def _load_model(self) -> Any:
        from ..modelref import load_model

        model = load_model(self.settings["model"], **self.settings["model_args"])
        return model.eval()

    def _input_size(self) -> tuple[int, int, int]:
        if self.settings["input_size"]:
            return tuple(self.settings["input_size"])  # type: ignore[return-value]
        from ..modelref import default_input_size

        data = self.settings["data"]
        if data:
            from ..data import input_shape

            fallback = input_shape(data)
        else:
            fallback = None
        try:
            return default_input_size(self.model, default=fallback)  # type: ignore[return-value]
        except HwawareError:
            raise HwawareError(f"recipe {self.recipe.source}: the input size of model '{self.settings['model']}' "
                               "is unknown; set input_size: [C, H, W] (or data)") from None

    @property
    def data(self) -> str | None:
        return self.settings["data"]

    def loader(self, split: str) -> Any:
        from ..data import make_loader

        s = self.settings
        if self.data is None:
            raise HwawareError(f"recipe {self.recipe.source}: this stage needs data (set the key 'data')")
        limit = s["train_limit"] if split == "train" else s["val_limit"] if split == "val" else None
        return make_loader(self.data, split, batch_size=int(s["batch_size"]), seed=int(s["seed"]), limit=limit)

    @property
    def train_loader(self) -> Any:
        if self._train_loader is None:
            self._train_loader = self.loader("train")
        return self._train_loader

    @property
    def val_loader(self) -> Any:
        if self._val_loader is None:
            self._val_loader = self.loader("val")
        return self._val_loader

    @property
    def calib(self) -> Any:
        """The images the workload is profiled on: the first ``profile_images`` validation images,
        or (no data) a fixed random batch of ``input_size``."""
        if self._calib is None:
            import torch

            n = int(self.settings["profile_images"])
            if self.data is None:
                gen = torch.Generator().manual_seed(int(self.settings["seed"]))
                self._calib = torch.randn((min(n, 8), *self.input_size), generator=gen)
            else:
                from ..data import make_loader

                loader = make_loader(self.data, "val", batch_size=n, shuffle=False, seed=int(self.settings["seed"]),
                                     limit=self.settings["val_limit"])
                self._calib = next(iter(loader))[0]
        return self._calib

    # -- current model ---------------------------------------------------------------------------
    def changed(self) -> None:
        """The model changed: the cached workload, score and accuracy are stale."""
        self._score = None
        self._accuracy_valid = False

    def set_model(self, model: Any) -> None:
        self.model = model.eval()
        self.changed()

    def current_score(self) -> tuple[Any, Any]:
        """(workload, ScoreReport) of the current model, profiled on :attr:`calib`."""
        if self._score is None:
            from ..profiler import profile

            wl = profile(self.model, self.calib, progress=False, source=str(self.settings["model"]))
            if self.bits != 16:
                from ..workload import Workload

                def width(name: str) -> int:
                    return self.bits.get(name, 16) if isinstance(self.bits, dict) else int(self.bits)

                wl = Workload([lay.replace(weight_bits=width(lay.name), act_bits=width(lay.name))
                               for lay in wl.layers], wl.unmodeled, wl.source)
            self._score = (wl, self.scorer.score(wl, batch=int(self.settings["batch"])))
        return self._score

    def accuracy(self) -> float | None:
        if self.data is None:
            return None
        if not self._accuracy_valid:
            from ..train import evaluate

            self._accuracy = evaluate(self.model, self.val_loader, progress=self.progress)
            self._accuracy_valid = True
        return self._accuracy

    def snapshot(self, label: str) -> Snapshot:
        wl, rep = self.current_score()
        snap = Snapshot.from_report(rep, wl, accuracy=self.accuracy(), label=label)
        self.timeline.append(snap)
        if self.writer is not None:
            i = len(self.timeline) - 1
            self.writer.add_scalar("pipeline/energy", snap.energy, i)
            self.writer.add_scalar("pipeline/latency_ms", snap.total_latency_ms, i)
            if snap.accuracy is not None:
                self.writer.add_scalar("pipeline/accuracy", snap.accuracy, i)
            self.writer.add_text("pipeline/stage", label, i)
        return snap

    def stage_dir(self, stage: Stage) -> Path | None:
        if self.run_dir is None:
            return None
        d = self.run_dir / "stages" / stage.label
        d.mkdir(parents=True, exist_ok=True)
        return d

    def rel(self, path: Path) -> str:
        return str(path.relative_to(self.run_dir)) if self.run_dir is not None else str(path)


# --- stages --------------------------------------------------------------------------------------

def _train(ctx: RunContext, stage: Stage) -> StageResult:
    from ..plugin import attach
    from ..train import fit

    o = stage.options
    masks_before = ctx.masks
    hw = None
    if ctx.run_dir is not None and (o["monitor_every"] or o["prune_schedule"]):
        hw = attach(ctx.model, ctx.calib, hardware=ctx.settings["hardware"], objective=ctx.settings["objective"],
                    logdir=str(ctx.run_dir / "tensorboard" / stage.label), every=o["monitor_every"] or 10**9,
                    batch=int(ctx.settings["batch"]), samples=int(ctx.settings["profile_images"]),
                    schedule=o["prune_schedule"])

    def after_step(model: Any, step: int) -> None:
        if masks_before is not None:
            masks_before.apply(model)
        if hw is not None:
            hw.step()

    t0 = time.perf_counter()
    try:
        res = fit(ctx.model, ctx.train_loader, epochs=o["epochs"], lr=o["lr"], optimizer=o["optimizer"],
                  momentum=o["momentum"], weight_decay=o["weight_decay"], schedule=o["lr_schedule"],
                  max_steps=o["max_steps"], progress=ctx.progress, after_step=after_step)
    finally:
        if hw is not None:
            hw.close()
    ctx.model.eval()
    if hw is not None and hw.masks is not None:
        from ..compress.magnitude import Masks

        new = hw.masks
        if masks_before is not None:
            new = Masks({n: m & masks_before.masks[n] if n in masks_before.masks else m for n, m in new.masks.items()}
                        | {n: m for n, m in masks_before.masks.items() if n not in new.masks})
        ctx.masks = new
    ctx.changed()
    snap = ctx.snapshot(stage.label)
    acc = f", val accuracy {snap.accuracy:.4f}" if snap.accuracy is not None else ""
    pruned = f", {ctx.masks.sparsity():.1%} of weights pruned" if ctx.masks is not None else ""
    outputs = {"tensorboard": ctx.rel(ctx.run_dir / "tensorboard" / stage.label)} if hw is not None else {}
    return StageResult(stage.label, stage.name, time.perf_counter() - t0,
                       f"{res.steps} steps ({res.epochs:.2f} epochs), train loss {res.loss:.4f}{acc}{pruned}",
                       outputs, {"steps": res.steps, "loss": res.loss, "train_accuracy": res.train_accuracy,
                                 "epoch_losses": list(res.epoch_losses)})


def _profile(ctx: RunContext, stage: Stage) -> StageResult:
    from ..profiler import profile

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


def _score(ctx: RunContext, stage: Stage) -> StageResult:
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
                       f"energy {tot.energy_total:.4g} (x one MAC), {tot.energy_J * 1e3:.4g} mJ, latency "
                       f"{tot.total_latency_ms:.3f} ms per batch of {rep.batch}", outputs)


def _prune(ctx: RunContext, stage: Stage) -> StageResult:
    from ..compress.prune import Pruner
    from ..plots import Point
    from .schema import _build_prune

    t0 = time.perf_counter()
    cfg = _build_prune(dict(stage.options), ctx.settings)
    pruner = Pruner(ctx.model, train=ctx.train_loader, val=ctx.val_loader, calib=ctx.calib, config=cfg,
                    progress=ctx.progress)
    base = pruner.baseline
    points = [Point(base.energy, base.latency_ms, base.accuracy, "start")]
    history = []
    for step in pruner.steps():
        m = step.metrics
        history.append({"index": step.index, "kind": step.kind, "target": step.target, "fraction": step.fraction,
                        "accepted": step.accepted, "message": step.message, "seconds": step.seconds,
                        "energy": m.energy, "latency_ms": m.latency_ms, "accuracy": m.accuracy,
                        "nonzero_weights": m.nonzero_weights})
        state = "accepted" if step.accepted else "rejected"
        acc = f"{m.accuracy:.4f}" if m.accuracy is not None else "-"
        ctx.log(f"  prune {step.index:3d} {step.kind:8s} {step.target:12s} {state:8s} energy "
                f"{m.energy / base.energy:.3f} acc {acc}  {step.message}")
        if step.accepted:
            points.append(Point(m.energy, m.latency_ms, m.accuracy, f"{step.kind} {step.target}"))
        if ctx.writer is not None:
            tag = f"prune/{stage.label}"
            ctx.writer.add_scalar(f"{tag}/energy", m.energy, step.index)
            ctx.writer.add_scalar(f"{tag}/latency_ms", m.latency_ms, step.index)
            if m.accuracy is not None:
                ctx.writer.add_scalar(f"{tag}/accuracy", m.accuracy, step.index)
            ctx.writer.add_scalar(f"{tag}/accepted", float(step.accepted), step.index)
    result = pruner.result()
    ctx.set_model(result.model)
    ctx.masks = result.masks
    ctx.families[f"prune ({cfg.method})"] = points
    outputs = {}
    d = ctx.stage_dir(stage)
    if d is not None:
        write_json(d / "history.json", {"config": asdict(cfg), "baseline": base.to_dict(),
                                        "final": result.final.to_dict(), "message": result.message,
                                        "target_reached": result.target_reached, "steps": history})
        outputs["history"] = ctx.rel(d / "history.json")
    ctx.snapshot(stage.label)
    drop = result.accuracy_drop
    drop_text = f", accuracy drop {drop:.2f} points" if drop is not None else ""
    return StageResult(stage.label, stage.name, time.perf_counter() - t0,
                       f"energy {result.energy_ratio:.3f} of the start{drop_text}; {result.message}", outputs,
                       {"energy_ratio": result.energy_ratio, "accuracy_drop": drop,
                        "target_reached": result.target_reached})


def _netadapt(ctx: RunContext, stage: Stage) -> StageResult:
    from ..netadapt import netadapt
    from ..plots import Point
    from .schema import _build_netadapt

    t0 = time.perf_counter()
    o = stage.options
    cfg = _build_netadapt(dict(o), ctx.settings)
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


def _report_stage(ctx: RunContext, stage: Stage) -> StageResult:
    # the report itself is written by run_recipe after the last stage; this records its options
    ctx.extra["report"] = dict(stage.options)
    return StageResult(stage.label, stage.name, 0.0, "report written at the end of the run")


STAGE_RUNNERS: dict[str, Callable[[RunContext, Stage], StageResult]] = {
    "train": _train,
    "fine-tune": _train,
    "profile": _profile,
    "score": _score,
    "prune": _prune,
    "netadapt": _netadapt,
    "report": _report_stage,
}


def _register_extra() -> None:
    from . import stages_extra

    STAGE_RUNNERS.update(stages_extra.runners())


# --- dry run -------------------------------------------------------------------------------------

def _describe(ctx: RunContext, stage: Stage) -> str:
    o = stage.options
    s = ctx.settings
    if stage.name in ("train", "fine-tune"):
        n_train = len(ctx.train_loader.dataset)
        per_epoch = len(ctx.train_loader)
        steps = math.ceil(o["epochs"] * per_epoch)
        if o["max_steps"]:
            steps = min(steps, o["max_steps"])
        text = (f"{o['optimizer']} lr {o['lr']:g} ({o['lr_schedule']}) for {o['epochs']:g} epochs on {n_train} "
                f"training images = {steps} steps of batch {s['batch_size']}")
        if stage.name == "fine-tune" or ctx.extra.get("pruned"):
            text += "; pruned weights kept at zero"
        if o["monitor_every"]:
            text += f"; energy logged every {o['monitor_every']} steps"
        if o["prune_schedule"]:
            p = o["prune_schedule"]
            text += (f"; gradual {p.get('method', 'magnitude')} pruning to {p.get('target', 0.5):.0%} of the "
                     f"weights between steps {p.get('start', 0)} and {p.get('end', 1000)}")
            ctx.extra["pruned"] = True
        return text
    if stage.name == "profile":
        return f"profile on {o['images'] or s['profile_images']} validation images, write the workload"
    if stage.name == "score":
        return f"score on {s['hardware']} (objective {s['objective']}, batch {s['batch']})"
    if stage.name == "prune":
        ctx.extra["pruned"] = True
        return (f"{o['method']} pruning until energy <= {o['target_energy']:g} of the start, at most "
                f"{o['max_drop']:g} accuracy points lost, steps of {o['step']:.0%}, <= {o['max_steps']} proposals")
    if stage.name == "netadapt":
        return (f"NetAdapt to budgets {', '.join(o['budgets'])} (delta {o['delta']:g}, {o['short_term_steps']} "
                f"short-term steps per proposal); continue with family member {o['member']}")
    if stage.name == "report":
        return "write summary.md, plots, JSON"
    from . import stages_extra

    return stages_extra.describe(ctx, stage)


def dry_run(recipe: Recipe, *, log: Callable[[str], None] | None = None) -> str:
    """Validate (already done by loading) and predict: the input model's energy and latency, and
    one line per stage saying what it will do. Nothing is written."""
    ctx = RunContext(recipe, None, progress=False, log=log or (lambda m: None))
    wl, rep = ctx.current_score()
    tot = rep.total
    s = ctx.settings
    per_image = wl.with_batch(1)
    src = (f"{ctx.calib.shape[0]} images of {ctx.data} (val)" if ctx.data
           else f"random {'x'.join(map(str, ctx.input_size))} input")
    lines = [
        f"recipe {recipe.source}: valid ({len(recipe.stages)} stages)",
        f"model {s['model']}: {len(wl.layers)} layers, {per_image.macs / 1e6:.2f} M MACs, {wl.weights / 1e6:.3f} M weights "
        f"(per image at input {'x'.join(map(str, ctx.input_size))})",
        f"predicted on {ctx.scorer.hardware.name} (objective {s['objective']}, batch {rep.batch}, sparsity "
        f"measured on {src}):",
        f"  energy  {tot.energy_total:.4g} x one 16-bit MAC = {tot.energy_J * 1e3:.4g} mJ  "
        f"(DRAM {tot.energy['DRAM'] / tot.energy_total:.0%}, GLB {tot.energy['GLB'] / tot.energy_total:.0%}, "
        f"array {tot.energy['array'] / tot.energy_total:.0%}, RF {tot.energy['RF'] / tot.energy_total:.0%}, "
        f"MAC {tot.energy['MAC'] / tot.energy_total:.0%})",
        f"  latency {tot.processing_latency_ms:.3f} ms processing, {tot.total_latency_ms:.3f} ms with DRAM stalls",
        "stages:",
    ]
    for st in recipe.stages:
        what = "skipped" if st.options["skip"] else _describe(ctx, st)
        lines.append(f"  {st.index + 1}. {st.name}: {what}")
    lines.append(f"would write runs/{recipe.name}-<YYYYmmdd-HHMMSS>/ (nothing was written)")
    return "\n".join(lines)


# --- run directory -------------------------------------------------------------------------------

def make_run_dir(name: str, *, runs_dir: str | os.PathLike[str] = "runs", out: str | os.PathLike[str] | None = None,
                 now: _dt.datetime | None = None) -> Path:
    """Create a new, empty run directory with an exclusive mkdir (an existing one is never reused)."""
    if out is not None:
        p = Path(out)
        p.parent.mkdir(parents=True, exist_ok=True)
        try:
            p.mkdir()
        except FileExistsError:
            raise HwawareError(f"--out {p}: already exists; runs never overwrite an earlier run "
                               "(choose a new directory)") from None
        return p
    base = Path(runs_dir)
    base.mkdir(parents=True, exist_ok=True)
    stamp = (now or _dt.datetime.now()).strftime("%Y%m%d-%H%M%S")
    for n in range(1000):
        p = base / (f"{name}-{stamp}" if n == 0 else f"{name}-{stamp}-{n}")
        try:
            p.mkdir()
            return p
        except FileExistsError:
            continue
    raise HwawareError(f"cannot create a run directory under {base}: 1000 runs named {name}-{stamp} exist")


# --- the run -------------------------------------------------------------------------------------

def run_recipe(recipe: Recipe, *, runs_dir: str | os.PathLike[str] = "runs", out: str | os.PathLike[str] | None = None,
               progress: bool = True, log: Callable[[str], None] | None = None) -> RunResult:
    """Run every stage of ``recipe`` in order and write the run directory; returns a :class:`RunResult`."""
    from .report import write_report

    _register_extra()
    t_start = time.perf_counter()
    run_dir = make_run_dir(recipe.name, runs_dir=runs_dir, out=out)
    write_text(run_dir / "recipe.yaml", recipe.to_yaml())
    ctx = RunContext(recipe, run_dir, progress=progress, log=log)
    try:
        ctx.log(f"hwaware run {recipe.source} -> {run_dir}")
        wl, rep = ctx.current_score()
        ctx.input_score = (wl, rep)
        ctx.snapshot("input")
        for st in recipe.stages:
            ctx.log(f"[{st.index + 1}/{len(recipe.stages)}] {st.name}" + (" (skipped)" if st.options["skip"] else ""))
            if st.options["skip"]:
                ctx.results.append(StageResult(st.label, st.name, 0.0, "skipped"))
                continue
            res = STAGE_RUNNERS[st.name](ctx, st)
            ctx.results.append(res)
            ctx.log(f"    {st.name}: {res.summary} ({res.seconds:.1f} s)")
        ctx.snapshot("final")
        write_report(ctx, seconds=time.perf_counter() - t_start)
    except BaseException as exc:
        write_json(run_dir / "run.json", {"status": "failed", "error": " ".join(str(exc).split())[:500] or type(exc).__name__,
                                          "stages": [asdict(r) for r in ctx.results],
                                          "timeline": [s.to_dict() for s in ctx.timeline]})
        raise
    finally:
        if ctx.writer is not None:
            ctx.writer.close()
    return RunResult(run_dir, recipe, tuple(ctx.results), tuple(ctx.timeline), time.perf_counter() - t_start)
