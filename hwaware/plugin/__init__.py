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
which a step never waits for unless two logs are still pending. On Linux the worker runs at the
lowest OS priority (nice 19, :attr:`HardwareMonitor.worker_nice`), so on a CPU training loop that
keeps every core busy it waits for idle time instead of taking cycles from training.
``hw.history``, ``hw.summary()`` and ``hw.close()`` wait for it; ``hw.overhead_seconds`` is the
time the training thread paid (``hw.overhead_cpu_seconds``: the process CPU time meanwhile, its
intra-op threads included), ``hw.background_seconds`` the worker's (``hw.background_cpu_seconds``:
its thread's CPU time). ``bench/plugin_overhead.py`` measures both against a
training loop without the monitor (docs/plugin.md, Overhead).

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

from collections.abc import Mapping
from typing import Any

from torch import nn

from ..compress.schedule import PruneSchedule, energy_allocation
from .inputs import unwrap_model
from .logs import MonitorRecord
from .monitor import HardwareMonitor

__all__ = ["HardwareMonitor", "MonitorRecord", "PruneSchedule", "attach", "energy_allocation", "unwrap_model"]


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
