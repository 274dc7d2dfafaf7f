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
``*.png``                  energy breakdown by level and by data type per layer (baseline, final);
                           accuracy versus energy and latency (pipeline, pruning, NetAdapt)
``run.json``               every stage's metrics, timings and output files
``status.json``            running / finished / failed / interrupted (``killed`` when read with
                           :func:`hwaware._io.job_status` after the process died: lock-based)
``tensorboard/``           run-level scalars and the training plugin's logs
``stages/<i>-<name>/``     stage outputs (pruning history, NetAdapt family, vectors, ...)
=========================  =====================================================================
"""

from __future__ import annotations

import dataclasses
import datetime as _dt
import os
import time
from collections.abc import Callable, Iterator, MutableMapping
from dataclasses import asdict, dataclass
from pathlib import Path

from .._io import JobLock, write_json, write_text
from ..errors import HwawareError
from .context import RunContext, Snapshot
from .schema import Recipe
from .stages import STAGES, StageResult

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

class _Runners(MutableMapping[str, Callable[..., StageResult]]):
    """Stage name -> runner, a live view of the stage registry (a stage registered later, from
    outside the package, is here too); setting a runner replaces that :class:`StageDef`'s ``run``."""

    def __getitem__(self, name: str) -> Callable[..., StageResult]:
        return STAGES[name].run

    def __setitem__(self, name: str, run: Callable[..., StageResult]) -> None:
        STAGES[name] = dataclasses.replace(STAGES[name], run=run)

    def __delitem__(self, name: str) -> None:
        raise TypeError("remove a stage from hwaware.recipes.stages.STAGES, not from its runners")

    def __iter__(self) -> Iterator[str]:
        return iter(STAGES)

    def __len__(self) -> int:
        return len(STAGES)


STAGE_RUNNERS: MutableMapping[str, Callable[..., StageResult]] = _Runners()


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

    @property
    def baseline(self) -> Snapshot:
        """The model compression started from (after training; the input if no stage trained it)."""
        from .report import baseline_index

        return self.timeline[baseline_index(self.timeline, self.stages)]




def dry_run(recipe: Recipe, *, log: Callable[[str], None] | None = None, trust_source: bool = False) -> str:
    """Validate (already done by loading) and predict: the input model's energy and latency, and
    one line per stage saying what it will do. Nothing is written."""
    ctx = RunContext(recipe, None, progress=False, log=log or (lambda m: None), trust_source=trust_source)
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
        what = "skipped" if st.options["skip"] else STAGES[st.name].describe(ctx, st)
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
               progress: bool = True, log: Callable[[str], None] | None = None,
               trust_source: bool = False) -> RunResult:
    """Run every stage of ``recipe`` in order and write the run directory; returns a :class:`RunResult`."""
    from ..modelref import check_model_args
    from .report import write_report

    t_start = time.perf_counter()
    check_model_args(recipe.settings["model"], recipe.settings["model_args"])  # typos: before the run dir
    run_dir = make_run_dir(recipe.name, runs_dir=runs_dir, out=out)
    lock = JobLock(run_dir, what="recipe run", status=True).acquire()  # status.json: running ... finished
    lock.start()
    error: BaseException | None = None
    try:
        write_text(run_dir / "recipe.yaml", recipe.to_yaml())
        ctx = RunContext(recipe, run_dir, progress=progress, log=log, trust_source=trust_source)
    except BaseException as exc:
        lock.release_after(exc)
        raise
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
            res = STAGES[st.name].run(ctx, st)
            ctx.results.append(res)
            if st.name != "report":  # the report is written (and timed) after the last stage
                ctx.log(f"    {st.name}: {res.summary} ({res.seconds:.1f} s)")
        ctx.snapshot("final")
        write_report(ctx, seconds=time.perf_counter() - t_start)
    except BaseException as exc:
        error = exc
        write_json(run_dir / "run.json", {"status": "failed", "error": " ".join(str(exc).split())[:500] or type(exc).__name__,
                                          "stages": [asdict(r) for r in ctx.results],
                                          "timeline": [s.to_dict() for s in ctx.timeline]})
        raise
    finally:
        if ctx.writer is not None:
            ctx.writer.close()
        lock.release_after(error)
    return RunResult(run_dir, recipe, tuple(ctx.results), tuple(ctx.timeline), time.perf_counter() - t_start)

