"""The pruning loop: energy-aware, magnitude and structured pruning against the Eyeriss energy.

    >>> result = prune(model, method="energy", train=train_loader, val=val_loader,
    ...                target_energy=0.3, max_drop=1.0)
    >>> result.model, result.final.energy / result.baseline.energy, result.message

Or drive the steps yourself (a notebook, a training script):

    >>> pruner = Pruner(model, train=train_loader, val=val_loader, config=PruneConfig(method="energy"))
    >>> for step in pruner.steps():
    ...     print(step.kind, step.target, step.accepted, step.metrics.energy)
    >>> result = pruner.result()

Every step is *proposed*, measured, then accepted or rolled back:

- ``energy`` (Yang, Chen, Sze, CVPR 2017): the Conv/Linear layer with the largest share of the
  Eyeriss energy (profiled with the sparsity the pruned model really has, rescored after every
  step) loses ``step`` of its remaining weights by magnitude; the kept weights are refit by
  least squares so the layer's output feature maps are restored
  (:func:`hwaware.compress.energy_aware.least_squares_restore`); then the layer alone is
  fine-tuned for ``local_steps``.
- ``magnitude`` (Han et al. 2015): one global threshold removes ``step`` of all remaining weights;
  then the whole network is fine-tuned for ``local_steps``.
- ``structured``: the channel group (:mod:`hwaware.compress.surgery`) whose layers hold the most
  energy loses ``step`` of its channels (lowest filter L2 first, counts rounded with ``round_to``);
  the model really shrinks; the layers reading those channels are refit by least squares to their
  unpruned outputs (``restore``; only their non-zero weights, so a weight-pruned model keeps its
  zeros); then ``local_steps`` of fine-tuning.
- ``l1-filter`` (Li et al., ICLR 2017): the channel-level magnitude baseline; the channel group
  whose weakest filter has the smallest mean |w| loses ``step`` of its channels (smallest filter L1
  norm first, no restoration); then ``local_steps`` of fine-tuning. Energy is never looked at.

A step is accepted when validation accuracy stays within ``max_drop`` points of the start, the
energy fell and (with ``max_latency``) the Eyeriss latency stays within ``max_latency`` x the start's;
otherwise it is rolled back and that layer's step is halved (below ``min_step`` the
layer is done). Every ``finetune_every`` accepted steps, and once at the end, the whole network is
fine-tuned (``global_steps``, ``final_steps``; masks re-applied after every optimizer step, so
weights that are zero stay zero under every method, channel methods included); the
fine-tuned weights are kept when validation accuracy did not fall and the energy (which moves with
the activation sparsity) rose by less than 1%, else rolled back. The loop
stops when the energy reaches ``target_energy`` x the starting energy, when nothing more can be
pruned within the accuracy limit (the best model found is returned with a message saying how far
it got), or after ``max_steps`` proposals.
"""

from __future__ import annotations

import copy
import math
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, fields
from typing import Any

import torch
from torch import nn

from .._suggest import did_you_mean
from ..errors import HwawareError
from ..measure import ModelMetrics, measure
from .criteria import CRITERIA, criterion
from .magnitude import Masks

__all__ = ["METHODS", "Metrics", "PruneConfig", "PruneResult", "PruneStep", "Pruner", "measure", "prune"]

METHODS = tuple(CRITERIA)  # registered pruning criteria (hwaware.compress.criteria)


@dataclass(frozen=True)
class PruneConfig:
    """Options of one pruning run (see the module docstring for what each step does).

    method           energy (CVPR 2017: most energy-hungry layer first, least-squares restore), magnitude,
                     structured (whole channels, energy first), l1-filter (whole channels, smallest
                     filter L1 first); any registered criterion (hwaware.compress.criteria)
    target_energy    stop at this fraction of the starting energy, in (0, 1]
    max_drop         accuracy points (top-1, %) allowed below the start
    step             fraction of the remaining weights (channels) one step removes
    min_step         a layer whose step falls below this is done
    local_steps      fine-tuning steps after each proposal
    global_steps     whole-network fine-tuning steps every finetune_every accepted steps
    finetune_every   accepted steps between whole-network fine-tunes
    final_steps      whole-network fine-tuning steps at the end
    lr               fine-tuning learning rate (a trained net's sharp minimum dislikes larger steps)
    max_steps        proposals at most
    finetune_budget  fine-tuning optimizer steps of the whole run (local, global and final together); 0 = no
                     limit. With a budget no proposal starts that would leave less than final_steps, and
                     the final fine-tune gets whatever is left: methods compared at one budget train equally
    restore          least-squares restoration of output feature maps: energy, the pruned layer's; structured,
                     the layers reading the removed channels
    ridge            ridge regularization of the restoration
    restore_max_flops   larger layers skip restoration (noted in the step message)
    round_to         structured: channel counts rounded up to a multiple of this
    max_latency      accept a step only if the Eyeriss latency stays at most this fraction of the starting
                     latency (0 = no limit): e.g. 1.0 keeps a channel-pruned model from mapping slower
                     than the unpruned one
    hardware         Eyeriss preset or hardware YAML the energy is scored on
    batch            images per inference the energy is scored at (1: energy per inference)
    seed             seed of the restoration's sampling (hwaware prune: also of the data order and a
                     fresh model's weights)
    """

    method: str = "energy"
    target_energy: float = 0.3
    max_drop: float = 1.0
    step: float = 0.3
    min_step: float = 0.04
    local_steps: int = 10
    global_steps: int = 50
    finetune_every: int = 4
    final_steps: int = 150
    lr: float = 0.003
    max_steps: int = 60
    finetune_budget: int = 0
    restore: bool = True
    ridge: float = 1e-3
    restore_max_flops: float = 2e10
    round_to: int = 1
    max_latency: float = 0.0
    hardware: str = "eyeriss_v1"
    batch: int = 1
    seed: int = 0

    def __post_init__(self) -> None:
        if self.method not in CRITERIA:
            raise HwawareError(f"unknown pruning method '{self.method}'{did_you_mean(self.method, CRITERIA)}; "
                               f"allowed: {', '.join(CRITERIA)}")
        if not 0.0 < self.target_energy <= 1.0:
            raise HwawareError(f"target_energy is a fraction of the starting energy in (0, 1], got {self.target_energy}")
        if not 0.0 <= self.max_drop <= 100.0:
            raise HwawareError(f"max_drop is in accuracy points [0, 100], got {self.max_drop}")
        if not 0.0 < self.min_step <= self.step < 1.0:
            raise HwawareError(f"need 0 < min_step <= step < 1, got min_step={self.min_step}, step={self.step}")
        for name in ("local_steps", "global_steps", "final_steps", "finetune_budget"):
            if int(getattr(self, name)) < 0:
                raise HwawareError(f"{name} must be >= 0, got {getattr(self, name)}")
        for name in ("finetune_every", "max_steps", "round_to", "batch"):
            if int(getattr(self, name)) < 1:
                raise HwawareError(f"{name} must be >= 1, got {getattr(self, name)}")
        if not (self.max_latency >= 0 and math.isfinite(self.max_latency)):
            raise HwawareError(f"max_latency is a fraction of the starting latency (0 = no limit), got {self.max_latency}")
        if not (self.lr > 0 and math.isfinite(self.lr)):
            raise HwawareError(f"lr must be a positive number, got {self.lr}")
        if self.finetune_budget and self.finetune_budget < self.final_steps:
            raise HwawareError(f"finetune_budget ({self.finetune_budget}) must be 0 (no limit) or at least "
                               f"final_steps ({self.final_steps})")

    @classmethod
    def keys(cls) -> tuple[str, ...]:
        return tuple(f.name for f in fields(cls))


Metrics = ModelMetrics  # the numbers of one model state (hwaware.measure); the old name kept


@dataclass(frozen=True)
class PruneStep:
    """One proposal (``kind="prune"``) or fine-tuning pass (``"finetune"``, ``"final"``)."""

    index: int
    kind: str
    target: str
    fraction: float
    accepted: bool
    metrics: Metrics
    message: str = ""
    seconds: float = 0.0


@dataclass(frozen=True)
class PruneResult:
    model: nn.Module
    masks: Masks | None
    baseline: Metrics
    final: Metrics
    history: tuple[PruneStep, ...]
    target_reached: bool
    message: str
    config: PruneConfig

    @property
    def energy_ratio(self) -> float:
        return self.final.energy / self.baseline.energy

    @property
    def accuracy_drop(self) -> float | None:
        """Validation accuracy lost, in points (percent)."""
        if self.final.accuracy is None or self.baseline.accuracy is None:
            return None
        return 100.0 * (self.baseline.accuracy - self.final.accuracy)


class Pruner:
    """Step API of one pruning run; ``steps()`` yields a :class:`PruneStep` per proposal.

    ``train``/``val``: loaders of ``(images, labels)``; ``calib``: a batch of images used for
    profiling the energy and for the least-squares fit (default: the first ``val`` batch).
    The input model is never modified; :attr:`model` is the current (accepted) model.
    """

    def __init__(self, model: nn.Module, *, train: Any, val: Any, calib: torch.Tensor | None = None,
                 config: PruneConfig | None = None, evaluate_fn: Callable[[nn.Module], float] | None = None,
                 progress: bool = False) -> None:
        from ..eyeriss import Scorer
        from ..train import evaluate

        self.config = config or PruneConfig()
        self.train, self.val = train, val
        self.calib = calib if calib is not None else _first_images(val)
        self._evaluate = evaluate_fn or (lambda m: evaluate(m, val))
        self._scorer = Scorer(self.config.hardware)
        self.model = copy.deepcopy(model).eval()
        self._criterion = criterion(self.config.method)
        # the zero weights the model has stay zero under every criterion (a weight-pruned model
        # keeps its sparsity when channels are removed from it)
        self.masks: Masks = Masks.from_model(self.model)
        self._progress = progress
        self._step_size: dict[str, float] = {}
        self.done: set[str] = set()  # targets the criterion may not propose again
        self._notes: dict[str, str] = {}
        self.history: list[PruneStep] = []
        self.finetune_steps_used = 0  # optimizer steps of fine-tuning so far (the budget counts these)
        self.baseline = self._measure()
        self.current = self.baseline
        self._accepted = 0
        self._finished = False
        self._message = ""
        self._target_reached = False

    # -- measurement ---------------------------------------------------------------------------

    def _measure(self) -> Metrics:
        acc = self._evaluate(self.model)
        return measure(self.model, self.calib, scorer=self._scorer, batch=self.config.batch, accuracy=acc)

    def _ok(self, m: Metrics) -> bool:
        return m.accuracy is None or self.baseline.accuracy is None or \
            100.0 * (self.baseline.accuracy - m.accuracy) <= self.config.max_drop + 1e-9

    def _fast_enough(self, m: Metrics) -> bool:
        return not self.config.max_latency or m.latency_ms <= self.config.max_latency * self.baseline.latency_ms

    def _target(self) -> float:
        return self.config.target_energy * self.baseline.energy

    # -- fine-tuning ---------------------------------------------------------------------------

    def finetune(self, steps: int, params: list[nn.Parameter] | None = None) -> None:
        """Fine-tune the current model for ``steps`` (only ``params`` when given); masks held."""
        from ..train import finetune

        try:
            finetune(self.model, self.train, steps, params=params, lr=self.config.lr,
                     after_step=self.masks.apply)
            self.finetune_steps_used += max(0, steps)
        finally:
            self.model.eval()

    def _budget_left(self) -> int | None:
        """Fine-tuning steps the budget still allows (None: no budget)."""
        budget = self.config.finetune_budget
        return None if not budget else budget - self.finetune_steps_used

    def _snapshot(self) -> tuple[nn.Module, Masks]:
        if not self._criterion.uses_masks:
            return self.model, self.masks  # proposals build a new model; the old one is intact
        return copy.deepcopy(self.model), self.masks

    # -- the loop ------------------------------------------------------------------------------

    def steps(self) -> Iterator[PruneStep]:
        """Run the loop, yielding after every proposal and every fine-tuning pass."""
        if self._finished:
            return
        cfg = self.config
        proposals = 0
        while True:
            if self.current.energy <= self._target():
                self._target_reached = True
                self._message = (f"target reached: energy {self.current.energy / self.baseline.energy:.3f} "
                                 f"of the start <= {cfg.target_energy}")
                break
            cands = self._criterion.candidates(self)
            if not cands:
                self._message = (f"target energy {cfg.target_energy} not reachable within a {cfg.max_drop}-point "
                                 f"accuracy drop: best model found has energy "
                                 f"{self.current.energy / self.baseline.energy:.3f} of the start")
                break
            if proposals >= cfg.max_steps:
                self._message = (f"stopped after max_steps={cfg.max_steps} proposals at energy "
                                 f"{self.current.energy / self.baseline.energy:.3f} of the start")
                break
            left = self._budget_left()
            if left is not None and left - cfg.local_steps < cfg.final_steps:
                self._message = (f"fine-tuning budget of {cfg.finetune_budget} steps spent at energy "
                                 f"{self.current.energy / self.baseline.energy:.3f} of the start")
                break
            target = cands[0]
            frac = self._step_size.setdefault(target, cfg.step)
            t0 = time.perf_counter()
            saved = self._snapshot()
            note = self._criterion.propose(self, target, frac)
            m = self._measure()
            proposals += 1
            ok, fell, fast = self._ok(m), m.energy < self.current.energy, self._fast_enough(m)
            accepted = ok and fell and fast
            if accepted:
                self.current = m
                self._accepted += 1
            else:
                self.model, self.masks = saved
                why = "accuracy" if not ok else "energy did not fall" if not fell \
                    else f"latency {m.latency_ms / self.baseline.latency_ms:.3f} of the start > max_latency"
                note += f"; rolled back ({why})"
                self._step_size[target] = frac / 2
                if frac / 2 < cfg.min_step:
                    self.done.add(target)
            step = PruneStep(len(self.history), "prune", target, frac, accepted, m, note,
                             time.perf_counter() - t0)
            self.history.append(step)
            yield step
            if accepted and self._accepted % cfg.finetune_every == 0 and cfg.global_steps > 0:
                left = self._budget_left()
                steps = cfg.global_steps if left is None else min(cfg.global_steps, left - cfg.final_steps)
                if steps > 0:
                    yield self._global_finetune("finetune", steps)
        left = self._budget_left()
        final = cfg.final_steps if left is None else max(cfg.final_steps, left)
        if final > 0 and self._accepted > 0:
            yield self._global_finetune("final", final)
        self._finished = True

    def _global_finetune(self, kind: str, steps: int) -> PruneStep:
        t0 = time.perf_counter()
        saved = self._snapshot()
        if not self._criterion.uses_masks:
            self.model = copy.deepcopy(self.model)
        self.finetune(steps)
        m = self._measure()
        # fine-tuning moves activation sparsity a little, so the energy may move a little too
        better = (m.accuracy or 0.0) >= (self.current.accuracy or 0.0) and m.energy <= self.current.energy * 1.01
        if better or (self._ok(m) and not self._ok(self.current)):
            self.current = m
            note = "kept"
        else:
            self.model, self.masks = saved
            note = "rolled back (accuracy or energy got worse)"
            better = False
        step = PruneStep(len(self.history), kind, "all", 0.0, better, m, note, time.perf_counter() - t0)
        self.history.append(step)
        return step

    def result(self) -> PruneResult:
        """The outcome so far (runs the remaining steps first if the loop was not finished)."""
        for _ in self.steps():
            pass
        return PruneResult(self.model, self.masks, self.baseline, self.current, tuple(self.history),
                           self._target_reached, self._message, self.config)


def _first_images(loader: Any) -> torch.Tensor:
    for batch in loader:
        x = batch[0] if isinstance(batch, (tuple, list)) else batch
        if not isinstance(x, torch.Tensor):
            raise HwawareError("the validation loader must yield (images, labels) tensors")
        return x
    raise HwawareError("the validation loader yields no batches")


def prune(model: nn.Module, *, train: Any, val: Any, calib: torch.Tensor | None = None,
          on_step: Callable[[PruneStep, Pruner], None] | None = None, **options: Any) -> PruneResult:
    """Prune a copy of ``model``; ``options`` are :class:`PruneConfig` fields.

    ``on_step(step, pruner)`` is called after every step (the CLI logs and checkpoints there).
    """
    unknown = [k for k in options if k not in PruneConfig.keys()]
    if unknown:
        raise HwawareError(f"unknown pruning option '{unknown[0]}'{did_you_mean(unknown[0], PruneConfig.keys())}")
    pruner = Pruner(model, train=train, val=val, calib=calib, config=PruneConfig(**options))
    for step in pruner.steps():
        if on_step is not None:
            on_step(step, pruner)
    return pruner.result()
