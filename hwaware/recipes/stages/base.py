"""What a recipe stage is: one :class:`StageDef` (options, config check, runner, dry-run text)
registered by name, and the :class:`StageResult` its runner returns."""

from __future__ import annotations

import dataclasses
import warnings
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from ..options import SKIP, Option

if TYPE_CHECKING:
    from ..context import RunContext
    from ..schema import Stage

__all__ = ["STAGES", "StageDef", "StageResult", "register_stage"]


@dataclass(frozen=True)
class StageResult:
    label: str
    name: str
    seconds: float
    summary: str
    outputs: dict[str, str] = field(default_factory=dict)
    details: dict[str, Any] = field(default_factory=dict)


def _no_run(ctx: RunContext, stage: Stage) -> StageResult:
    raise NotImplementedError(f"stage '{stage.name}' has no runner")


@dataclass(frozen=True)
class StageDef:
    """A stage kind: its options, whether it needs a dataset, a one-line doc, and its behaviour.

    ``config_check(options, settings)`` raises :class:`~hwaware.errors.HwawareError` for values the
    stage's own config rejects (run while validating, before any work); ``run(ctx, stage)`` does the
    work; ``describe(ctx, stage)`` is the dry run's one line of what it would do.
    """

    name: str
    doc: str
    options: tuple[Option, ...]
    needs_data: bool = False
    config_check: Callable[[dict[str, Any], dict[str, Any]], None] | None = None
    run: Callable[[RunContext, Stage], StageResult] = _no_run
    describe: Callable[[RunContext, Stage], str] | None = None

    def option(self, name: str) -> Option | None:
        return next((o for o in self.options if o.name == name), None)


STAGES: dict[str, StageDef] = {}


def register_stage(spec: StageDef) -> StageDef:
    """Add ``spec`` to :data:`STAGES` (every stage gets the ``skip`` option); a second definition
    of a name warns and wins."""
    if spec.option("skip") is None:
        spec = dataclasses.replace(spec, options=(*spec.options, SKIP))
    if spec.name in STAGES:
        warnings.warn(f"recipe stage '{spec.name}' registered twice; the later definition wins", stacklevel=2)
    STAGES[spec.name] = spec
    return spec
