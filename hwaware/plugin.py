"""Training-script plugin: watch a network's Eyeriss energy and latency while it trains.

    >>> hw = hwaware.attach(model, example_batch, hardware="eyeriss_v1", logdir="runs/tb", every=200)
    >>> for x, y in loader:
    ...     loss = F.cross_entropy(model(x), y)
    ...     opt.zero_grad(); loss.backward(); opt.step()
    ...     hw.step()                       # after optimizer.step()
    >>> hw.summary()                        # prints the per-layer table of the last score

Every ``every`` steps the monitor profiles the model on the *live* batch (the last input the
model's forward saw; a forward pre-hook keeps a reference to it, nothing is copied), scores the
workload on the Eyeriss model and logs to TensorBoard:

- scalars ``energy/<level>`` (DRAM, GLB, array, RF, MAC, total), ``energy_by_type/<type>``
  (ifmap, filter, psum, MAC), ``latency/processing_ms``, ``latency/total_ms``,
  ``sparsity/<layer>/ifmap`` and ``sparsity/<layer>/weight`` (measured fractions of zeros);
  with a schedule also ``prune/target`` and ``prune/weight_sparsity``;
- a figure ``energy/breakdown``: per-layer stacked energy by level and by data type, on every
  ``figure_every``-th log (default 10) and for the final state at ``close()``.

Only the profiling forward pass runs on the training thread (it must see this step's weights);
scoring, TensorBoard writes and figures run on the monitor's worker thread (``background=True``),
which a step never waits for unless two logs are still pending. ``hw.history``, ``hw.summary()``
and ``hw.close()`` wait for it; ``hw.overhead_seconds`` is the time the training thread paid,
``hw.background_seconds`` the worker's.

Energy is per inference (the workload is scored at ``batch=1`` unless told otherwise) in the
model's normalized unit (one 16-bit MAC = 1); sparsity changes as the network trains, so the
energy does too. Profiling uses at most ``samples`` images of the batch, runs in eval mode under
``torch.no_grad()`` and restores every module's train/eval flag: weights, BatchNorm statistics,
gradients, optimizer state and the RNG are untouched (tests check training is bit-identical
with and without the monitor).

Schedules (:class:`~hwaware.compress.schedule.PruneSchedule`, re-exported here): gradual pruning
from step ``start`` to ``end`` towards a
fraction ``target`` of the Conv/Linear weights, following the cubic ramp of Zhu and Gupta
("To prune, or not to prune", 2017): ``s(t) = target * (1 - (1 - (t - start)/(end - start))^3)``,
one pruning event every ``every`` steps. ``method="magnitude"`` zeroes the smallest weights
(one global threshold, or per layer with ``scope="layer"``: :func:`hwaware.compress.magnitude.magnitude_masks`);
``method="energy"`` spends each event's weights on the layers in proportion to their share of
the Eyeriss energy, measured on the live batch just before the event (the most energy-hungry
layers lose the most weights, as in energy-aware pruning, Yang et al. CVPR 2017), with the
smallest-magnitude weights removed inside each layer and no layer above
``max_layer_sparsity``. Masks only grow and are re-applied after every optimizer step, so
pruned weights stay zero while the optimizer keeps running.

Wrapped models: ``DistributedDataParallel``/``DataParallel`` are unwrapped (``.module``) for
profiling and masking; only rank 0 profiles and writes logs, and the energy-aware allocation is
broadcast from rank 0 so every rank applies the same masks. ``torch.compile``: the monitor
profiles the original module (``_orig_mod``, eager, with its own hooks), so the compiled graph is
not re-traced; the live batch is captured by a hook on the outer (compiled) object.
"""

from __future__ import annotations

import sys
import threading
import time
from collections.abc import Mapping
from dataclasses import dataclass, replace
from typing import IO, Any

import torch
from torch import nn

from .background import Worker
from .compress.schedule import PruneSchedule, energy_allocation, schedule_masks
from .errors import HwawareError
from .measure import ModelMetrics, module_energy

__all__ = ["HardwareMonitor", "MonitorRecord", "PruneSchedule", "attach", "energy_allocation", "unwrap_model"]



# --- value types -------------------------------------------------------------------------------

@dataclass(frozen=True, kw_only=True)
class MonitorRecord(ModelMetrics):
    """One log point: the :class:`~hwaware.measure.ModelMetrics` of the model at optimizer step
    ``step`` (energy per inference, normalized to one 16-bit MAC; latency on the Eyeriss model;
    measured zero fractions per layer), the pruning state, and the wall time the log took."""

    step: int
    pruned_fraction: float | None = None
    target_fraction: float | None = None
    seconds: float = 0.0


# --- helpers ------------------------------------------------------------------------------------

def unwrap_model(model: nn.Module) -> nn.Module:
    """The module that holds the layers: strips ``DistributedDataParallel``/``DataParallel``
    (``.module``) and ``torch.compile`` (``._orig_mod``) wrappers, in any nesting."""
    from torch.nn.parallel import DataParallel, DistributedDataParallel

    seen = 0
    while seen < 8:
        seen += 1
        if isinstance(model, (DataParallel, DistributedDataParallel)):
            model = model.module
        elif isinstance(getattr(model, "_orig_mod", None), nn.Module):
            model = model._orig_mod
        else:
            break
    return model


def _rank() -> int:
    import torch.distributed as dist

    return dist.get_rank() if dist.is_available() and dist.is_initialized() else 0


def _world() -> int:
    import torch.distributed as dist

    return dist.get_world_size() if dist.is_available() and dist.is_initialized() else 1


def _first_n(x: Any, n: int, batch: int | None) -> Any:
    """Keep the first ``n`` samples of every tensor whose first dimension is the batch."""
    if isinstance(x, torch.Tensor):
        return x[:n] if batch is not None and x.dim() > 0 and x.shape[0] == batch else x
    if isinstance(x, tuple):
        return tuple(_first_n(v, n, batch) for v in x)
    if isinstance(x, list):
        return [_first_n(v, n, batch) for v in x]
    if isinstance(x, dict):
        return {k: _first_n(v, n, batch) for k, v in x.items()}
    return x


def _batch_of(args: tuple, kwargs: dict) -> int | None:
    for t in (*args, *kwargs.values()):
        if isinstance(t, torch.Tensor) and t.dim() > 0:
            return int(t.shape[0])
    return None


def _as_call(batch: Any) -> tuple[tuple, dict]:
    """An example batch -> forward arguments: a tensor, a tuple of tensors, an ``(inputs,
    targets)`` pair from a loader (the inputs are used), or a dict of keyword arguments."""
    if isinstance(batch, torch.Tensor):
        return (batch,), {}
    if isinstance(batch, Mapping):
        return (), dict(batch)
    if isinstance(batch, (tuple, list)) and batch:
        if len(batch) == 2 and isinstance(batch[0], torch.Tensor) and isinstance(batch[1], torch.Tensor) \
                and batch[1].dim() <= 1 and not torch.is_floating_point(batch[1]):
            return (batch[0],), {}  # (images, integer labels) from a DataLoader
        return tuple(batch), {}
    raise HwawareError("attach: example_batch must be a tensor, a tuple of forward arguments, an "
                       f"(inputs, labels) pair or a dict of keyword arguments; got {type(batch).__name__}")


# --- the monitor --------------------------------------------------------------------------------

class HardwareMonitor:
    """Profiles, scores and logs a model during training; see :func:`attach` and the module docstring."""

    def __init__(self, model: nn.Module, example_batch: Any = None, *, hardware: Any = "eyeriss_v1",
                 objective: str = "energy", logdir: str | None = None, every: int = 200, batch: int = 1,
                 samples: int | None = 32, schedule: PruneSchedule | Mapping[str, Any] | None = None,
                 figures: bool = True, log_first: bool = True, writer: Any = None, background: bool = True,
                 figure_every: int = 10, optimizer: Any = None) -> None:
        from .eyeriss import Scorer

        if not isinstance(model, nn.Module):
            raise HwawareError(f"attach: expected a torch.nn.Module, got {type(model).__name__}")
        if isinstance(every, bool) or not isinstance(every, int) or every < 1:
            raise HwawareError(f"attach: every must be a positive integer (steps between logs), got {every!r}")
        if isinstance(batch, bool) or not isinstance(batch, int) or batch < 1:
            raise HwawareError(f"attach: batch (N the energy is scored at) must be a positive integer, got {batch!r}")
        if samples is not None and (isinstance(samples, bool) or not isinstance(samples, int) or samples < 1):
            raise HwawareError(f"attach: samples must be a positive integer or None, got {samples!r}")
        if isinstance(figure_every, bool) or not isinstance(figure_every, int) or figure_every < 1:
            raise HwawareError(f"attach: figure_every must be a positive integer (logs between breakdown "
                               f"figures), got {figure_every!r}")
        if isinstance(schedule, Mapping):
            schedule = PruneSchedule.from_dict(schedule)
        elif schedule is not None and not isinstance(schedule, PruneSchedule):
            raise HwawareError(f"attach: schedule must be a PruneSchedule or a dict, got {type(schedule).__name__}")
        self.outer = model
        self.model = unwrap_model(model)
        self.every = every
        self.batch = batch
        self.samples = samples
        self.schedule = schedule
        self.figures = figures
        self.figure_every = figure_every
        self.optimizer = optimizer
        self.scorer = Scorer(hardware, objective)
        self.steps = 0
        self._history: list[MonitorRecord] = []
        self._last: tuple[Any, Any] = (None, None)  # (report, workload) of the newest log
        self._logs = 0  # log steps so far (figures every `figure_every` of them)
        self._drawn_step: int | None = None
        self.masks: Any = None
        self.overhead_seconds = 0.0
        self._score_lock = threading.Lock()  # the worker and a prune event may score at once
        self._worker: Worker | None = None
        self._rank = _rank()
        self._example = _as_call(example_batch) if example_batch is not None else None
        self._live: tuple[tuple, dict] | None = None
        self._closed = False
        self._prunable: dict[str, nn.Module] = {}
        if schedule is not None:
            from .compress.magnitude import prunable_layers

            self._prunable = prunable_layers(self.model, schedule.layers)
        self._owns_writer = False
        self.writer = None
        if self._rank == 0:
            if writer is not None:
                self.writer = writer
            elif logdir is not None:
                from torch.utils.tensorboard import SummaryWriter

                self.writer = SummaryWriter(log_dir=str(logdir))
                self._owns_writer = True
            if background:
                self._worker = Worker("hwaware-monitor", depth=2)
        try:
            if log_first and self._example is not None and self._rank == 0:
                self.log()
        except BaseException:
            if self._worker is not None:
                self._worker.close()
            if self._owns_writer:
                self.writer.close()
            raise
        # the hook keeps a reference to the last forward input (the live batch); no copy is made
        self._hook = model.register_forward_pre_hook(self._capture, with_kwargs=True)

    # -- capture -----------------------------------------------------------------------------
    def _capture(self, module: nn.Module, args: tuple, kwargs: dict) -> None:
        # detach (a view, no copy) so a non-leaf input does not keep its autograd graph alive
        self._live = (tuple(a.detach() if isinstance(a, torch.Tensor) else a for a in args),
                      {k: v.detach() if isinstance(v, torch.Tensor) else v for k, v in kwargs.items()})

    # -- the step --------------------------------------------------------------------------------
    def step(self, batch: Any = None, *, loss: Any = None, accuracy: Any = None) -> MonitorRecord | None:
        """Call once after every ``optimizer.step()``. Re-applies pruning masks, prunes on schedule
        events and every ``every`` steps logs (``batch``: the forward arguments to profile instead
        of the live batch).

        A log step profiles the model here, on the training thread (the weights of this very step),
        and hands scoring, TensorBoard and figures to the monitor's worker thread (``background=True``,
        the default): ``step()`` then returns ``None`` and the record appears in :attr:`history`
        (reading it waits for the worker). With ``background=False`` everything runs here and the
        new record is returned on log steps; ``None`` on other steps either way.

        ``loss``/``accuracy`` (floats or 0-d tensors) are logged as ``train/loss`` and
        ``train/accuracy`` at this step, with ``train/lr`` of the ``optimizer`` given to
        :func:`attach`, on the same step axis as energy and latency."""
        if self._closed:
            raise HwawareError("HardwareMonitor.step() after close()")
        self.steps += 1
        t = self.steps
        if self.writer is not None:
            for tag, v in (("loss", loss), ("accuracy", accuracy)):
                if v is not None:
                    self.writer.add_scalar(f"train/{tag}", float(v), t)
            if self.optimizer is not None:
                self.writer.add_scalar("train/lr", float(self.optimizer.param_groups[0]["lr"]), t)
        if self.schedule is not None:
            if self.masks is not None:  # first: the optimizer step just moved the pruned weights
                self.masks.apply(self.model)
            if self.schedule.is_event(t):
                self._prune_event(t, batch)
        if t % self.every == 0 and self._rank == 0:
            if self._worker is None:
                return self.log(batch)
            t0 = time.perf_counter()
            job = self._profile(self._call(batch))
            self._worker.submit(self._finish, job, time.perf_counter() - t0)
            self.overhead_seconds += time.perf_counter() - t0
        return None

    def log(self, batch: Any = None) -> MonitorRecord:
        """Profile, score and log now (waiting for the worker's pending logs first), on ``batch``,
        the live batch, or the example batch; return the record."""
        self.flush()
        t0 = time.perf_counter()
        rec = self._finish(self._profile(self._call(batch)), 0.0)
        self.overhead_seconds += time.perf_counter() - t0
        return rec

    def flush(self) -> None:
        """Wait until the worker has scored and written every pending log (re-raises its error)."""
        if self._worker is not None:
            self._worker.join()

    @property
    def history(self) -> list[MonitorRecord]:
        """One :class:`MonitorRecord` per log step, oldest first (waits for pending logs)."""
        self.flush()
        return self._history

    @property
    def last_report(self) -> Any:
        """The score report of the newest log (waits for pending logs); ``None`` before the first."""
        self.flush()
        return self._last[0]

    @property
    def last_workload(self) -> Any:
        """The profiled workload of the newest log (waits for pending logs)."""
        self.flush()
        return self._last[1]

    @property
    def background_seconds(self) -> float:
        """Time the worker thread spent scoring, writing and drawing (not paid by the training thread
        unless the machine has no spare core)."""
        return self._worker.busy_seconds if self._worker is not None else 0.0

    def _call(self, batch: Any) -> tuple[tuple, dict]:
        call = _as_call(batch) if batch is not None else (self._live or self._example)
        if call is None:
            raise HwawareError("HardwareMonitor: nothing to profile yet; pass example_batch to attach() "
                               "or call step() after the model has run a forward pass")
        return call

    def _profile(self, call: tuple[tuple, dict]) -> tuple[Any, int, float | None, float | None]:
        """The caller's-thread half of a log: the workload of the model as it is now, with the step
        and pruning state it belongs to."""
        from .profiler import profile_call

        args, kwargs = call
        if self.samples is not None:
            n = _batch_of(args, kwargs)
            args, kwargs = _first_n(args, self.samples, n), _first_n(kwargs, self.samples, n)
        wl = profile_call(self.model, args, kwargs, source=type(self.model).__name__)
        pruned = target = None
        if self.schedule is not None:
            target = self.schedule.sparsity_at(self.steps)
            pruned = self.pruned_fraction()
        return wl, self.steps, pruned, target

    def _score_workload(self, wl: Any) -> Any:
        with self._score_lock:
            return self.scorer.score(wl, batch=self.batch)

    def _score(self, call: tuple[tuple, dict]) -> tuple[Any, Any]:
        wl = self._profile(call)[0]
        return self._score_workload(wl), wl

    def _finish(self, job: tuple[Any, int, float | None, float | None], profile_seconds: float) -> MonitorRecord:
        """The second half of a log (on the worker, or here): score, record, TensorBoard, figure."""
        t0 = time.perf_counter()
        wl, step, pruned, target = job
        report = self._score_workload(wl)
        rec = MonitorRecord.from_report(report, wl, step=step, pruned_fraction=pruned, target_fraction=target)
        draw = self.figures and self._logs % self.figure_every == 0
        self._logs += 1
        self._write(rec, report, draw=draw)
        rec = _with_seconds(rec, profile_seconds + time.perf_counter() - t0)
        self._last = (report, wl)
        self._history.append(rec)
        return rec

    def _write(self, rec: MonitorRecord, report: Any, *, draw: bool) -> None:
        w = self.writer
        if w is None:
            return
        s = rec.step
        for k, v in rec.energy_by_level.items():
            w.add_scalar(f"energy/{k}", v, s)
        w.add_scalar("energy/total", rec.energy, s)
        for k, v in rec.energy_by_type.items():
            w.add_scalar(f"energy_by_type/{k}", v, s)
        w.add_scalar("latency/processing_ms", rec.processing_latency_ms, s)
        w.add_scalar("latency/total_ms", rec.total_latency_ms, s)
        for name in rec.ifmap_sparsity:
            w.add_scalar(f"sparsity/{name}/ifmap", rec.ifmap_sparsity[name], s)
            w.add_scalar(f"sparsity/{name}/weight", rec.weight_sparsity[name], s)
        if rec.target_fraction is not None:
            w.add_scalar("prune/target", rec.target_fraction, s)
            w.add_scalar("prune/weight_sparsity", rec.pruned_fraction or 0.0, s)
        if draw:
            self._draw(report, s, rec.energy)
        w.flush()

    def _draw(self, report: Any, step: int, energy: float) -> None:
        from .plots import energy_breakdown_figure

        fig = energy_breakdown_figure(report, title=f"step {step}: energy {energy:.4g} (x one 16-bit MAC) "
                                                     f"per batch of {self.batch}")
        self.writer.add_figure("energy/breakdown", fig, step)
        self._drawn_step = step

    # -- pruning ---------------------------------------------------------------------------------
    def pruned_fraction(self) -> float:
        """Fraction of the scheduled layers' weights that are zero now."""
        total = sum(m.weight.numel() for m in self._prunable.values())
        zeros = sum(int((m.weight == 0).sum()) for m in self._prunable.values())
        return zeros / total if total else 0.0

    def _prune_event(self, t: int, batch: Any) -> None:
        sched = self.schedule
        if sched is None:
            return
        goal = sched.sparsity_at(t)
        fractions = None
        if sched.method == "energy":
            if self._rank == 0:  # fresh energies, measured at the current sparsity on the live batch
                t0 = time.perf_counter()
                report, _ = self._score(self._call(batch))
                fractions = energy_allocation(
                    {n: m.weight.numel() for n, m in self._prunable.items()},
                    {n: int((m.weight == 0).sum()) for n, m in self._prunable.items()},
                    module_energy(report), goal, sched.max_layer_sparsity)
                self.overhead_seconds += time.perf_counter() - t0
            if _world() > 1:
                import torch.distributed as dist

                box = [fractions]
                dist.broadcast_object_list(box, src=0)
                fractions = box[0]
        self.masks = schedule_masks(self.model, sched, goal, list(self._prunable), previous=self.masks,
                                    fractions=fractions)
        self.masks.apply(self.model)

    # -- reporting -------------------------------------------------------------------------------
    def summary(self, file: IO[str] | None = None, *, show: bool = True) -> str:
        """Print (to ``file``, default stdout; nothing when ``show=False``) and return: the per-layer
        table of the last score and the energy/latency/sparsity history of every log step."""
        from .report_table import format_pct, format_si, format_table

        if self._rank != 0:
            return ""
        if self.last_report is None:
            text = "hwaware monitor: no log step yet (call hw.log() or wait for `every` steps)"
        else:
            rows = []
            for r in self.history:
                ifz = list(r.ifmap_sparsity.values())
                wz = list(r.weight_sparsity.values())
                rows.append([str(r.step), format_si(r.energy), format_pct(r.energy_by_level.get("DRAM", 0.0) / r.energy
                                                                        if r.energy else 0.0),
                             f"{r.processing_latency_ms:.3f}", format_pct(sum(ifz) / len(ifz) if ifz else 0.0),
                             format_pct(sum(wz) / len(wz) if wz else 0.0),
                             "" if r.pruned_fraction is None else format_pct(r.pruned_fraction)])
            hist = format_table(["step", "energy/inference", "DRAM share", "proc ms", "mean ifmap zeros",
                                 "mean weight zeros", "pruned"], rows)
            first, last = self.history[0], self.history[-1]
            change = (f"energy {last.energy / first.energy:.3f}x of step {first.step}, latency "
                      f"{last.processing_latency_ms / first.processing_latency_ms:.3f}x"
                      if first.energy and first.processing_latency_ms else "")
            text = (f"{self.last_report.table()}\n\nhistory ({len(self.history)} log steps, monitor overhead "
                    f"{self.overhead_seconds:.2f} s on the training thread, {self.background_seconds:.2f} s "
                    f"in the background):\n{hist}\n{change}")
        if show:
            print(text, file=file if file is not None else sys.stdout)
        return text

    def close(self) -> None:
        """Finish pending logs (the worker), draw the final breakdown figure if the last log had none,
        remove the hook and close the TensorBoard writer this monitor opened."""
        if self._closed:
            return
        self._closed = True
        self._hook.remove()
        self._live = None
        try:
            if self._worker is not None:
                self._worker.close()
            report = self._last[0]
            if (self.figures and self.writer is not None and report is not None and self._history
                    and self._drawn_step != self._history[-1].step):  # the final state, always drawn
                self._draw(report, self._history[-1].step, self._history[-1].energy)
        finally:
            self._worker = None
            if self.writer is not None:
                self.writer.flush()
                if self._owns_writer:
                    self.writer.close()

    def __enter__(self) -> HardwareMonitor:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def _with_seconds(rec: MonitorRecord, seconds: float) -> MonitorRecord:
    return replace(rec, seconds=seconds)


def attach(model: nn.Module, example_batch: Any = None, *, hardware: Any = "eyeriss_v1",
           objective: str = "energy", logdir: str | None = None, every: int = 200, batch: int = 1,
           samples: int | None = 32, schedule: PruneSchedule | Mapping[str, Any] | None = None,
           figures: bool = True, log_first: bool = True, writer: Any = None, background: bool = True,
           figure_every: int = 10, optimizer: Any = None) -> HardwareMonitor:
    """Attach a :class:`HardwareMonitor` to ``model`` (plain, DDP-wrapped or ``torch.compile``'d).

    ``example_batch``: forward input(s) for the first log (step 0) and a fallback when no live
    batch was seen. ``hardware``/``objective``: as for :func:`hwaware.score`. ``logdir``: TensorBoard
    directory (``None``: no logs, records are still kept in ``hw.history``). ``every``: steps
    between logs. ``batch``: N the energy is scored at (1 = per inference). ``samples``: images
    of the live batch profiled (sparsity is averaged over them). ``schedule``: a
    :class:`PruneSchedule` or its dict, e.g. ``{"method": "energy", "start": 200, "end": 2000,
    "target": 0.8, "every": 100}``. ``figures``: log the per-layer breakdown figure, on every
    ``figure_every``-th log step and for the final state at ``close()`` (a figure costs far more
    than the numbers). ``background``: score, write and draw on the monitor's worker thread, so a
    log step costs the training loop only the profiling forward pass (``False``: all on the
    caller's thread, and ``step()`` returns the record). ``optimizer``: its learning rate is
    logged as ``train/lr`` at every step (pass ``hw.step(loss=loss, accuracy=acc)`` for the
    training loss and accuracy).
    """
    return HardwareMonitor(model, example_batch, hardware=hardware, objective=objective, logdir=logdir,
                           every=every, batch=batch, samples=samples, schedule=schedule, figures=figures,
                           log_first=log_first, writer=writer, background=background, figure_every=figure_every,
                           optimizer=optimizer)
