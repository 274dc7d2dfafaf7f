"""What a NetAdapt job shows while it runs: one line per family member and TensorBoard scalars."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from .budget import Budget
from .family import FamilyMember


class FamilyLog:
    """Logs family members: a ``tqdm.write`` line (``progress``) and, with a ``logdir``, the
    resources (absolute and relative to ``initial``), held-out accuracy and step per iteration."""

    def __init__(self, budgets: Sequence[Budget], *, progress: bool, logdir: Path | None) -> None:
        self.budgets = budgets
        self.progress = progress
        self.logdir = logdir
        self.initial: Mapping[str, float] = {}
        self._writer: Any = None

    def budget_status(self, values: Mapping[str, float]) -> str:
        """E.g. ``latency 62.0% (budget 50.0%)``: each budgeted resource relative to the original."""
        return ", ".join(f"{b.resource} {values[b.resource] / self.initial[b.resource]:.1%} "
                         f"(budget {b.limit(self.initial[b.resource]) / self.initial[b.resource]:.1%})"
                         for b in self.budgets)

    def member(self, member: FamilyMember) -> None:
        if self.progress:
            from tqdm.auto import tqdm

            tqdm.write(f"netadapt iteration {member.iteration}: {member.block or member.kind} | "
                       f"{self.budget_status(member.resources)} | held-out accuracy {member.accuracy:.4f}")
        if self.logdir is None:
            return
        if self._writer is None:
            from torch.utils.tensorboard import SummaryWriter

            self._writer = SummaryWriter(str(self.logdir), purge_step=member.iteration)
        w, step = self._writer, member.iteration + (1 if member.kind == "long_term" else 0)
        for r, v in member.resources.items():
            w.add_scalar(f"resource/{r}", v, step)
            w.add_scalar(f"relative/{r}", v / self.initial[r], step)
        w.add_scalar("accuracy/heldout", member.accuracy, step)
        w.add_scalar("netadapt/step", member.step, step)
        w.flush()

    def close(self) -> None:
        if self._writer is not None:
            self._writer.close()
            self._writer = None
