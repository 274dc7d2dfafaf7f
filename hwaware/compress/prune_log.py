"""What happens after every pruning step, shared by ``hwaware prune`` and the recipe ``prune``
stage: a history row, TensorBoard scalars, a progress bar or a log line, and a checkpoint of the
model after every accepted step.

    >>> log = PruneLog(writer=SummaryWriter("runs/p"), checkpoint=lambda p: save_model(p.model, "best.pt"))
    >>> result = prune(model, train=..., val=..., on_step=log)     # or: for s in pruner.steps(): log(s, pruner)

TensorBoard scalars (under ``prefix``), at step 0 for the start and ``index + 1`` for each step:
``energy/relative``, ``energy/total``, ``energy_level/<level>``, ``energy_type/<type>``,
``latency_ms``, ``nonzero_macs``, ``nonzero_weights``, ``accuracy/val``, ``accepted`` and
``sparsity/<layer>`` (measured weight zeros).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

__all__ = ["PruneLog"]


class PruneLog:
    """``on_step(step, pruner)`` callback. ``writer``: a TensorBoard SummaryWriter (or None);
    ``prefix``: tag prefix; ``log``: called with one line per step; ``bar``: a tqdm bar advanced per
    proposal; ``checkpoint``: called with the pruner after every accepted step. :attr:`rows` holds
    one dict per step (the ``steps`` of a pruning history file)."""

    def __init__(self, *, writer: Any = None, prefix: str = "", log: Callable[[str], None] | None = None,
                 bar: Any = None, checkpoint: Callable[[Any], None] | None = None) -> None:
        self.writer = writer
        self.prefix = prefix
        self.log = log
        self.bar = bar
        self.checkpoint = checkpoint
        self.rows: list[dict[str, Any]] = []
        self._started = False

    def start(self, pruner: Any) -> None:
        """Log the starting point (step 0); called by the first step if not before."""
        if not self._started:
            self._started = True
            self._scalars(0, pruner.baseline, pruner.baseline, None)

    def __call__(self, step: Any, pruner: Any) -> None:
        self.start(pruner)
        m, base = step.metrics, pruner.baseline
        self.rows.append({"index": step.index, "kind": step.kind, "target": step.target, "fraction": step.fraction,
                          "accepted": step.accepted, "message": step.message, "seconds": step.seconds,
                          "energy": m.energy, "latency_ms": m.latency_ms, "accuracy": m.accuracy,
                          "nonzero_weights": m.nonzero_weights})
        if self.bar is not None and step.kind == "prune":
            cur = pruner.current
            self.bar.update(1)
            self.bar.set_postfix(energy=f"{cur.energy / base.energy:.3f}",
                                 acc="-" if cur.accuracy is None else f"{cur.accuracy:.3f}", refresh=False)
        if self.log is not None:
            state = "accepted" if step.accepted else "rejected"
            acc = f"{m.accuracy:.4f}" if m.accuracy is not None else "-"
            self.log(f"  prune {step.index:3d} {step.kind:8s} {step.target:12s} {state:8s} energy "
                     f"{m.energy / base.energy:.3f} acc {acc}  {step.message}")
        self._scalars(step.index + 1, m, base, step.accepted)
        if step.accepted and self.checkpoint is not None:
            self.checkpoint(pruner)

    def _scalars(self, i: int, m: Any, base: Any, accepted: bool | None) -> None:
        w, p = self.writer, self.prefix
        if w is None:
            return
        w.add_scalar(f"{p}energy/relative", m.energy / base.energy, i)
        w.add_scalar(f"{p}energy/total", m.energy, i)
        for lv, v in m.energy_by_level.items():
            w.add_scalar(f"{p}energy_level/{lv}", v, i)
        for ty, v in m.energy_by_type.items():
            w.add_scalar(f"{p}energy_type/{ty}", v, i)
        w.add_scalar(f"{p}latency_ms", m.latency_ms, i)
        w.add_scalar(f"{p}nonzero_macs", m.nonzero_macs, i)
        w.add_scalar(f"{p}nonzero_weights", m.nonzero_weights, i)
        if m.accuracy is not None:
            w.add_scalar(f"{p}accuracy/val", m.accuracy, i)
        if accepted is not None:
            w.add_scalar(f"{p}accepted", float(accepted), i)
        for name, s in m.layer_sparsity.items():
            w.add_scalar(f"{p}sparsity/{name}", s, i)
        w.flush()
