"""The :class:`HardwareMonitor`: capture the live batch, profile on the training thread, score and
log on the worker thread, apply pruning schedules. See :mod:`hwaware.plugin` for the whole story."""

from __future__ import annotations

import sys
import threading
import time
from collections.abc import Mapping
from dataclasses import replace
from typing import IO, Any

import torch
from torch import nn

from ..background import Worker
from ..compress.schedule import PruneSchedule, energy_allocation, schedule_masks
from ..errors import HwawareError
from ..measure import module_energy
from .inputs import as_call, batch_of, first_n, rank, unwrap_model, world
from .logs import MonitorRecord, history_table, write_scalars


class HardwareMonitor:
    """Profiles, scores and logs a model during training; see :func:`attach` and the module docstring."""

    #: how much the worker thread lowers its OS priority (Linux; 0 keeps the caller's): on a CPU
    #: training loop that keeps every core busy, scoring and figures then use idle time only
    worker_nice = 19

    def __init__(self, model: nn.Module, example_batch: Any = None, *, hardware: Any = "eyeriss_v1",
                 objective: str = "energy", logdir: str | None = None, every: int = 200, batch: int = 1,
                 samples: int | None = 32, schedule: PruneSchedule | Mapping[str, Any] | None = None,
                 figures: bool = True, log_first: bool = True, writer: Any = None, background: bool = True,
                 figure_every: int = 10, optimizer: Any = None) -> None:
        from ..eyeriss import Scorer

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
        self.overhead_cpu_seconds = 0.0
        self._score_lock = threading.Lock()  # the worker and a prune event may score at once
        self._worker: Worker | None = None
        self._rank = rank()
        self._example = as_call(example_batch) if example_batch is not None else None
        self._live: tuple[tuple, dict] | None = None
        self._closed = False
        self._prunable: dict[str, nn.Module] = {}
        if schedule is not None:
            from ..compress.magnitude import prunable_layers

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
                self._worker = Worker("hwaware-monitor", depth=2, nice=self.worker_nice or None)
        self._counted = self._worker  # its time counters stay readable after close()
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
            t0, c0 = time.perf_counter(), time.process_time()
            job = self._profile(self._call(batch))
            self._worker.submit(self._finish, job, time.perf_counter() - t0)
            self.overhead_seconds += time.perf_counter() - t0
            self.overhead_cpu_seconds += time.process_time() - c0
        return None

    def log(self, batch: Any = None) -> MonitorRecord:
        """Profile, score and log now (waiting for the worker's pending logs first), on ``batch``,
        the live batch, or the example batch; return the record."""
        self.flush()
        t0, c0 = time.perf_counter(), time.process_time()
        job = self._profile(self._call(batch))
        rec = self._finish(job, time.perf_counter() - t0)  # the record's seconds include profiling
        self.overhead_seconds += time.perf_counter() - t0
        self.overhead_cpu_seconds += time.process_time() - c0
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
        return self._counted.busy_seconds if self._counted is not None else 0.0

    @property
    def background_cpu_seconds(self) -> float:
        """CPU time the worker thread spent in its jobs (``time.thread_time``; it runs no torch ops,
        so no intra-op threads of its own)."""
        return self._counted.busy_cpu_seconds if self._counted is not None else 0.0

    def _call(self, batch: Any) -> tuple[tuple, dict]:
        call = as_call(batch) if batch is not None else (self._live or self._example)
        if call is None:
            raise HwawareError("HardwareMonitor: nothing to profile yet; pass example_batch to attach() "
                               "or call step() after the model has run a forward pass")
        return call

    def _profile(self, call: tuple[tuple, dict]) -> tuple[Any, int, float | None, float | None]:
        """The caller's-thread half of a log: the workload of the model as it is now, with the step
        and pruning state it belongs to."""
        from ..profiler import profile_call

        args, kwargs = call
        if self.samples is not None:
            n = batch_of(args, kwargs)
            args, kwargs = first_n(args, self.samples, n), first_n(kwargs, self.samples, n)
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
        rec = replace(rec, seconds=profile_seconds + time.perf_counter() - t0)
        self._last = (report, wl)
        self._history.append(rec)
        return rec

    def _write(self, rec: MonitorRecord, report: Any, *, draw: bool) -> None:
        if self.writer is None:
            return
        write_scalars(self.writer, rec)
        if draw:
            self._draw(report, rec.step, rec.energy)
        self.writer.flush()

    def _draw(self, report: Any, step: int, energy: float) -> None:
        from ..plots import energy_breakdown_figure

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
                t0, c0 = time.perf_counter(), time.process_time()
                report, _ = self._score(self._call(batch))
                fractions = energy_allocation(
                    {n: m.weight.numel() for n, m in self._prunable.items()},
                    {n: int((m.weight == 0).sum()) for n, m in self._prunable.items()},
                    module_energy(report), goal, sched.max_layer_sparsity)
                self.overhead_seconds += time.perf_counter() - t0
                self.overhead_cpu_seconds += time.process_time() - c0
            if world() > 1:
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
        if self._rank != 0:
            return ""
        if self.last_report is None:
            text = "hwaware monitor: no log step yet (call hw.log() or wait for `every` steps)"
        else:
            text = (f"{self.last_report.table()}\n\nhistory ({len(self.history)} log steps, monitor overhead "
                    f"{self.overhead_seconds:.2f} s on the training thread, {self.background_seconds:.2f} s "
                    f"in the background):\n{history_table(self.history)}")
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
